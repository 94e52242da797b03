//! The real `skopeo` (what release teams already use) against the testing kit's `MockRegistry`, in
//! each of its authentication modes: copies between OCI layouts, `dir:` and one or two mocks,
//! `inspect`, `list-tags`, `delete`, `login`; and what a user sees when credentials are missing or
//! wrong. Skopeo runs isolated from the user's configuration (its own HOME, auth file, policy and
//! registries.conf). Skipped when skopeo is not installed, failed then under `IMAGEKIT_REAL_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use registry_client::manifest::Manifest;
use registry_client::testing::{MockRegistry, two_platform_layout};
use serde_json::Value;

/// The `skopeo` on `PATH`, when installed.
fn skopeo_bin() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("skopeo"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert_ne!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
            Ok("1"),
            "skopeo is not installed: dev/setup-test-deps"
        );
        eprintln!("skipped: skopeo is not installed (dev/setup-test-deps)");
    }
    found
}

/// What one skopeo run printed.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Insists on success; stdout.
    fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "skopeo {:?} failed:\n{}\n{}",
            self.args, self.stdout, self.stderr
        );
        self.stdout
    }

    /// Insists on failure; stderr, what the user reads.
    fn refused(self) -> String {
        assert_ne!(
            self.code, 0,
            "skopeo {:?} succeeded:\n{}\n{}",
            self.args, self.stdout, self.stderr
        );
        self.stderr
    }

    /// Insists on success; stdout as JSON.
    fn json(self) -> Value {
        serde_json::from_str(&self.ok()).unwrap()
    }
}

/// skopeo with a private HOME, runtime dir, auth file, trust policy (accept anything) and an empty
/// registries.conf, so neither the user's configuration nor their credentials take part. The kit's
/// registries speak plain HTTP: every command gets `--tls-verify=false` (copies the `--src-` and
/// `--dest-` forms), as users pass for a registry on 127.0.0.1.
struct Skopeo {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Skopeo {
    fn new(bin: PathBuf) -> Skopeo {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "run", "registries.d", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        Skopeo { bin, dir }
    }

