//! Property-based fuzzing of every parser of what peers and users hand this crate: image
//! references, manifests and indexes, Docker `config.json`, docker-archive tarballs (plain, gzip,
//! xz) and OCI layout directories. Inputs are real documents mutated byte by byte or field by
//! field, and arbitrary JSON. The property everywhere: no panic, `Ok` or a typed error; plus
//! round trips and "nothing left behind" where they apply. (Token answers, `WWW-Authenticate`
//! challenges and `Link` headers are parsed by private functions: their `fuzz_*` properties
//! live beside them, in `src/auth.rs` and `src/registry.rs`.)
//!
//! The number of cases comes from `PROPTEST_CASES` (default 256); failures are not persisted,
//! a failing case is printed shrunk. In debug, the whole file takes a few seconds at the default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use proptest::prelude::*;
use registry_client::archive::{ArchiveLimits, import_docker_archive_with};
use registry_client::manifest::{Parsed, platform_string, sha256_digest};
use registry_client::{DockerConfig, Error, Manifest, ManifestFormat, OciLayout, Reference};
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- mutations ----

/// One byte-level mutation; positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Op {
    Xor(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![
        b'"', b'{', b'}', b'[', b']', b',', b':', b'0', b'9', b'-', b'e', b'.', b'\\', 0u8, 0xff, 0x80, b' ', b'/',
        b'a',
    ])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, b)| Op::Xor(p, b)),
        (any::<usize>(), interesting_byte()).prop_map(|(p, b)| Op::Set(p, b)),
        (any::<usize>(), interesting_byte()).prop_map(|(p, b)| Op::Insert(p, b)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Op::Delete(p, n)),
        any::<usize>().prop_map(Op::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Op::Duplicate(p, n)),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..6)
}

fn mutate(mut data: Vec<u8>, ops: &[Op]) -> Vec<u8> {
    for op in ops {
        let len = data.len();
        let at = |p: usize| if len == 0 { 0 } else { p % len };
        match *op {
            Op::Xor(p, b) if len > 0 => data[at(p)] ^= b,
            Op::Set(p, b) if len > 0 => data[at(p)] = b,
            Op::Insert(p, b) => data.insert(if len == 0 { 0 } else { p % (len + 1) }, b),
            Op::Delete(p, n) if len > 0 => {
                let start = at(p);
                data.drain(start..(start + n).min(len));
            }
            Op::Truncate(p) if len > 0 => data.truncate(at(p)),
            Op::Duplicate(p, n) if len > 0 => {
                let start = at(p);
                let piece = data[start..(start + n).min(len)].to_vec();
                data.splice(start..start, piece);
            }
            _ => {}
        }
    }
    data
}

/// Arbitrary JSON, with the keys and strings of the documents under test well represented.
fn arb_json() -> impl Strategy<Value = Value> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "schemaVersion",
            "mediaType",
            "config",
            "layers",
            "manifests",
            "digest",
            "size",
            "platform",
            "architecture",
            "os",
            "annotations",
            "org.opencontainers.image.ref.name",
            "imageLayoutVersion",
            "auths",
            "auth",
            "username",
            "password",
            "identitytoken",
            "credsStore",
            "credHelpers",
            "Config",
            "RepoTags",
            "Layers",
            "rootfs",
            "diff_ids",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "sha256:../../etc/passwd",
            "1.0.0",
            "",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        word.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a path of keys (and array indexes, as numbers) with `new`, creating
/// nothing: a path that does not exist leaves the document as it was.
fn substitute(doc: &mut Value, path: &[&str], new: Value) {
    let mut at = doc;
    for key in path {
        let next = match at {
            Value::Object(m) => m.get_mut(*key),
            Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return,
        }
    }
    *at = new;
}

// ---- references ----

