//! Property-based fuzzing of everything the client parses from peers: XML-RPC answers (mutated real
//! hub answers, arbitrary bytes, deep nesting), faults, the typed decoders of tasks, builds and image
//! results, and Koji profiles.
//!
//! The property is always the same: no panic, and either a value or a typed [`Error`]. Answers go
//! through the public API over a small HTTP server on 127.0.0.1, so the bounded reader, the XML-RPC
//! decoder, fault parsing, redaction and the typed decoders are all on the path.
//!
//! `PROPTEST_CASES` sets the number of cases per target (default 256); nothing is persisted, so a
//! failure prints its minimal input instead of writing a regression file.

// Test helpers panic on setup failures; that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use koji_client::{
    ArchiveInfo, BuildInfo, BuildTarget, Client, Error, ImageTaskResult, ListBuilds, MultiCall, Profile, RetryPolicy,
    TagInfo, TaskId, TaskInfo, UserInfo, Value, from_value,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The most an error's message may say: 2 KiB of peer text, plus the client's own words.
const MAX_ERROR_TEXT: usize = 4096;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What the server answers next: status and body bytes.
type Slot = Arc<Mutex<(u16, Vec<u8>)>>;

/// A keep-alive HTTP server answering every request with the slot's status and body.
async fn answer_server() -> (String, Slot) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/kojihub", listener.local_addr().unwrap());
    let slot: Slot = Arc::new(Mutex::new((200, Vec::new())));
    let shared = slot.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, shared.clone()));
        }
    });
    (url, slot)
}

async fn serve(mut conn: TcpStream, slot: Slot) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // One request: headers, then a Content-Length body.
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..header_end + length);
        let (status, body) = slot.lock().unwrap().clone();
        let mut answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        // One write: a head and a body in two would wait out Nagle and delayed ACKs (40 ms a call).
        if conn.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// A client, a server, and a runtime to drive both.
struct Rig {
    rt: tokio::runtime::Runtime,
    koji: Client,
    slot: Slot,
}

impl Rig {
    fn new() -> Self {
        let rt = runtime();
        let (url, slot) = rt.block_on(answer_server());
        let koji = Client::builder()
            .hub(url)
            .retry(RetryPolicy::none())
            .max_response_body(4 << 20)
            .build()
            .unwrap();
        Rig { rt, koji, slot }
    }

    /// Every typed call of the client against an answer of `status` and `body`.
    fn exercise(&self, status: u16, body: &[u8]) {
        *self.slot.lock().unwrap() = (status, body.to_vec());
        let k = &self.koji;
        self.rt.block_on(async {
            check(k.call("getAPIVersion", vec![], vec![]).await);
            check(k.get_task_info(TaskId(1)).await.map(|t| {
                let _ = (
                    t.created_at(),
                    t.started_at(),
                    t.completed_at(),
                    t.fault(),
                    t.state.to_string(),
                );
            }));
            check(k.get_image_task_result(TaskId(1)).await);
            check(k.get_task_descendents(TaskId(1)).await);
            check(k.list_task_output(TaskId(1)).await);
            check(k.list_builds(&ListBuilds::new()).await.map(|builds| {
                for b in builds {
                    let _ = (b.created_at(), b.completed_at());
                }
            }));
            check(
                k.multicall(
                    MultiCall::new()
                        .add("getTaskInfo", vec![Value::Integer(1)], vec![])
                        .add("getTaskResult", vec![Value::Integer(1)], vec![]),
                )
                .await,
            );
        });
    }
}

