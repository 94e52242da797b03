//! Helpers for the real-peer tests: where the peers' clouds.yaml is, and unique names.
#![allow(dead_code)]

use std::path::PathBuf;

use openstack_client::{CloudConfig, ConfigSources};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub fn clouds_file() -> Option<PathBuf> {
    match std::env::var_os("IMAGEKIT_OPENSTACK_CLOUDS") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("IMAGEKIT_REAL_PEERS").as_deref() == Ok("1") => {
            panic!("IMAGEKIT_REAL_PEERS=1 but no Keystone/Glance: run dev/setup-openstack-peers, then dev/test")
        }
        None => {
            eprintln!("skipped: real Keystone/Glance not running (run dev/setup-openstack-peers, then dev/test)");
            None
        }
    }
}

pub fn cloud(name: &str) -> Option<CloudConfig> {
    let file = clouds_file()?;
    Some(CloudConfig::load_from(Some(name), &ConfigSources::file(file)).unwrap())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

pub fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007
}

/// A fixture from `tests/fixtures`.
pub fn fixture(name: &str) -> Value {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Mount a Keystone at `{server}/identity/v3` that issues tokens `tok-0`, `tok-1`, … valid for
/// `ttl` seconds, with the api-ref sample's token body and `catalog`.
pub async fn mock_keystone(server: &MockServer, catalog: Value, ttl: i64) {
    let mut token = fixture("keystone/admin_auth-password-project-scoped-response.json");
    token["token"]["catalog"] = catalog;
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(move |_: &Request| {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut t = token.clone();
            t["token"]["expires_at"] = json!(openstack_client::testing::rfc3339_in(ttl));
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", format!("tok-{n}").as_str())
                .set_body_json(t)
        })
        .mount(server)
        .await;
}

/// A catalog entry with one public endpoint in RegionOne.
pub fn catalog_entry(service_type: &str, url: &str) -> Value {
    json!({"type": service_type, "name": service_type, "id": service_type,
           "endpoints": [{"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": url, "id": service_type}]})
}

/// A session that authenticates at the Keystone [`mock_keystone`] mounted on `server`, in
/// RegionOne, with retries fast enough for tests.
pub fn mock_session(server: &MockServer) -> openstack_client::Session {
    let creds = openstack_client::Credentials::password(
        format!("{}/identity/v3", server.uri()).parse().unwrap(),
        "admin",
        "hunter2".to_string().into(),
        "admin",
    );
    openstack_client::Session::builder(creds)
        .region("RegionOne")
        .retry(openstack_client::RetryPolicy::default().delays(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(20),
        ))
        .build()
        .unwrap()
}
