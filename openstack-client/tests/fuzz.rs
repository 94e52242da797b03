//! Property-based fuzz targets for every parser of what peers and users send: Keystone token
//! answers, Glance image and list answers, Nova servers, Ironic nodes and Ironic's JSON-in-JSON
//! error bodies, timestamps, and clouds.yaml/secure.yaml. Inputs are real bodies (the api-ref
//! samples in `tests/fixtures`) mutated byte-wise (flips, insertions, deletions, truncation),
//! real bodies with arbitrary JSON grafted in, and arbitrary input. HTTP answers go through the
//! crate's real entry points (a `Session` against wiremock), so the size caps, the error mapper
//! and the decoders are all on the path.
//!
//! The property everywhere: no panic, and a result that is `Ok` or a typed error of the expected
//! kind; where it means something, a round trip. `PROPTEST_CASES` sets the number of cases per
//! target (default 256); failures are not persisted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use openstack_client::glance::{Glance, ImageId, ListImages};
use openstack_client::ironic::Ironic;
use openstack_client::nova::{Nova, ServerId};
use openstack_client::time::{format_rfc3339, parse_datetime, parse_timestamp};
use openstack_client::{CloudConfig, Credentials, Error, RetryPolicy, Session};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap()
}

// ---- input strategies ----

/// One byte-level change.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to JSON and YAML turn up more often than uniform bytes would give them.
    let byte = prop_oneof![
        any::<u8>(),
        proptest::sample::select(b"{}[]\":,\\ \n-#&*!|>'0123456789.eE+tfn".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut data: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let n = data.len();
        match *m {
            Mutation::Flip(i, b) if n > 0 => data[i % n] ^= b,
            Mutation::Insert(i, b) => data.insert(i % (n + 1), b),
            Mutation::Delete(i) if n > 0 => {
                data.remove(i % n);
            }
            Mutation::Truncate(i) => data.truncate(i % (n + 1)),
            _ => {}
        }
    }
    data
}

/// `seed` with 1–8 byte-level mutations.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(mutation(), 1..8).prop_map(move |ms| mutate(seed.clone(), &ms))
}

/// Keys the parsers look for, so that arbitrary JSON reaches them.
const KEYS: &[&str] = &[
    "token",
    "expires_at",
    "catalog",
    "endpoints",
    "interface",
    "url",
    "region_id",
    "type",
    "project",
    "user",
    "roles",
    "name",
    "id",
    "images",
    "image",
    "next",
    "status",
    "size",
    "checksum",
    "os_hash_value",
    "tags",
    "server",
    "servers",
    "addresses",
    "fault",
    "created",
    "node",
    "nodes",
    "provision_state",
    "last_error",
    "error_message",
    "faultstring",
    "message",
    "error",
    "properties",
    "visibility",
];

/// Arbitrary JSON, with the parsers' own keys and a few timestamps among the strings.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
        proptest::sample::select(KEYS).prop_map(Value::from),
        near_timestamp().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![proptest::sample::select(KEYS).prop_map(str::to_string), "[a-z_]{0,10}"];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path to a value in `doc` (object keys and array indexes).
fn paths(doc: &Value) -> Vec<Vec<Value>> {
    let mut out = vec![Vec::new()];
    match doc {
        Value::Object(m) => {
            for (k, v) in m {
                for mut p in paths(v) {
                    p.insert(0, Value::from(k.as_str()));
                    out.push(p);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                for mut p in paths(v) {
                    p.insert(0, Value::from(i));
                    out.push(p);
                }
            }
        }
        _ => {}
    }
    out
}

/// `doc` with the value at one of its paths (chosen by `pick`) replaced by `with`.
fn graft(mut doc: Value, pick: usize, with: Value) -> Value {
    let all = paths(&doc);
    let target = &all[pick % all.len()];
    let mut at = &mut doc;
    for step in target {
        at = match step {
            Value::String(k) => &mut at[k.as_str()],
            Value::Number(i) => &mut at[i.as_u64().unwrap() as usize],
            _ => unreachable!(),
        };
    }
    *at = with;
    doc
}

/// Inputs for a JSON answer: the real bodies mutated byte-wise, the real bodies with arbitrary
/// JSON grafted in, or arbitrary JSON.
fn json_bodies(seeds: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    let texts: Vec<Vec<u8>> = seeds.iter().map(|v| serde_json::to_vec(v).unwrap()).collect();
    let bytewise = proptest::sample::select(texts).prop_flat_map(mutated);
    let grafted = (proptest::sample::select(seeds), any::<usize>(), arb_json())
        .prop_map(|(doc, pick, with)| serde_json::to_vec(&graft(doc, pick, with)).unwrap());
    let arbitrary = arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap());
    prop_oneof![4 => bytewise, 4 => grafted, 1 => arbitrary, 1 => proptest::collection::vec(any::<u8>(), 0..256)]
}