/// Ok, or a typed error whose message is bounded.
fn check<T>(r: Result<T, Error>) {
    if let Err(e) = r {
        let text = e.to_string();
        assert!(text.len() <= MAX_ERROR_TEXT, "{} bytes: {text:.300}", text.len());
        let _ = format!("{e:?}");
    }
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            "getTaskInfo.xml",
            "createImage_result.xml",
            "fault.xml",
            "multicall.xml",
        ]
        .iter()
        .map(|f| std::fs::read(format!("{FIXTURES}/xml/{f}")).unwrap())
        .collect()
    })
}

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Splice(usize, &'static str),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

/// Tokens that steer mutations into the decoder's interesting corners.
const TOKENS: &[&str] = &[
    "<value>",
    "</value>",
    "<array><data>",
    "</data></array>",
    "<struct>",
    "</struct>",
    "<member><name>faultCode</name>",
    "<fault>",
    "</fault>",
    "<int>",
    "<i8>9223372036854775807</i8>",
    "<int>99999999999</int>",
    "<double>nan</double>",
    "<double>-inf</double>",
    "<double>1e308</double>",
    "<nil/>",
    "<boolean>2</boolean>",
    "<base64>!!</base64>",
    "<dateTime.iso8601>99999999T99:99:99</dateTime.iso8601>",
    "&amp;",
    "&#0;",
    "&#xFFFFFFFF;",
    "&bogus;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "é",
    "\u{0}",
    "\u{FFFD}",
    "</methodResponse>",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(p, t)| Edit::Splice(p, t)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..256).prop_map(|(p, n)| Edit::Duplicate(p, n)),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let at = |p: usize, b: &Vec<u8>| if b.is_empty() { 0 } else { p % (b.len() + 1) };
        match e {
            Edit::Flip(p, x) if !b.is_empty() => {
                let i = p % b.len();
                b[i] ^= x | 1;
            }
            Edit::Flip(..) => {}
            Edit::Insert(p, bytes) => {
                let i = at(*p, &b);
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Splice(p, t) => {
                let i = at(*p, &b);
                b.splice(i..i, t.bytes());
            }
            Edit::Delete(p, n) => {
                let i = at(*p, &b);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Truncate(p) => {
                let i = at(*p, &b);
                b.truncate(i);
            }
            Edit::Duplicate(p, n) => {
                let i = at(*p, &b);
                let end = (i + n).min(b.len());
                let copy = b[i..end].to_vec();
                b.splice(end..end, copy);
            }
        }
    }
    b
}

#[test]
fn fuzz_xmlrpc_answers_mutated_from_real_hub_answers() {
    let rig = Rig::new();
    let n = seeds().len();
    TestRunner::new(config())
        .run(&(0..n, prop::collection::vec(edit(), 1..10)), |(seed, edits)| {
            rig.exercise(200, &apply(&seeds()[seed], &edits));
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_arbitrary_bytes_as_hub_answers() {
    let rig = Rig::new();
    // 1xx answers are interim: a client rightly waits for the final one, which never comes.
    let status = prop_oneof![Just(200u16), Just(500), Just(429), Just(503), 200u16..600];
    TestRunner::new(config())
        .run(
            &(status, prop::collection::vec(any::<u8>(), 0..2048)),
            |(status, body)| {
                rig.exercise(status, &body);
                Ok(())
            },
        )
        .unwrap();
}

/// An answer whose value nests `depth` containers, arrays or structs as `kinds` says, cut at `cut`.
fn nested_answer(depth: usize, kinds: &[bool], cut: Option<usize>) -> Vec<u8> {
    let mut open = String::new();
    let mut close = Vec::new();
    for i in 0..depth {
        if kinds[i % kinds.len()] {
            open.push_str("<value><array><data>");
            close.push("</data></array></value>");
        } else {
            open.push_str("<value><struct><member><name>m</name>");
            close.push("</member></struct></value>");
        }
    }
    close.reverse();
    let mut body = format!(
        "<?xml version='1.0'?>\n<methodResponse><params><param>{open}<value><int>1</int></value>{}</param></params></methodResponse>\n",
        close.concat()
    )
    .into_bytes();
    if let Some(c) = cut {
        body.truncate(c % (body.len() + 1));
    }
    body
}

#[test]
fn fuzz_deeply_nested_answers_do_not_overflow_the_stack() {
    let rig = Rig::new();
    TestRunner::new(config())
        .run(
            &(
                1usize..600,
                prop::collection::vec(any::<bool>(), 1..4),
                prop::option::of(any::<usize>()),
            ),
            |(depth, kinds, cut)| {
                rig.exercise(200, &nested_answer(depth, &kinds, cut));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn fuzz_a_hundred_thousand_nested_levels_are_refused_without_overflow() {
    let rig = Rig::new();
    for kinds in [[true], [false]] {
        rig.exercise(200, &nested_answer(100_000, &kinds, None));
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A fault code as the hub might (mis)type it.
fn fault_code() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|c| format!("<int>{c}</int>")),
        (1000i32..1025).prop_map(|c| format!("<int>{c}</int>")),
        any::<i64>().prop_map(|c| format!("<i8>{c}</i8>")),
        "\\PC{0,12}".prop_map(|s| format!("<string>{}</string>", xml_escape(&s))),
        Just("<nil/>".to_string()),
        Just(String::new()),
    ]
}

#[test]
fn fuzz_fault_answers_are_typed_bounded_and_never_show_a_session_key() {
    let rig = Rig::new();
    let strategy = (
        fault_code(),
        "\\PC{0,300}",
        "[A-Za-z0-9]{12,32}",
        "\\PC{0,300}",
        prop_oneof![
            Just("Koji-Session-Key: "),
            Just("koji-session-key:"),
            Just("'Koji-Session-Key': '")
        ],
        0usize..4000,
        any::<bool>(),
    );
    TestRunner::new(config())
        .run(&strategy, |(code, before, key, after, header, padding, as_http)| {
            let key = format!("7-{key}");
            let message = format!("{before}{}\n{header}{key}\n{after}", "p".repeat(padding));
            let body = if as_http {
                message.clone().into_bytes()
            } else {
                format!(
                    "<?xml version='1.0'?>\n<methodResponse><fault><value><struct>\
                     <member><name>faultCode</name><value>{code}</value></member>\
                     <member><name>faultString</name><value><string>{}</string></value></member>\
                     <member><name>traceback</name><value><array><data/></array></value></member>\
                     </struct></value></fault></methodResponse>\n",
                    xml_escape(&message)
                )
                .into_bytes()
            };
            let status = if as_http { 500 } else { 200 };
            *rig.slot.lock().unwrap() = (status, body);
            let err = rig
                .rt
                .block_on(rig.koji.call("getTaskInfo", vec![], vec![]))
                .expect_err("a fault or an error page is an error");
            let shown = format!("{err}\n{err:?}");
            prop_assert!(!shown.contains(&key), "{shown}");
            if let Some(f) = err.fault() {
                prop_assert!(f.message.len() <= 2048 + 64, "{}", f.message.len());
            }
            prop_assert!(err.to_string().len() <= MAX_ERROR_TEXT);
            Ok(())
        })
        .unwrap();
}

/// Member names the typed decoders look for, so arbitrary structs often hit real fields.
const NAMES: &[&str] = &[
    "id",
    "method",
    "state",
    "parent",
    "arch",
    "label",
    "owner",
    "host_id",
    "create_ts",
    "start_ts",
    "completion_ts",
    "priority",
    "request",
    "result",
    "name",
    "version",
    "release",
    "nvr",
    "build_id",
    "task_id",
    "owner_name",
    "creation_ts",
    "volume_name",
    "extra",
    "tag_name",
    "files",
    "logs",
    "rpmlist",
    "epoch",
    "size",
    "filename",
    "checksum",
    "checksum_type",
    "type_name",
    "faultCode",
    "faultString",
    "build_tag",
    "dest_tag",
    "dest_tag_name",
    "arches",
    "locked",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Value::Integer),
        any::<i64>().prop_map(Value::Long),
        any::<bool>().prop_map(Value::Boolean),
        "\\PC{0,16}".prop_map(Value::String),
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e300),
            Just(-1e300),
            Just(-0.0)
        ]
        .prop_map(Value::Double),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::Base64),
        Just(Value::Nil),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![prop::sample::select(NAMES).prop_map(str::to_string), "\\PC{0,8}"],
                inner,
                0..12
            )
            .prop_map(Value::Struct),
        ]
    })
}

