//! The hub's simulation: what [`super::MockKoji`] answers when no scripted or recorded answer
//! applies. Sessions from `login`/`sslLogin` are checked on the calls that need one; image builds
//! (`buildImageOz`, `buildImage`, `kiwiBuild`) create a parent task with one child per arch that
//! advance FREE → OPEN → CLOSED (or FAILED with a chosen fault) on their own, as a hub's builders
//! do: every call to the hub is a moment in which each unfinished task may take a step (children
//! first), optionally no sooner than a set time. A parent closes with its last child; as Koji's
//! (`wait(failany=True)`), the first child to fail cancels its unfinished siblings and fails the
//! parent with the child's own fault. Requests keep Koji's shapes (`getTaskRequest`: the parent's
//! positional arguments, the children's `[name, version, release, arch, target_info, build_tag,
//! repo_info, source…, opts]`), so the CLI labels tasks as on a hub. The release is the next free
//! one of the name and version unless given; uploads (`rawUpload`) land under `work/`; finished
//! children serve their images and an `oz-ARCH.log` under the topurl (a failed child its log
//! only), and a finished non-scratch build is registered with archives and checksums, queryable
//! and taggable. `tagBuild` answers a `tagBuild` task (failed with TagError 1003 when the build is
//! already in the tag, as the hub's task does); `tagBuild`/`untagBuild` write `tag_listing`
//! history rows (module `history`). Tags come into being when first named.

use std::collections::{BTreeMap, HashMap, HashSet};

use md5::Digest as _;
use serde_json::{Value, json};

use super::Answer;