/// Strings shaped like timestamps, with the pieces out of range, missing or odd.
fn near_timestamp() -> impl Strategy<Value = String> {
    (
        prop_oneof!["[0-9]{4}", "[+-]?[0-9]{1,12}"],
        "[0-9]{1,3}",
        "[0-9]{1,3}",
        proptest::sample::select(vec!["T", "t", " ", "", "TT"]),
        "[0-9]{1,3}",
        "[0-9]{1,3}",
        prop_oneof!["(:[0-9]{1,3})?", Just(":inf".to_string()), Just(":NaN".to_string())],
        "(\\.[0-9]{0,12})?",
        prop_oneof![
            Just(String::new()),
            Just("Z".to_string()),
            "[+-][0-9]{2}:?[0-9]{2}",
            "[+-].{0,3}",
            ".{0,3}",
        ],
    )
        .prop_map(|(y, mo, d, t, h, mi, s, f, z)| format!("{y}-{mo}-{d}{t}{h}:{mi}{s}{f}{z}"))
}

// ---- a cloud on wiremock whose answers the current case sets ----

/// Tests share nothing: each has its own runtime, server and session.
struct Bed {
    rt: tokio::runtime::Runtime,
    server: MockServer,
    answer: Arc<Mutex<(u16, Vec<u8>)>>,
    http: reqwest::Client,
    session: Session,
}

impl Bed {
    /// Keystone issuing `keystone` (or normal tokens), Glance at `/image/v2`, Nova at
    /// `/compute/v2.1`, Ironic at `/baremetal`; every other request gets the current answer.
    fn new() -> Bed {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answer = Arc::new(Mutex::new((200, b"{}".to_vec())));
        let server = rt.block_on(async {
            let server = MockServer::start().await;
            let uri = server.uri();
            let entry = |ty: &str, url: String| {
                json!({"type": ty, "name": ty, "id": ty, "endpoints": [
                    {"interface": "public", "region_id": "RegionOne", "url": url, "id": ty}]})
            };
            let mut token = fixture("keystone/admin_auth-password-project-scoped-response.json");
            token["token"]["catalog"] = json!([
                entry("image", format!("{uri}/image/v2")),
                entry("compute", format!("{uri}/compute/v2.1")),
                entry("baremetal", format!("{uri}/baremetal")),
            ]);
            token["token"]["expires_at"] = json!("2999-01-01T00:00:00Z");
            Mock::given(method("POST"))
                .and(path("/identity/v3/auth/tokens"))
                .respond_with(
                    ResponseTemplate::new(201)
                        .insert_header("X-Subject-Token", "fuzz-token")
                        .set_body_json(token),
                )
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path("/compute/v2.1"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(fixture("nova/versions_v21-version-get-resp.json")),
                )
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path("/baremetal"))
                .respond_with(ResponseTemplate::new(200).set_body_json(fixture("ironic/api-root-response.json")))
                .mount(&server)
                .await;
            let current = answer.clone();
            Mock::given(wiremock::matchers::any())
                .respond_with(move |_: &Request| {
                    let (status, body) = current.lock().unwrap().clone();
                    ResponseTemplate::new(status).set_body_raw(body, "application/json")
                })
                .mount(&server)
                .await;
            server
        });
        let http = reqwest::Client::new();
        let session = session_at(&http, &format!("{}/identity/v3", server.uri()));
        Bed {
            rt,
            server,
            answer,
            http,
            session,
        }
    }

    /// A fresh session (no token yet) authenticating at `auth_url`.
    fn session_at(&self, auth_url: &str) -> Session {
        session_at(&self.http, auth_url)
    }

    fn answer(&self, status: u16, body: Vec<u8>) {
        *self.answer.lock().unwrap() = (status, body);
    }
}

