//! What imagekit writes can hold secrets or evidence (run specs, console logs, test output,
//! unreleased images): files it creates are 0600 and directories 0700, whatever the umask lets
//! through otherwise; directories that already exist keep their modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use async_trait::async_trait;
use imagekit::boot_test::{BootTestOptions, Compute, Machine, Suite, TestCase, boot_test};
use imagekit::journal::Journal;
use imagekit::store::{ImageData, ImageStore, LocalStore, NewImage};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn assert_private_tree(root: &Path) {
    assert_eq!(mode(root), 0o700, "{}", root.display());
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            assert_private_tree(&p);
        } else {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

#[test]
fn the_journal_its_wal_and_the_directories_made_for_it_are_private() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("state/imagekit/journal.sqlite");
    let journal = Journal::open(&path).unwrap();
    journal.create_run("p", &serde_json::json!({"secret": "spec"})).unwrap();
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("state/imagekit/journal.sqlite-wal");
    assert!(wal.exists(), "the journal uses WAL");
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&dir.path().join("state/imagekit/journal.sqlite-shm")), 0o600);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&dir.path().join("state/imagekit")), 0o700);
    assert_eq!(mode(dir.path()), 0o755, "an existing directory keeps its mode");
}

#[test]
fn an_existing_journal_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    drop(Journal::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    drop(Journal::open(&path).unwrap());
    assert_eq!(mode(&path), 0o640);
}

#[tokio::test]
async fn the_local_store_keeps_images_and_metadata_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let store = LocalStore::new(&root);
    let bytes = b"an image".to_vec();
    let data = ImageData {
        reader: Box::pin(std::io::Cursor::new(bytes.clone())),
        length: bytes.len() as u64,
    };
    let img = store
        .create_and_upload(&NewImage::new("alma9", "raw"), data, &|_| Ok(()))
        .await
        .unwrap();
    assert!(store.data_path(&img.id).unwrap().exists());
    assert_private_tree(&root);
}

/// A compute whose machines never come: the report is still written, with the artifacts.
#[derive(Debug)]
struct NoMachines;

#[async_trait]
impl Compute for NoMachines {
    fn name(&self) -> String {
        "none".into()
    }
    async fn boot(&self, _image: &str, _name: &str, _public_key: &str) -> imagekit::Result<Box<dyn Machine>> {
        Err(imagekit::Error::InvalidInput("no machines here".into()))
    }
}

#[tokio::test]
async fn boot_test_artifacts_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("out/artifacts");
    let suite = Suite::dir(dir.path()).test(TestCase::new("smoke", ["true"]));
    let report = boot_test(&NoMachines, "image", &suite, &BootTestOptions::new(&artifacts))
        .await
        .unwrap();
    assert!(report.infrastructure_error.is_some());
    assert!(artifacts.join("report.json").exists() && artifacts.join("junit.xml").exists());
    assert_private_tree(&dir.path().join("out"));
}