fn reference_like() -> impl Strategy<Value = String> {
    let registry = prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9.-]{1,12}(:[0-9]{1,6})?/",
        Just("localhost/".to_string()),
        Just("[::1]:5000/".to_string()),
        "[a-z0-9.:?#@\\[\\]_ -]{1,12}/",
    ];
    let path = "[a-z0-9._-]{1,10}(/[a-z0-9._-]{1,10}){0,3}";
    let tag = prop_oneof![Just(String::new()), ":[a-zA-Z0-9_.-]{0,12}"];
    let digest = prop_oneof![
        Just(String::new()),
        "@sha256:[0-9a-f]{64}",
        "@sha(256|512):[0-9a-fA-F]{0,130}",
    ];
    (registry, path, tag, digest).prop_map(|(r, p, t, d)| format!("{r}{p}{t}{d}"))
}

/// A parsed reference prints to something that parses back to itself, and makes a well-formed
/// API URL (its parts cannot inject a query, a fragment or another host).
fn check_reference(input: &str) {
    let Ok(r) = input.parse::<Reference>() else { return };
    let printed = r.to_string();
    let again: Reference = printed
        .parse()
        .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, r, "{input:?} printed as {printed:?}");
    let url = format!(
        "https://{}/v2/{}/manifests/{}",
        r.api_host(),
        r.repository(),
        r.target()
    );
    let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("{input:?} makes the URL {url:?}: {e}"));
    assert_eq!(
        parsed.path(),
        format!("/v2/{}/manifests/{}", r.repository(), r.target()),
        "{input:?}"
    );
    assert!(
        parsed.query().is_none() && parsed.fragment().is_none(),
        "{input:?}: {parsed}"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_references_arbitrary_strings(input in any::<String>()) {
        check_reference(&input);
    }

    #[test]
    fn fuzz_references_reference_like(input in reference_like(), ops in ops()) {
        check_reference(&input);
        if let Ok(s) = String::from_utf8(mutate(input.into_bytes(), &ops)) {
            check_reference(&s);
        }
    }
}

// ---- manifests and indexes ----

struct ManifestSeeds {
    docs: Vec<Vec<u8>>,
}

fn manifest_seeds() -> &'static ManifestSeeds {
    static SEEDS: OnceLock<ManifestSeeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (layout, index) = registry_client::testing::two_platform_layout(dir.path(), "t", 64).unwrap();
        let mut docs = vec![index.bytes().to_vec()];
        if let Parsed::Index(i) = index.parse().unwrap() {
            for e in &i.manifests {
                docs.push(layout.manifest(&e.digest).unwrap().bytes().to_vec());
            }
        }
        docs.push(
            json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                           "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 3,
                            "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]
            })
            .to_string()
            .into_bytes(),
        );
        ManifestSeeds { docs }
    })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/json",
            "application/vnd.oci.image.index.v1+json; charset=utf-8",
            "application/vnd.x",
        ])
        .prop_map(|s| Some(s.to_string())),
        any::<String>().prop_map(Some),
    ]
}

/// Every accessor of a manifest that parsed: no panic, `Ok` or a typed error.
fn check_manifest(bytes: Vec<u8>, content_type: Option<&str>) {
    let Ok(m) = Manifest::from_bytes(Bytes::from(bytes), content_type) else {
        return;
    };
    assert_eq!(m.digest(), sha256_digest(m.bytes()));
    let d = m.descriptor();
    assert_eq!(d.size, m.bytes().len() as u64);
    match m.parse() {
        Ok(Parsed::Index(i)) => {
            assert!(m.is_index());
            for e in &i.manifests {
                let _ = platform_string(e);
            }
            assert!(m.blobs().unwrap().is_empty());
        }
        Ok(Parsed::Image(_)) => {
            assert!(!m.blobs().unwrap().is_empty(), "config first");
        }
        Err(e) => panic!("from_bytes accepted what parse refuses: {e}"),
    }
}

