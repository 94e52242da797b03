//! The SSH runner against a real OpenSSH server on 127.0.0.1 (`dev/ssh-peer`, started by
//! `dev/test`): readiness means authentication, timeouts, exit statuses, bounded output, a hanging
//! command, arguments with shell metacharacters, a suite copied in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use imagekit::Error;
use imagekit::ssh::{Command, SshKey, Target, connect_when_ready};

/// The sshd's state directory, with an ephemeral key authorized there.
fn sshd() -> Option<(Target, SshKey)> {
    let Some(dir) = std::env::var_os("IMAGEKIT_SSHD") else {
        assert_ne!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
            Ok("1"),
            "sshd not running: use dev/test"
        );
        eprintln!("skipped: sshd not running (dev/test starts it)");
        return None;
    };
    let key = SshKey::generate().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(std::path::Path::new(&dir).join("authorized_keys"))
        .unwrap();
    f.write_all(format!("{}\n", key.public_openssh()).as_bytes()).unwrap();
    let user = std::fs::read_to_string(std::path::Path::new(&dir).join("user")).unwrap();
    let user = user.trim();
    let port = std::fs::read_to_string(std::path::Path::new(&dir).join("port"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(2222);
    Some((Target::new("127.0.0.1", port, user), key))
}

#[tokio::test]
async fn ready_means_authenticated_not_a_tcp_connect() {
    let Some((target, key)) = sshd() else { return };
    // A key the server does not know: never ready; the error says why.
    let stranger = SshKey::generate().unwrap();
    let e = connect_when_ready(&target, &stranger, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("refused our key"), "{e}");
    // A port that accepts TCP and never speaks SSH (like QEMU's forwarding before the guest is up).
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_port = mute.local_addr().unwrap().port();
    let started = Instant::now();
    let e = connect_when_ready(&Target::new("127.0.0.1", mute_port, "x"), &key, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline holds: {:?}",
        started.elapsed()
    );
    drop(mute);
    let session = connect_when_ready(&target, &key, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(session.host_key().unwrap().starts_with("SHA256:"));
    session.close().await.unwrap();
}

#[tokio::test]
async fn commands_report_exit_status_output_and_timeouts() {
    let Some((target, key)) = sshd() else { return };
    let s = connect_when_ready(&target, &key, Duration::from_secs(10))
        .await
        .unwrap();
    let r = s.run(&Command::shell("echo out; echo err >&2; exit 3")).await.unwrap();
    assert_eq!(r.exit_status, Some(3));
    assert!(!r.success());
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );

    let big = s
        .run(&Command::shell("head -c 5000000 /dev/zero").max_output(1 << 20))
        .await
        .unwrap();
    assert!(big.success());
    assert_eq!(big.stdout.len(), 1 << 20);
    assert_eq!(big.dropped_bytes, 5_000_000 - (1 << 20));

    // A command line no other process on the machine has (other runs, other tests), so that pgrep
    // below finds only this one.
    let marker = format!("sleep 60.{:09}", rand::random::<u32>() % 1_000_000_000);
    let started = Instant::now();
    let hang = s
        .run(&Command::shell(&marker).timeout(Duration::from_millis(800)))
        .await
        .unwrap();
    assert!(hang.timed_out && !hang.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    // The hanging process does not outlive its timeout: the guest's watchdog kills it within the
    // whole second it rounds the timeout up to (polled, so a loaded machine does not flake).
    let mut left = String::from("never checked");
    for _ in 0..50 {
        let r = s
            .run(&Command::shell(&format!("pgrep -fx '{marker}' || true")))
            .await
            .unwrap();
        left = String::from_utf8_lossy(&r.stdout).into_owned();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !left.is_empty() {
        let ps = s
            .run(&Command::shell("ps -eo pid,ppid,pgid,sid,etime,args"))
            .await
            .map(|r| String::from_utf8_lossy(&r.stdout).into_owned())
            .unwrap_or_default();
        panic!("still running: {left}\n{ps}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "killed late: {:?}",
        started.elapsed()
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn arguments_with_shell_metacharacters_arrive_unchanged() {
    let Some((target, key)) = sshd() else { return };
    let s = connect_when_ready(&target, &key, Duration::from_secs(10))
        .await
        .unwrap();
    let nasty = r#"mysql; $(id) `uname` 'single' "double" * ? | > & \back"#;
    let r = s.run(&Command::new(["printf", "%s", nasty])).await.unwrap();
    assert!(r.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8(r.stdout).unwrap(), nasty);
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_suite_directory_is_copied_in_and_runs_there() {
    let Some((target, key)) = sshd() else { return };
    let suite = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(suite.path().join("lib")).unwrap();
    std::fs::write(suite.path().join("lib/common.sh"), "greet() { echo \"hello $1\"; }\n").unwrap();
    std::fs::write(
        suite.path().join("runtests.sh"),
        "#!/bin/sh\n. ./lib/common.sh\ngreet \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        suite.path().join("runtests.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let s = connect_when_ready(&target, &key, Duration::from_secs(10))
        .await
        .unwrap();
    let remote = format!("/tmp/imagekit-suite-{}", std::process::id());
    s.upload_dir(suite.path(), &remote).await.unwrap();
    let r = s
        .run(&Command::new(["./runtests.sh", "mysql"]).cwd(&remote))
        .await
        .unwrap();
    assert_eq!(String::from_utf8(r.stdout).unwrap(), "hello mysql\n");
    assert_eq!(
        s.read_file(&format!("{remote}/lib/common.sh"), 100)
            .await
            .unwrap()
            .unwrap(),
        b"greet() { echo \"hello $1\"; }\n"
    );
    assert!(s.read_file("/nonexistent/file", 100).await.unwrap().is_none());
    s.run(&Command::new(["rm", "-rf", &remote])).await.unwrap();
    s.close().await.unwrap();
}