/// Every typed decoder of hub answers, on one value.
fn decode_all(v: &Value) {
    if let Ok(t) = from_value::<TaskInfo>(v.clone()) {
        let _ = (
            t.created_at(),
            t.started_at(),
            t.completed_at(),
            t.fault(),
            t.state.to_string(),
        );
    }
    if let Ok(b) = from_value::<BuildInfo>(v.clone()) {
        let _ = (b.created_at(), b.completed_at(), b.state);
    }
    let _ = from_value::<Vec<TaskInfo>>(v.clone());
    let _ = from_value::<Vec<BuildInfo>>(v.clone());
    let _ = from_value::<BTreeMap<String, Vec<TaskInfo>>>(v.clone());
    let _ = from_value::<ImageTaskResult>(v.clone()).map(|r| r.nvr());
    let _ = from_value::<Vec<ArchiveInfo>>(v.clone());
    let _ = from_value::<Option<BuildTarget>>(v.clone());
    let _ = from_value::<Option<TagInfo>>(v.clone());
    let _ = from_value::<Option<UserInfo>>(v.clone());
}

#[test]
fn fuzz_typed_decoders_on_arbitrary_values() {
    TestRunner::new(config())
        .run(&value(), |v| {
            decode_all(&v);
            Ok(())
        })
        .unwrap();
}

