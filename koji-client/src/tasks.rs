//! Tasks: info, children and descendants, results, outputs, cancel.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

use crate::client::{Client, decode};
use crate::error::{Error, Fault, Result};
use crate::xmlrpc::{Value, fault_from_struct, value_to_json};

/// A Koji task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TaskId {
    pub(crate) fn arg(self) -> Value {
        match i32::try_from(self.0) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Long(self.0),
        }
    }
}

/// A task's state (`koji.TASK_STATES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// 0: waiting for a builder.
    Free,
    /// 1: running.
    Open,
    /// 2: finished successfully.
    Closed,
    /// 3: canceled.
    Canceled,
    /// 4: assigned to a builder, not yet started.
    Assigned,
    /// 5: failed; the result is a fault.
    Failed,
    /// A state this client does not know.
    Unknown(i64),
}

impl TaskState {
    /// The state for Koji's number.
    pub fn from_code(code: i64) -> Self {
        match code {
            0 => TaskState::Free,
            1 => TaskState::Open,
            2 => TaskState::Closed,
            3 => TaskState::Canceled,
            4 => TaskState::Assigned,
            5 => TaskState::Failed,
            n => TaskState::Unknown(n),
        }
    }

    /// Koji's number for the state.
    pub fn code(self) -> i64 {
        match self {
            TaskState::Free => 0,
            TaskState::Open => 1,
            TaskState::Closed => 2,
            TaskState::Canceled => 3,
            TaskState::Assigned => 4,
            TaskState::Failed => 5,
            TaskState::Unknown(n) => n,
        }
    }

    /// CLOSED, CANCELED or FAILED: the task will not change again.
    pub fn is_finished(self) -> bool {
        matches!(self, TaskState::Closed | TaskState::Canceled | TaskState::Failed)
    }

    /// CANCELED or FAILED.
    pub fn is_failure(self) -> bool {
        matches!(self, TaskState::Canceled | TaskState::Failed)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskState::Free => f.write_str("FREE"),
            TaskState::Open => f.write_str("OPEN"),
            TaskState::Closed => f.write_str("CLOSED"),
            TaskState::Canceled => f.write_str("CANCELED"),
            TaskState::Assigned => f.write_str("ASSIGNED"),
            TaskState::Failed => f.write_str("FAILED"),
            TaskState::Unknown(n) => write!(f, "UNKNOWN({n})"),
        }
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(TaskState::from_code(i64::deserialize(d)?))
    }
}

impl Serialize for TaskState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

/// `getTaskInfo`'s answer. Unknown fields are ignored; the request stays raw because its shape
/// depends on the method.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The task id.
    pub id: TaskId,
    /// The task's method (`image`, `createImage`, `buildArch`, ...).
    pub method: String,
    /// The state.
    pub state: TaskState,
    /// The parent task, if any.
    #[serde(default)]
    pub parent: Option<TaskId>,
    /// The architecture it runs for.
    #[serde(default)]
    pub arch: Option<String>,
    /// A label such as the arch of an image child task.
    #[serde(default)]
    pub label: Option<String>,
    /// The owner's user id.
    #[serde(default)]
    pub owner: Option<i64>,
    /// The builder host.
    #[serde(default)]
    pub host_id: Option<i64>,
    /// Creation time (seconds since the epoch).
    #[serde(default)]
    pub create_ts: Option<f64>,
    /// Start time.
    #[serde(default)]
    pub start_ts: Option<f64>,
    /// Completion time.
    #[serde(default)]
    pub completion_ts: Option<f64>,
    /// The priority.
    #[serde(default)]
    pub priority: Option<i64>,
    /// The call's arguments, when asked for (`request=True`).
    #[serde(default)]
    pub request: Option<serde_json::Value>,
    /// The result, when the hub includes it (`listTasks` with `decode`).
    #[serde(default)]
    pub result: Option<serde_json::Value>,
}

