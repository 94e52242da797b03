//! Koji's versioned tables and `queryHistory`, as the simulated hub keeps them.
//!
//! A hub records every change to its versioned tables as an event (an id and a time) and keeps
//! revoked rows: a row has a `create_event` and, once revoked, a `revoke_event`; `active` is
//! `true` while the row holds and null (not false) after. Of those tables the simulation keeps
//! `tag_listing` (a row per tagging, created by `tagBuild`, revoked by `untagBuild`); the other
//! tables exist and answer empty lists.
//!
//! `queryHistory(tables=None, **filters)` answers `{table: [row, ...]}` for every table the
//! filters apply to: a table-specific filter (`build`, `tag`, `package`, `user`, `host`, …) leaves
//! out the tables without that column, as the hub does. Time filters (`before`, `after`,
//! `beforeEvent`, `afterEvent`) and `editor` match a row whose creation *or* revocation matches,
//! and add `_created_*`/`_revoked_*` fields saying which did: `koji list-history` reads them to
//! print only the matching half.

use serde_json::{Map, Value, json};

use super::{Answer, Sim, USER_ID, USER_NAME, fault};

/// The hub's versioned tables (Koji 1.35–1.36), with the table-specific filters of
/// `queryHistory` that apply to each.
const TABLES: &[(&str, &[&str])] = &[
    ("build_target_config", &["tag", "build_target"]),
    ("cg_users", &["user", "cg"]),
    ("external_repo_config", &["external_repo"]),
    ("external_repo_data", &["external_repo"]),
    ("group_config", &["tag", "group"]),
    ("group_package_listing", &["tag", "group", "package"]),
    ("group_req_listing", &["tag", "group"]),
    ("host_channels", &["host", "channel"]),
    ("host_config", &["host"]),
    ("tag_config", &["tag", "permission"]),
    ("tag_external_repos", &["tag", "external_repo"]),
    ("tag_extra", &["tag", "xkey"]),
    ("tag_inheritance", &["tag"]),
    ("tag_listing", &["tag", "build", "package"]),
    ("tag_package_owners", &["tag", "package", "user"]),
    ("tag_packages", &["tag", "package"]),
    ("user_groups", &["user"]),
    ("user_perms", &["user", "permission"]),
];

/// Filters that limit the search to the tables having them.
const TABLE_FILTERS: &[&str] = &[
    "tag",
    "build",
    "package",
    "user",
    "permission",
    "cg",
    "external_repo",
    "build_target",
    "group",
    "host",
    "channel",
    "xkey",
];

/// A change to versioned data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub(crate) id: i64,
    pub(crate) ts: f64,
}

/// One row of `tag_listing`: a build in a tag, from one event until (maybe) another.
#[derive(Debug, Clone)]
pub(crate) struct TagListing {
    pub(crate) build_id: i64,
    pub(crate) tag_id: i64,
    pub(crate) created: Event,
    pub(crate) revoked: Option<Event>,
}

/// A time or event bound of the query: which side of it counts, and the field names that say
/// whether the creation and the revocation matched.
struct Bound {
    value: f64,
    before: bool,
    by_event: bool,
    fields: (&'static str, &'static str),
}

impl Bound {
    fn matches(&self, e: Event) -> bool {
        let x = if self.by_event { e.id as f64 } else { e.ts };
        if self.before { x < self.value } else { x > self.value }
    }
}

/// A timestamp as the hub takes it: a number (seconds since the epoch) or a numeric string.
fn timestamp(arg: &str, v: &Value) -> Result<f64, Answer> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| {
            fault(
                1000,
                format!("queryHistory: the simulated hub takes `{arg}` as seconds since the epoch, got {v}"),
            )
        })
}

impl Sim {
    /// The next event, one second after the last.
    pub(super) fn new_event(&mut self) -> Event {
        self.next_event += 1;
        Event {
            id: self.next_event,
            ts: self.tick_clock(),
        }
    }

    /// `queryHistory(tables=None, **filters)`.
    pub(super) fn query_history(&self, args: &[Value], kwargs: &Map<String, Value>) -> Answer {
        match self.history_tables(args, kwargs) {
            Ok(v) => Answer::Value(v),
            Err(a) => a,
        }
    }

