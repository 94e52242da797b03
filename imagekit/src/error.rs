//! imagekit's error type: the clients' errors, kept whole, plus what the operations add.

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A container registry (or OCI layout) operation failed.
    #[error(transparent)]
    Registry(Box<registry_client::Error>),
    /// A Koji operation failed.
    #[error(transparent)]
    Koji(Box<koji_client::Error>),
    /// An OpenStack operation failed.
    #[error(transparent)]
    OpenStack(Box<openstack_client::Error>),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A build failed (the builder's own reason: the Koji task's fault, the command's log tail).
    #[error("build {what} failed: {reason}")]
    BuildFailed {
        /// Which build.
        what: String,
        /// Why.
        reason: String,
    },
    /// The run journal cannot be read or written.
    #[error("run journal {}: {reason}", path.display())]
    Journal {
        /// The SQLite file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A pipeline file that cannot be used; nothing was created.
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Pipeline {
        /// The file.
        path: std::path::PathBuf,
        /// The line, when known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The run stopped on purpose after a stage (`RunOptions::stop_after`); resume it to go on.
    #[error("run {run} stopped after stage {after}; `imagekit resume {run}` goes on from there")]
    Interrupted {
        /// The run.
        run: String,
        /// The last stage finished.
        after: String,
    },
    /// Cancelled (Ctrl-C, SIGTERM) while running; what it had made was cleaned up before it
    /// returned, as `cleanup` says.
    #[error("cancelled during {what}{cleanup}{hint}")]
    Cancelled {
        /// What was running.
        what: String,
        /// What was cleaned up (`; 2 test machines deleted`), or empty when there was nothing.
        cleanup: String,
        /// How to go on, if anything.
        hint: String,
        /// The signal that cancelled it (2 SIGINT, 15 SIGTERM): the CLI exits with 128 + it.
        signal: i32,
    },
    /// An SSH connection or command channel failed (not a test's own failure).
    #[error("ssh {target}: {reason}")]
    Ssh {
        /// `user@host:port`.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// A local VM could not be started or died.
    #[error("VM {name}: {reason}")]
    Vm {
        /// The VM.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A wait ran out of time.
    #[error("{what}: not done after {after:?}; last: {last}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The deadline.
        after: std::time::Duration,
        /// The last state or error seen.
        last: String,
    },
    /// Boot tests ran and some failed; the images concerned were not promoted.
    #[error("run {run}: {failed} test(s) failed; the images concerned were not promoted (reports: {})", reports.join(", "))]
    TestsFailed {
        /// The run.
        run: String,
        /// How many tests failed.
        failed: usize,
        /// The JUnit reports with failures.
        reports: Vec<String>,
    },
    /// Some image lines of a run failed; the others finished (and were promoted where their
    /// tests passed).
    #[error("run {run}: {} of {lines} image lines failed (the others finished): {}", failures.len(), failures.join("; "))]
    LinesFailed {
        /// The run.
        run: String,
        /// How many lines the run has.
        lines: usize,
        /// Each failed line: `LINE: error`.
        failures: Vec<String>,
    },
    /// Someone else holds what this needs: a run being executed by another process, or the
    /// promotion of the same line.
    #[error("{what} is locked by {holder}: {hint}")]
    Locked {
        /// The lock (`run:…`, `promote:…`).
        what: String,
        /// Who holds it (name, pid, host, since when).
        holder: String,
        /// What to do.
        hint: String,
    },
    /// A boot test ran and did not pass: a test failed, or the machine never came up. The report
    /// says which ([`crate::boot_test::TestReport::infrastructure_error`]).
    #[error("boot test of {} on {}: {}", .0.image, .0.compute, boot_test_summary(.0))]
    BootTest(Box<crate::boot_test::TestReport>),
    /// A kickstart that pykickstart's `ksvalidator` refused (or could not check): nothing was
    /// submitted.
    #[error("{}{}: {problem} (kickstart syntax {version}, checked with ksvalidator before building)", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Kickstart {
        /// The kickstart file.
        file: std::path::PathBuf,
        /// The line, when ksvalidator names one.
        line: Option<usize>,
        /// The syntax version it was checked against (`RHEL9`).
        version: String,
        /// What is wrong.
        problem: String,
    },
    /// Arguments that cannot work, found before anything was changed.
    #[error("{0}")]
    InvalidInput(String),
}

impl Error {
    /// Whether trying the same again later may succeed: a service that was unavailable, throttled
    /// or unreachable, a wait that ran out, a lock held by someone else. Bad input, failed tests and
    /// refused requests are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::OpenStack(e) => e.is_retryable(),
            Error::Koji(e) => e.is_retryable(),
            Error::Registry(e) => e.is_retryable(),
            Error::Timeout { .. } | Error::Locked { .. } | Error::Ssh { .. } => true,
            Error::BootTest(r) => r.infrastructure_error.is_some(),
            _ => false,
        }
    }

    /// Whether the infrastructure failed (a service, the network, a machine that never came up,
    /// a local file) rather than what was tested or what was asked: CI marks these as errors to
    /// retry, not as failures of the image.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            Error::OpenStack(e) => !matches!(**e, openstack_client::Error::Config(_)),
            Error::Koji(e) => !matches!(
                **e,
                koji_client::Error::Config { .. }
                    | koji_client::Error::ProfileNotFound { .. }
                    | koji_client::Error::FeatureDisabled { .. }
            ),
            Error::Registry(e) => !matches!(
                **e,
                registry_client::Error::InvalidReference { .. } | registry_client::Error::Config { .. }
            ),
            Error::Io { .. }
            | Error::Journal { .. }
            | Error::Ssh { .. }
            | Error::Vm { .. }
            | Error::Timeout { .. }
            | Error::Locked { .. } => true,
            Error::BootTest(r) => r.infrastructure_error.is_some(),
            Error::BuildFailed { .. }
            | Error::Kickstart { .. }
            | Error::Pipeline { .. }
            | Error::Interrupted { .. }
            | Error::Cancelled { .. }
            | Error::TestsFailed { .. }
            | Error::LinesFailed { .. }
            | Error::InvalidInput(_) => false,
        }
    }

    /// Whether this says the resource does not exist: a 404 from a service, or a missing file in a
    /// local store. Only this means "gone"; any other error (a 503, an expired token, a timeout)
    /// says nothing about the resource.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::OpenStack(e) => e.is_not_found(),
            Error::Registry(e) => e.status() == Some(404),
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

fn boot_test_summary(r: &crate::boot_test::TestReport) -> String {
    match &r.infrastructure_error {
        Some(e) => format!("infrastructure error: {e}"),
        None => format!("{} of {} test(s) failed", r.failed(), r.tests.len()),
    }
}

// The clients' errors are large; boxing them keeps every `Result` of this crate small.
impl From<registry_client::Error> for Error {
    fn from(e: registry_client::Error) -> Self {
        Error::Registry(Box::new(e))
    }
}

impl From<openstack_client::Error> for Error {
    fn from(e: openstack_client::Error) -> Self {
        Error::OpenStack(Box::new(e))
    }
}

impl From<koji_client::Error> for Error {
    fn from(e: koji_client::Error) -> Self {
        Error::Koji(Box::new(e))
    }
}