/// Real answers of the methods with typed decoders, from the recorded hub calls.
fn recorded_answers() -> &'static [serde_json::Value] {
    static ANSWERS: OnceLock<Vec<serde_json::Value>> = OnceLock::new();
    ANSWERS.get_or_init(|| {
        let calls: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/pages_calls.json")).unwrap()).unwrap();
        let typed = [
            "getTaskInfo",
            "listTasks",
            "getBuild",
            "listBuilds",
            "listArchives",
            "getTaskDescendents",
            "getBuildTarget",
            "getTag",
        ];
        let mut out: Vec<serde_json::Value> = calls
            .into_iter()
            .filter(|c| c["method"].as_str().is_some_and(|m| typed.contains(&m)))
            .map(|c| c["result"].clone())
            .collect();
        out.push(
            serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/createImage_task_result.json")).unwrap())
                .unwrap(),
        );
        out
    })
}

/// Replace the member or item that `path` picks (indices taken modulo the sizes) with `new`.
fn replace_at(v: &mut Value, path: &[usize], new: Value) {
    let Some((first, rest)) = path.split_first() else {
        *v = new;
        return;
    };
    match v {
        Value::Array(items) if !items.is_empty() => {
            let n = items.len();
            replace_at(&mut items[first % n], rest, new);
        }
        Value::Struct(members) if !members.is_empty() => {
            let n = members.len();
            if let Some(m) = members.values_mut().nth(first % n) {
                replace_at(m, rest, new);
            }
        }
        other => *other = new,
    }
}

#[test]
fn fuzz_typed_decoders_on_mutated_real_answers() {
    let answers = recorded_answers();
    assert!(answers.len() > 50, "{}", answers.len());
    TestRunner::new(config())
        .run(
            &(
                0..answers.len(),
                prop::collection::vec((prop::collection::vec(any::<usize>(), 0..4), value()), 1..4),
            ),
            |(i, replacements)| {
                let mut v = koji_client::to_value(&answers[i]).unwrap();
                decode_all(&v);
                for (path, new) in replacements {
                    replace_at(&mut v, &path, new);
                }
                decode_all(&v);
                Ok(())
            },
        )
        .unwrap();
}

const PROFILE: &str = "\
[koji]
server = https://koji.example.org/kojihub
weburl = https://koji.example.org/koji
topurl = https://kojipkgs.example.org/
authtype = kerberos
principal = releasebot@EXAMPLE.ORG
keytab = ~/releasebot.keytab
max_retries = 30
retry_interval = 20
timeout = 43200
anon_retry = yes
offline_retry = true

[cern]
server = https://kojihub.example.ch/kojihub
authtype = ssl
cert = ~/.koji/client.crt
serverca = /etc/pki/tls/certs/ca.pem
user = bot
password = not-a-real-one
";

/// Lines that steer mutations of profiles into their corners.
const PROFILE_LINES: &[&str] = &[
    "[koji]",
    "[koji",
    "]",
    "server =",
    "server = not a url",
    "server = ftp://x/kojihub",
    "max_retries = 99999999999999999999999",
    "max_retries = -1",
    "retry_interval = 18446744073709551615",
    "timeout = 18446744073709551615",
    "timeout = 1e300",
    "anon_retry = maybe",
    "authtype = gssapi",
    "authtype = ssl",
    "cert = ~",
    "keytab = ~/",
    "password",
    "= value",
    "key = \"quoted",
    "\\",
    ";comment",
    "#comment",
    "é = ü",
];

/// The profiles asked for: two that the seed defines, and an odd one.
const SECTIONS: &[&str] = &["koji", "cern", ""];

fn profile_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(edit(), 1..10).prop_map(|e| apply(PROFILE.as_bytes(), &e)),
        prop::collection::vec((any::<usize>(), prop::sample::select(PROFILE_LINES)), 1..8).prop_map(|lines| {
            let mut text: Vec<&str> = PROFILE.lines().collect();
            for (at, line) in lines {
                let i = at % (text.len() + 1);
                text.insert(i, line);
            }
            text.join("\n").into_bytes()
        }),
        "\\PC{0,400}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..400),
    ]
}

#[test]
fn fuzz_koji_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("koji.conf");
    TestRunner::new(config())
        .run(&(profile_text(), prop::sample::select(SECTIONS)), |(text, name)| {
            std::fs::write(&file, &text).unwrap();
            match Profile::load_from(name, std::slice::from_ref(&file)) {
                Ok(p) => {
                    let _ = format!("{p:?}");
                    check(koji_client::ClientBuilder::from_profile(&p).build());
                }
                Err(e) => check::<()>(Err(e)),
            }
            Ok(())
        })
        .unwrap();
}