/// A `*_ts` value from the hub (seconds since the epoch, a double) as a time: `None` when the hub
/// sent none, or a value no clock can hold (NaN, infinite, beyond `SystemTime`'s range either way).
///
/// The one conversion of hub timestamps in this crate: `UNIX_EPOCH + Duration::from_secs_f64(ts)`
/// panics on exactly the values a broken or hostile hub can send.
pub(crate) fn epoch_time(ts: Option<f64>) -> Option<SystemTime> {
    let ts = ts?;
    let magnitude = Duration::try_from_secs_f64(ts.abs()).ok()?;
    if ts >= 0.0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

impl TaskInfo {
    /// When the task was created (`create_ts`); `None` when absent or not a representable time.
    pub fn created_at(&self) -> Option<SystemTime> {
        epoch_time(self.create_ts)
    }

    /// When the task started (`start_ts`); `None` when absent or not a representable time.
    pub fn started_at(&self) -> Option<SystemTime> {
        epoch_time(self.start_ts)
    }

    /// When the task finished (`completion_ts`); `None` when absent or not a representable time.
    pub fn completed_at(&self) -> Option<SystemTime> {
        epoch_time(self.completion_ts)
    }

    /// The fault in `result`, for a failed task listed with its result.
    pub fn fault(&self) -> Option<Fault> {
        let r = self.result.as_ref()?;
        let code = r.get("faultCode")?.as_i64()?;
        let msg = r.get("faultString").and_then(|s| s.as_str()).unwrap_or_default();
        Some(Fault::new(i32::try_from(code).ok()?, msg))
    }
}

/// An RPM in an image's package list.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[non_exhaustive]
pub struct RpmInfo {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Epoch.
    #[serde(default)]
    pub epoch: Option<i64>,
    /// Architecture.
    pub arch: String,
    /// Payload hash.
    #[serde(default)]
    pub payloadhash: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Build time.
    #[serde(default)]
    pub buildtime: Option<i64>,
}

/// The result of a `createImage` (and `createLiveMedia`, `createKiwiImage`) task: one architecture's
/// image files, logs and package list.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[non_exhaustive]
pub struct ImageTaskResult {
    /// The architecture.
    pub arch: String,
    /// Image name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// The task that made it.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// Output files (images, kickstarts, descriptors).
    #[serde(default)]
    pub files: Vec<String>,
    /// Log files.
    #[serde(default)]
    pub logs: Vec<String>,
    /// Packages in the image.
    #[serde(default)]
    pub rpmlist: Vec<RpmInfo>,
}

impl ImageTaskResult {
    /// `name-version-release`.
    pub fn nvr(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.release)
    }
}

/// One output file of a task, on one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskOutput {
    /// File name.
    pub name: String,
    /// Volume (`DEFAULT` for the main one).
    pub volume: String,
    /// Size, when known (`stat=True`).
    pub size: Option<u64>,
}

impl Client {
    /// `getTaskInfo(task, request=True)`.
    pub async fn get_task_info(&self, task: TaskId) -> Result<TaskInfo> {
        self.get_task_info_opt(task, true).await
    }

    /// `getTaskInfo(task)`, with or without the request arguments.
    pub async fn get_task_info_opt(&self, task: TaskId, request: bool) -> Result<TaskInfo> {
        let kwargs = if request {
            vec![("request".to_string(), Value::Boolean(true))]
        } else {
            vec![]
        };
        let v = self.call("getTaskInfo", vec![task.arg()], kwargs).await?;
        if matches!(v, Value::Nil) {
            return Err(Error::InvalidInput(format!("koji has no task {task}")));
        }
        decode("getTaskInfo", v)
    }

    /// `getTaskChildren(task)`.
    pub async fn get_task_children(&self, task: TaskId) -> Result<Vec<TaskInfo>> {
        self.call_as("getTaskChildren", vec![task.arg()], vec![]).await
    }

    /// `getTaskDescendents(task)`: every task below `task`, keyed by parent id.
    pub async fn get_task_descendents(&self, task: TaskId) -> Result<BTreeMap<TaskId, Vec<TaskInfo>>> {
        let raw: BTreeMap<String, Vec<TaskInfo>> = self.call_as("getTaskDescendents", vec![task.arg()], vec![]).await?;
        raw.into_iter()
            .map(|(k, v)| {
                k.parse::<i64>().map(|id| (TaskId(id), v)).map_err(|_| Error::Decode {
                    method: "getTaskDescendents".into(),
                    reason: crate::redact::peer_text(&format!("key {k:?} is not a task id")),
                })
            })
            .collect()
    }

    /// `getTaskResult(task)`: the raw result; a failed task's fault comes back as [`Error::Fault`].
    pub async fn get_task_result(&self, task: TaskId) -> Result<Value> {
        self.call("getTaskResult", vec![task.arg()], vec![]).await
    }

    /// The typed result of a `createImage`-like task.
    pub async fn get_image_task_result(&self, task: TaskId) -> Result<ImageTaskResult> {
        let v = self.get_task_result(task).await?;
        decode("getTaskResult", v)
    }

