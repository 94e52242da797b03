//! The hub's simulation: what [`super::MockKoji`] answers when no scripted or recorded answer
//! applies. Sessions from `login`/`sslLogin` are checked on the calls that need one; image builds
//! (`buildImageOz`, `buildImage`, `kiwiBuild`) create a parent task with one child per arch that
//! advance FREE → OPEN → CLOSED (or FAILED with a chosen fault) on their own, as a hub's builders
//! do: every call to the hub is a moment in which each unfinished task may take a step (children
//! first; a parent finishes with its last child), optionally no sooner than a set time; the
//! release is the next free one of the name and version unless given; uploads (`rawUpload`) land
//! under `work/`;
//! finished children serve their images under the topurl, and a finished non-scratch build is
//! registered with archives and checksums, queryable and taggable.

use std::collections::{BTreeMap, HashMap, HashSet};

use md5::Digest as _;
use serde_json::{Value, json};

use super::Answer;

/// Koji's task states.
const FREE: i64 = 0;
const OPEN: i64 = 1;
const CLOSED: i64 = 2;
const CANCELED: i64 = 3;
const FAILED: i64 = 5;

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) id: i64,
    parent: Option<i64>,
    pub(crate) method: String,
    arch: String,
    pub(crate) state: i64,
    request: Value,
    /// Looks left before the next state change.
    wait: u32,
    fail: Option<String>,
    result: Option<Value>,
    create_ts: f64,
    /// When it entered its state.
    since: std::time::Instant,
}

#[derive(Debug, Clone)]
struct Build {
    id: i64,
    name: String,
    version: String,
    release: String,
    task_id: i64,
    archives: Vec<Value>,
    create_ts: f64,
}

impl Build {
    fn nvr(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.release)
    }
    fn info(&self) -> Value {
        json!({"id": self.id, "build_id": self.id, "name": self.name, "version": self.version,
               "release": self.release, "nvr": self.nvr(), "state": 1, "task_id": self.task_id,
               "owner_name": "releasebot", "creation_ts": self.create_ts, "completion_ts": self.create_ts,
               "volume_name": "DEFAULT", "epoch": null, "package_name": self.name, "extra": {"typeinfo": {"image": {}}}})
    }
}

/// The simulated hub.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) enabled: bool,
    next_task: i64,
    next_build: i64,
    pub(crate) tasks: BTreeMap<i64, Task>,
    builds: Vec<Build>,
    tags: BTreeMap<String, Vec<i64>>,
    sessions: HashMap<i64, String>,
    expired: HashSet<i64>,
    /// Looks a task spends in each state.
    pub(crate) looks_per_state: u32,
    /// The least time a task spends in each state, as well.
    pub(crate) state_duration: Option<std::time::Duration>,
    /// Faults for the next builds' children: (arch or any, message).
    pub(crate) failures: Vec<(Option<String>, String)>,
    /// Size of each simulated image.
    pub(crate) image_size: usize,
    clock: f64,
}

impl Default for Sim {
    fn default() -> Sim {
        Sim {
            enabled: false,
            next_task: 1000,
            next_build: 500,
            tasks: BTreeMap::new(),
            builds: Vec::new(),
            tags: BTreeMap::new(),
            sessions: HashMap::new(),
            expired: HashSet::new(),
            looks_per_state: 1,
            state_duration: None,
            failures: Vec::new(),
            image_size: 64 << 10,
            // Koji stamps builds and tasks with the hub's wall clock: callers filter with times
            // from theirs (`createdAfter: now - 24 h`), so the simulation starts at real time.
            clock: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1_764_000_000.0, |d| d.as_secs() as f64),
        }
    }
}

/// What a simulated call did to the file tree.
pub(crate) type Files = HashMap<String, Vec<u8>>;

fn fault(code: i32, msg: impl Into<String>) -> Answer {
    Answer::Fault(code, msg.into())
}

