//! Builds, tags, targets, archives, and hub information.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::tasks::{TaskId, TaskInfo, TaskState};
use crate::xmlrpc::{Value, to_value};

/// A build id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BuildId(pub i64);

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A build's state (`koji.BUILD_STATES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildState {
    /// 0
    Building,
    /// 1
    Complete,
    /// 2
    Deleted,
    /// 3
    Failed,
    /// 4
    Canceled,
    /// A state this client does not know.
    Unknown(i64),
}

impl BuildState {
    /// The state for Koji's number.
    pub fn from_code(n: i64) -> Self {
        match n {
            0 => BuildState::Building,
            1 => BuildState::Complete,
            2 => BuildState::Deleted,
            3 => BuildState::Failed,
            4 => BuildState::Canceled,
            n => BuildState::Unknown(n),
        }
    }

    /// Koji's number for the state.
    pub fn code(self) -> i64 {
        match self {
            BuildState::Building => 0,
            BuildState::Complete => 1,
            BuildState::Deleted => 2,
            BuildState::Failed => 3,
            BuildState::Canceled => 4,
            BuildState::Unknown(n) => n,
        }
    }
}

impl<'de> Deserialize<'de> for BuildState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(BuildState::from_code(i64::deserialize(d)?))
    }
}

impl Serialize for BuildState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

/// `getBuild`'s answer (also the entries of `listBuilds`, `listTagged`, `getLatestBuilds`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct BuildInfo {
    /// The build id (`build_id`, present in `getBuild` and in list answers alike).
    #[serde(rename = "build_id")]
    pub id: BuildId,
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// `name-version-release`.
    pub nvr: String,
    /// State.
    pub state: BuildState,
    /// The task that built it.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// Owner name.
    #[serde(default)]
    pub owner_name: Option<String>,
    /// Creation time (seconds since the epoch).
    #[serde(default)]
    pub creation_ts: Option<f64>,
    /// Completion time.
    #[serde(default)]
    pub completion_ts: Option<f64>,
    /// Volume name.
    #[serde(default)]
    pub volume_name: Option<String>,
    /// The `extra` struct (type info, source URL, ...).
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
    /// The tag, in `listTagged` answers.
    #[serde(default)]
    pub tag_name: Option<String>,
}

impl BuildInfo {
    /// When the build was created (`creation_ts`); `None` when absent or not a representable time.
    pub fn created_at(&self) -> Option<std::time::SystemTime> {
        crate::tasks::epoch_time(self.creation_ts)
    }

    /// When the build completed (`completion_ts`); `None` when absent or not a representable time.
    pub fn completed_at(&self) -> Option<std::time::SystemTime> {
        crate::tasks::epoch_time(self.completion_ts)
    }
}

/// An archive (image file, tarball) of a build, with its checksum.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ArchiveInfo {
    /// Archive id.
    pub id: i64,
    /// File name.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex digest.
    pub checksum: String,
    /// 0 md5, 1 sha1, 2 sha256.
    pub checksum_type: i64,
    /// `qcow2`, `raw-xz`, `tar`, ...
    #[serde(default)]
    pub type_name: Option<String>,
    /// The build.
    #[serde(default)]
    pub build_id: Option<BuildId>,
}

/// `getBuildTarget`'s answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct BuildTarget {
    /// Target id.
    pub id: i64,
    /// Target name.
    pub name: String,
    /// Build tag id.
    pub build_tag: i64,
    /// Build tag name.
    pub build_tag_name: String,
    /// Destination tag id.
    pub dest_tag: i64,
    /// Destination tag name.
    pub dest_tag_name: String,
}

/// `getTag`'s answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct TagInfo {
    /// Tag id.
    pub id: i64,
    /// Tag name.
    pub name: String,
    /// Architectures, space separated.
    #[serde(default)]
    pub arches: Option<String>,
    /// Whether locked.
    #[serde(default)]
    pub locked: bool,
    /// Permission needed to tag into it.
    #[serde(default)]
    pub perm: Option<String>,
    /// Extra settings.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

/// `getLoggedInUser`'s answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// User id.
    pub id: i64,
    /// User name.
    pub name: String,
    /// Status (0 normal).
    #[serde(default)]
    pub status: Option<i64>,
    /// User type (0 normal, 1 host, 2 group).
    #[serde(default)]
    pub usertype: Option<i64>,
}

/// Filters for `listBuilds`.
///
/// ```
/// use koji_client::{BuildState, ListBuilds};
/// let q = ListBuilds::new().pattern("cc7-cloud-*").state(BuildState::Complete).created_after(1_700_000_000.0);
/// ```
#[derive(Debug, Clone, Default, Serialize)]
#[must_use]
pub struct ListBuilds {
    #[serde(rename = "packageID", skip_serializing_if = "Option::is_none")]
    package: Option<serde_json::Value>,
    #[serde(rename = "userID", skip_serializing_if = "Option::is_none")]
    user: Option<serde_json::Value>,
    #[serde(rename = "taskID", skip_serializing_if = "Option::is_none")]
    task: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<i64>,
    #[serde(rename = "createdAfter", skip_serializing_if = "Option::is_none")]
    created_after: Option<f64>,
    #[serde(rename = "createdBefore", skip_serializing_if = "Option::is_none")]
    created_before: Option<f64>,
    #[serde(rename = "completeAfter", skip_serializing_if = "Option::is_none")]
    complete_after: Option<f64>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    build_type: Option<String>,
    #[serde(rename = "queryOpts", skip_serializing_if = "Option::is_none")]
    query_opts: Option<serde_json::Value>,
}