fn session_at(http: &reqwest::Client, auth_url: &str) -> Session {
    let creds = Credentials::password(
        auth_url.parse().unwrap(),
        "admin",
        "hunter2".to_string().into(),
        "admin",
    );
    Session::builder(creds)
        .retry(RetryPolicy::none())
        .http_client(http.clone())
        .build()
        .unwrap()
}

/// Whether `e` is what a bad answer may give: a decode error, a size cap, or an error status.
fn typed_answer_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Decode { .. } | Error::BodyTooLarge { .. } | Error::Api { .. } | Error::Auth { .. }
    )
}

fn check(ok: bool, what: impl std::fmt::Display) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(what.to_string()))
    }
}

// ---- targets ----

#[test]
fn fuzz_keystone_token_answers() {
    let bed = Bed::new();
    let seeds = vec![
        fixture("keystone/admin_auth-password-project-scoped-response.json"),
        fixture("keystone/admin_auth-application-credential-response.json"),
        fixture("keystone/admin_auth-token-scoped-response.json"),
        fixture("keystone/auth_responses_project-scoped-password.json"),
    ];
    // Keystone's token answer is the body of the authentication itself: a session per case.
    let current = bed.answer.clone();
    bed.rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/fuzz-identity/v3/auth/tokens"))
            .respond_with(move |_: &Request| {
                let (status, body) = current.lock().unwrap().clone();
                ResponseTemplate::new(status)
                    .insert_header("X-Subject-Token", "fuzzed")
                    .set_body_raw(body, "application/json")
            })
            .with_priority(1)
            .mount(&bed.server)
            .await;
    });
    let auth_url = format!("{}/fuzz-identity/v3", bed.server.uri());
    let statuses = proptest::sample::select(vec![201u16, 201, 201, 200, 401, 500]);
    TestRunner::new(config())
        .run(&(json_bodies(seeds), statuses), |(body, status)| {
            bed.answer(status, body);
            let session = bed.session_at(&auth_url);
            match bed.rt.block_on(session.token()) {
                Ok(t) => {
                    // Whatever expiry it carried, reading it is total.
                    let _ = t.remaining();
                    let _ = format!("{t:?}");
                    check(status < 300, format!("a token from a {status}"))
                }
                Err(e) => check(typed_answer_error(&e), format!("{e:?}")),
            }
        })
        .unwrap();
}