    /// The auth file `skopeo login` writes (`REGISTRY_AUTH_FILE`), and `--authfile` for it.
    fn authfile(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    fn authfile_arg(&self) -> String {
        format!("--authfile={}", self.authfile().display())
    }

    /// `oci:DIR:TAG` or `dir:DIR` in a fresh directory.
    fn local(&self, transport: &str, name: &str) -> String {
        let path = self.dir.path().join(name);
        match transport {
            "oci" => format!("oci:{}:test", path.display()),
            _ => format!("{transport}:{}", path.display()),
        }
    }

    /// A two-platform layout (`oci:…:test`) and its index.
    fn seed_layout(&self) -> (String, Manifest) {
        let dir = self.dir.path().join("seed-layout");
        let (_, index) = two_platform_layout(&dir, "test", 30_000).unwrap();
        (format!("oci:{}:test", dir.display()), index)
    }

    /// `skopeo copy OPTIONS FROM TO`.
    async fn copy(&self, options: &[&str], from: &str, to: &str) -> Run {
        let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
        args.extend(options);
        args.extend([from, to]);
        self.run(&args).await
    }

    /// `skopeo COMMAND OPTIONS TARGET` for `inspect`, `list-tags`, `delete`, `login`.
    async fn on(&self, command: &str, options: &[&str], target: &str) -> Run {
        let mut args = vec![command, "--tls-verify=false"];
        args.extend(options);
        args.push(target);
        self.run(&args).await
    }

    /// `skopeo ARGS`, run off the runtime's worker threads (the kit answers on them).
    async fn run(&self, args: &[&str]) -> Run {
        let mut cmd = std::process::Command::new(&self.bin);
        let d = self.dir.path();
        cmd.arg("--policy")
            .arg(d.join("policy.json"))
            .arg("--registries.d")
            .arg(d.join("registries.d"))
            // Hidden in skopeo's --help, but it is the flag for this; skopeo 1.9 does not read
            // CONTAINERS_REGISTRIES_CONF.
            .arg("--registries-conf")
            .arg(d.join("registries.conf"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--command-timeout", "60s"])
            // The platform skopeo picks from an index, whatever this host is.
            .args(["--override-os", "linux", "--override-arch", "amd64"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", d.join("home"))
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .env("XDG_CONFIG_HOME", d.join("home/.config"))
            .env("REGISTRY_AUTH_FILE", self.authfile())
            .env("DOCKER_CONFIG", d.join("home/.docker"))
            .current_dir(d);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `docker://HOST/REST`, how skopeo names an image in the kit's registry.
fn docker(registry: &MockRegistry, rest: &str) -> String {
    format!("docker://{}/{rest}", registry.host())
}

/// The digest of the index's `linux/amd64` manifest, the one skopeo picks here.
fn amd64_digest(index: &Manifest) -> String {
    let doc: Value = serde_json::from_slice(index.bytes()).unwrap();
    let entry = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    entry["digest"].as_str().unwrap().to_string()
}

/// `skopeo inspect` shows the digest the registry stores, `--raw` the index byte for byte, and
/// `--config` the amd64 image's configuration.
async fn assert_inspect_shows(skopeo: &Skopeo, reference: &str, index: &Manifest) {
    let digest = skopeo.on("inspect", &["--format", "{{.Digest}}"], reference).await.ok();
    assert_eq!(digest.trim(), index.digest());
    let raw = skopeo.on("inspect", &["--raw"], reference).await.ok();
    assert_eq!(raw.as_bytes(), &index.bytes()[..]);
    let config = skopeo.on("inspect", &["--config"], reference).await.json();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.vendor"], "CERN");
}

fn assert_no_open_uploads(registry: &MockRegistry) {
    assert_eq!(
        registry.open_upload_list(),
        Vec::<(String, String)>::new(),
        "uploads left open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_kit_copies_inspects_lists_and_deletes_like_a_registry() {
    let Some(bin) = skopeo_bin() else { return };
    let skopeo = Skopeo::new(bin);
    let registry = MockRegistry::start().await;
    let other = MockRegistry::start().await;
    let (layout, index) = skopeo.seed_layout();
    let alma = docker(&registry, "cern/alma9:test");

    // An OCI layout with both platforms, pushed as it is.
    skopeo.copy(&["--all"], &layout, &alma).await.ok();
    assert_eq!(registry.tags("cern/alma9"), vec!["test"]);
    assert_eq!(
        registry.digest_of("cern/alma9", "test").as_deref(),
        Some(index.digest())
    );

    assert_inspect_shows(&skopeo, &alma, &index).await;

    // Another tag, then list-tags.
    skopeo
        .copy(&["--all"], &alma, &docker(&registry, "cern/alma9:9.5"))
        .await
        .ok();
    let tags = skopeo
        .on("list-tags", &[], &docker(&registry, "cern/alma9"))
        .await
        .json();
    assert_eq!(tags["Tags"], serde_json::json!(["9.5", "test"]));

    // Into another repository of the same registry, and into another registry.
    let copy = docker(&registry, "cern/alma9-copy:test");
    skopeo.copy(&["--all"], &alma, &copy).await.ok();
    assert_eq!(
        registry.digest_of("cern/alma9-copy", "test").as_deref(),
        Some(index.digest())
    );
    skopeo
        .copy(&["--all"], &alma, &docker(&other, "mirror/alma9:test"))
        .await
        .ok();
    assert_eq!(other.digest_of("mirror/alma9", "test").as_deref(), Some(index.digest()));

    // Out to dir: (this host's platform) and oci: (all), and back in under new tags.
    let dir = skopeo.local("dir", "out-dir");
    skopeo.copy(&[], &alma, &dir).await.ok();
    skopeo
        .copy(&[], &dir, &docker(&registry, "cern/alma9:from-dir"))
        .await
        .ok();
    assert_eq!(registry.digest_of("cern/alma9", "from-dir"), Some(amd64_digest(&index)));
    let oci = skopeo.local("oci", "out-oci");
    skopeo.copy(&["--all"], &alma, &oci).await.ok();
    skopeo
        .copy(&["--all"], &oci, &docker(&registry, "cern/alma9:from-oci"))
        .await
        .ok();
    assert_eq!(
        registry.digest_of("cern/alma9", "from-oci").as_deref(),
        Some(index.digest())
    );

    // delete: the manifest (and every tag on it) goes; inspecting it then says so.
    skopeo.on("delete", &[], &copy).await.ok();
    assert_eq!(registry.tags("cern/alma9-copy"), Vec::<String>::new());
    let gone = skopeo.on("inspect", &["--raw"], &copy).await.refused();
    assert!(gone.contains("manifest unknown"), "{gone}");

    assert_no_open_uploads(&registry);
    assert_no_open_uploads(&other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_kit_wants_credentials_from_login_authfile_or_creds() {
    let Some(bin) = skopeo_bin() else { return };
    let skopeo = Skopeo::new(bin);
    let registry = MockRegistry::with_basic("releasebot", "s3cret").await;
    let (layout, index) = skopeo.seed_layout();
    let alma = docker(&registry, "cern/alma9:test");

    // Without credentials nothing goes in, and the user is told why.
    let refused = skopeo.copy(&["--all"], &layout, &alma).await.refused();
    assert!(refused.contains("authentication required"), "{refused}");
    assert_eq!(registry.tags("cern/alma9"), Vec::<String>::new());

    // A wrong password: login refused, nothing saved.
    let wrong = skopeo
        .on("login", &["-u", "releasebot", "-p", "guess"], &registry.host())
        .await
        .refused();
    assert!(wrong.contains("invalid username/password"), "{wrong}");
    assert!(!skopeo.authfile().exists());

    // --creds on the command line.
    skopeo
        .copy(&["--all", "--dest-creds", "releasebot:s3cret"], &layout, &alma)
        .await
        .ok();
    assert_eq!(
        registry.digest_of("cern/alma9", "test").as_deref(),
        Some(index.digest())
    );
    let raw = skopeo
        .on("inspect", &["--raw", "--creds", "releasebot:s3cret"], &alma)
        .await
        .ok();
    assert_eq!(raw.as_bytes(), &index.bytes()[..]);

    // login writes the auth file; the other commands read it.
    skopeo
        .on("login", &["-u", "releasebot", "-p", "s3cret"], &registry.host())
        .await
        .ok();
    let auth: Value = serde_json::from_slice(&std::fs::read(skopeo.authfile()).unwrap()).unwrap();
    assert!(auth["auths"][registry.host()]["auth"].is_string(), "{auth}");
    let authfile = skopeo.authfile_arg();
    let digest = skopeo
        .on("inspect", &[&authfile, "--format", "{{.Digest}}"], &alma)
        .await
        .ok();
    assert_eq!(digest.trim(), index.digest());
    let config = skopeo.on("inspect", &[&authfile, "--config"], &alma).await.json();
    assert_eq!(config["architecture"], "amd64");
    let latest = docker(&registry, "cern/alma9:latest");
    skopeo.copy(&["--all", &authfile], &alma, &latest).await.ok();
    let tags = skopeo
        .on("list-tags", &[&authfile], &docker(&registry, "cern/alma9"))
        .await
        .json();
    assert_eq!(tags["Tags"], serde_json::json!(["latest", "test"]));
    let dir = skopeo.local("dir", "out-dir");
    skopeo.copy(&[&authfile], &alma, &dir).await.ok();
    skopeo
        .copy(&[&authfile], &dir, &docker(&registry, "cern/alma9:from-dir"))
        .await
        .ok();
    assert_eq!(registry.digest_of("cern/alma9", "from-dir"), Some(amd64_digest(&index)));
    skopeo.on("delete", &[&authfile], &latest).await.ok();
    assert_eq!(registry.tags("cern/alma9"), vec!["from-dir"]);

    // After logout the registry refuses again, as a distribution registry with htpasswd does.
    skopeo.run(&["logout", &registry.host()]).await.ok();
    let refused = skopeo
        .on("list-tags", &[], &docker(&registry, "cern/alma9"))
        .await
        .refused();
    assert!(refused.contains("invalid username/password: unauthorized"), "{refused}");

    assert_no_open_uploads(&registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_kit_lets_anyone_pull_and_only_credentials_push_like_docker_hub() {
    let Some(bin) = skopeo_bin() else { return };
    let skopeo = Skopeo::new(bin);
    let registry = MockRegistry::with_token("releasebot", "s3cret").await;
    let hub = MockRegistry::with_token("mirrorbot", "hunter2").await;
    let (layout, index) = skopeo.seed_layout();
    let alma = docker(&registry, "cern/alma9:test");

    // Anonymous push: the anonymous token may only pull, and the user is told access is denied.
    let refused = skopeo.copy(&["--all"], &layout, &alma).await.refused();
    assert!(
        refused.contains("requested access to the resource is denied"),
        "{refused}"
    );
    assert_eq!(registry.tags("cern/alma9"), Vec::<String>::new());

    // A wrong password: refused at login and at a copy, in Docker Hub's words.
    let wrong = skopeo
        .on("login", &["-u", "releasebot", "-p", "guess"], &registry.host())
        .await
        .refused();
    assert!(wrong.contains("invalid username/password"), "{wrong}");
    assert!(!skopeo.authfile().exists());
    let wrong = skopeo
        .copy(&["--all", "--dest-creds", "releasebot:guess"], &layout, &alma)
        .await
        .refused();
    assert!(
        wrong.contains("invalid username/password: unauthorized: incorrect username or password"),
        "{wrong}"
    );
    assert_eq!(registry.tags("cern/alma9"), Vec::<String>::new());

    // Push with --creds.
    skopeo
        .copy(&["--all", "--dest-creds", "releasebot:s3cret"], &layout, &alma)
        .await
        .ok();
    assert_eq!(
        registry.digest_of("cern/alma9", "test").as_deref(),
        Some(index.digest())
    );

    // Anonymous pulls: inspect, list-tags, copy out.
    assert_inspect_shows(&skopeo, &alma, &index).await;
    let tags = skopeo
        .on("list-tags", &[], &docker(&registry, "cern/alma9"))
        .await
        .json();
    assert_eq!(tags["Tags"], serde_json::json!(["test"]));
    let dir = skopeo.local("dir", "out-dir");
    skopeo.copy(&[], &alma, &dir).await.ok();
    let oci = skopeo.local("oci", "out-oci");
    skopeo.copy(&["--all"], &alma, &oci).await.ok();

    // Anonymous delete is refused like an anonymous push.
    let refused = skopeo.on("delete", &[], &alma).await.refused();
    assert!(
        refused.contains("requested access to the resource is denied"),
        "{refused}"
    );
    assert_eq!(registry.tags("cern/alma9"), vec!["test"]);

    // login, then with the auth file: a copy to another repository (skopeo asks for pull on the
    // source repository too, and mounts), from dir: and oci:, and to another token registry
    // with its own credentials.
    skopeo
        .on("login", &["-u", "releasebot", "-p", "s3cret"], &registry.host())
        .await
        .ok();
    let authfile = skopeo.authfile_arg();
    skopeo
        .copy(&["--all", &authfile], &alma, &docker(&registry, "cern/alma9-copy:test"))
        .await
        .ok();
    assert_eq!(
        registry.digest_of("cern/alma9-copy", "test").as_deref(),
        Some(index.digest())
    );
    let from_dir = docker(&registry, "cern/alma9:from-dir");
    skopeo.copy(&[&authfile], &dir, &from_dir).await.ok();
    assert_eq!(registry.digest_of("cern/alma9", "from-dir"), Some(amd64_digest(&index)));
    skopeo
        .copy(&["--all", &authfile], &oci, &docker(&registry, "cern/alma9:from-oci"))
        .await
        .ok();
    assert_eq!(
        registry.digest_of("cern/alma9", "from-oci").as_deref(),
        Some(index.digest())
    );
    skopeo
        .copy(
            &[
                "--all",
                "--src-authfile",
                &skopeo.authfile().display().to_string(),
                "--dest-creds",
                "mirrorbot:hunter2",
            ],
            &alma,
            &docker(&hub, "mirror/alma9:test"),
        )
        .await
        .ok();
    assert_eq!(hub.digest_of("mirror/alma9", "test").as_deref(), Some(index.digest()));

    // delete with credentials.
    skopeo.on("delete", &[&authfile], &from_dir).await.ok();
    assert_eq!(registry.tags("cern/alma9"), vec!["from-oci", "test"]);

    assert_no_open_uploads(&registry);
    assert_no_open_uploads(&hub);
}