mod history;

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
    /// The task's request as the hub keeps it (`getTaskRequest`, `request=True`).
    request: Value,
    /// What an image child builds, for the simulation: name, version, release, formats, scratch.
    spec: Value,
    /// Looks left before the next state change.
    wait: u32,
    fail: Option<String>,
    /// The fault code `getTaskResult` answers for a failed task.
    fail_code: i32,
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
    /// Every tag the hub knows, by name: tags come into being when first named.
    tag_ids: BTreeMap<String, i64>,
    /// `tag_listing` rows, in the order of their creation.
    history: Vec<history::TagListing>,
    /// The last event id.
    next_event: i64,
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
            tag_ids: BTreeMap::new(),
            history: Vec::new(),
            next_event: 40_000,
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
                    // createImage's `inst_tree`.
                    vec![args.get(4).cloned().unwrap_or(Value::Null)],
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
                    // Koji's request leaves out the kind: the task's method says it.
                    positional_request(
                        &args
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| *i != 5)
                            .map(|(_, a)| a.clone())
                            .collect::<Vec<_>>(),
                        kwargs,
                    ),
                    // The children's `ksfile`.
                    vec![args.get(4).cloned().unwrap_or(Value::Null)],
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
                    ["desc_url", "desc_path"]
                        .iter()
                        .map(|k| kwargs.get(*k).cloned().unwrap_or(Value::Null))
                        .collect(),
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
                    None => fault(1000, "No such task"),
                    Some(t) if t.state == FAILED => {
                        fault(t.fail_code, t.fail.clone().unwrap_or_else(|| "task failed".into()))
                    }
                    Some(t) if t.state == CANCELED => fault(1000, format!("Task {id} is canceled")),
                    Some(t) if t.state != CLOSED => fault(1000, format!("Task {id} is not finished")),
                    Some(t) => Answer::Value(t.result.clone().unwrap_or(Value::Null)),
                }
            }
            "listTaskOutput" => {
                // Four shapes, as the hub answers: a list of names; with `all_volumes`, name →
                // volumes; with `stat`, name → stat; with both, name → volume → stat.
                let id = arg(0, "taskID").as_i64().unwrap_or(-1);
                let flag = |i: usize, key: &str| arg(i, key).as_bool().unwrap_or(false);
                let (stat, all_volumes, strict) = (flag(1, "stat"), flag(2, "all_volumes"), flag(3, "strict"));
                if strict && !self.tasks.contains_key(&id) {
                    return Some(fault(1000, "Task doesn't exist"));
                }
                let mtime = self.tasks.get(&id).map_or(self.clock, |t| t.create_ts + 2.0);
                let prefix = format!("/kojifiles/work/tasks/{}/{id}/", id % 10000);
                let mut names: Vec<(String, usize)> = files
                    .iter()
                    .filter_map(|(path, data)| path.strip_prefix(&prefix).map(|n| (n.to_string(), data.len())))
                    .collect();
                names.sort();
                Answer::Value(list_task_output(&names, stat, all_volumes, mtime))
            }
            "downloadTaskOutput" => self.download_task_output(args, kwargs, files),
            "queryHistory" => self.query_history(args, kwargs),
            "getLastEvent" => Answer::Value(json!({"id": self.next_event, "ts": self.clock})),
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
                    .map(|(name, _)| tag_info(name, self.tag_ids.get(name).copied().unwrap_or_default()))
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
                // Any tag named exists (it comes into being); by id, only the known ones.
                let t = arg(0, "tagInfo");
                match t.as_str() {
                    Some(name) => {
                        let id = self.tag_id(name);
                        Answer::Value(tag_info(name, id))
                    }
                    None => Answer::Value(
                        self.tag_name(&t)
                            .map_or(Value::Null, |name| tag_info(&name, self.tag_ids[&name])),
                    ),
                }
            }
            "getBuildTarget" => {
                // Every target exists: it builds in `NAME-build` and lands builds in `NAME`.
                let n = arg_str(args, 0);
                let build_tag = format!("{n}-build");
                let (build_id, dest_id) = (self.tag_id(&build_tag), self.tag_id(&n));
                Answer::Value(
                    json!({"id": 3, "name": n, "build_tag": build_id, "build_tag_name": build_tag,
                                     "dest_tag": dest_id, "dest_tag_name": n}),
                )
            }
            "tagBuild" | "untagBuild" => {
                let (t, b) = (arg(0, "tag"), arg(1, "build"));
                let Some(build) = self.find_build(&b).map(|x| (x.id, x.nvr())) else {
                    return Some(fault(1000, format!("No such build: {}", history::plain(&b))));
                };
                let Some(tag) = t.as_str().map(str::to_string).or_else(|| self.tag_name(&t)) else {
                    return Some(fault(1000, format!("No such tagInfo: {t}")));
                };
                let strict = arg(2, "strict").as_bool().unwrap_or(true);
                if name == "tagBuild" {
                    self.tag_build(&tag, build)
                } else {
                    self.untag_build(&tag, build, strict)
                }
            }
            "listTagged" | "getLatestBuilds" => {
                let t = arg(0, "tag");
                let tag = t
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| self.tag_name(&t))
                    .unwrap_or_default();
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

    /// The id of tag `name`, which comes into being when first named.
    fn tag_id(&mut self, name: &str) -> i64 {
        let next = 10 + self.tag_ids.len() as i64;
        *self.tag_ids.entry(name.to_string()).or_insert(next)
    }

    /// The id of a known tag, given by name or id.
    fn known_tag_id(&self, t: &Value) -> Option<i64> {
        self.tag_name(t).and_then(|n| self.tag_ids.get(&n).copied())
    }

    /// The name of a known tag, given by name or id.
    fn tag_name(&self, t: &Value) -> Option<String> {
        match t {
            Value::String(n) => self.tag_ids.contains_key(n).then(|| n.clone()),
            _ => self
                .tag_ids
                .iter()
                .find(|(_, id)| t.as_i64() == Some(**id))
                .map(|(n, _)| n.clone()),
        }
    }

    /// `tagBuild`: as on a hub, a `tagBuild` task does the tagging (here at once) and fails, not
    /// the call, when the build is already in the tag. A `tag_listing` row records it.
    fn tag_build(&mut self, tag: &str, (build, nvr): (i64, String)) -> Answer {
        let tag_id = self.tag_id(tag);
        let request = json!([tag_id, build, false, null]);
        let list = self.tags.entry(tag.to_string()).or_default();
        if list.contains(&build) {
            let task = self.new_task(None, "tagBuild", "noarch", request, FAILED);
            if let Some(t) = self.tasks.get_mut(&task) {
                t.fail = Some(format!("build {nvr} already tagged ({tag})"));
                t.fail_code = 1003;
            }
            return Answer::Value(json!(task));
        }
        list.push(build);
        let created = self.new_event();
        self.history.push(history::TagListing {
            build_id: build,
            tag_id,
            created,
            revoked: None,
        });
        Answer::Value(json!(self.new_task(None, "tagBuild", "noarch", request, CLOSED)))
    }

    /// `untagBuild(tag, build, strict=True)`: revokes the build's `tag_listing` row; a build not
    /// in the tag is a TagError unless `strict` is false.
    fn untag_build(&mut self, tag: &str, (build, nvr): (i64, String), strict: bool) -> Answer {
        let tagged = self.tags.get(tag).is_some_and(|l| l.contains(&build));
        if !tagged {
            return if strict {
                fault(1003, format!("build {nvr} not in tag {tag}"))
            } else {
                Answer::Value(Value::Null)
            };
        }
        if let Some(l) = self.tags.get_mut(tag) {
            l.retain(|b| *b != build);
        }
        let revoked = self.new_event();
        let tag_id = self.tag_id(tag);
        if let Some(row) = self
            .history
            .iter_mut()
            .find(|r| r.build_id == build && r.tag_id == tag_id && r.revoked.is_none())
        {
            row.revoked = Some(revoked);
        }
        Answer::Value(Value::Null)
    }

    /// `downloadTaskOutput(taskID, fileName, offset=0, size=-1, volume=None)`: a chunk of a task's
    /// output as a base64 *string* (the hub encodes it itself, not as an XML-RPC `<base64>`; the
    /// client decodes it with `base64.b64decode`). A negative offset counts from the end; an
    /// offset past the end answers an empty chunk; `size` -1 reads to the end.
    fn download_task_output(&self, args: &[Value], kwargs: &serde_json::Map<String, Value>, files: &Files) -> Answer {
        let arg = |i: usize, key: &str| args.get(i).or_else(|| kwargs.get(key)).cloned().unwrap_or(Value::Null);
        let id = int_arg(&arg(0, "taskID"), -1);
        let name = arg(1, "fileName").as_str().unwrap_or_default().to_string();
        let (offset, size) = (int_arg(&arg(2, "offset"), 0), int_arg(&arg(3, "size"), -1));
        if let Some(v) = arg(4, "volume").as_str().filter(|v| !v.is_empty() && *v != "DEFAULT") {
            return fault(1000, format!("No such volume: {v}"));
        }
        if name.contains("..") {
            return fault(1000, format!("Invalid file name: {name}"));
        }
        let Some(data) = files.get(&format!("/kojifiles/work/tasks/{}/{id}/{name}", id % 10000)) else {
            return fault(1000, format!("no file \"{name}\" output by task {id}"));
        };
        let len = data.len();
        let start = match usize::try_from(offset.unsigned_abs()) {
            Ok(n) if offset >= 0 => n.min(len),
            Ok(n) if n <= len => len - n,
            // Python's seek before the start of the file; the hub answers the OSError as is.
            _ => return fault(1, "<class 'OSError'>: [Errno 22] Invalid argument"),
        };
        let end = usize::try_from(size).map_or(len, |n| start.saturating_add(n).min(len));
        let chunk = &data[start..end.max(start)];
        Answer::Value(json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            chunk
        )))
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
                spec: Value::Null,
                wait: self.looks_per_state,
                fail: None,
                fail_code: 1000,
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
        source: Vec<Value>,
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
        // The children's request, as Koji's image tasks pass it: name, version, release, arch,
        // the target, its build tag and repo, the source (tree, kickstart or description), opts.
        let target = match parent_method {
            "kiwiBuild" => request.get(0),
            _ => request.get(3),
        }
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
        let build_tag = format!("{target}-build");
        let (build_tag_id, dest_tag_id) = (self.tag_id(&build_tag), self.tag_id(&target));
        let target_info = json!({"id": 3, "name": target, "build_tag": build_tag_id, "build_tag_name": build_tag,
                                 "dest_tag": dest_tag_id, "dest_tag_name": target});
        let repo = json!({"id": 70, "state": 1, "tag_id": build_tag_id, "tag_name": build_tag,
                          "create_event": self.next_event, "create_ts": self.clock, "dist": false});
        let parent = self.new_task(None, parent_method, "noarch", request, FREE);
        for arch in arches {
            let mut child_request = vec![
                json!(name),
                json!(version),
                json!(release),
                json!(arch),
                target_info.clone(),
                tag_info(&build_tag, build_tag_id),
                repo.clone(),
            ];
            child_request.extend(source.iter().cloned());
            child_request.push(opts.clone());
            let child = self.new_task(Some(parent), child_method, arch, Value::Array(child_request), FREE);
            if let Some(t) = self.tasks.get_mut(&child) {
                t.spec = json!({"name": name, "version": version, "release": release, "arch": arch,
                                "formats": formats, "scratch": scratch});
            }
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
            .filter(|t| t.spec["name"] == name && t.spec["version"] == version)
            .filter(|t| !t.spec["scratch"].as_bool().unwrap_or(false))
            .filter_map(|t| t.spec["release"].as_str().map(str::to_string));
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
                if let Some(why) = &t.fail {
                    // A failed build leaves its log behind, as Oz's does: the CLI points to it.
                    files.insert(
                        format!("/kojifiles/work/tasks/{}/{id}/oz-{}.log", id % 10000, t.arch),
                        format!("building for {}\nerror: {why}\n", t.arch).into_bytes(),
                    );
                    t.state = FAILED;
                } else {
                    t.state = CLOSED;
                    self.finish_child(id, files);
                }
            }
            (_, None) => {
                // Koji's parent waits with `failany`: the first child that fails (or is
                // cancelled) cancels its unfinished siblings and fails the parent with the
                // child's own fault; else it closes with its last child.
                let children: Vec<(i64, i64, i32, Option<String>)> = self
                    .tasks
                    .values()
                    .filter(|c| c.parent == Some(id))
                    .map(|c| (c.id, c.state, c.fail_code, c.fail.clone()))
                    .collect();
                let broken = children.iter().find_map(|(c, state, code, why)| match *state {
                    FAILED => Some((*code, why.clone().unwrap_or_else(|| "task failed".into()))),
                    CANCELED => Some((1000, format!("Task {c} is canceled"))),
                    _ => None,
                });
                let ids: Vec<i64> = children.iter().map(|c| c.0).collect();
                if let Some((code, why)) = broken {
                    for c in &ids {
                        if let Some(t) = self.tasks.get_mut(c)
                            && matches!(t.state, FREE | OPEN)
                        {
                            t.state = CANCELED;
                        }
                    }
                    if let Some(p) = self.tasks.get_mut(&id) {
                        p.state = FAILED;
                        p.fail = Some(why);
                        p.fail_code = code;
                    }
                } else if children.iter().all(|c| c.1 == CLOSED) {
                    if let Some(p) = self.tasks.get_mut(&id) {
                        p.state = CLOSED;
                    }
                    self.register_build(id, &ids, files);
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
        let r = t.spec.clone();
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
            let r = &t.spec;
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

/// The one user of the simulated hub, owner of every task and build, whoever logs in.
const USER_ID: i64 = 1;
const USER_NAME: &str = "releasebot";

fn user_info() -> Value {
    json!({"id": USER_ID, "name": USER_NAME, "status": 0, "usertype": 0, "krb_principals": []})
}

fn tag_info(name: &str, id: i64) -> Value {
    json!({"id": id, "name": name, "arches": "x86_64 aarch64", "locked": false, "perm": null,
           "perm_id": null, "maven_support": false, "maven_include_all": false, "extra": {}})
}

/// `listTaskOutput`'s answer for `(name, size)` files: names; with `all_volumes`, name → volumes;
/// with `stat`, name → stat (sizes as strings, times as doubles); with both, name → volume → stat.
fn list_task_output(files: &[(String, usize)], stat: bool, all_volumes: bool, mtime: f64) -> Value {
    if !stat && !all_volumes {
        return Value::Array(files.iter().map(|(n, _)| json!(n)).collect());
    }
    let entry = |size: usize| {
        let st = json!({"st_size": size.to_string(), "st_atime": mtime, "st_mtime": mtime, "st_ctime": mtime});
        match (stat, all_volumes) {
            (true, true) => json!({"DEFAULT": st}),
            (true, false) => st,
            _ => json!(["DEFAULT"]),
        }
    };
    Value::Object(files.iter().map(|(n, size)| (n.clone(), entry(*size))).collect())
}

/// An integer argument as the hub casts it: a number or a numeric string; `default` when absent.
fn int_arg(v: &Value, default: i64) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(default)
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