#[test]
fn fuzz_keystone_token_expiry_any_string_gives_a_usable_token() {
    let bed = Bed::new();
    let current = bed.answer.clone();
    bed.rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/fuzz-identity/v3/auth/tokens"))
            .respond_with(move |_: &Request| {
                let (_, body) = current.lock().unwrap().clone();
                ResponseTemplate::new(201)
                    .insert_header("X-Subject-Token", "fuzzed")
                    .set_body_raw(body, "application/json")
            })
            .with_priority(1)
            .mount(&bed.server)
            .await;
    });
    let auth_url = format!("{}/fuzz-identity/v3", bed.server.uri());
    let doc = fixture("keystone/admin_auth-password-project-scoped-response.json");
    TestRunner::new(config())
        .run(&prop_oneof![near_timestamp(), ".{0,40}"], |expires_at| {
            let mut d = doc.clone();
            d["token"]["expires_at"] = json!(expires_at);
            bed.answer(201, serde_json::to_vec(&d).unwrap());
            let t = bed
                .rt
                .block_on(bed.session_at(&auth_url).token())
                .map_err(|e| TestCaseError::fail(format!("{expires_at:?}: {e}")))?;
            // Unreadable means "expires now"; readable means exactly what it says.
            check(
                t.expires_at == parse_timestamp(&expires_at),
                format!("{expires_at:?}: {:?}", t.expires_at),
            )?;
            let _ = t.remaining();
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_glance_image_answers() {
    let bed = Bed::new();
    let list = fixture("glance/images-list-response.json");
    let seeds = vec![
        fixture("glance/image-show-response.json"),
        fixture("glance/image-create-response.json"),
        fixture("glance/image-update-response.json"),
        list["images"][0].clone(),
    ];
    let glance = Glance::new(bed.session.clone());
    TestRunner::new(config())
        .run(&json_bodies(seeds), |body| {
            bed.answer(200, body);
            match bed.rt.block_on(glance.get(&ImageId::from("x"))) {
                Ok(i) => {
                    let _ = format!("{i:?}");
                    Ok(())
                }
                Err(e) => check(typed_answer_error(&e), format!("{e:?}")),
            }
        })
        .unwrap();
}

#[test]
fn fuzz_glance_list_answers() {
    let bed = Bed::new();
    let mut paged = fixture("glance/images-list-response.json");
    paged["next"] = json!("/v2/images?marker=abc");
    let seeds = vec![fixture("glance/images-list-response.json"), paged];
    let glance = Glance::new(bed.session.clone());
    TestRunner::new(config())
        .run(&json_bodies(seeds), |body| {
            bed.answer(200, body);
            match bed.rt.block_on(glance.list_page(&ListImages::new(), None)) {
                Ok(page) => {
                    let _ = format!("{page:?}");
                    Ok(())
                }
                Err(e) => check(typed_answer_error(&e), format!("{e:?}")),
            }
        })
        .unwrap();
}

#[test]
fn fuzz_nova_server_answers() {
    let bed = Bed::new();
    let seeds = vec![
        fixture("nova/servers_server-get-resp.json"),
        fixture("nova/servers_v2.100_server-get-resp.json"),
        fixture("nova/servers_server-create-resp.json"),
    ];
    let nova = Nova::new(bed.session.clone());
    TestRunner::new(config())
        .run(&json_bodies(seeds), |body| {
            bed.answer(200, body);
            match bed.rt.block_on(nova.get_server(&ServerId::from("x"))) {
                Ok(s) => {
                    let _ = s.created_at();
                    let _ = format!("{s:?}");
                    Ok(())
                }
                Err(e) => check(typed_answer_error(&e), format!("{e:?}")),
            }
        })
        .unwrap();
}

#[test]
fn fuzz_ironic_node_answers() {
    let bed = Bed::new();
    let list = fixture("ironic/nodes-list-details-response.json");
    let seeds = vec![
        fixture("ironic/node-show-response.json"),
        fixture("ironic/node-get-state-response.json"),
        list["nodes"][0].clone(),
    ];
    let ironic = Ironic::new(bed.session.clone());
    TestRunner::new(config())
        .run(&json_bodies(seeds), |body| {
            bed.answer(200, body);
            match bed.rt.block_on(ironic.get("x")) {
                Ok(n) => {
                    let _ = format!("{n:?}");
                    Ok(())
                }
                Err(e) => check(typed_answer_error(&e), format!("{e:?}")),
            }
        })
        .unwrap();
}

/// Ironic's error body: JSON whose `error_message` is a JSON document in a string.
fn ironic_error(faultstring: &str) -> Value {
    let inner = json!({"faultstring": faultstring, "faultcode": "Client", "debuginfo": null});
    json!({"error_message": inner.to_string()})
}

#[test]
fn fuzz_ironic_error_bodies() {
    let bed = Bed::new();
    let ironic = Ironic::new(bed.session.clone());
    let seeds = vec![
        ironic_error(
            "Node node-7 is locked by host conductor-2, please retry after the current operation is completed.",
        ),
        ironic_error("A node with name node-7 already exists."),
        json!({"error_message": "not json {"}),
        json!({"error_message": {"faultstring": "an object, not a string"}}),
    ];
    let statuses = proptest::sample::select(vec![400u16, 404, 409, 500, 503]);
    let cases = prop_oneof![
        // Mutated real bodies, and arbitrary ones: an Api error with a bounded message.
        (json_bodies(seeds), statuses.clone()).prop_map(|(b, s)| (b, s, None)),
        // A well-formed body: the faultstring comes out whole (round trip).
        ("[A-Za-z0-9 .,()é]{1,300}", statuses).prop_map(|(f, s)| {
            let f = f.trim().to_string();
            (serde_json::to_vec(&ironic_error(&f)).unwrap(), s, Some(f))
        }),
    ];
    TestRunner::new(config())
        .run(&cases, |(body, status, faultstring)| {
            bed.answer(status, body);
            let e = match bed.rt.block_on(ironic.get("x")) {
                Ok(_) => return Err(TestCaseError::fail(format!("{status} read as a node"))),
                Err(e) => e,
            };
            let Error::Api {
                status: got, message, ..
            } = &e
            else {
                return Err(TestCaseError::fail(format!("{e:?}")));
            };
            check(*got == status, format!("{got} for {status}"))?;
            check(message.len() <= 2048 + 64, format!("{} bytes", message.len()))?;
            if let Some(f) = faultstring.filter(|f| !f.is_empty()) {
                check(message == &f, format!("{message:?} for {f:?}"))?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_error_bodies_never_show_a_secret_value() {
    let bed = Bed::new();
    let glance = Glance::new(bed.session.clone());
    // A secret of 8+ characters from the alphabet tokens and passwords use, placed where peers
    // echo one: a JSON value under a secret-named key (plain or inside a JSON string), or a
    // header line; around it, arbitrary JSON or text.
    let secret = "[A-Za-z0-9_=-]{8,40}";
    let key = proptest::sample::select(vec![
        "password",
        "secret",
        "X-Auth-Token",
        "token",
        "application_credential_secret",
        "Password",
    ]);
    let header = proptest::sample::select(vec!["X-Auth-Token", "x-subject-token", "Authorization"]);
    let cases = (secret, key, header, arb_json(), ".{0,40}", 0u8..5).prop_map(|(s, k, h, noise, text, form)| {
        let mut request = serde_json::Map::new();
        request.insert(k.to_string(), json!(s));
        let request = json!({"auth": {"identity": request, "noise": noise}});
        let body = match form {
            // Not JSON as a whole: the text is the message.
            0 => format!("{noise} {request} {text}"),
            // Ironic: JSON inside a JSON string, without a faultstring.
            1 => json!({"error_message": request.to_string()}).to_string(),
            // A proxy's echo of the request line and headers.
            2 => format!("POST /v3/auth/tokens HTTP/1.1\r\n{h}: {s}\r\nhost: x\r\n\r\n{noise}"),
            // A service quoting the headers in its message.
            3 => json!({"message": format!("{text}\n{h}: {s}\n{noise}")}).to_string(),
            // A service quoting the request body in its message.
            _ => json!({"error": {"message": format!("{text} {request}")}}).to_string(),
        };
        (body, s)
    });
    TestRunner::new(config())
        .run(&cases, |(body, secret)| {
            bed.answer(400, body.into_bytes());
            let e = match bed.rt.block_on(glance.get(&ImageId::from("x"))) {
                Ok(_) => return Err(TestCaseError::fail("a 400 read as an image")),
                Err(e) => e,
            };
            for text in [e.to_string(), format!("{e:?}")] {
                check(!text.contains(&secret), format!("{secret:?} in {text}"))?;
                check(!text.contains("hunter2") && !text.contains("fuzz-token"), &text)?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_timestamps() {
    let valid = [
        "2015-11-07T02:58:43.578887Z",
        "2015-11-07T04:28:43+01:30",
        "2026-11-24T10:35:00",
        "2026-11-24T10:35:00.123456",
        "2016-08-18T22:28:48.643434+11:11",
    ];
    let seeds: Vec<Vec<u8>> = valid.iter().map(|s| s.as_bytes().to_vec()).collect();
    let mutated_valid = proptest::sample::select(seeds)
        .prop_flat_map(mutated)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned());
    let inputs = prop_oneof![near_timestamp(), mutated_valid, ".{0,40}", any::<String>()];
    TestRunner::new(config())
        .run(&inputs, |s| {
            let dt = parse_datetime(&s);
            let t = parse_timestamp(&s);
            if let Some(t) = t {
                // What was read formats and reads back to the same second.
                let back = format_rfc3339(t).ok_or_else(|| TestCaseError::fail(format!("{s:?}")))?;
                let again = parse_datetime(&back).ok_or_else(|| TestCaseError::fail(back.clone()))?;
                check(
                    Some(again.timestamp()) == dt.map(|d| d.timestamp()),
                    format!("{s:?} → {back}"),
                )?;
            }
            Ok(())
        })
        .unwrap();
    // And every representable time, in any offset and precision, reads back exactly.
    // A day inside years 1–9999, so that any offset stays in four-digit years.
    let times = (
        -62_135_510_400i64..253_402_214_399,
        0u32..1_000_000_000,
        -86_399i32..86_400,
        0usize..4,
    );
    TestRunner::new(config())
        .run(&times, |(secs, nanos, offset, precision)| {
            use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
            let utc = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            let off = FixedOffset::east_opt(offset / 60 * 60).unwrap();
            let form = [
                SecondsFormat::Secs,
                SecondsFormat::Millis,
                SecondsFormat::Micros,
                SecondsFormat::Nanos,
            ][precision];
            let text = utc.with_timezone(&off).to_rfc3339_opts(form, true);
            let read = parse_datetime(&text).ok_or_else(|| TestCaseError::fail(text.clone()))?;
            let want = match form {
                SecondsFormat::Secs => utc.timestamp_subsec_nanos() / 1_000_000_000,
                SecondsFormat::Millis => utc.timestamp_subsec_nanos() / 1_000_000 * 1_000_000,
                SecondsFormat::Micros => utc.timestamp_subsec_nanos() / 1_000 * 1_000,
                _ => utc.timestamp_subsec_nanos(),
            };
            check(
                read.timestamp() == secs && read.timestamp_subsec_nanos() == want,
                format!("{text} → {read}"),
            )?;
            // Nova's offset-less form is UTC.
            let naive = utc.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string();
            check(parse_datetime(&naive) == Some(utc), naive)
        })
        .unwrap();
}

const CLOUDS: &str = "clouds:
  prod:
    auth:
      auth_url: https://keystone.example.org:5000/v3
      username: bot
      project_name: images
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionTwo
    interface: internal
    image_endpoint_override: https://glance.example.org/image
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example.org/v3
      application_credential_id: abc
      application_credential_secret: shh
  tok:
    auth_type: v3token
    auth:
      auth_url: https://keystone.example.org/v3
      token: abc
      project_id: p
";
const SECURE: &str = "clouds:\n  prod:\n    auth:\n      password: from-secure\n";

#[test]
fn fuzz_clouds_yaml() {
    let clouds = prop_oneof![
        4 => mutated(CLOUDS.as_bytes().to_vec()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => any::<String>(),
        // Any JSON is YAML.
        1 => arb_json().prop_map(|v| json!({"clouds": {"prod": v}}).to_string()),
    ];
    let secure = prop_oneof![
        Just(None),
        Just(Some(SECURE.to_string())),
        mutated(SECURE.as_bytes().to_vec()).prop_map(|b| Some(String::from_utf8_lossy(&b).into_owned())),
        any::<String>().prop_map(Some),
    ];
    let name = proptest::sample::select(vec!["prod", "appcred", "tok", "missing"]);
    TestRunner::new(config())
        .run(&(clouds, secure, name), |(clouds, secure, name)| {
            match CloudConfig::from_yaml_str(&clouds, secure.as_deref(), name) {
                Ok(c) => {
                    // Nothing secret in what a caller may print.
                    let shown = format!("{c:?}");
                    check(!shown.contains("from-secure") && !shown.contains("shh"), shown)
                }
                Err(e) => check(matches!(e, Error::Config(_)), format!("{e:?}")),
            }
        })
        .unwrap();
}