    /// `listTaskOutput(task, all_volumes=True)`: file name → volumes (what `koji download-task` asks).
    pub async fn list_task_output_volumes(&self, task: TaskId) -> Result<BTreeMap<String, Vec<String>>> {
        self.call_as(
            "listTaskOutput",
            vec![task.arg()],
            vec![("all_volumes".into(), Value::Boolean(true))],
        )
        .await
    }

    /// `listTaskOutput(task, stat=True, all_volumes=True)`: every output with its volume and size.
    pub async fn list_task_output(&self, task: TaskId) -> Result<Vec<TaskOutput>> {
        let v = self
            .call(
                "listTaskOutput",
                vec![task.arg()],
                vec![
                    ("stat".into(), Value::Boolean(true)),
                    ("all_volumes".into(), Value::Boolean(true)),
                ],
            )
            .await?;
        // {file: {volume: {st_size: "123", ...}}}; sizes are strings so they survive 32-bit XML-RPC.
        let json = value_to_json(v);
        let files = json.as_object().ok_or_else(|| Error::Decode {
            method: "listTaskOutput".into(),
            reason: "expected a struct of files".into(),
        })?;
        let mut out = Vec::new();
        for (name, vols) in files {
            let Some(vols) = vols.as_object() else { continue };
            for (volume, st) in vols {
                let size = st.get("st_size").and_then(|s| match s {
                    serde_json::Value::String(s) => s.parse().ok(),
                    n => n.as_u64(),
                });
                out.push(TaskOutput {
                    name: name.clone(),
                    volume: volume.clone(),
                    size,
                });
            }
        }
        Ok(out)
    }

    /// `cancelTask(task)`: cancel a task and its children.
    pub async fn cancel_task(&self, task: TaskId) -> Result<()> {
        self.call("cancelTask", vec![task.arg()], vec![]).await.map(|_| ())
    }

    /// `listTasks(opts, queryOpts)` with raw option structs.
    pub async fn list_tasks(&self, opts: serde_json::Value, query_opts: serde_json::Value) -> Result<Vec<TaskInfo>> {
        self.call_as(
            "listTasks",
            vec![],
            vec![
                ("opts".into(), crate::xmlrpc::to_value(&opts)?),
                ("queryOpts".into(), crate::xmlrpc::to_value(&query_opts)?),
            ],
        )
        .await
    }
}

/// A multicall entry's task result, decoded the way `getTaskResult` would be.
pub(crate) fn entry_result(entry: std::result::Result<Value, Fault>) -> std::result::Result<serde_json::Value, Fault> {
    match entry {
        Ok(v) => match fault_from_struct(&v) {
            Some(f) => Err(f),
            None => Ok(value_to_json(v)),
        },
        Err(f) => Err(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_timestamps_no_clock_can_hold_are_none_not_a_panic() {
        // Each of these panics in `UNIX_EPOCH + Duration::from_secs_f64(ts)`.
        for odd in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN,
        ] {
            assert_eq!(epoch_time(Some(odd)), None, "{odd}");
        }
        assert_eq!(epoch_time(None), None);
        assert_eq!(
            epoch_time(Some(1_764_000_000.5)),
            Some(UNIX_EPOCH + Duration::from_millis(1_764_000_000_500))
        );
        assert_eq!(epoch_time(Some(-1.0)), UNIX_EPOCH.checked_sub(Duration::from_secs(1)));
        assert_eq!(epoch_time(Some(-0.0)), Some(UNIX_EPOCH));
    }

    #[test]
    fn unknown_task_states_are_kept_not_panicked_on() {
        let t: TaskInfo = serde_json::from_value(serde_json::json!({"id": 1, "method": "image", "state": 9})).unwrap();
        assert_eq!(t.state, TaskState::Unknown(9));
        assert!(!t.state.is_finished());
    }

    #[test]
    fn the_recorded_create_image_result_decodes() {
        let all: BTreeMap<String, ImageTaskResult> =
            serde_json::from_str(include_str!("../tests/fixtures/createImage_task_result.json")).unwrap();
        let r = &all["x86_64"];
        assert_eq!(r.nvr(), "my-image-7.4.2-2");
        assert_eq!(r.task_id, Some(TaskId(999)));
        assert!(r.files.contains(&"my-image-7.4.2-2.x86_64.ova".to_string()));
        assert_eq!(r.logs, vec!["oz-x86_64.log"]);
        assert_eq!(r.rpmlist.len(), 3);
        assert_eq!(r.rpmlist[1].size, Some(696_715));
    }
}
