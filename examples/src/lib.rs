//! Runnable example programs for imagekit live in this package's `examples/` targets; run one with
//! `cargo run -p imagekit-examples --example NAME -- --help`. This library holds the little they share.

use std::process::ExitCode;

/// Prints an example's result and turns it into its exit status: 0 done, 2 bad input, 1 anything
/// else (the error on stderr).
pub fn finish(result: imagekit::Result<String>) -> ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if matches!(e, imagekit::Error::InvalidInput(_)) {
                2
            } else {
                1
            })
        }
    }
}

use registry_client::{BlobOutcome, Progress};

/// A progress display for registry copies on stderr: one bar over the bytes that actually move,
/// and a line per blob that did not need to (it existed, or got mounted).
///
/// ```
/// let progress = imagekit_examples::registry_progress();
/// progress(&registry_client::Progress::BlobStarted { digest: "sha256:ab".into(), size: 10 });
/// ```
pub fn registry_progress() -> impl Fn(&Progress) + Send + Sync + 'static {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}")
    {
        bar.set_style(style);
    }
    move |p: &Progress| match p {
        Progress::BlobStarted { size, .. } => bar.inc_length(*size),
        Progress::Bytes { bytes, .. } => bar.inc(*bytes),
        Progress::BlobDone { digest, size, outcome } => {
            if *outcome != BlobOutcome::Uploaded {
                // Nothing moved: take its size out of the total again.
                bar.set_length(bar.length().unwrap_or(0).saturating_sub(*size));
                bar.println(format!(
                    "{} {digest}",
                    if *outcome == BlobOutcome::Mounted {
                        "mounted"
                    } else {
                        "exists "
                    }
                ));
            }
            bar.set_message(short(digest));
        }
    }
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}