impl ListBuilds {
    /// No filter.
    pub fn new() -> Self {
        Self::default()
    }
    /// Builds of a package (name).
    pub fn package(mut self, name: impl Into<String>) -> Self {
        self.package = Some(serde_json::Value::String(name.into()));
        self
    }
    /// Builds by a user (name).
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.user = Some(serde_json::Value::String(name.into()));
        self
    }
    /// The build of a task.
    pub fn task(mut self, task: TaskId) -> Self {
        self.task = Some(task.0);
        self
    }
    /// NVRs starting with a prefix.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = Some(p.into());
        self
    }
    /// NVRs matching a glob.
    pub fn pattern(mut self, p: impl Into<String>) -> Self {
        self.pattern = Some(p.into());
        self
    }
    /// Builds in a state.
    pub fn state(mut self, s: BuildState) -> Self {
        self.state = Some(s.code());
        self
    }
    /// Created after a time (seconds since the epoch).
    pub fn created_after(mut self, ts: f64) -> Self {
        self.created_after = Some(ts);
        self
    }
    /// Created before a time.
    pub fn created_before(mut self, ts: f64) -> Self {
        self.created_before = Some(ts);
        self
    }
    /// Completed after a time.
    pub fn complete_after(mut self, ts: f64) -> Self {
        self.complete_after = Some(ts);
        self
    }
    /// Builds of a type (`image`, `rpm`, ...).
    pub fn build_type(mut self, t: impl Into<String>) -> Self {
        self.build_type = Some(t.into());
        self
    }
    /// Order and limit, e.g. `{"order": "-build_id", "limit": 10}`.
    pub fn query_opts(mut self, q: serde_json::Value) -> Self {
        self.query_opts = Some(q);
        self
    }
}

/// What [`Client::find_existing_image_build`] found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Existing {
    /// A completed build.
    Build(BuildInfo),
    /// A build still running.
    Building(BuildInfo),
    /// A task still running that will make the build.
    Task(TaskInfo),
}

fn kwargs_of<T: Serialize>(v: &T) -> Result<Vec<(String, Value)>> {
    match to_value(v)? {
        Value::Struct(m) => Ok(m.into_iter().collect()),
        _ => Err(Error::InvalidInput("options must be a struct".into())),
    }
}

fn str_arg(s: &str) -> Value {
    Value::String(s.to_string())
}

impl Client {
    /// `getAPIVersion()`.
    pub async fn get_api_version(&self) -> Result<i64> {
        self.call_as("getAPIVersion", vec![], vec![]).await
    }

    /// `getKojiVersion()`.
    pub async fn get_koji_version(&self) -> Result<String> {
        self.call_as("getKojiVersion", vec![], vec![]).await
    }

    /// `getLoggedInUser()`; `None` when anonymous.
    pub async fn get_logged_in_user(&self) -> Result<Option<UserInfo>> {
        self.call_as("getLoggedInUser", vec![], vec![]).await
    }

    /// `getBuild(nvr or id)`; `None` when there is no such build.
    pub async fn get_build(&self, build: &str) -> Result<Option<BuildInfo>> {
        let arg = match build.parse::<i32>() {
            Ok(id) => Value::Integer(id),
            Err(_) => str_arg(build),
        };
        self.call_as("getBuild", vec![arg], vec![]).await
    }

    /// `listBuilds(**filters)`.
    pub async fn list_builds(&self, filters: &ListBuilds) -> Result<Vec<BuildInfo>> {
        self.call_as("listBuilds", vec![], kwargs_of(filters)?).await
    }

    /// `getLatestBuilds(tag, package=...)`.
    pub async fn get_latest_builds(&self, tag: &str, package: Option<&str>) -> Result<Vec<BuildInfo>> {
        let kwargs = package
            .map(|p| vec![("package".to_string(), str_arg(p))])
            .unwrap_or_default();
        self.call_as("getLatestBuilds", vec![str_arg(tag)], kwargs).await
    }

    /// `listTagged(tag, package=..., latest=...)`.
    pub async fn list_tagged(&self, tag: &str, package: Option<&str>, latest: bool) -> Result<Vec<BuildInfo>> {
        let mut kwargs = vec![];
        if let Some(p) = package {
            kwargs.push(("package".to_string(), str_arg(p)));
        }
        if latest {
            kwargs.push(("latest".to_string(), Value::Boolean(true)));
        }
        self.call_as("listTagged", vec![str_arg(tag)], kwargs).await
    }

