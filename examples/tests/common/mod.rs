//! Helpers shared by the example tests.

use std::path::PathBuf;

/// An example binary, built by `cargo test`/nextest beside the test executables.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug_dir = exe.parent().unwrap().parent().unwrap();
    let bin = debug_dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing; run the tests with cargo test or nextest",
        bin.display()
    );
    bin
}
