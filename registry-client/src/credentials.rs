//! Registry credentials the way the Docker CLI finds them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`) with `auths` (base64 `user:password`, or an `identitytoken`),
//! `credHelpers` per registry and `credsStore` for the rest — each helper is the program
//! `docker-credential-NAME`, asked with `get` and the server URL on stdin.
//!
//! ```
//! use registry_client::{Credential, DockerConfig};
//! let cfg = DockerConfig::from_json(r#"{"auths": {"registry.cern.ch": {"auth": "Ym90OnMzY3JldA=="}}}"#).unwrap();
//! let cred = cfg.credential_for("registry.cern.ch").unwrap();
//! assert!(matches!(cred, Credential::Basic { ref username, .. } if username == "bot"));
//! assert!(!format!("{cred:?}").contains("s3cret"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB;

/// What docker-credential-helpers print on stdout (exit 1) when they hold nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";
/// How much of a failing helper's stderr goes into the error.
const HELPER_STDERR_MAX: usize = 512;
/// How long a credential helper may take by default: helpers answer in milliseconds, or wait for
/// something that will not come (a GUI prompt, a locked keychain, gpg-agent in a CI job).
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// How to authenticate to one registry.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credential {
    /// No credentials: pull where the registry allows it.
    Anonymous,
    /// A user and password (or personal access token), for Basic auth or a token request.
    Basic {
        /// The user.
        username: String,
        /// The password (never printed).
        password: SecretString,
    },
    /// An OAuth2 refresh token from `docker login` against an identity provider (never printed).
    IdentityToken(SecretString),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[REDACTED]")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken([REDACTED])"),
        }
    }
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

/// A Docker client configuration.
pub struct DockerConfig {
    raw: RawConfig,
    path: PathBuf,
    helper_dirs: Option<Vec<PathBuf>>,
    helper_timeout: Duration,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("registries", &self.raw.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.raw.creds_store)
            .field("cred_helpers", &self.raw.cred_helpers)
            .field("helper_timeout", &self.helper_timeout)
            .finish()
    }
}