const MANIFEST_PATHS: &[&[&str]] = &[
    &["schemaVersion"],
    &["mediaType"],
    &["config"],
    &["config", "digest"],
    &["config", "size"],
    &["layers"],
    &["layers", "0"],
    &["layers", "0", "digest"],
    &["layers", "0", "size"],
    &["manifests"],
    &["manifests", "0"],
    &["manifests", "0", "digest"],
    &["manifests", "0", "size"],
    &["manifests", "0", "platform"],
    &["manifests", "1", "platform", "variant"],
    &["annotations"],
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_manifests_mutated_bytes(seed in any::<prop::sample::Index>(), ops in ops(), ct in content_type()) {
        let docs = &manifest_seeds().docs;
        let doc = docs[seed.index(docs.len())].clone();
        check_manifest(mutate(doc, &ops), ct.as_deref());
    }

    #[test]
    fn fuzz_manifests_mutated_fields(
        seed in any::<prop::sample::Index>(),
        path in prop::sample::select(MANIFEST_PATHS),
        new in arb_json(),
        ct in content_type(),
    ) {
        let docs = &manifest_seeds().docs;
        let mut doc: Value = serde_json::from_slice(&docs[seed.index(docs.len())]).unwrap();
        substitute(&mut doc, path, new);
        check_manifest(serde_json::to_vec(&doc).unwrap(), ct.as_deref());
    }

    #[test]
    fn fuzz_manifests_arbitrary_json(doc in arb_json(), ct in content_type()) {
        check_manifest(serde_json::to_vec(&doc).unwrap(), ct.as_deref());
    }
}

// ---- Docker config.json ----

const CONFIG_SEED: &str = r#"{
  "auths": {
    "https://index.docker.io/v1/": {"auth": "aHViOnRva2Vu"},
    "registry.cern.ch": {"auth": "Ym90OnMzY3JldA=="},
    "http://localhost:5001": {"username": "u", "password": "p"},
    "sso.example.org": {"identitytoken": "refresh-me"}
  },
  "credHelpers": {"helper.example": "imagekit-fuzz-absent"},
  "credsStore": "imagekit-fuzz-absent-store"
}"#;

const CONFIG_PATHS: &[&[&str]] = &[
    &["auths"],
    &["auths", "registry.cern.ch"],
    &["auths", "registry.cern.ch", "auth"],
    &["auths", "http://localhost:5001", "username"],
    &["auths", "http://localhost:5001", "password"],
    &["auths", "sso.example.org", "identitytoken"],
    &["credHelpers"],
    &["credsStore"],
];

/// Parses a config and asks it for every registry it names (helpers do not exist: they fail
/// typed, at once) — with a short helper timeout, in case a mutation names a real one.
fn check_docker_config(text: &str) {
    let Ok(cfg) = DockerConfig::from_json(text) else { return };
    let cfg = cfg
        .with_helper_dirs(Vec::new())
        .with_helper_timeout(std::time::Duration::from_secs(2));
    let _ = format!("{cfg:?}");
    for registry in [
        "docker.io",
        "registry.cern.ch",
        "localhost:5001",
        "sso.example.org",
        "helper.example",
        "quay.io",
    ] {
        match cfg.credential_for(registry) {
            Ok(c) => {
                let shown = format!("{c:?}");
                assert!(!shown.contains("s3cret") && !shown.contains("refresh-me"), "{shown}");
            }
            Err(Error::Config { .. } | Error::CredentialHelper { .. } | Error::CredentialHelperTimeout { .. }) => {}
            Err(e) => panic!("an untyped config error: {e:?}"),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_docker_config_mutated(ops in ops(), path in prop::sample::select(CONFIG_PATHS), new in arb_json(), field in any::<bool>()) {
        if field {
            let mut doc: Value = serde_json::from_str(CONFIG_SEED).unwrap();
            substitute(&mut doc, path, new);
            check_docker_config(&doc.to_string());
        } else if let Ok(text) = String::from_utf8(mutate(CONFIG_SEED.as_bytes().to_vec(), &ops)) {
            check_docker_config(&text);
        }
    }

    #[test]
    fn fuzz_docker_config_arbitrary_json(doc in arb_json()) {
        check_docker_config(&doc.to_string());
    }
}

// ---- docker-archive tarballs ----

fn tar_append(t: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, name, data).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A small uncompressed docker archive: two layers of one file each. `oci_names`: layers named
/// `blobs/sha256/<hex>` like newer `docker save` (spooled, not streamed); `gzip_layers`: the
/// layer files are gzip already.
fn docker_archive(oci_names: bool, gzip_layers: bool) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut names = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..2u8 {
        let mut layer = tar::Builder::new(Vec::new());
        tar_append(&mut layer, &format!("etc/file{i}"), &vec![b'a' + i; 700]);
        let layer = layer.into_inner().unwrap();
        diff_ids.push(sha256_digest(&layer));
        let stored = if gzip_layers { gzip(&layer) } else { layer };
        let name = if oci_names {
            format!("blobs/sha256/{}", &sha256_digest(&stored)[7..])
        } else {
            format!("{i:02}/layer.tar")
        };
        tar_append(&mut t, &name, &stored);
        names.push(name);
    }
    let config =
        json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).to_string();
    tar_append(&mut t, "config.json", config.as_bytes());
    let manifest = json!([{"Config": "config.json", "RepoTags": ["cern/alma9:test"], "Layers": names}]).to_string();
    tar_append(&mut t, "manifest.json", manifest.as_bytes());
    tar_append(&mut t, "repositories", br#"{"cern/alma9":{"test":"x"}}"#);
    t.into_inner().unwrap()
}

fn archive_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            docker_archive(false, false),
            docker_archive(true, false),
            docker_archive(true, true),
        ]
    })
}