    fn history_tables(&self, args: &[Value], kwargs: &Map<String, Value>) -> Result<Value, Answer> {
        let tables: Vec<String> = match args.first().or_else(|| kwargs.get("tables")) {
            None | Some(Value::Null) => TABLES.iter().map(|(t, _)| (*t).to_string()).collect(),
            Some(Value::Array(list)) => list.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
            Some(other) => return Err(fault(1000, format!("No such history table: {other}"))),
        };
        if let Some(t) = tables.iter().find(|t| !TABLES.iter().any(|(name, _)| name == t)) {
            return Err(fault(1000, format!("No such history table: {t}")));
        }
        let mut out = Map::new();
        for table in tables {
            let applies = TABLES
                .iter()
                .find(|(name, _)| *name == table)
                .map_or(&[][..], |(_, f)| *f);
            let limited_away = kwargs
                .keys()
                .any(|k| TABLE_FILTERS.contains(&k.as_str()) && !applies.contains(&k.as_str()));
            if limited_away {
                continue;
            }
            let rows = if table == "tag_listing" {
                self.tag_listing_rows(kwargs)?
            } else {
                Vec::new()
            };
            out.insert(table, Value::Array(rows));
        }
        Ok(Value::Object(out))
    }

    fn tag_listing_rows(&self, kwargs: &Map<String, Value>) -> Result<Vec<Value>, Answer> {
        let build = match kwargs.get("build") {
            Some(b) => Some(
                self.find_build(b)
                    .map(|b| b.id)
                    .ok_or_else(|| fault(1000, format!("No such build: {}", plain(b))))?,
            ),
            None => None,
        };
        let tag = match kwargs.get("tag") {
            Some(t) => Some(
                self.known_tag_id(t)
                    .ok_or_else(|| fault(1000, format!("No such entry in table tag: {}", plain(t))))?,
            ),
            None => None,
        };
        let package = match kwargs.get("package") {
            Some(p) => {
                let name = plain(p);
                if !self.builds.iter().any(|b| b.name == name) {
                    return Err(fault(1000, format!("No such entry in table package: {name}")));
                }
                Some(name)
            }
            None => None,
        };
        let editor = match kwargs.get("editor") {
            Some(u) if u.as_i64() == Some(USER_ID) || u.as_str() == Some(USER_NAME) => true,
            Some(u) => return Err(fault(1000, format!("No such user: {}", python_repr(u)))),
            None => false,
        };
        // `active=True`: rows that hold; `active=False`: revoked rows; null: both.
        let active = kwargs.get("active").and_then(Value::as_bool);
        let mut bounds = Vec::new();
        for (arg, before, by_event, fields) in [
            ("before", true, false, ("_created_before", "_revoked_before")),
            ("after", false, false, ("_created_after", "_revoked_after")),
            (
                "beforeEvent",
                true,
                true,
                ("_created_before_event", "_revoked_before_event"),
            ),
            (
                "afterEvent",
                false,
                true,
                ("_created_after_event", "_revoked_after_event"),
            ),
        ] {
            if let Some(v) = kwargs.get(arg).filter(|v| !v.is_null()) {
                bounds.push(Bound {
                    value: timestamp(arg, v)?,
                    before,
                    by_event,
                    fields,
                });
            }
        }
        let mut rows = Vec::new();
        for row in &self.history {
            let Some(b) = self.builds.iter().find(|b| b.id == row.build_id) else {
                continue;
            };
            if build.is_some_and(|id| id != row.build_id)
                || tag.is_some_and(|id| id != row.tag_id)
                || package.as_ref().is_some_and(|p| *p != b.name)
                || active.is_some_and(|a| a != row.revoked.is_none())
            {
                continue;
            }
            // Each bound is a clause `created matches OR revoked matches`.
            if !bounds
                .iter()
                .all(|bd| bd.matches(row.created) || row.revoked.is_some_and(|r| bd.matches(r)))
            {
                continue;
            }
            let tag_name = self
                .tag_ids
                .iter()
                .find(|(_, id)| **id == row.tag_id)
                .map(|(n, _)| n.clone());
            let revoked = |f: fn(Event) -> Value| row.revoked.map_or(Value::Null, f);
            let mut v = json!({
                "active": if row.revoked.is_none() { json!(true) } else { Value::Null },
                "create_event": row.created.id, "create_ts": row.created.ts,
                "creator_id": USER_ID, "creator_name": USER_NAME,
                "revoke_event": revoked(|e| json!(e.id)), "revoke_ts": revoked(|e| json!(e.ts)),
                "revoker_id": revoked(|_| json!(USER_ID)), "revoker_name": revoked(|_| json!(USER_NAME)),
                "build_id": b.id, "name": b.name, "version": b.version, "release": b.release,
                "epoch": null, "build.state": 1, "tag_id": row.tag_id, "tag.name": tag_name,
            });
            for bd in &bounds {
                v[bd.fields.0] = json!(bd.matches(row.created));
                v[bd.fields.1] = row.revoked.map_or(Value::Null, |r| json!(bd.matches(r)));
            }
            if editor {
                v["_created_by"] = json!(true);
                v["_revoked_by"] = revoked(|_| json!(true));
            }
            rows.push(v);
        }
        Ok(rows)
    }
}

/// A value as Python's `%s` prints it (strings bare).
pub(super) fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// A value as Python's `%r` prints it (strings quoted).
fn python_repr(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), |s| format!("'{s}'"))
}
