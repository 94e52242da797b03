//! The run journal: an SQLite file that records every run, its stages with their inputs and
//! outputs, the cloud resources each stage created, test results and promotions.
//!
//! Stages write to it *before* a side effect (`start_stage`), as soon as a resource exists
//! (`record_resource`), and *after* (`complete_stage`). So a run that crashed can be resumed
//! without repeating what finished, leaked resources can be swept, and "which image was promoted,
//! on what evidence" is a query.
//!
//! ```
//! use imagekit::journal::{Journal, StageStart};
//! use serde_json::json;
//! let journal = Journal::in_memory().unwrap();
//! let run = journal.create_run("alma9-monthly", &json!({"distro": "alma9"})).unwrap();
//! let input = json!({"arch": "x86_64"});
//! assert!(matches!(journal.start_stage(&run, "build/x86_64", &input).unwrap(), StageStart::Started { attempt: 1 }));
//! journal.complete_stage(&run, "build/x86_64", &json!({"task": 42})).unwrap();
//! // Resuming: the finished stage is not run again; its output comes back instead.
//! match journal.start_stage(&run, "build/x86_64", &input).unwrap() {
//!     StageStart::AlreadyDone(out) => assert_eq!(out["task"], 42),
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// A run's id: sortable by start time, unique, short enough for resource names
/// (`20261124t101500-3fa2c1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RunId(String);