/// The key Docker uses for Docker Hub in `auths` and with helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; an absent file is an empty config.
    pub fn load() -> Result<Self> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        Self::load_from(&dir.join("config.json"))
    }

    /// A given config file; an absent file is an empty config.
    pub fn load_from(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{}".into(),
            Err(e) => {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        };
        let mut cfg = Self::from_json(&text).map_err(|e| match e {
            Error::Config { reason, .. } => Error::Config {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })?;
        cfg.path = path.to_path_buf();
        Ok(cfg)
    }

    /// From the JSON text of a config file.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| Error::Config {
            path: PathBuf::from("config.json"),
            reason: format!("not a Docker config: {e}"),
        })?;
        Ok(DockerConfig {
            raw,
            path: PathBuf::from("config.json"),
            helper_dirs: None,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        })
    }

    /// Look for `docker-credential-*` programs only in these directories (default: `PATH`).
    pub fn with_helper_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.helper_dirs = Some(dirs);
        self
    }

    /// How long a credential helper may take to answer before it is killed and
    /// [`Error::CredentialHelperTimeout`] returned (default [`DEFAULT_HELPER_TIMEOUT`], 30 s).
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = timeout;
        self
    }

    /// The credential for a registry (`docker.io`, `registry.cern.ch`, `localhost:5001`):
    /// `credHelpers[registry]`, else an `auths` entry, else `credsStore`, else anonymous.
    pub fn credential_for(&self, registry: &str) -> Result<Credential> {
        let server = if registry == DOCKER_HUB {
            DOCKER_HUB_KEY
        } else {
            registry
        };
        if let Some(helper) = self
            .raw
            .cred_helpers
            .get(registry)
            .or_else(|| self.raw.cred_helpers.get(server))
        {
            return self.run_helper(helper, registry, server);
        }
        if let Some(entry) = self.auth_entry(registry) {
            return self.decode_entry(registry, entry);
        }
        match &self.raw.creds_store {
            Some(store) => self.run_helper(store, registry, server),
            None => Ok(Credential::Anonymous),
        }
    }

    /// `auths` keys come as `host`, `host:port`, `https://host/v1/`, …: compare hosts.
    fn auth_entry(&self, registry: &str) -> Option<&AuthEntry> {
        let host_of = |k: &str| -> String {
            let k = k.trim_start_matches("https://").trim_start_matches("http://");
            let host = k.split('/').next().unwrap_or(k);
            match host {
                "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
                h => h.to_string(),
            }
        };
        self.raw
            .auths
            .iter()
            .find(|(k, _)| host_of(k) == registry)
            .map(|(_, v)| v)
    }

    fn decode_entry(&self, registry: &str, e: &AuthEntry) -> Result<Credential> {
        if let Some(t) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Credential::IdentityToken(SecretString::from(t.to_string())));
        }
        if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = |why: &str| Error::Config {
                path: self.path.clone(),
                reason: format!("auths.{registry}.auth {why}"),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| bad("is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| bad("is not base64 of user:password"))?;
            return Ok(Credential::Basic {
                username: user.to_string(),
                password: SecretString::from(pass.to_string()),
            });
        }
        match (&e.username, &e.password) {
            (Some(u), Some(p)) => Ok(Credential::Basic {
                username: u.clone(),
                password: SecretString::from(p.clone()),
            }),
            _ => Ok(Credential::Anonymous),
        }
    }

    fn helper_program(&self, helper: &str) -> PathBuf {
        let name = format!("docker-credential-{helper}");
        match &self.helper_dirs {
            Some(dirs) => dirs
                .iter()
                .map(|d| d.join(&name))
                .find(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from(name)),
            None => PathBuf::from(name),
        }
    }

    /// `docker-credential-NAME get`, server URL on stdin, JSON `{ServerURL, Username, Secret}` out.
    fn run_helper(&self, helper: &str, registry: &str, server: &str) -> Result<Credential> {
        let fail = |reason: String| Error::CredentialHelper {
            helper: helper.into(),
            registry: registry.into(),
            reason,
        };
        let child = Command::new(self.helper_program(helper))
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run it ({e}); is it installed and on PATH?")))?;
        let out = match wait_with_timeout(child, server, self.helper_timeout) {
            Ok(Some(out)) => out,
            Ok(None) => {
                return Err(Error::CredentialHelperTimeout {
                    helper: helper.into(),
                    registry: registry.into(),
                    timeout: self.helper_timeout,
                });
            }
            Err(e) => return Err(fail(format!("did not finish: {e}"))),
        };
        if !out.status.success() {
            // Docker treats "no credentials for this server" as anonymous access, not an error.
            // The standard helpers say so on stdout; that exact message is all we look for there:
            // stdout is otherwise never shown, since a failing helper may still have printed the
            // secret.
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stdout.trim() == HELPER_NOT_FOUND || stderr.contains("credentials not found") {
                return Ok(Credential::Anonymous);
            }
            let mut reason = format!("exited with {}", out.status);
            if stderr.is_empty() {
                reason.push_str(" and nothing on stderr (its stdout is withheld: it may hold a secret)");
            } else {
                reason.push_str(": ");
                reason.extend(stderr.chars().take(HELPER_STDERR_MAX));
                if stderr.chars().count() > HELPER_STDERR_MAX {
                    reason.push('…');
                }
            }
            return Err(fail(reason));
        }
        #[derive(Deserialize)]
        struct HelperAnswer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let a: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
            fail("answered something that is not its JSON (output withheld: it may hold a secret)".into())
        })?;
        tracing::debug!(helper, registry, user = %a.username, "credentials from helper");
        Ok(if a.username == "<token>" {
            Credential::IdentityToken(SecretString::from(a.secret))
        } else {
            Credential::Basic {
                username: a.username,
                password: SecretString::from(a.secret),
            }
        })
    }
}