fn arg_str(args: &[Value], i: usize) -> String {
    args.get(i).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn arches_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => s
            .split([',', ' '])
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The image of `arch` in `format`: deterministic bytes of the configured size.
pub(crate) fn image_bytes(nvr: &str, arch: &str, format: &str, size: usize) -> Vec<u8> {
    let line = format!("imagekit mock image {nvr} {arch} {format}\n");
    line.bytes().cycle().take(size.max(line.len())).collect()
}

fn ext(format: &str) -> &str {
    match format {
        "raw-xz" => "raw.xz",
        "docker" => "tar.xz",
        f => f,
    }
}

impl Sim {
    fn tick_clock(&mut self) -> f64 {
        self.clock += 1.0;
        self.clock
    }

    pub(crate) fn check_session(&self, headers: &BTreeMap<String, String>) -> Result<(), Answer> {
        let id = headers.get("koji-session-id").and_then(|v| v.parse::<i64>().ok());
        let key = headers.get("koji-session-key");
        match (id, key) {
            (Some(id), Some(_)) if self.expired.contains(&id) => Err(fault(1007, format!("session {id} expired"))),
            (Some(id), Some(key)) if self.sessions.get(&id) == Some(key) => Ok(()),
            (Some(_), Some(_)) => Err(fault(1002, "invalid session or session key")),
            _ => Err(fault(1002, "Not logged-in")),
        }
    }

    /// Every issued session expires (the client should log in again).
    pub(crate) fn expire_sessions(&mut self) {
        self.expired.extend(self.sessions.keys().copied());
    }

    /// The answer to `name`, or `None` when the simulation does not know the method.
    pub(crate) fn answer(
        &mut self,
        name: &str,
        args: &[Value],
        kwargs: &serde_json::Map<String, Value>,
        headers: &BTreeMap<String, String>,
        files: &mut Files,
    ) -> Option<Answer> {
        const NEEDS_SESSION: &[&str] = &[
            "buildImageOz",
            "buildImage",
            "kiwiBuild",
            "tagBuild",
            "untagBuild",
            "cancelTask",
            "getLoggedInUser",
            "checkUpload",
        ];
        // The hub's builders work on their own: every call to the hub is a moment in which each
        // unfinished task may move on, whichever task the caller watches. A parent follows its
        // children.
        self.tick_all(files);
        if NEEDS_SESSION.contains(&name)
            && let Err(a) = self.check_session(headers)
        {
            return Some(a);
        }
        let arg = |i: usize, key: &str| args.get(i).or_else(|| kwargs.get(key)).cloned().unwrap_or(Value::Null);
        Some(match name {
            "login" | "sslLogin" => {
                let id = 7 + self.sessions.len() as i64;
                let key = format!("{id}-mock{}", self.sessions.len() * 7919 % 10_000);
                self.sessions.insert(id, key.clone());
                Answer::Value(json!({"session-id": id, "session-key": key, "header-auth": true}))
            }
            "logout" => Answer::Value(Value::Null),
            "getLoggedInUser" => Answer::Value(user_info()),
            "getUser" => {
                let u = arg(0, "userInfo");
                let known = u.is_null() || u.as_i64() == Some(1) || u.as_str() == Some("releasebot");
                Answer::Value(if known { user_info() } else { Value::Null })
            }
            "buildImageOz" => {
                let opts = kwargs.get("opts").cloned().unwrap_or_else(|| json!({}));
                let formats = match opts.get("format") {
                    Some(f) => arches_of(Some(f)),
                    None => vec!["qcow2".into()],
                };
                self.submit(
                    "image",
                    "createImage",
                    &arg_str(args, 0),
                    &arg_str(args, 1),
                    &arches_of(args.get(2)),
                    &formats,
                    &opts,
                    positional_request(args, kwargs),
                )
            }
            "buildImage" => {
                let opts = kwargs.get("opts").cloned().unwrap_or_else(|| json!({}));
                let kind = arg_str(args, 5);
                let format = if kind == "appliance" { "raw" } else { "iso" };
                self.submit(
                    // Koji's parent task is named after the kind (`livemedia`), its children
                    // after LiveCDTask, ApplianceTask and LiveMediaTask's methods.
                    &kind,
                    // Koji's LiveCDTask, ApplianceTask and LiveMediaTask children.
                    match kind.as_str() {
                        "livecd" => "createLiveCD",
                        "appliance" => "createAppliance",
                        _ => "createLiveMedia",
                    },
                    &arg_str(args, 0),
                    &arg_str(args, 1),
                    &arches_of(args.get(2)),
                    &[format.to_string()],
                    &opts,
                    positional_request(args, kwargs),
                )
            }
            "kiwiBuild" => {
                let path = kwargs.get("desc_path").and_then(Value::as_str).unwrap_or("image.kiwi");
                let name = path
                    .rsplit('/')
                    .next()
                    .unwrap_or(path)
                    .trim_end_matches(".kiwi")
                    .to_string();
                let version = kwargs.get("version").and_then(Value::as_str).unwrap_or("1").to_string();
                self.submit(
                    "kiwiBuild",
                    "createKiwiImage",
                    &name,
                    &version,
                    &arches_of(kwargs.get("arches")),
                    &["qcow2".to_string()],
                    &Value::Object(kwargs.clone()),
                    kiwi_request(kwargs),
                )
            }
            "getTaskInfo" => {
                let id = arg(0, "task_id").as_i64().unwrap_or(-1);
                let request = arg(1, "request").as_bool().unwrap_or(false);
                match self.tasks.get(&id) {
                    Some(t) => Answer::Value(self.task_info(t, request)),
                    None => Answer::Value(Value::Null),
                }
            }
            "getTaskRequest" => {
                let id = arg(0, "taskId").as_i64().unwrap_or(-1);
                match self.tasks.get(&id) {
                    Some(t) => Answer::Value(t.request.clone()),
                    None => fault(1000, format!("No such task: {id}")),
                }
            }
            "getTaskChildren" => {
                let id = arg(0, "task_id").as_i64().unwrap_or(-1);
                let parent_open = self.tasks.get(&id).is_some_and(|t| t.state != FREE);
                let children: Vec<Value> = self
                    .tasks
                    .values()
                    .filter(|t| parent_open && t.parent == Some(id))
                    .map(|t| self.task_info(t, false))
                    .collect();
                Answer::Value(Value::Array(children))
            }
            "getTaskResult" => {
                let id = arg(0, "task_id").as_i64().unwrap_or(-1);
                match self.tasks.get(&id) {
                    None => fault(1000, format!("No such task: {id}")),
                    Some(t) if t.state == FAILED => fault(1000, t.fail.clone().unwrap_or_else(|| "task failed".into())),
                    Some(t) if t.state == CANCELED => fault(1000, format!("task {id} was canceled")),
                    Some(t) if t.state != CLOSED => fault(1000, format!("Task {id} is not finished")),
                    Some(t) => Answer::Value(t.result.clone().unwrap_or(Value::Null)),
                }
            }
            "listTaskOutput" => {
                let id = arg(0, "task_id").as_i64().unwrap_or(-1);
                let stat = kwargs.get("stat").and_then(Value::as_bool).unwrap_or(false);
                let prefix = format!("/kojifiles/work/tasks/{}/{id}/", id % 10000);
                let mut out = serde_json::Map::new();
                for (path, data) in files.iter() {
                    if let Some(name) = path.strip_prefix(&prefix) {
                        let v = if stat {
                            json!({"DEFAULT": {"st_size": data.len().to_string(), "st_mtime": 0}})
                        } else {
                            json!(["DEFAULT"])
                        };
                        out.insert(name.to_string(), v);
                    }
                }
                Answer::Value(Value::Object(out))
            }
            "cancelTask" => {
                let id = arg(0, "task_id").as_i64().unwrap_or(-1);
                let ids: Vec<i64> = self
                    .tasks
                    .values()
                    .filter(|t| t.id == id || t.parent == Some(id))
                    .map(|t| t.id)
                    .collect();
                for i in ids {
                    if let Some(t) = self.tasks.get_mut(&i)
                        && !matches!(t.state, CLOSED | FAILED)
                    {
                        t.state = CANCELED;
                    }
                }
                Answer::Value(Value::Null)
            }
            "listTasks" => {
                // Koji's filters (`opts`): state, parent, method, owner; without a state or a
                // parent, every task. The koji CLI's `list-tasks` asks for the open ones.
                let opts = arg(0, "opts");
                let states: Option<Vec<i64>> = opts
                    .get("state")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_i64).collect());
                let parent = opts.get("parent").and_then(Value::as_i64);
                let method = opts.get("method").and_then(Value::as_str);
                let list: Vec<Value> = self
                    .tasks
                    .values()
                    .filter(|t| states.as_ref().is_none_or(|s| s.contains(&t.state)))
                    .filter(|t| parent.is_none_or(|p| t.parent == Some(p)))
                    .filter(|t| method.is_none_or(|m| t.method == m))
                    .map(|t| self.task_info(t, true))
                    .collect();
                Answer::Value(Value::Array(list))
            }
            "checkUpload" => {
                let (dir, name) = (arg(0, "path"), arg(1, "name"));
                let path = format!(
                    "/kojifiles/work/{}/{}",
                    dir.as_str().unwrap_or_default(),
                    name.as_str().unwrap_or_default()
                );
                match files.get(&path) {
                    None => Answer::Value(Value::Null),
                    Some(data) => Answer::Value(json!({"size": data.len().to_string(), "mtime": self.clock,
                        "name": name, "hexdigest": super::adler32_hex(data)})),
                }
            }
            "getHost" => {
                let h = arg(0, "hostInfo");
                if h.as_i64() == Some(BUILDER_ID) || h.as_str() == Some(BUILDER) {
                    Answer::Value(builder_info())
                } else {
                    Answer::Value(Value::Null)
                }
            }
            "listHosts" => Answer::Value(json!([builder_info()])),
            // Image builds run in the builder's own root here: no Koji buildroots to list.
            "listBuildroots" => Answer::Value(json!([])),
            "listTags" => {
                let b = arg(0, "build");
                let build = self.find_build(&b).map(|x| x.id);
                let list: Vec<Value> = self
                    .tags
                    .iter()
                    .filter(|(_, ids)| b.is_null() || build.is_some_and(|id| ids.contains(&id)))
                    .map(|(name, _)| tag_info(name))
                    .collect();
                Answer::Value(Value::Array(list))
            }
            // Every build here is an image build: not Maven, not Windows, and with no RPMs.
            "getMavenBuild" | "getWinBuild" => Answer::Value(Value::Null),
            "getImageBuild" => {
                let b = arg(0, "buildInfo");
                Answer::Value(self.find_build(&b).map_or(Value::Null, |x| json!({"build_id": x.id})))
            }
            "getBuildType" => {
                let b = arg(0, "buildInfo");
                Answer::Value(self.find_build(&b).map_or(Value::Null, |_| json!({"image": {}})))
            }
            "listRPMs" => Answer::Value(json!([])),
            "getBuild" => {
                let b = arg(0, "buildInfo");
                Answer::Value(self.find_build(&b).map(Build::info).unwrap_or(Value::Null))
            }
            "listBuilds" => {
                let pattern = kwargs.get("pattern").and_then(Value::as_str);
                let after = kwargs.get("createdAfter").and_then(Value::as_f64);
                let list: Vec<Value> = self
                    .builds
                    .iter()
                    .filter(|b| pattern.is_none_or(|p| glob(p, &b.nvr())))
                    .filter(|b| after.is_none_or(|a| b.create_ts > a))
                    .map(Build::info)
                    .collect();
                Answer::Value(Value::Array(list))
            }
            "listArchives" => {
                let id = kwargs
                    .get("buildID")
                    .and_then(Value::as_i64)
                    .or_else(|| args.first().and_then(Value::as_i64));
                // `type` is the build type (`maven`, `win`, `image`): here all are images.
                let btype = kwargs.get("type").and_then(Value::as_str);
                let list = self
                    .builds
                    .iter()
                    .find(|b| Some(b.id) == id)
                    .filter(|_| btype.is_none_or(|t| t == "image"))
                    .map(|b| b.archives.clone())
                    .unwrap_or_default();
                Answer::Value(Value::Array(list))
            }
            "getTag" => {
                let t = arg(0, "taginfo");
                let name = t.as_str().map(str::to_string).unwrap_or_else(|| t.to_string());
                Answer::Value(tag_info(&name))
            }
            "getBuildTarget" => {
                let n = arg_str(args, 0);
                Answer::Value(
                    json!({"id": 3, "name": n, "build_tag": 11, "build_tag_name": format!("{n}-build"),
                                      "dest_tag": 12, "dest_tag_name": n}),
                )
            }
            "tagBuild" | "untagBuild" => {
                let (tag, nvr) = (arg_str(args, 0), arg_str(args, 1));
                let Some(b) = self.builds.iter().find(|b| b.nvr() == nvr || b.id.to_string() == nvr) else {
                    return Some(fault(1000, format!("No such build: {nvr}")));
                };
                let id = b.id;
                let list = self.tags.entry(tag.clone()).or_default();
                if name == "tagBuild" {
                    if list.contains(&id) {
                        return Some(fault(1003, format!("build {nvr} already tagged ({tag})")));
                    }
                    list.push(id);
                    let task = self.new_task(None, "tagBuild", "noarch", json!([tag, nvr]), CLOSED);
                    Answer::Value(json!(task))
                } else {
                    list.retain(|b| *b != id);
                    Answer::Value(Value::Null)
                }
            }
            "listTagged" | "getLatestBuilds" => {
                let tag = arg_str(args, 0);
                let ids = self.tags.get(&tag).cloned().unwrap_or_default();
                let mut list: Vec<Value> = self
                    .builds
                    .iter()
                    .filter(|b| ids.contains(&b.id))
                    .map(|b| {
                        let mut v = b.info();
                        v["tag_name"] = json!(tag);
                        v
                    })
                    .collect();
                list.reverse();
                if name == "getLatestBuilds" {
                    list.truncate(1);
                }
                Answer::Value(Value::Array(list))
            }
            _ => return None,
        })
    }

    fn new_task(&mut self, parent: Option<i64>, method: &str, arch: &str, request: Value, state: i64) -> i64 {
        self.next_task += 1;
        let id = self.next_task;
        let ts = self.tick_clock();
        self.tasks.insert(
            id,
            Task {
                id,
                parent,
                method: method.into(),
                arch: arch.into(),
                state,
                request,
                wait: self.looks_per_state,
                fail: None,
                result: None,
                create_ts: ts,
                since: std::time::Instant::now(),
            },
        );
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        parent_method: &str,
        child_method: &str,
        name: &str,
        version: &str,
        arches: &[String],
        formats: &[String],
        opts: &Value,
        request: Value,
    ) -> Answer {
        if name.is_empty() || arches.is_empty() {
            return fault(1000, "name and at least one arch are required");
        }
        let release = match opts.get("release").and_then(Value::as_str) {
            Some(r) => r.to_string(),
            None => self.next_release(name, version),
        };
        let scratch = opts.get("scratch").and_then(Value::as_bool).unwrap_or(false);
        let nvr = format!("{name}-{version}-{release}");
        if !scratch && self.builds.iter().any(|b| b.nvr() == nvr) {
            return fault(1000, format!("Build already exists: {nvr}"));
        }
        let parent = self.new_task(None, parent_method, "noarch", request, FREE);
        for arch in arches {
            let child = self.new_task(
                Some(parent),
                child_method,
                arch,
                json!({"name": name, "version": version, "release": release, "arch": arch,
                       "formats": formats, "scratch": scratch}),
                FREE,
            );
            let i = self
                .failures
                .iter()
                .position(|(a, _)| a.as_deref().is_none_or(|a| a == arch));
            if let Some(i) = i {
                let (_, msg) = self.failures.remove(i);
                if let Some(t) = self.tasks.get_mut(&child) {
                    t.fail = Some(msg);
                }
            }
        }
        Answer::Value(json!(parent))
    }

    fn find_build(&self, b: &Value) -> Option<&Build> {
        self.builds.iter().find(|x| match b {
            Value::String(s) => x.nvr() == *s || x.id.to_string() == *s,
            Value::Number(n) => n.as_i64() == Some(x.id),
            _ => false,
        })
    }

    /// Each unfinished task one look further: children first, so that a parent whose last
    /// child just finished finishes in the same moment.
    fn tick_all(&mut self, files: &mut Files) {
        let mut ids: Vec<(bool, i64)> = self
            .tasks
            .values()
            .filter(|t| !matches!(t.state, CLOSED | FAILED | CANCELED))
            .map(|t| (t.parent.is_none(), t.id))
            .collect();
        ids.sort();
        for (_, id) in ids {
            self.look(id, files);
        }
    }

    /// The release Koji picks when none is given: one above the highest numeric release of
    /// `name-version`, among its builds and the builds under way.
    fn next_release(&self, name: &str, version: &str) -> String {
        let built = self
            .builds
            .iter()
            .filter(|b| b.name == name && b.version == version)
            .map(|b| b.release.clone());
        let building = self
            .tasks
            .values()
            .filter(|t| t.parent.is_some() && !matches!(t.state, FAILED | CANCELED))
            .filter(|t| t.request["name"] == name && t.request["version"] == version)
            .filter(|t| !t.request["scratch"].as_bool().unwrap_or(false))
            .filter_map(|t| t.request["release"].as_str().map(str::to_string));
        let highest = built
            .chain(building)
            .filter_map(|r| r.split('.').next().and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        (highest + 1).to_string()
    }

    fn task_info(&self, t: &Task, request: bool) -> Value {
        let mut v = json!({"id": t.id, "method": t.method, "state": t.state, "parent": t.parent,
            "arch": t.arch, "label": if t.parent.is_some() { Value::from(t.arch.clone()) } else { Value::Null },
            "owner": 1, "owner_name": "releasebot", "owner_type": 0,
            "host_id": if t.state == FREE { Value::Null } else { json!(BUILDER_ID) },
            "create_ts": t.create_ts, "start_ts": if t.state == FREE { Value::Null } else { json!(t.create_ts + 1.0) },
            "completion_ts": if matches!(t.state, CLOSED | FAILED | CANCELED) { json!(t.create_ts + 2.0) } else { Value::Null },
            "priority": 20, "channel_id": 1, "waiting": null, "awaited": null});
        if request {
            v["request"] = t.request.clone();
        }
        v
    }

    /// One look at a task: it moves on when it has been looked at enough.
    fn look(&mut self, id: i64, files: &mut Files) {
        let looks = self.looks_per_state;
        let least = self.state_duration;
        let Some(t) = self.tasks.get_mut(&id) else { return };
        if matches!(t.state, CLOSED | FAILED | CANCELED) {
            return;
        }
        if t.wait > 1 {
            t.wait -= 1;
            return;
        }
        if least.is_some_and(|d| t.since.elapsed() < d) {
            return;
        }
        t.wait = looks;
        let before = t.state;
        match (t.state, t.parent) {
            (FREE, _) => t.state = OPEN,
            (_, Some(_)) => {
                if t.fail.is_some() {
                    t.state = FAILED;
                } else {
                    t.state = CLOSED;
                    self.finish_child(id, files);
                }
            }
            (_, None) => {
                let children: Vec<i64> = self
                    .tasks
                    .values()
                    .filter(|c| c.parent == Some(id))
                    .map(|c| c.id)
                    .collect();
                let states: Vec<i64> = children
                    .iter()
                    .filter_map(|c| self.tasks.get(c))
                    .map(|c| c.state)
                    .collect();
                if states.iter().all(|s| matches!(*s, CLOSED | FAILED | CANCELED)) {
                    let failed = self
                        .tasks
                        .values()
                        .find(|c| c.parent == Some(id) && c.state == FAILED)
                        .map(|c| (c.id, c.fail.clone().unwrap_or_default()));
                    let succeeded = failed.is_none();
                    if let Some(p) = self.tasks.get_mut(&id) {
                        match failed {
                            Some((child, msg)) => {
                                p.state = FAILED;
                                p.fail = Some(format!("subtask {child} failed: {msg}"));
                            }
                            None => p.state = CLOSED,
                        }
                    }
                    if succeeded {
                        self.register_build(id, &children, files);
                    }
                }
            }
        }
        if let Some(t) = self.tasks.get_mut(&id)
            && t.state != before
        {
            t.since = std::time::Instant::now();
        }
    }

    fn finish_child(&mut self, id: i64, files: &mut Files) {
        let size = self.image_size;
        let Some(t) = self.tasks.get_mut(&id) else { return };
        let r = t.request.clone();
        let (name, version, release, arch) = (
            r["name"].as_str().unwrap_or_default().to_string(),
            r["version"].as_str().unwrap_or_default().to_string(),
            r["release"].as_str().unwrap_or_default().to_string(),
            t.arch.clone(),
        );
        let nvr = format!("{name}-{version}-{release}");
        let mut names = Vec::new();
        for f in arches_of(r.get("formats")) {
            let file = format!("{nvr}.{arch}.{}", ext(&f));
            files.insert(
                format!("/kojifiles/work/tasks/{}/{id}/{file}", id % 10000),
                image_bytes(&nvr, &arch, &f, size),
            );
            names.push(file);
        }
        let log = format!("oz-{arch}.log");
        files.insert(
            format!("/kojifiles/work/tasks/{}/{id}/{log}", id % 10000),
            format!("building {nvr} for {arch}\ndone\n").into_bytes(),
        );
        t.result = Some(
            json!({"arch": arch, "name": name, "version": version, "release": release,
            "task_id": id, "files": names, "logs": [log], "rpmlist": []}),
        );
    }

    fn register_build(&mut self, parent: i64, children: &[i64], files: &mut Files) {
        let mut archives = Vec::new();
        let mut nvr_parts = None;
        let mut scratch = false;
        for c in children {
            let Some(t) = self.tasks.get(c) else { continue };
            let r = &t.request;
            scratch = r["scratch"].as_bool().unwrap_or(false);
            let (name, version, release) = (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["version"].as_str().unwrap_or_default().to_string(),
                r["release"].as_str().unwrap_or_default().to_string(),
            );
            let names: Vec<String> = t
                .result
                .as_ref()
                .and_then(|v| v["files"].as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            for f in names {
                let Some(data) = files
                    .get(&format!("/kojifiles/work/tasks/{}/{c}/{f}", c % 10000))
                    .cloned()
                else {
                    continue;
                };
                let md5 = hex::encode(md5::Md5::digest(&data));
                let type_name = f.rsplit('.').next().unwrap_or("").to_string();
                archives.push(json!({"id": 9000 + archives.len(), "filename": f, "size": data.len(),
                    "checksum": md5, "checksum_type": 0, "type_name": type_name,
                    "type_id": 30 + type_name.len(), "type_extensions": type_name,
                    "type_description": format!("{type_name} image"),
                    "btype": "image", "btype_id": 4, "metadata_only": false, "extra": {"image": {"arch": t.arch}},
                    "buildroot_id": null, "compression_type": null,
                    "build_id": self.next_build + 1, "arch": t.arch}));
                files.insert(
                    format!("/kojifiles/packages/{name}/{version}/{release}/images/{f}"),
                    data,
                );
            }
            nvr_parts = Some((name, version, release));
        }
        let Some((name, version, release)) = nvr_parts.filter(|_| !scratch) else {
            return;
        };
        self.next_build += 1;
        let ts = self.tick_clock();
        self.builds.push(Build {
            id: self.next_build,
            name,
            version,
            release,
            task_id: parent,
            archives,
            create_ts: ts,
        });
    }

    /// The simulated time (seconds since the epoch) of the last event.
    pub(crate) fn now(&self) -> f64 {
        self.clock
    }

    /// `(nvr, tags)` of every build.
    pub(crate) fn builds(&self) -> Vec<(String, Vec<String>)> {
        self.builds
            .iter()
            .map(|b| {
                let tags = self
                    .tags
                    .iter()
                    .filter(|(_, ids)| ids.contains(&b.id))
                    .map(|(t, _)| t.clone())
                    .collect();
                (b.nvr(), tags)
            })
            .collect()
    }
}

/// A task's request as Koji keeps it: the call's positional arguments, then its `opts`.
fn positional_request(args: &[Value], kwargs: &serde_json::Map<String, Value>) -> Value {
    let mut request = args.to_vec();
    if let Some(opts) = kwargs.get("opts") {
        request.push(opts.clone());
    }
    Value::Array(request)
}

/// `kiwiBuild`'s request: `[target, arches, desc_url, desc_path, opts]`.
fn kiwi_request(kwargs: &serde_json::Map<String, Value>) -> Value {
    let get = |k: &str| kwargs.get(k).cloned().unwrap_or(Value::Null);
    let opts: serde_json::Map<String, Value> = kwargs
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "target" | "arches" | "desc_url" | "desc_path" | "priority"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!([get("target"), get("arches"), get("desc_url"), get("desc_path"), opts])
}

/// The simulated hub's one builder.
const BUILDER_ID: i64 = 2;
const BUILDER: &str = "builder-01.kit.invalid";

fn builder_info() -> Value {
    json!({"id": BUILDER_ID, "name": BUILDER, "user_id": 3, "arches": "x86_64 aarch64", "task_load": 0.0,
           "capacity": 2.0, "enabled": true, "ready": true, "comment": null, "description": null})
}

/// The one user of the simulated hub, owner of every task and build.
fn user_info() -> Value {
    json!({"id": 1, "name": "releasebot", "status": 0, "usertype": 0, "krb_principals": []})
}

fn tag_info(name: &str) -> Value {
    json!({"id": 10 + name.len(), "name": name, "arches": "x86_64 aarch64", "locked": false, "perm": null,
           "perm_id": null, "maven_support": false, "maven_include_all": false, "extra": {}})
}

/// `*` and `?` globbing, as Koji's `pattern` filter.
fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}