impl RunId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Parses an id given by a user (`imagekit resume ID`).
    pub fn parse(s: &str) -> Result<RunId> {
        let ok = s.len() == 22
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b't',
                15 => b == b'-',
                _ => b.is_ascii_digit() || (i > 15 && (b'a'..=b'f').contains(&b)),
            });
        if ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(Error::InvalidInput(format!(
                "{s:?} is not a run id (like 20261124t101500-3fa2c1; `imagekit results` lists them)"
            )))
        }
    }
    fn generate(now: i64) -> RunId {
        let stamp = chrono::DateTime::from_timestamp(now, 0)
            .unwrap_or_default()
            .format("%Y%m%dt%H%M%S");
        RunId(format!("{stamp}-{:06x}", rand::random::<u32>() & 0xff_ffff))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-11-24T10:15:00Z`). A time chrono cannot represent (beyond
/// about ±262,000 years) is written as the nearest one it can, never a panic.
pub fn rfc3339(t: i64) -> String {
    let clamped = t.clamp(
        chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp(),
        chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp(),
    );
    chrono::DateTime::from_timestamp(clamped, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Now as RFC 3339 UTC with nanoseconds (`2026-11-24T10:15:00.123456789Z`): sorts in the order
/// things happened, even within one second.
pub fn precise_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The state of a run or a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Under way (or crashed while under way).
    Running,
    /// Finished well.
    Done,
    /// Finished badly.
    Failed,
    /// Stopped by Ctrl-C or SIGTERM (or its future was dropped) before it finished; resume it to
    /// go on.
    Cancelled,
    /// A state this version does not know (written by a newer imagekit).
    Unknown(String),
}

impl Status {
    fn as_str(&self) -> &str {
        match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Unknown(s) => s,
        }
    }
    fn from_db(s: String) -> Status {
        match s.as_str() {
            "running" => Status::Running,
            "done" => Status::Done,
            "failed" => Status::Failed,
            "cancelled" => Status::Cancelled,
            _ => Status::Unknown(s),
        }
    }
}

/// One run, as recorded.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// Its id.
    pub id: RunId,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline as run (for `resume`).
    pub spec: Value,
    /// Running, done or failed.
    pub status: Status,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds of the last journal write by the run; a running run whose heartbeat is old is dead.
    pub heartbeat_at: i64,
    /// Unix seconds, once finished.
    pub finished_at: Option<i64>,
}

/// One stage of a run, as recorded.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StageRecord {
    /// The stage key (`build/alma9/x86_64`).
    pub key: String,
    /// Running, done or failed.
    pub status: Status,
    /// What the stage was asked to do.
    pub input: Value,
    /// What it produced, once done.
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether the failure was the infrastructure's (not a test's verdict).
    pub infrastructure_error: bool,
    /// How many times it was started.
    pub attempts: u32,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub finished_at: Option<i64>,
}

/// What [`Journal::start_stage`] decided.
#[derive(Debug, Clone)]
pub enum StageStart {
    /// Go ahead: this is attempt number `attempt`.
    Started {
        /// 1 for the first try, more after a failure or a crash.
        attempt: u32,
    },
    /// The stage finished in an earlier attempt with the same input: here is its output; do not
    /// repeat its side effects.
    AlreadyDone(Value),
}

/// A cloud resource a stage created, recorded as soon as it exists.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ResourceRecord {
    /// The run that created it.
    pub run_id: RunId,
    /// The stage that created it.
    pub stage: String,
    /// `glance-image`, `nova-server`, `floating-ip`, `keypair`, `registry-tag`, …
    pub kind: String,
    /// Where (`cloud:prod`, `registry.cern.ch`, `local:/srv/images`).
    pub location: String,
    /// Its id there.
    pub id: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once deleted (by the run or by a sweep).
    pub deleted_at: Option<i64>,
}

/// A promotion: what was promoted, where, and the evidence.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PromotionRecord {
    /// The run.
    pub run_id: RunId,
    /// The stage.
    pub stage: String,
    /// `glance-image` or `container`.
    pub kind: String,
    /// Where (`cloud:prod`, `registry.cern.ch/cern/alma9`).
    pub location: String,
    /// The image id or digest promoted.
    pub target: String,
    /// The new name or tags.
    pub names: Vec<String>,
    /// Test results and anything else that justified it.
    pub evidence: Value,
    /// Unix seconds.
    pub at: i64,
}

/// One test result in the journal.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TestRecord {
    /// The stage that ran it (filled in when read back).
    pub stage: String,
    /// The image tested (id in its store).
    pub image: String,
    /// The test.
    pub name: String,
    /// `passed`, `failed`, `timed_out`, `error`, `flaky`, `quarantined`, or `infrastructure` (a
    /// machine that failed and was replaced, or the boot test that could not run).
    pub verdict: String,
    /// How long it ran.
    pub duration_ms: u64,
    /// Why it failed.
    pub message: Option<String>,
}

/// A promotion to record (see [`Journal::record_promotion`]).
#[derive(Debug, Clone, Copy)]
pub struct Promoted<'a> {
    /// `glance-image` or `container`.
    pub kind: &'a str,
    /// Where (`cloud:prod`, `registry.cern.ch/cern/alma9`).
    pub location: &'a str,
    /// The image id or digest promoted.
    pub target: &'a str,
    /// The new name or tags.
    pub names: &'a [String],
    /// Test results and anything else that justified it.
    pub evidence: &'a Value,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
    started_at INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL, finished_at INTEGER);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL, status TEXT NOT NULL,
    input TEXT NOT NULL, output TEXT, error TEXT, infrastructure_error INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER,
    PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS resources (
    run_id TEXT NOT NULL REFERENCES runs(id), stage TEXT NOT NULL, kind TEXT NOT NULL,
    location TEXT NOT NULL, id TEXT NOT NULL, name TEXT, created_at INTEGER NOT NULL, deleted_at INTEGER,
    kept_at INTEGER, PRIMARY KEY (kind, location, id));
CREATE TABLE IF NOT EXISTS test_results (
    run_id TEXT NOT NULL REFERENCES runs(id), stage TEXT NOT NULL, image TEXT NOT NULL, name TEXT NOT NULL,
    verdict TEXT NOT NULL, duration_ms INTEGER NOT NULL, message TEXT, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS promotions (
    run_id TEXT NOT NULL REFERENCES runs(id), stage TEXT NOT NULL, kind TEXT NOT NULL,
    location TEXT NOT NULL, target TEXT NOT NULL, names TEXT NOT NULL, evidence TEXT NOT NULL,
    at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, token TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER NOT NULL, proc_start INTEGER NOT NULL, acquired_at INTEGER NOT NULL, expires_at INTEGER);
";

/// The run journal. Writes are short transactions; one file can be shared by several processes
/// (SQLite WAL, with a busy timeout).
pub struct Journal {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

fn db_err(path: &Option<PathBuf>, e: impl fmt::Display) -> Error {
    Error::Journal {
        path: path.clone().unwrap_or_else(|| PathBuf::from(":memory:")),
        reason: e.to_string(),
    }
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: Option<String>) -> Value {
    s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
}

impl Journal {
    /// Opens (and creates if needed) the journal at `path`.
    ///
    /// The journal records run specs and evidence, so what imagekit creates is private to the user:
    /// missing parent directories are made 0700 and a new file 0600 (SQLite gives its `-wal` and
    /// `-shm` files the database file's mode). Existing directories and files keep their modes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the path cannot hold a journal (it is a directory or another
    /// non-file, or its directory cannot be created); [`Error::Journal`] when SQLite fails.
    pub fn open(path: &Path) -> Result<Journal> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let p = Some(path.to_path_buf());
        let bad_path = |reason: String| Error::InvalidInput(format!("run journal {}: {reason}", path.display()));
        if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| bad_path(format!("cannot create its directory {}: {e}", parent.display())))?;
        }
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => return Err(bad_path("not a regular file".into())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(_) => {}
                    // Another process created it meanwhile: SQLite opens theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(bad_path(format!("cannot create it: {e}"))),
                }
            }
            Err(e) => return Err(bad_path(e.to_string())),
        }
        let conn = Connection::open(path).map_err(|e| db_err(&p, e))?;
        Journal::init(conn, p)
    }

    /// Opens the journal at `path` only if it exists; never creates one (for commands that only
    /// read runs or go on with them: `results`, `resume`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] "no journal at PATH" when there is no file there.
    pub fn open_existing(path: &Path) -> Result<Journal> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::InvalidInput(format!(
                    "run journal {}: not a regular file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::InvalidInput(format!("no journal at {}", path.display())));
            }
            Err(e) => return Err(Error::InvalidInput(format!("run journal {}: {e}", path.display()))),
        }
        let p = Some(path.to_path_buf());
        // Without SQLITE_OPEN_CREATE: a file removed since the check is an error, not a new journal.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(&p, e))?;
        Journal::init(conn, p)
    }

    /// A journal in memory (tests, dry runs).
    pub fn in_memory() -> Result<Journal> {
        let conn = Connection::open_in_memory().map_err(|e| db_err(&None, e))?;
        Journal::init(conn, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Journal> {
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| db_err(&path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| db_err(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| db_err(&path, e))?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| db_err(&self.path, "journal lock poisoned"))?;
        f(&conn).map_err(|e| db_err(&self.path, e))
    }

    /// Starts a run of `pipeline` with its `spec`; returns the new id.
    pub fn create_run(&self, pipeline: &str, spec: &Value) -> Result<RunId> {
        let t = now();
        let id = RunId::generate(t);
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (id, pipeline, spec, status, started_at, heartbeat_at) VALUES (?1, ?2, ?3, 'running', ?4, ?4)",
                params![id.0, pipeline, json_text(spec), t],
            )
        })?;
        Ok(id)
    }

    /// One run.
    pub fn run(&self, id: &RunId) -> Result<RunRecord> {
        self.with(|c| {
            c.query_row(
                "SELECT id, pipeline, spec, status, started_at, heartbeat_at, finished_at FROM runs WHERE id = ?1",
                params![id.0],
                run_row,
            )
            .optional()
        })?
        .ok_or_else(|| Error::InvalidInput(format!("no run {id} in the journal")))
    }

    /// All runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT id, pipeline, spec, status, started_at, heartbeat_at, finished_at FROM runs ORDER BY id DESC",
            )?;
            s.query_map([], run_row)?.collect()
        })
    }

    /// Marks a run finished (done or failed).
    pub fn finish_run(&self, id: &RunId, status: Status) -> Result<()> {
        let t = now();
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, heartbeat_at = ?3 WHERE id = ?1",
                params![id.0, status.as_str(), t],
            )
        })?;
        Ok(())
    }

    /// Marks a finished run as running again (resume).
    pub fn reopen_run(&self, id: &RunId) -> Result<()> {
        let t = now();
        self.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, heartbeat_at = ?2 WHERE id = ?1",
                params![id.0, t],
            )
        })?;
        Ok(())
    }

    fn heartbeat(c: &Connection, run: &RunId, t: i64) -> rusqlite::Result<usize> {
        c.execute("UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1", params![run.0, t])
    }

    /// Before a stage's side effects: skips it when an earlier attempt finished with the same
    /// input, else records the attempt. A stage asked again with a different input starts over.
    pub fn start_stage(&self, run: &RunId, key: &str, input: &Value) -> Result<StageStart> {
        let t = now();
        let input_text = json_text(input);
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            Self::heartbeat(&tx, run, t)?;
            let prev: Option<(String, String, Option<String>, u32)> = tx
                .query_row(
                    "SELECT status, input, output, attempts FROM stages WHERE run_id = ?1 AND key = ?2",
                    params![run.0, key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let result = match prev {
                Some((status, prev_input, output, _)) if status == "done" && prev_input == input_text => {
                    StageStart::AlreadyDone(parse_json(output))
                }
                Some((_, _, _, attempts)) => {
                    tx.execute(
                        "UPDATE stages SET status = 'running', input = ?3, output = NULL, error = NULL, \
                         infrastructure_error = 0, attempts = ?4, started_at = ?5, finished_at = NULL \
                         WHERE run_id = ?1 AND key = ?2",
                        params![run.0, key, input_text, attempts + 1, t],
                    )?;
                    StageStart::Started { attempt: attempts + 1 }
                }
                None => {
                    tx.execute(
                        "INSERT INTO stages (run_id, key, status, input, attempts, started_at) VALUES (?1, ?2, 'running', ?3, 1, ?4)",
                        params![run.0, key, input_text, t],
                    )?;
                    StageStart::Started { attempt: 1 }
                }
            };
            tx.commit()?;
            Ok(result)
        })
    }

    /// After a stage's side effects: records its output.
    pub fn complete_stage(&self, run: &RunId, key: &str, output: &Value) -> Result<()> {
        self.end_stage(run, key, "done", Some(json_text(output)), None, false)
    }

    /// A stage failed: `infrastructure` tells an infrastructure error from a test verdict.
    pub fn fail_stage(&self, run: &RunId, key: &str, error: &str, infrastructure: bool) -> Result<()> {
        self.end_stage(run, key, "failed", None, Some(error.to_string()), infrastructure)
    }

    fn end_stage(
        &self,
        run: &RunId,
        key: &str,
        status: &str,
        output: Option<String>,
        error: Option<String>,
        infrastructure: bool,
    ) -> Result<()> {
        let t = now();
        let n = self.with(|c| {
            Self::heartbeat(c, run, t)?;
            c.execute(
                "UPDATE stages SET status = ?3, output = ?4, error = ?5, infrastructure_error = ?6, finished_at = ?7 \
                 WHERE run_id = ?1 AND key = ?2",
                params![run.0, key, status, output, error, infrastructure, t],
            )
        })?;
        if n == 0 {
            return Err(Error::InvalidInput(format!(
                "stage {key} of run {run} was never started"
            )));
        }
        Ok(())
    }

    /// The stages of a run, in the order they started.
    pub fn stages(&self, run: &RunId) -> Result<Vec<StageRecord>> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT key, status, input, output, error, infrastructure_error, attempts, started_at, finished_at \
                 FROM stages WHERE run_id = ?1 ORDER BY started_at, rowid",
            )?;
            s.query_map(params![run.0], |r| {
                Ok(StageRecord {
                    key: r.get(0)?,
                    status: Status::from_db(r.get(1)?),
                    input: parse_json(r.get(2)?),
                    output: r.get::<_, Option<String>>(3)?.map(|s| parse_json(Some(s))),
                    error: r.get(4)?,
                    infrastructure_error: r.get(5)?,
                    attempts: r.get(6)?,
                    started_at: r.get(7)?,
                    finished_at: r.get(8)?,
                })
            })?
            .collect()
        })
    }

    /// Records a resource the moment it exists, before anything else can fail.
    pub fn record_resource(
        &self,
        run: &RunId,
        stage: &str,
        kind: &str,
        location: &str,
        id: &str,
        name: Option<&str>,
    ) -> Result<()> {
        let t = now();
        self.with(|c| {
            Self::heartbeat(c, run, t)?;
            c.execute(
                "INSERT INTO resources (run_id, stage, kind, location, id, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (kind, location, id) DO UPDATE SET deleted_at = NULL",
                params![run.0, stage, kind, location, id, name, t],
            )
        })?;
        Ok(())
    }

    /// Records that a resource is gone.
    pub fn resource_deleted(&self, kind: &str, location: &str, id: &str) -> Result<()> {
        let t = now();
        self.with(|c| {
            c.execute(
                "UPDATE resources SET deleted_at = ?4 WHERE kind = ?1 AND location = ?2 AND id = ?3",
                params![kind, location, id, t],
            )
        })?;
        Ok(())
    }

    /// Records that a resource is no longer temporary (a promoted image): it is never swept.
    pub fn keep_resource(&self, kind: &str, location: &str, id: &str) -> Result<()> {
        let t = now();
        self.with(|c| {
            c.execute(
                "UPDATE resources SET kept_at = ?4 WHERE kind = ?1 AND location = ?2 AND id = ?3",
                params![kind, location, id, t],
            )
        })?;
        Ok(())
    }

    /// Resources neither deleted nor kept, of one run or of all runs.
    pub fn live_resources(&self, run: Option<&RunId>) -> Result<Vec<ResourceRecord>> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT run_id, stage, kind, location, id, name, created_at, deleted_at FROM resources \
                 WHERE deleted_at IS NULL AND kept_at IS NULL AND (?1 IS NULL OR run_id = ?1) ORDER BY created_at",
            )?;
            s.query_map(params![run.map(|r| r.0.clone())], |r| {
                Ok(ResourceRecord {
                    run_id: RunId(r.get(0)?),
                    stage: r.get(1)?,
                    kind: r.get(2)?,
                    location: r.get(3)?,
                    id: r.get(4)?,
                    name: r.get(5)?,
                    created_at: r.get(6)?,
                    deleted_at: r.get(7)?,
                })
            })?
            .collect()
        })
    }

    /// Records a promotion and its evidence, once: `false` when this run's stage had already
    /// recorded the same target (a resumed stage), which is then left as it was.
    pub fn record_promotion(&self, run: &RunId, stage: &str, p: &Promoted<'_>) -> Result<bool> {
        let t = now();
        let Promoted {
            kind,
            location,
            target,
            names,
            evidence,
        } = *p;
        let names = Value::from(names.to_vec()).to_string();
        let inserted = self.with(|c| {
            Self::heartbeat(c, run, t)?;
            // Once per (run, stage, target): a resumed stage that records it again changes nothing.
            c.execute(
                "INSERT INTO promotions (run_id, stage, kind, location, target, names, evidence, at) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE NOT EXISTS \
                 (SELECT 1 FROM promotions WHERE run_id = ?1 AND stage = ?2 AND target = ?5)",
                params![run.0, stage, kind, location, target, names, json_text(evidence), t],
            )
        })?;
        Ok(inserted == 1)
    }

    /// Records one test's verdict (`passed`, `failed`, `timed_out`, `error`, or `infrastructure`).
    pub fn record_test(&self, run: &RunId, stage: &str, t: &TestRecord) -> Result<()> {
        let at = now();
        self.with(|c| {
            Self::heartbeat(c, run, at)?;
            c.execute(
                "INSERT INTO test_results (run_id, stage, image, name, verdict, duration_ms, message, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    run.0,
                    stage,
                    t.image,
                    t.name,
                    t.verdict,
                    t.duration_ms as i64,
                    t.message,
                    at
                ],
            )
        })?;
        Ok(())
    }

    /// The test results of a run, in the order they were recorded.
    pub fn test_results(&self, run: &RunId) -> Result<Vec<TestRecord>> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT stage, image, name, verdict, duration_ms, message FROM test_results WHERE run_id = ?1 ORDER BY rowid",
            )?;
            s.query_map(params![run.0], |r| {
                Ok(TestRecord {
                    stage: r.get(0)?,
                    image: r.get(1)?,
                    name: r.get(2)?,
                    verdict: r.get(3)?,
                    duration_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    message: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    /// Promotions of one run, or of all runs, newest first.
    pub fn promotions(&self, run: Option<&RunId>) -> Result<Vec<PromotionRecord>> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT run_id, stage, kind, location, target, names, evidence, at FROM promotions \
                 WHERE (?1 IS NULL OR run_id = ?1) ORDER BY at DESC, rowid DESC",
            )?;
            s.query_map(params![run.map(|r| r.0.clone())], |r| {
                Ok(PromotionRecord {
                    run_id: RunId(r.get(0)?),
                    stage: r.get(1)?,
                    kind: r.get(2)?,
                    location: r.get(3)?,
                    target: r.get(4)?,
                    names: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                    evidence: parse_json(r.get(6)?),
                    at: r.get(7)?,
                })
            })?
            .collect()
        })
    }
}

/// Who holds a [`Journal::try_lock`] lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockHolder {
    /// What the holder said it is (a run id, `imagekit promote image`).
    pub holder: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// Unix seconds.
    pub acquired_at: i64,
    /// Unix seconds after which the lock no longer counts, if it has a lifetime.
    pub expires_at: Option<i64>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {})",
            self.holder,
            self.pid,
            self.host,
            rfc3339(self.acquired_at)
        )
    }
}

/// A lock taken in the journal; released when dropped (or when its process dies, or at its expiry).
#[must_use = "the lock is released when this is dropped"]
#[derive(Debug)]
pub struct JournalLock<'a> {
    journal: &'a Journal,
    name: String,
    token: String,
}

impl JournalLock<'_> {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for JournalLock<'_> {
    fn drop(&mut self) {
        // Only our own row: a lock broken as stale and taken by another process stays theirs.
        let released = self.journal.with(|c| {
            c.execute(
                "DELETE FROM locks WHERE name = ?1 AND token = ?2",
                params![self.name, self.token],
            )
        });
        if let Err(e) = released {
            tracing::warn!(lock = %self.name, error = %e, "could not release a journal lock; it is freed when this process exits");
        }
    }
}

/// This process as a lock holder: host, pid, and the pid's start time (so a reused pid is not
/// mistaken for the holder).
fn this_process() -> (String, u32, i64) {
    let pid = std::process::id();
    (host_name(), pid, process_start(pid).unwrap_or(0))
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The start time of `pid` in clock ticks since boot (`/proc/PID/stat`, field 22), or `None` when
/// there is no such process.
pub(crate) fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Journal {
    /// Takes the lock `name` for `holder` unless a live holder has it: `Ok(Err(holder))` says who.
    ///
    /// A lock is dead, and taken over, when its `ttl` has passed, or when its holder ran on this
    /// host and that process is gone (a SIGKILLed `imagekit` frees its locks at once). Locks of
    /// processes on other hosts sharing the journal are only freed by their expiry.
    ///
    /// ```
    /// use imagekit::journal::Journal;
    /// let journal = Journal::in_memory().unwrap();
    /// let lock = journal.try_lock("promote:cloud:prod:ALMA9", "run-1", None).unwrap().unwrap();
    /// let busy = journal.try_lock("promote:cloud:prod:ALMA9", "run-2", None).unwrap().unwrap_err();
    /// assert_eq!(busy.holder, "run-1");
    /// drop(lock);
    /// assert!(journal.try_lock("promote:cloud:prod:ALMA9", "run-2", None).unwrap().is_ok());
    /// ```
    pub fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<std::result::Result<JournalLock<'_>, LockHolder>> {
        let t = now();
        let (host, pid, start) = this_process();
        let token = format!("{:032x}", rand::random::<u128>());
        let expires_at = ttl.map(|d| t.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        let busy = self.with(|c| {
            // IMMEDIATE: the check and the insert are one step for every process sharing the file.
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let current = tx
                .query_row(
                    "SELECT holder, host, pid, proc_start, acquired_at, expires_at FROM locks WHERE name = ?1",
                    params![name],
                    |r| {
                        Ok((
                            LockHolder {
                                holder: r.get(0)?,
                                host: r.get(1)?,
                                pid: r.get(2)?,
                                acquired_at: r.get(4)?,
                                expires_at: r.get(5)?,
                            },
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()?;
            if let Some((h, h_start)) = current {
                let expired = h.expires_at.is_some_and(|e| e <= t);
                let gone = h.host == host && process_start(h.pid) != Some(h_start);
                if !expired && !gone {
                    return Ok(Some(h));
                }
                tracing::warn!(lock = name, holder = %h, "taking over a lock whose holder is gone or expired");
            }
            tx.execute(
                "INSERT OR REPLACE INTO locks (name, holder, token, host, pid, proc_start, acquired_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![name, holder, token, host, pid, start, t, expires_at],
            )?;
            tx.commit()?;
            Ok(None)
        })?;
        Ok(match busy {
            Some(h) => Err(h),
            None => Ok(JournalLock {
                journal: self,
                name: name.to_string(),
                token,
            }),
        })
    }

    /// Like [`Journal::try_lock`], but waits for a busy lock (polling with backoff) up to `wait`.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder when the lock is still busy after `wait`.
    pub async fn lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Option<std::time::Duration>,
        wait: std::time::Duration,
    ) -> Result<JournalLock<'_>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            match self.try_lock(name, holder, ttl)? {
                Ok(lock) => return Ok(lock),
                Err(h) if tokio::time::Instant::now() + pause > deadline => {
                    return Err(Error::Locked {
                        what: name.to_string(),
                        holder: h.to_string(),
                        hint: format!("still held after waiting {wait:?}; try again once it is done"),
                    });
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    }
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: RunId(r.get(0)?),
        pipeline: r.get(1)?,
        spec: parse_json(r.get(2)?),
        status: Status::from_db(r.get(3)?),
        started_at: r.get(4)?,
        heartbeat_at: r.get(5)?,
        finished_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn dates_and_run_ids_are_utc_and_sortable() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_516_500), "2026-11-24T10:35:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let id = RunId::generate(1_795_516_500);
        assert!(id.as_str().starts_with("20261124t103500-"), "{id}");
        assert_eq!(RunId::parse(id.as_str()).unwrap(), id);
        assert!(RunId::parse("20261124t103500-xyz123").is_err());
        assert!(RunId::parse("../../etc").is_err());
    }

    #[test]
    fn stages_resume_only_when_unfinished_or_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.sqlite");
        let j = Journal::open(&path).unwrap();
        let run = j.create_run("p", &json!({})).unwrap();
        let input = json!({"a": 1});
        assert!(matches!(
            j.start_stage(&run, "s", &input).unwrap(),
            StageStart::Started { attempt: 1 }
        ));
        // Crash: the stage stays running. Reopen the file and start again: attempt 2.
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.stages(&run).unwrap()[0].status, Status::Running);
        assert!(matches!(
            j.start_stage(&run, "s", &input).unwrap(),
            StageStart::Started { attempt: 2 }
        ));
        j.fail_stage(&run, "s", "Glance answered 503", true).unwrap();
        assert!(j.stages(&run).unwrap()[0].infrastructure_error);
        assert!(matches!(
            j.start_stage(&run, "s", &input).unwrap(),
            StageStart::Started { attempt: 3 }
        ));
        j.complete_stage(&run, "s", &json!({"image": "x"})).unwrap();
        assert!(matches!(j.start_stage(&run, "s", &input).unwrap(), StageStart::AlreadyDone(v) if v["image"] == "x"));
        // A changed input is new work.
        assert!(matches!(
            j.start_stage(&run, "s", &json!({"a": 2})).unwrap(),
            StageStart::Started { attempt: 4 }
        ));
        assert!(j.complete_stage(&run, "never-started", &json!(null)).is_err());
    }

    #[test]
    fn resources_and_promotions_are_queryable() {
        let j = Journal::in_memory().unwrap();
        let a = j.create_run("p", &json!({})).unwrap();
        let b = j.create_run("p", &json!({})).unwrap();
        j.record_resource(&a, "upload", "glance-image", "cloud:prod", "img-1", Some("alma9 TEST"))
            .unwrap();
        j.record_resource(&b, "boot", "nova-server", "cloud:prod", "srv-1", None)
            .unwrap();
        assert_eq!(j.live_resources(None).unwrap().len(), 2);
        assert_eq!(j.live_resources(Some(&a)).unwrap()[0].id, "img-1");
        j.resource_deleted("nova-server", "cloud:prod", "srv-1").unwrap();
        assert!(j.live_resources(Some(&b)).unwrap().is_empty());
        let names = ["alma9".to_string()];
        let evidence = json!({"tests": "passed"});
        let promoted = Promoted {
            kind: "glance-image",
            location: "cloud:prod",
            target: "img-1",
            names: &names,
            evidence: &evidence,
        };
        j.record_promotion(&a, "promote", &promoted).unwrap();
        let p = &j.promotions(None).unwrap()[0];
        assert_eq!(
            (p.target.as_str(), p.names.clone()),
            ("img-1", vec!["alma9".to_string()])
        );
        assert_eq!(p.evidence["tests"], "passed");
        j.finish_run(&a, Status::Done).unwrap();
        assert_eq!(j.run(&a).unwrap().status, Status::Done);
        assert_eq!(j.runs().unwrap().len(), 2);
    }
}
