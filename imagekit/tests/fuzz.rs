//! Property-based fuzz targets for what users and the journal hand imagekit: pipeline files (TOML),
//! the pipeline copy a journal keeps for `resume` (JSON), name templates and run ids. Each input
//! either loads or is refused with a typed error — never a panic — and what loads behaves.
//!
//! `PROPTEST_CASES` sets the number of cases (256 by default); failures are not persisted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use imagekit::journal::RunId;
use imagekit::pipeline::Pipeline;
use imagekit::template::Template;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The pipeline files shipped as examples: real, valid inputs to mutate.
fn seeds() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines");
    let mut v: Vec<String> = ["local-demo.toml", "local-qemu.toml", "debian-qemu.toml"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    v.push(
        r#"
name = "alma9"
[build]
builder = "koji"
koji_profile = "cern"
name = "alma9-cloud"
version = "9.5"
arches = ["x86_64", "aarch64"]
formats = ["qcow2"]
target = "alma9-images"
install_tree = "https://mirror.example/alma/9.5/BaseOS/$arch/os/"
kickstart = "alma9.ks"
skip_if_built_within_hours = 24
[[store]]
name = "prod"
kind = "glance"
cloud = "cern"
[upload]
name = "{distro} TEST - {arch} [{date}]"
distro = "ALMA9"
properties = { os_distro = "almalinux" }
[promote]
name = "{distro} - {arch}"
visibility = "public"
keep = 3
without_tests = true
"#
        .to_string(),
    );
    v
}

/// A mutation of `text`: bytes flipped, inserted, deleted, or the text cut.
fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    for &(at, kind, byte) in edits {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let i = at % b.len();
        match kind % 4 {
            0 => b[i] = byte,
            1 => b.insert(i, byte),
            2 => {
                b.remove(i);
            }
            _ => b.truncate(i),
        }
    }
    b
}

/// Fragments a pipeline file is made of, to splice at random places.
const FRAGMENTS: &[&str] = &[
    "\n[test]\n",
    "\n[[store]]\nname = \"x\"\nkind = \"local\"\npath = \"p\"\n",
    "ttl_hours = 18446744073709551615\n",
    "timeout_minutes = -1\n",
    "max_machines = 0\n",
    "keep = 99999999999999999999\n",
    "name = \"{nope}\"\n",
    "name = \"{distro\"\n",
    "arches = []\n",
    "= \n",
    "[[",
    "\"\u{0}\"",
    "memory_mib = 0\n",
    "lease_ttl_minutes = 1e309\n",
    "\n[container]\nregistry = \"r\"\nrepository = \"a/b\"\n",
];

fn assert_loads_or_refuses(text: &str) {
    match Pipeline::parse(text, None) {
        Ok(p) => {
            // What loads survives the journal's copy: resume gets the same pipeline back.
            let recorded = serde_json::json!({"pipeline": p.file, "path": null});
            let back = Pipeline::from_recorded(&recorded).unwrap();
            assert_eq!(back.file.name, p.file.name);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            assert!(msg.len() < 64 * 1024, "error text stays bounded: {} bytes", msg.len());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_pipeline_files_mutated(seed in 0usize..3, edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12)) {
        let text = seeds()[seed].clone();
        let bytes = mutate(&text, &edits);
        assert_loads_or_refuses(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn fuzz_pipeline_files_spliced(seed in 0usize..3, at in any::<usize>(), frags in prop::collection::vec(0usize..FRAGMENTS.len(), 1..4)) {
        let mut text = seeds()[seed].clone();
        for f in frags {
            let mut i = at % (text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            text.insert_str(i, FRAGMENTS[f]);
        }
        assert_loads_or_refuses(&text);
    }

    #[test]
    fn fuzz_pipeline_files_arbitrary(text in "\\PC{0,400}") {
        assert_loads_or_refuses(&text);
    }

    #[test]
    fn fuzz_recorded_pipelines(value in arb_json()) {
        // A journal written by another version, or edited by hand.
        let _ = Pipeline::from_recorded(&serde_json::json!({"pipeline": value, "path": null}));
        let _ = Pipeline::from_recorded(&value);
    }

    #[test]
    fn fuzz_templates(source in "[a-z {}]{0,40}|\\PC{0,60}") {
        let known = ["distro", "arch", "date"];
        if let Ok(t) = Template::parse(&source, &known) {
            let vars: BTreeMap<&str, &str> = known.iter().map(|k| (*k, "v")).collect();
            let out = t.render(&vars);
            // Every variable is known, so nothing is left in braces that was a variable.
            for k in known {
                let braced = format!("{{{k}}}");
                prop_assert!(!out.contains(&braced), "{source:?} → {out:?}");
            }
        }
    }

    #[test]
    fn fuzz_run_ids(s in "[0-9a-ft-]{0,30}|\\PC{0,30}") {
        if let Ok(id) = RunId::parse(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("name"),
            Just("build"),
            Just("store"),
            Just("upload"),
            Just("x86_64")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("build".to_string()),
                    Just("store".to_string()),
                    Just("upload".to_string()),
                    Just("promote".to_string()),
                    Just("pipeline".to_string()),
                    "[a-z_]{1,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn the_seeds_load_so_mutations_start_from_valid_files() {
    for (i, s) in seeds().iter().enumerate() {
        if let Err(e) = Pipeline::parse(s, None) {
            panic!("seed {i} does not load: {e}");
        }
    }
}
