//! The `nova_boot` example against the testing kit's cloud (`MockOpenStack`: Keystone, Glance,
//! Nova, Neutron), with failures injected: whatever happens, everything it created is deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use imagekit::store::{ImageData, ImageStore, NewImage};
use imagekit::testing::{Kit, Service};
use serde_json::Value;

/// The kit, a `cirros` image in its Glance, and a clouds.yaml naming it `mock`.
async fn cloud() -> (Kit, tempfile::TempDir) {
    let kit = Kit::start().await;
    let bytes = b"cirros disk".to_vec();
    let data = ImageData {
        length: bytes.len() as u64,
        reader: Box::pin(std::io::Cursor::new(bytes)),
    };
    kit.glance_store()
        .create_and_upload(&NewImage::new("cirros", "qcow2"), data, &|_| Ok(()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), kit.cloud.clouds_yaml("mock")).unwrap();
    (kit, dir)
}

fn command(dir: &tempfile::TempDir) -> std::process::Command {
    let mut c = std::process::Command::new(common::example_binary("nova_boot"));
    c.env("OS_CLIENT_CONFIG_FILE", dir.path().join("clouds.yaml")).args([
        "--cloud",
        "mock",
        "--image",
        "cirros",
        "--flavor",
        "m1.small",
        "--network",
        "private",
    ]);
    c
}

#[tokio::test]
async fn a_booted_server_is_reported_and_everything_is_deleted() {
    let (kit, dir) = cloud().await;
    kit.cloud.set_console("[    0.000000] Linux version 6.1.0\nLAST LINE\n");
    let out = tokio::task::spawn_blocking(move || {
        command(&dir)
            .args(["--floating-network", "public", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "ACTIVE");
    assert!(report["console_tail"].as_str().unwrap().contains("LAST LINE"));
    assert_eq!(kit.cloud.count(Service::Network, "DELETE", "floatingips/"), 1);
    assert_eq!(kit.cloud.count(Service::Compute, "DELETE", "servers/"), 1);
    kit.assert_no_leaks();
}

#[tokio::test]
async fn a_server_in_error_fails_with_its_fault_and_is_deleted() {
    let (kit, dir) = cloud().await;
    kit.cloud.fail_next_boot("No valid host was found.");
    let out = tokio::task::spawn_blocking(move || command(&dir).output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No valid host was found"), "{err}");
    assert_eq!(kit.cloud.count(Service::Network, "POST", "floatingips"), 0);
    kit.assert_no_leaks();
}

#[tokio::test]
async fn ctrl_c_while_waiting_deletes_the_server() {
    let (kit, dir) = cloud().await;
    kit.cloud.set_build_polls(u32::MAX); // BUILD for ever
    let mut child = command(&dir).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until the server exists, then interrupt.
    for _ in 0..200 {
        if kit.cloud.count(Service::Compute, "POST", "servers") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(kit.cloud.count(Service::Compute, "DELETE", "servers/"), 1);
    kit.assert_no_leaks();
}