    /// `tagBuild(tag, build)`: returns the tagging task to watch.
    pub async fn tag_build(&self, tag: &str, build: &str) -> Result<TaskId> {
        self.call_as("tagBuild", vec![str_arg(tag), str_arg(build)], vec![])
            .await
    }

    /// `untagBuild(tag, build)`.
    pub async fn untag_build(&self, tag: &str, build: &str) -> Result<()> {
        self.call("untagBuild", vec![str_arg(tag), str_arg(build)], vec![])
            .await
            .map(|_| ())
    }

    /// `getBuildTarget(name)`; `None` when there is no such target.
    pub async fn get_build_target(&self, name: &str) -> Result<Option<BuildTarget>> {
        self.call_as("getBuildTarget", vec![str_arg(name)], vec![]).await
    }

    /// `getTag(name or id)`; `None` when there is no such tag.
    pub async fn get_tag(&self, tag: &str) -> Result<Option<TagInfo>> {
        let arg = match tag.parse::<i32>() {
            Ok(id) => Value::Integer(id),
            Err(_) => str_arg(tag),
        };
        self.call_as("getTag", vec![arg], vec![]).await
    }

    /// `listArchives(buildID=...)`: a build's files with their checksums.
    pub async fn list_archives(&self, build: BuildId) -> Result<Vec<ArchiveInfo>> {
        self.call_as("listArchives", vec![], vec![("buildID".into(), Value::Long(build.0))])
            .await
    }

    /// "Already built?": a completed or running image build of `name`/`version` (and `release`, when
    /// given) created since `since` (seconds since the epoch), or a running image task for it — so a
    /// daily job does not build twice. Failed and canceled builds do not count.
    pub async fn find_existing_image_build(
        &self,
        name: &str,
        version: &str,
        release: Option<&str>,
        since: f64,
    ) -> Result<Option<Existing>> {
        let pattern = format!("{name}-{version}-{}", release.unwrap_or("*"));
        let builds = self
            .list_builds(
                &ListBuilds::new()
                    .pattern(pattern)
                    .created_after(since)
                    .query_opts(serde_json::json!({"order": "-build_id"})),
            )
            .await?;
        let matching = builds
            .into_iter()
            .filter(|b| b.name == name && b.version == version && release.is_none_or(|r| b.release == r));
        let mut building = None;
        for b in matching {
            match b.state {
                BuildState::Complete => return Ok(Some(Existing::Build(b))),
                BuildState::Building if building.is_none() => building = Some(b),
                _ => {}
            }
        }
        if let Some(b) = building {
            return Ok(Some(Existing::Building(b)));
        }
        let open = [TaskState::Free, TaskState::Open, TaskState::Assigned].map(TaskState::code);
        for method in ["image", "kiwiBuild", "livemedia", "appliance", "livecd"] {
            let tasks = self
                .list_tasks(
                    serde_json::json!({"method": method, "state": open, "createdAfter": since, "decode": true, "parent": null}),
                    serde_json::json!({"order": "-id"}),
                )
                .await?;
            for t in tasks {
                if request_matches(&t, name, version, release) {
                    return Ok(Some(Existing::Task(t)));
                }
            }
        }
        Ok(None)
    }
}

/// Image task requests start with `name, version` and end with an opts struct holding `release`.
fn request_matches(t: &TaskInfo, name: &str, version: &str, release: Option<&str>) -> bool {
    let Some(serde_json::Value::Array(req)) = &t.request else {
        return false;
    };
    if req.first().and_then(|v| v.as_str()) != Some(name) || req.get(1).and_then(|v| v.as_str()) != Some(version) {
        return false;
    }
    match release {
        None => true,
        Some(r) => req
            .iter()
            .rev()
            .find_map(|v| v.get("release"))
            .and_then(|v| v.as_str())
            .is_some_and(|x| x == r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_builds_filters_use_the_hub_s_keyword_names() {
        let kw = kwargs_of(
            &ListBuilds::new()
                .pattern("x-*")
                .state(BuildState::Complete)
                .created_after(1.5),
        )
        .unwrap();
        let names: Vec<&str> = kw.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["createdAfter", "pattern", "state"]);
    }

    #[test]
    fn recorded_build_answers_decode() {
        let calls: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../tests/fixtures/pages_calls.json")).unwrap();
        let b: BuildInfo = serde_json::from_value(calls[235]["result"].clone()).unwrap();
        assert_eq!(b.nvr, "test-cg-reserve-1.0-66");
        assert_eq!(b.state, BuildState::Complete);
        let list = calls.iter().find(|c| c["method"] == "listBuilds").unwrap();
        let builds: Vec<BuildInfo> = serde_json::from_value(list["result"].clone()).unwrap();
        assert_eq!(builds[0].id, BuildId(654));
        let t: BuildTarget = serde_json::from_value(calls[279]["result"].clone()).unwrap();
        assert_eq!(t.dest_tag_name, "test-rhel-7");
    }
}