/// Tight limits, so that mutated sizes and compression bombs hit them fast.
fn small_limits() -> ArchiveLimits {
    ArchiveLimits::default()
        .max_entry_in_memory(1024)
        .max_in_memory_total(4096)
        .max_expansion_ratio(50)
        .expansion_floor(256 << 10)
        .max_total_size(4 << 20)
}

/// Imports an archive into a fresh layout: `Ok` or a typed error, never a panic, and no
/// temporary file left in the layout either way.
fn check_archive(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("image.tar");
    std::fs::write(&tarball, bytes).unwrap();
    let layout = OciLayout::create(&dir.path().join("layout")).unwrap();
    match import_docker_archive_with(&tarball, &layout, ManifestFormat::Oci, &small_limits()) {
        Ok(images) => {
            for image in images {
                let m = layout.manifest(&image.manifest.digest).unwrap();
                assert_eq!(m.blobs().unwrap().len(), image.layers.len() + 1);
            }
        }
        Err(Error::Archive { .. } | Error::LimitExceeded { .. } | Error::InvalidManifest { .. } | Error::Io { .. }) => {
        }
        Err(e) => panic!("an unexpected kind of error: {e:?}"),
    }
    let left: Vec<String> = std::fs::read_dir(dir.path().join("layout/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[derive(Debug, Clone, Copy)]
enum Packing {
    Plain,
    Gzip,
    Xz,
}

fn pack(data: &[u8], p: Packing) -> Vec<u8> {
    match p {
        Packing::Plain => data.to_vec(),
        Packing::Gzip => gzip(data),
        Packing::Xz => xz(data),
    }
}

fn packing() -> impl Strategy<Value = Packing> {
    prop_oneof![Just(Packing::Plain), Just(Packing::Gzip), Just(Packing::Xz)]
}

proptest! {
    #![proptest_config(config())]

    /// Mutations of the tar itself, then compressed: they reach the tar and JSON parsers.
    #[test]
    fn fuzz_docker_archives_mutated_tar(seed in any::<prop::sample::Index>(), ops in ops(), p in packing()) {
        let seeds = archive_seeds();
        let tar = mutate(seeds[seed.index(seeds.len())].clone(), &ops);
        check_archive(&pack(&tar, p));
    }

    /// Mutations of the compressed stream: they reach the decompressors.
    #[test]
    fn fuzz_docker_archives_mutated_compressed(seed in any::<prop::sample::Index>(), ops in ops(), p in packing()) {
        let seeds = archive_seeds();
        let packed = pack(&seeds[seed.index(seeds.len())], p);
        check_archive(&mutate(packed, &ops));
    }
}

#[test]
fn fuzz_docker_archives_seeds_import() {
    for (i, seed) in archive_seeds().iter().enumerate() {
        for p in [Packing::Plain, Packing::Gzip, Packing::Xz] {
            let dir = tempfile::tempdir().unwrap();
            let tarball = dir.path().join("image.tar");
            std::fs::write(&tarball, pack(seed, p)).unwrap();
            let layout = OciLayout::create(&dir.path().join("layout")).unwrap();
            let images = import_docker_archive_with(&tarball, &layout, ManifestFormat::Oci, &small_limits())
                .unwrap_or_else(|e| panic!("seed {i} {p:?}: {e}"));
            assert_eq!(images[0].tags, vec!["test"]);
        }
    }
}

// ---- OCI layout directories ----

fn layout_seed() -> &'static BTreeMap<String, Vec<u8>> {
    static SEED: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        registry_client::testing::two_platform_layout(dir.path(), "test", 64).unwrap();
        let mut files = BTreeMap::new();
        collect(dir.path(), dir.path(), &mut files);
        files
    })
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(root, &p, files);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            files.insert(rel, std::fs::read(&p).unwrap());
        }
    }
}

