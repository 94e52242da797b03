//! The kit's own SSH target (`imagekit::testing::SshTarget`): boot tests on the kit's Nova log in
//! and run their suites with no system sshd, as on a real machine — input, output, exit statuses,
//! timeouts, refused keys — and nothing a command started outlives it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use imagekit::Error;
use imagekit::boot_test::{Suite, TestCase, Verdict, boot_test};
use imagekit::ssh::{Command, SshKey, Target, connect};
use imagekit::testing::{Kit, SshTarget};

async fn login(target: &SshTarget) -> imagekit::ssh::Session {
    let key = SshKey::generate().unwrap();
    target.authorize(&key.public_openssh());
    connect(
        &Target::new("127.0.0.1", target.port(), "cloud-user"),
        &key,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn commands_get_their_input_and_give_output_errors_and_exit_status() {
    let target = SshTarget::start().await.unwrap();
    let session = login(&target).await;
    let r = session
        .run(&Command::shell("echo out; echo err >&2; pwd; echo \"$HOME\"; exit 7"))
        .await
        .unwrap();
    let home = target.home().display().to_string();
    assert_eq!(String::from_utf8_lossy(&r.stdout), format!("out\n{home}\n{home}\n"));
    assert_eq!(String::from_utf8_lossy(&r.stderr), "err\n");
    assert_eq!(r.exit_status, Some(7));
    // Input, also larger than a pipe's buffer, reaches the command whole.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    session
        .write_file(&format!("{home}/copy.bin"), data.clone())
        .await
        .unwrap();
    assert_eq!(std::fs::read(target.home().join("copy.bin")).unwrap(), data);
    assert_eq!(target.users(), ["cloud-user"]);
}

#[tokio::test]
async fn the_environment_is_a_login_s_not_the_test_s() {
    let target = SshTarget::start().await.unwrap();
    let session = login(&target).await;
    let r = session.run(&Command::shell("env | cut -d= -f1 | sort")).await.unwrap();
    let names = String::from_utf8_lossy(&r.stdout).into_owned();
    for n in ["HOME", "PATH", "USER"] {
        assert!(names.lines().any(|l| l == n), "{n} missing: {names}");
    }
    assert!(!names.contains("CARGO"), "the test's environment leaked in: {names}");
}

#[tokio::test]
async fn an_unknown_key_is_refused_at_once() {
    let target = SshTarget::start().await.unwrap();
    let key = SshKey::generate().unwrap();
    let started = Instant::now();
    let e = connect(
        &Target::new("127.0.0.1", target.port(), "root"),
        &key,
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Ssh { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(target.logins(), 0);
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_what_it_started() {
    let target = SshTarget::start().await.unwrap();
    let session = login(&target).await;
    let r = session
        .run(&Command::shell("sleep 300 & sleep 301").timeout(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(r.timed_out, "{r:?}");
    // The guest-side watchdog's own `sleep` may linger until its timer ends (as on a real
    // machine); the command's processes must not (a killed process may take a moment to exit).
    let left = || -> Vec<String> {
        target
            .processes()
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok())
            .filter(|c| c.starts_with("sleep\x00300") || c.starts_with("sleep\x00301"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !left().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = left();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_dropped_target_stops_every_command_it_runs() {
    let target = SshTarget::start().await.unwrap();
    let session = login(&target).await;
    let running = tokio::spawn(async move {
        session
            .run(&Command::shell("sleep 600").timeout(Duration::from_secs(600)))
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeping = loop {
        let pids = target.processes();
        if !pids.is_empty() {
            break pids;
        }
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(target);
    for pid in sleeping {
        // A killed process may stay a zombie until reaped; it no longer runs.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, s)| s.trim_start().chars().next());
        assert!(
            matches!(state, None | Some(Some('Z' | 'X'))),
            "pid {pid} still runs: {stat}"
        );
    }
    // The client sees its channel end (the target closed it), not its own 605 s deadline.
    let _ = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the command's channel ends when the target is dropped");
}

#[tokio::test]
async fn a_boot_test_on_the_kit_runs_its_suite_over_ssh() {
    let kit = Kit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let suite_dir = dir.path().join("suite");
    std::fs::create_dir_all(&suite_dir).unwrap();
    std::fs::write(suite_dir.join("check.sh"), "echo \"checking $1\"; [ \"$1\" = good ]\n").unwrap();
    let suite = Suite::dir(&suite_dir)
        .test(TestCase::new("good", ["sh", "check.sh", "good"]))
        .test(TestCase::new("bad", ["sh", "check.sh", "bad"]));
    let report = boot_test(
        &kit.nova("m1.small"),
        "IMAGE",
        &suite,
        &kit.boot_test_options(&dir.path().join("out")),
    )
    .await
    .unwrap();
    let verdicts: Vec<(&str, Verdict)> = report.tests.iter().map(|t| (t.name.as_str(), t.verdict)).collect();
    assert_eq!(
        verdicts,
        [("good", Verdict::Passed), ("bad", Verdict::Failed)],
        "{report:?}"
    );
    assert!(kit.ssh.logins() >= 1);
    kit.assert_no_leaks();
}

/// A bare russh client, for what imagekit's own SSH runner never asks: terminals, a command that
/// dies of a signal.
mod raw {
    use std::sync::Arc;

    use russh::ChannelMsg;
    use russh::keys::PrivateKeyWithHashAlg;

    struct Trusting;
    impl russh::client::Handler for Trusting {
        type Error = russh::Error;
        async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    pub async fn session(
        port: u16,
        key: russh::keys::PrivateKey,
    ) -> russh::client::Handle<impl russh::client::Handler> {
        let mut h = russh::client::connect(
            Arc::new(russh::client::Config::default()),
            ("127.0.0.1", port),
            Trusting,
        )
        .await
        .unwrap();
        let auth = h
            .authenticate_publickey("tester", PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .unwrap();
        assert!(auth.success());
        h
    }

    /// The channel's next message, within 30 s.
    pub async fn next(channel: &mut russh::Channel<russh::client::Msg>) -> Option<ChannelMsg> {
        tokio::time::timeout(std::time::Duration::from_secs(30), channel.wait())
            .await
            .expect("the target answers within 30 s")
    }

    /// Every message of the channel until it closes.
    pub async fn drain(channel: &mut russh::Channel<russh::client::Msg>) -> Vec<ChannelMsg> {
        let mut out = Vec::new();
        while let Some(m) = next(channel).await {
            let close = matches!(m, ChannelMsg::Close);
            out.push(m);
            if close {
                break;
            }
        }
        out
    }
}

#[tokio::test]
async fn a_command_killed_by_a_signal_is_reported_as_that_signal_and_terminals_are_refused() {
    use russh::ChannelMsg;
    let target = SshTarget::start().await.unwrap();
    let ours = SshKey::generate().unwrap();
    target.authorize(&ours.public_openssh());
    let dir = tempfile::tempdir().unwrap();
    ours.write_private(&dir.path().join("id")).unwrap();
    let text = std::fs::read_to_string(dir.path().join("id")).unwrap();
    let h = raw::session(target.port(), russh::keys::PrivateKey::from_openssh(text).unwrap()).await;

    let mut channel = h.channel_open_session().await.unwrap();
    channel.exec(true, "kill -9 $$").await.unwrap();
    let msgs = raw::drain(&mut channel).await;
    assert!(
        msgs.iter().any(|m| matches!(
            m,
            ChannelMsg::ExitSignal {
                signal_name: russh::Sig::KILL,
                ..
            }
        )),
        "{msgs:?}"
    );
    assert!(
        !msgs.iter().any(|m| matches!(m, ChannelMsg::ExitStatus { .. })),
        "{msgs:?}"
    );

    let mut channel = h.channel_open_session().await.unwrap();
    channel.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await.unwrap();
    let reply = raw::next(&mut channel).await;
    assert!(matches!(reply, Some(ChannelMsg::Failure)), "{reply:?}");
}
