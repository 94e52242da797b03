//! A typed async client for the [Koji](https://docs.pagure.org/koji/) build system hub.
//!
//! It speaks Koji's XML-RPC dialect (keyword arguments as a trailing `__starstar` struct, `<nil/>`,
//! `<i8>`), keeps a session with Koji's call numbering so retried calls are recognised by the hub,
//! retries like Koji's own client, and maps faults to [`Fault`] with a [`FaultKind`].
//!
//! What it covers:
//! - sessions: anonymous, password [`Client::login`], TLS certificate `sslLogin`, Kerberos (feature
//!   `gssapi`), renewal when the hub says the session expired, [`Client::logout`];
//! - profiles read like the `koji` CLI reads them ([`Profile`]);
//! - image builds: [`ImageBuild`] (`buildImageOz`), [`LiveImage`] (`buildImage`), [`KiwiBuild`];
//! - tasks: info, children, descendants, results ([`ImageTaskResult`]), outputs, cancel;
//! - watching a task tree like `koji watch-task` ([`Client::watch_task`]), with a deadline;
//! - downloads of task outputs with resume and checksums ([`Client::download_task`]);
//! - builds, tags, targets, and "already built today?" ([`Client::find_existing_image_build`]);
//! - any other hub method through [`Client::call`] and [`Client::multicall`].
//!
//! What it refuses to trust from peers:
//! - answer sizes: an XML-RPC answer is read up to [`ClientBuilder::max_response_body`] (64 MiB by
//!   default, else [`Error::BodyTooLarge`]), an error page up to 64 KiB;
//! - their words: fault strings, error pages and values quoted in errors are redacted (session keys,
//!   the session id, passwords, `Authorization` values, any secret this process's clients hold) and
//!   cut to 2 KiB, so a hub or proxy echoing the request cannot put a secret into a log;
//! - their times: `*_ts` doubles become times only through checked conversions
//!   ([`TaskInfo::created_at`], [`BuildInfo::created_at`]); NaN, infinities and absurd values are `None`.
//!
//! # Example: `koji image-build --wait` then `koji download-task`
//!
//! ```no_run
//! use std::time::Duration;
//! use koji_client::{Client, DownloadFilter, ImageBuild, WatchOptions};
//! use secrecy::SecretString;
//!
//! # async fn demo() -> koji_client::Result<()> {
//! let koji = Client::builder().hub("https://koji.example.org/kojihub")
//!     .topurl("https://kojipkgs.example.org")
//!     .password("releasebot", SecretString::from("from-a-vault".to_string()))
//!     .build()?;
//! koji.login().await?;
//!
//! let task = koji
//!     .build_image_oz(
//!         &ImageBuild::new("cc9-cloud", "9.6", "cc9-image", "http://linuxsoft.example.org/cc9/BaseOS/$arch/os/")
//!             .arch("x86_64")
//!             .ksurl("git+https://gitlab.example.org/images/ks.git#main")
//!             .kickstart("cc9-cloud.ks")
//!             .format("qcow2")
//!             .disk_size(20),
//!     )
//!     .await?;
//!
//! let outcome = koji
//!     .watch_task(task, WatchOptions::default().deadline(Duration::from_secs(4 * 3600)))
//!     .run(|ev| eprintln!("{} {}: {}", ev.task.id, ev.task.method, ev.task.state))
//!     .await?
//!     .into_result()?;
//! assert!(outcome.succeeded());
//!
//! let files = koji
//!     .download_task(task, "out".as_ref(), &DownloadFilter::new().suffix(".qcow2"))
//!     .await?;
//! for f in files {
//!     println!("{} {} bytes sha256 {}", f.path.display(), f.size, f.sha256);
//! }
//! koji.logout().await?;
//! # Ok(()) }
//! ```

// docs.rs builds with the `testing` feature and marks feature-gated items with a badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod builds;
mod client;
mod config;
mod download;
mod error;
#[cfg(feature = "gssapi")]
mod gssapi;
mod images;
mod redact;
mod stream;
mod tasks;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod watch;
pub mod xmlrpc;

pub use builds::{ArchiveInfo, BuildId, BuildInfo, BuildState, BuildTarget, Existing, ListBuilds, TagInfo, UserInfo};
pub use client::{Auth, Client, ClientBuilder, KerberosAuth, MultiCall, RetryPolicy};
pub use config::{Profile, default_config_files};
pub use download::{Checksum, ChecksumAlgorithm, DownloadFilter, DownloadedFile, task_output_url};
pub use error::{Error, Fault, FaultKind, Result};
pub use images::{ImageBuild, KiwiBuild, LiveImage, LiveImageType};
pub use stream::TaskOutputStream;
pub use tasks::{ImageTaskResult, RpmInfo, TaskId, TaskInfo, TaskOutput, TaskState};
pub use watch::{TaskEvent, TaskWatcher, WatchOptions, WatchOutcome};
pub use xmlrpc::{Value, from_value, to_value};