/// What a helper printed and how it ended.
struct HelperOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Writes `input` to the child's stdin, collects its output, and waits at most `timeout` for it
/// to exit; `None` when it did not (it is killed then). Output is read on threads of their own,
/// so a helper that writes much cannot block on a full pipe, and one that never closes its
/// pipes (a grandchild keeping them open) cannot block us.
fn wait_with_timeout(mut child: Child, input: &str, timeout: Duration) -> std::io::Result<Option<HelperOutput>> {
    let deadline = Instant::now().checked_add(timeout);
    let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(mut p) = pipe {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = p.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        rx
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit status.
        let _ = stdin.write_all(input.as_bytes());
    }
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        let left = deadline.map_or(pause, |d| d.saturating_duration_since(now));
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // The helper is gone; its pipes close unless it left a child holding them.
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        let left = deadline.map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(Instant::now()).max(Duration::from_secs(1))
        });
        rx.recv_timeout(left).unwrap_or_default()
    };
    Ok(Some(HelperOutput {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn basic(c: &Credential) -> (String, String) {
        match c {
            Credential::Basic { username, password } => (username.clone(), password.expose_secret().to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn auths_entries_decode_and_match_by_host() {
        let cfg = DockerConfig::from_json(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnRva2Vu"},
                "registry.cern.ch": {"auth": "Ym90OnMzY3JldA=="},
                "http://localhost:5001": {"username": "u", "password": "p"},
                "sso.example.org": {"identitytoken": "refresh-me"}
            }}"#,
        )
        .unwrap();
        assert_eq!(
            basic(&cfg.credential_for("docker.io").unwrap()),
            ("hub".into(), "token".into())
        );
        assert_eq!(
            basic(&cfg.credential_for("registry.cern.ch").unwrap()),
            ("bot".into(), "s3cret".into())
        );
        assert_eq!(
            basic(&cfg.credential_for("localhost:5001").unwrap()),
            ("u".into(), "p".into())
        );
        assert!(matches!(
            cfg.credential_for("sso.example.org").unwrap(),
            Credential::IdentityToken(_)
        ));
        assert!(matches!(cfg.credential_for("quay.io").unwrap(), Credential::Anonymous));
        let dbg = format!("{cfg:?} {:?}", cfg.credential_for("registry.cern.ch").unwrap());
        assert!(!dbg.contains("s3cret") && !dbg.contains("Ym90"), "{dbg}");
    }

    #[test]
    fn broken_configs_are_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, "{\"auths\": ").unwrap();
        let e = DockerConfig::load_from(&p).unwrap_err();
        assert!(e.to_string().contains("config.json"), "{e}");
        std::fs::write(&p, r#"{"auths": {"r.example": {"auth": "not base64!"}}}"#).unwrap();
        let e = DockerConfig::load_from(&p)
            .unwrap()
            .credential_for("r.example")
            .unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        let missing = DockerConfig::load_from(&dir.path().join("absent.json")).unwrap();
        assert!(matches!(
            missing.credential_for("docker.io").unwrap(),
            Credential::Anonymous
        ));
    }

    #[test]
    fn a_failing_helper_never_has_its_stdout_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-leaky");
        // Prints the secret, then fails: with nothing on stderr for one server, a long stderr for
        // the other.
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n\
             echo '{\"ServerURL\":\"x\",\"Username\":\"robot\",\"Secret\":\"s3cr3t-from-stdout\"}'\n\
             case \"$server\" in\n\
             quiet.example) exit 2;;\n\
             *) head -c 5000 /dev/zero | tr '\\0' e >&2; exit 1;;\nesac\n",
        )
        .unwrap();
        let mut perm = std::fs::metadata(&helper).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&helper, perm).unwrap();
        let cfg = DockerConfig::from_json(r#"{"credsStore": "leaky"}"#)
            .unwrap()
            .with_helper_dirs(vec![dir.path().to_path_buf()]);
        let e = cfg.credential_for("quiet.example").unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert!(matches!(e, Error::CredentialHelper { .. }), "{e:?}");
        assert!(msg.contains("exit status: 2") && msg.contains("withheld"), "{msg}");
        let e = cfg.credential_for("loud.example").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert!(
            msg.contains(&"e".repeat(512)) && !msg.contains(&"e".repeat(513)),
            "{msg}"
        );
    }

    #[test]
    fn a_hung_credential_helper_is_killed_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-hung");
        let pid_file = dir.path().join("pid");
        // Records its pid, then never answers (exec: the shell itself is the sleeping process).
        std::fs::write(
            &helper,
            format!("#!/bin/sh\necho $$ > {}\nexec sleep 60\n", pid_file.display()),
        )
        .unwrap();
        let mut perm = std::fs::metadata(&helper).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&helper, perm).unwrap();
        let cfg = DockerConfig::from_json(r#"{"credsStore": "hung"}"#)
            .unwrap()
            .with_helper_dirs(vec![dir.path().to_path_buf()])
            .with_helper_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let e = cfg.credential_for("registry.example").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert!(
            matches!(&e, Error::CredentialHelperTimeout { helper, registry, .. } if helper == "hung" && registry == "registry.example"),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("docker-credential-hung") && msg.contains("killed") && msg.contains("with_helper_timeout"),
            "{msg}"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let alive = std::path::Path::new("/proc").join(pid.trim()).join("stat");
        let state = std::fs::read_to_string(&alive).unwrap_or_default();
        // Gone, or at most a zombie awaiting its reaper (it was reaped by `wait`, so normally gone).
        assert!(
            state.is_empty() || state.split_whitespace().nth(2) == Some("Z"),
            "the helper still runs: {state}"
        );
    }

    #[test]
    fn credential_helpers_are_run_with_the_server_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        // Answers for registry.cern.ch, says "not found" for the rest, and fails for Docker Hub.
        std::fs::write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\ncase \"$server\" in\n\
             registry.cern.ch) echo '{\"ServerURL\":\"registry.cern.ch\",\"Username\":\"robot\",\"Secret\":\"from-helper\"}';;\n\
             tok.example) echo '{\"ServerURL\":\"tok.example\",\"Username\":\"<token>\",\"Secret\":\"id-token\"}';;\n\
             https://index.docker.io/v1/) echo 'keychain locked' >&2; exit 1;;\n\
             *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
        )
        .unwrap();
        let mut perm = std::fs::metadata(&helper).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&helper, perm).unwrap();
        let cfg = DockerConfig::from_json(r#"{"credsStore": "fake", "credHelpers": {"tok.example": "fake"}}"#)
            .unwrap()
            .with_helper_dirs(vec![dir.path().to_path_buf()]);
        assert_eq!(
            basic(&cfg.credential_for("registry.cern.ch").unwrap()),
            ("robot".into(), "from-helper".into())
        );
        assert!(matches!(
            cfg.credential_for("tok.example").unwrap(),
            Credential::IdentityToken(_)
        ));
        assert!(matches!(cfg.credential_for("quay.io").unwrap(), Credential::Anonymous));
        let e = cfg.credential_for("docker.io").unwrap_err();
        assert!(
            e.to_string().contains("keychain locked") && e.to_string().contains("docker-credential-fake"),
            "{e}"
        );
        let none = DockerConfig::from_json(r#"{"credsStore": "absent-helper"}"#)
            .unwrap()
            .with_helper_dirs(vec![dir.path().to_path_buf()]);
        let e = none.credential_for("x.example").unwrap_err();
        assert!(e.to_string().contains("PATH"), "{e}");
    }
}