#[derive(Debug, Clone)]
enum LayoutChange {
    Bytes(prop::sample::Index, Vec<Op>),
    Json(prop::sample::Index, Value),
    Remove(prop::sample::Index),
}

fn layout_change() -> impl Strategy<Value = LayoutChange> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), ops()).prop_map(|(i, o)| LayoutChange::Bytes(i, o)),
        2 => (any::<prop::sample::Index>(), arb_json()).prop_map(|(i, v)| LayoutChange::Json(i, v)),
        1 => any::<prop::sample::Index>().prop_map(LayoutChange::Remove),
    ]
}

/// Opens a layout and reads everything it names: `Ok` or a typed error, never a panic; blobs
/// that stream are the ones their descriptors promise.
fn check_layout(dir: &Path) {
    let Ok(layout) = OciLayout::open(dir) else { return };
    let Ok(tags) = layout.tags() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut targets: Vec<String> = tags.iter().map(|(t, _)| t.clone()).collect();
    targets.push("latest".into());
    if let Ok(index) = layout.index() {
        targets.extend(index.manifests.iter().map(|e| e.digest.clone()));
    }
    for target in targets {
        let Ok(m) = layout.manifest(&target) else { continue };
        let children: Vec<String> = match m.parse() {
            Ok(Parsed::Index(i)) => i.manifests.iter().map(|e| e.digest.clone()).collect(),
            _ => vec![m.digest().to_string()],
        };
        for child in children {
            let Ok(cm) = layout.manifest(&child) else { continue };
            let Ok(blobs) = cm.blobs() else { continue };
            for b in blobs {
                let _ = layout.has_blob(&b);
                rt.block_on(async {
                    let Ok(mut s) = layout.blob_stream(&b).await else {
                        return;
                    };
                    let mut n = 0u64;
                    while let Some(chunk) = futures::StreamExt::next(&mut s).await {
                        match chunk {
                            Ok(c) => n += c.len() as u64,
                            Err(_) => return,
                        }
                    }
                    assert_eq!(n, b.size, "a blob that streamed whole has its declared size");
                });
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_oci_layouts_mutated(changes in prop::collection::vec(layout_change(), 1..4)) {
        let mut files = layout_seed().clone();
        for change in changes {
            let names: Vec<String> = files.keys().cloned().collect();
            if names.is_empty() {
                break;
            }
            // index.json and oci-layout are the parsers' first inputs: pick them half the time.
            let pick = |i: &prop::sample::Index| -> String {
                let n = i.index(names.len() * 2);
                match n {
                    n if n < names.len() => names[n].clone(),
                    n if n % 2 == 0 => "index.json".to_string(),
                    _ => "oci-layout".to_string(),
                }
            };
            match change {
                LayoutChange::Bytes(i, ops) => {
                    let name = pick(&i);
                    let data = files.get(&name).cloned().unwrap_or_default();
                    files.insert(name, mutate(data, &ops));
                }
                LayoutChange::Json(i, v) => {
                    files.insert(pick(&i), serde_json::to_vec(&v).unwrap());
                }
                LayoutChange::Remove(i) => {
                    files.remove(&pick(&i));
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        for (name, data) in &files {
            std::fs::write(dir.path().join(name), data).unwrap();
        }
        check_layout(dir.path());
    }
}
