//! The customize builder on a real image: a Debian cloud image (made by the Debian builder) is
//! served over HTTP as a vendor would, downloaded by URL and checksum, and adapted with
//! `virt-customize`; a wrong checksum keeps nothing. Needs what the Debian image test needs, and
//! libguestfs: `dev/test` sets `IMAGEKIT_VIRT_CUSTOMIZE` when `virt-customize` and a kernel for its
//! appliance are there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead as _;
use std::path::Path;
use std::time::Duration;

use imagekit::build::{BuildSpec, Builder, CustomizeBuilder, DebianBuilder};
use imagekit::upload::ArtifactSource;

/// A static HTTP server of `dir` on 127.0.0.1, stopped when dropped.
struct Served {
    child: std::process::Child,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let mut child = std::process::Command::new("python3")
        .args([
            "-u",
            "-c",
            "import functools, http.server, sys\n\
             h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
             s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
             print(s.server_address[1], flush=True)\n\
             s.serve_forever()",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Served {
        port: line.trim().parse().unwrap(),
        child,
    }
}

fn path_of(a: &imagekit::upload::Artifact) -> &Path {
    match &a.source {
        ArtifactSource::Path { path } => path,
        other => panic!("{other:?}"),
    }
}

/// The lines of one-line files of the image, read read-only with one libguestfs appliance
/// (`guestfish`).
fn read_files(image: &Path, files: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--ro".to_string(),
        "-a".into(),
        image.display().to_string(),
        "-i".into(),
    ];
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            args.push(":".into());
        }
        args.extend(["cat".to_string(), (*f).to_string()]);
    }
    let out = std::process::Command::new("guestfish")
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "guestfish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // guestfish prints each file, then a newline of its own: the files here are one line each.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_image_is_downloaded_by_checksum_and_customized_and_a_bad_checksum_keeps_nothing() {
    let Some(builds) = common::peer("IMAGEKIT_DEBIAN_BUILDS", "the Debian image builder (root, mmdebstrap)") else {
        return;
    };
    if common::peer("IMAGEKIT_VIRT_CUSTOMIZE", "virt-customize (libguestfs)").is_none() {
        return;
    }
    // The "vendor image": a Debian build, kept and reused between runs.
    let vendor = DebianBuilder::new(&builds, Duration::from_secs(2400))
        .build(
            &BuildSpec::new("debian-12-vendor", "12", ["x86_64"], ["qcow2"]),
            None,
            &|_| Ok(()),
        )
        .await
        .unwrap();
    let vendor_path = path_of(&vendor.artifacts[0]).to_path_buf();
    let sum = vendor.artifacts[0].checksum.as_ref().unwrap().hex.clone();
    let served = serve(vendor_path.parent().unwrap());
    let url = format!(
        "http://127.0.0.1:{}/{}",
        served.port,
        vendor_path.file_name().unwrap().to_string_lossy()
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = BuildSpec::new("debian-12-site", "12", ["x86_64"], ["qcow2"]);

    // A wrong checksum: a typed failure that says so, and nothing kept.
    let wrong = "0".repeat(64);
    let e = CustomizeBuilder::new(&out, Duration::from_secs(1200), &url, &wrong)
        .build(&spec, None, &|_| Ok(()))
        .await
        .unwrap_err();
    assert!(matches!(e, imagekit::Error::BuildFailed { .. }), "{e:?}");
    assert!(
        e.to_string().contains("checksum mismatch") && e.to_string().contains(&sum),
        "{e}"
    );
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".log"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // The right one: downloaded, files copied in, commands run inside the image.
    std::fs::write(dir.path().join("site.conf"), "site = cern\n").unwrap();
    let builder = CustomizeBuilder::new(&out, Duration::from_secs(1200), &url, &sum)
        .files([format!("{}:/etc", dir.path().join("site.conf").display())])
        .commands([
            "echo customized-by-imagekit > /etc/imagekit-site",
            "systemctl mask apt-daily.timer",
        ]);
    let built = builder.build(&spec, None, &|_| Ok(())).await.unwrap();
    assert!(!built.reused);
    let image = path_of(&built.artifacts[0]).to_path_buf();
    assert_eq!(image.file_name().unwrap(), "debian-12-site-12-1.x86_64.qcow2");
    assert_eq!(
        read_files(&image, &["/etc/imagekit-site", "/etc/site.conf"]),
        ["customized-by-imagekit", "site = cern"]
    );
    // The vendor's image itself is untouched: the work was done on a copy.
    let after = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(&vendor_path).unwrap()))
    };
    assert_eq!(after, sum);

    // Same inputs: reused, nothing downloaded or run again.
    let again = builder.build(&spec, None, &|_| Ok(())).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.artifacts, built.artifacts);
    drop(served);
}
