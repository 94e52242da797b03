//! Cloud configuration compatible with openstacksdk: `clouds.yaml` + `secure.yaml`, `OS_CLOUD`, and
//! plain `OS_*` variables.
//!
//! Search path, first file found wins (as openstacksdk): `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
//! `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml` (`.yml` too). `secure.yaml` is found
//! the same way (`$OS_CLIENT_SECURE_FILE`) and merged over it, so passwords can live apart.
//!
//! ```
//! use openstack_client::CloudConfig;
//! let yaml = r#"
//! clouds:
//!   prod:
//!     auth:
//!       auth_url: https://keystone.example.org:5000/v3
//!       username: releasebot
//!       password: s3cret
//!       project_name: images
//!       user_domain_name: Default
//!       project_domain_name: Default
//!     region_name: RegionOne
//! "#;
//! let cloud = CloudConfig::from_yaml_str(yaml, None, "prod").unwrap();
//! assert_eq!(cloud.region_name.as_deref(), Some("RegionOne"));
//! assert!(!format!("{cloud:?}").contains("s3cret"));
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_json::{Map, Value};
use url::Url;

use crate::error::{ConfigError, Result};
use crate::identity::{AuthMethod, Credentials, DomainRef, Named, Scope};

/// Which endpoint interface to use from the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interface {
    /// `public` (the default).
    #[default]
    Public,
    /// `internal`.
    Internal,
    /// `admin`.
    Admin,
}

impl Interface {
    /// The catalog's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }

    fn parse(cloud: &str, s: &str) -> Result<Self, ConfigError> {
        match s.trim_end_matches("URL").to_ascii_lowercase().as_str() {
            "public" => Ok(Interface::Public),
            "internal" => Ok(Interface::Internal),
            "admin" => Ok(Interface::Admin),
            _ => Err(ConfigError::Invalid {
                cloud: cloud.into(),
                field: "interface".into(),
                reason: format!("{s:?} is not public, internal or admin"),
            }),
        }
    }
}

/// One cloud, ready to build a [`crate::Session`] from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CloudConfig {
    /// The cloud's name (`envvars` for plain `OS_*` variables).
    pub name: String,
    /// How to authenticate (secrets redacted in Debug).
    pub credentials: Credentials,
    /// `region_name`.
    pub region_name: Option<String>,
    /// `interface` (default public).
    pub interface: Interface,
    /// `cacert`: extra PEM roots.
    pub cacert: Option<PathBuf>,
    /// `verify: false` turns TLS verification off (test clouds only).
    pub verify: bool,
    /// `<service_type>_endpoint_override`: used instead of the catalog.
    pub endpoint_overrides: BTreeMap<String, Url>,
}

/// Where configuration comes from; tests give their own.
///
/// ```
/// use openstack_client::ConfigSources;
/// // Only this clouds.yaml, as `OS_CLIENT_CONFIG_FILE` would say, and no `OS_*` from the process.
/// let only = ConfigSources::file("/etc/imagekit/clouds.yaml").env("OS_REGION_NAME", "cern");
/// assert_eq!(only.env["OS_REGION_NAME"], "cern");
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConfigSources {
    /// Environment variables (`OS_*`).
    pub env: BTreeMap<String, String>,
    /// Directories searched for clouds.yaml/secure.yaml, in order.
    pub dirs: Vec<PathBuf>,
}

impl ConfigSources {
    /// This process's environment and openstacksdk's search path.
    pub fn from_process() -> Self {
        let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("OS_")).collect();
        let mut dirs = vec![PathBuf::from(".")];
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(PathBuf::from(home).join(".config/openstack"));
        }
        dirs.push(PathBuf::from("/etc/openstack"));
        ConfigSources { env, dirs }
    }

    /// Only this `clouds.yaml` (with the `secure.yaml` beside it, if any), as
    /// `OS_CLIENT_CONFIG_FILE` would say; no other variables, no search path.
    pub fn file(clouds_yaml: impl Into<PathBuf>) -> Self {
        ConfigSources::default().env("OS_CLIENT_CONFIG_FILE", clouds_yaml.into().display().to_string())
    }

    /// Sets a variable (`OS_CLOUD`, `OS_AUTH_URL`, …) as if it were in the environment.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Searches this directory for `clouds.yaml`/`secure.yaml`, after those already given.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirs.push(dir.into());
        self
    }

    fn find(&self, env_key: &str, stem: &str) -> Option<PathBuf> {
        if let Some(p) = self.env.get(env_key) {
            return Some(PathBuf::from(p));
        }
        self.dirs.iter().find_map(|d| {
            ["yaml", "yml"]
                .iter()
                .map(|ext| d.join(format!("{stem}.{ext}")))
                .find(|p| p.is_file())
        })
    }
}

impl CloudConfig {
    /// Load like openstacksdk: `cloud`, else `$OS_CLOUD`, from clouds.yaml (+ secure.yaml); with
    /// neither, the plain `OS_*` variables.
    pub fn load(cloud: Option<&str>) -> Result<Self> {
        Self::load_from(cloud, &ConfigSources::from_process())
    }

    /// [`CloudConfig::load`] with explicit sources.
    pub fn load_from(cloud: Option<&str>, src: &ConfigSources) -> Result<Self> {
        let name = cloud.map(str::to_string).or_else(|| src.env.get("OS_CLOUD").cloned());
        let Some(name) = name else {
            return Self::from_env(&src.env);
        };
        let clouds_file = src.find("OS_CLIENT_CONFIG_FILE", "clouds");
        let secure_file = src.find("OS_CLIENT_SECURE_FILE", "secure");
        let mut searched = Vec::new();
        let mut clouds = Map::new();
        for file in [clouds_file, secure_file].into_iter().flatten() {
            let doc = read_yaml(&file)?;
            searched.push(file);
            if let Some(Value::Object(c)) = doc.get("clouds") {
                deep_merge(&mut clouds, c);
            }
        }
        let Some(Value::Object(cfg)) = clouds.get(&name) else {
            return Err(ConfigError::CloudNotFound {
                cloud: name,
                searched,
                known: clouds.keys().cloned().collect(),
            }
            .into());
        };
        let mut cfg = cfg.clone();
        // OS_* variables fill in what the file leaves out (openstacksdk does the same for secrets).
        let env_auth = env_auth_map(&src.env);
        let auth = cfg.entry("auth").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(a) = auth {
            for (k, v) in env_auth {
                a.entry(k).or_insert(Value::String(v));
            }
        }
        Self::from_map(&name, &cfg)
    }

    /// One cloud from a clouds.yaml text (and optionally a secure.yaml text).
    pub fn from_yaml_str(clouds_yaml: &str, secure_yaml: Option<&str>, cloud: &str) -> Result<Self> {
        let mut clouds = Map::new();
        for (i, text) in std::iter::once(clouds_yaml).chain(secure_yaml).enumerate() {
            let doc: Value = serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
                path: PathBuf::from(if i == 0 { "clouds.yaml" } else { "secure.yaml" }),
                reason: e.to_string(),
            })?;
            if let Some(Value::Object(c)) = doc.get("clouds") {
                deep_merge(&mut clouds, c);
            }
        }
        match clouds.get(cloud) {
            Some(Value::Object(cfg)) => Self::from_map(cloud, cfg),
            _ => Err(ConfigError::CloudNotFound {
                cloud: cloud.into(),
                searched: vec![],
                known: clouds.keys().cloned().collect(),
            }
            .into()),
        }
    }

    /// From `OS_*` variables alone (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`, …).
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self> {
        if !env.contains_key("OS_AUTH_URL") {
            return Err(ConfigError::NoCloud.into());
        }
        let mut cfg = Map::new();
        cfg.insert(
            "auth".into(),
            Value::Object(
                env_auth_map(env)
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
        for (var, key) in [
            ("OS_AUTH_TYPE", "auth_type"),
            ("OS_REGION_NAME", "region_name"),
            ("OS_INTERFACE", "interface"),
            ("OS_ENDPOINT_TYPE", "interface"),
            ("OS_CACERT", "cacert"),
        ] {
            if let Some(v) = env.get(var) {
                cfg.entry(key).or_insert(Value::String(v.clone()));
            }
        }
        if env.get("OS_INSECURE").is_some_and(|v| truthy(v)) {
            cfg.insert("verify".into(), Value::Bool(false));
        }
        for (k, v) in env {
            if let Some(svc) = k.strip_prefix("OS_").and_then(|k| k.strip_suffix("_ENDPOINT_OVERRIDE")) {
                cfg.insert(
                    format!("{}_endpoint_override", svc.to_ascii_lowercase()),
                    Value::String(v.clone()),
                );
            }
        }
        Self::from_map("envvars", &cfg)
    }

    fn from_map(cloud: &str, cfg: &Map<String, Value>) -> Result<Self> {
        let empty = Map::new();
        let auth = cfg.get("auth").and_then(Value::as_object).unwrap_or(&empty);
        let s = |m: &Map<String, Value>, k: &str| -> Option<String> {
            match m.get(k)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let auth_type = s(cfg, "auth_type").unwrap_or_else(|| "password".into());
        let missing = |field: &str| ConfigError::MissingField {
            cloud: cloud.into(),
            field: field.into(),
            auth_type: auth_type.clone(),
        };
        let auth_url = s(auth, "auth_url").ok_or_else(|| missing("auth.auth_url"))?;
        let auth_url = Url::parse(&auth_url).map_err(|e| ConfigError::Invalid {
            cloud: cloud.into(),
            field: "auth.auth_url".into(),
            reason: format!("{auth_url:?}: {e}"),
        })?;
        let secret = |k: &str| s(auth, k).map(SecretString::from);
        let domain = |id_key: &str, name_key: &str| -> Option<DomainRef> {
            s(auth, id_key)
                .map(DomainRef::Id)
                .or_else(|| s(auth, name_key).map(DomainRef::Name))
                .or_else(|| s(auth, "domain_id").map(DomainRef::Id))
                .or_else(|| s(auth, "domain_name").map(DomainRef::Name))
        };
        let project = || -> Option<Named> {
            let id = s(auth, "project_id").or_else(|| s(auth, "tenant_id"));
            let name = s(auth, "project_name").or_else(|| s(auth, "tenant_name"));
            (id.is_some() || name.is_some()).then(|| Named {
                id,
                name,
                domain: domain("project_domain_id", "project_domain_name"),
            })
        };
        let scope = || match project() {
            Some(p) => Scope::Project(p),
            None => match (s(auth, "domain_id"), s(auth, "domain_name")) {
                (Some(id), _) => Scope::Domain(DomainRef::Id(id)),
                (None, Some(name)) => Scope::Domain(DomainRef::Name(name)),
                _ => Scope::Unscoped,
            },
        };
        let user = || -> Option<Named> {
            let id = s(auth, "user_id");
            let name = s(auth, "username").or_else(|| s(auth, "user_name"));
            (id.is_some() || name.is_some()).then(|| Named {
                id,
                name,
                domain: domain("user_domain_id", "user_domain_name"),
            })
        };
        let method = match auth_type.as_str() {
            "password" | "v3password" => AuthMethod::Password {
                user: user().ok_or_else(|| missing("auth.username or auth.user_id"))?,
                password: secret("password").ok_or_else(|| missing("auth.password"))?,
                scope: scope(),
            },
            "v3applicationcredential" | "applicationcredential" => {
                let id = s(auth, "application_credential_id");
                let name = s(auth, "application_credential_name");
                if id.is_none() && name.is_none() {
                    return Err(missing("auth.application_credential_id or auth.application_credential_name").into());
                }
                let user = user();
                if id.is_none() && user.is_none() {
                    return Err(
                        missing("auth.username or auth.user_id (needed with application_credential_name)").into(),
                    );
                }
                AuthMethod::ApplicationCredential {
                    id,
                    name,
                    user,
                    secret: secret("application_credential_secret")
                        .ok_or_else(|| missing("auth.application_credential_secret"))?,
                }
            }
            "token" | "v3token" => AuthMethod::Token {
                token: secret("token").ok_or_else(|| missing("auth.token"))?,
                scope: scope(),
            },
            other => {
                return Err(ConfigError::UnknownAuthType {
                    cloud: cloud.into(),
                    auth_type: other.into(),
                }
                .into());
            }
        };
        let interface = match s(cfg, "interface") {
            Some(i) => Interface::parse(cloud, &i)?,
            None => Interface::Public,
        };
        let mut endpoint_overrides = BTreeMap::new();
        for (k, v) in cfg {
            if let (Some(svc), Value::String(u)) = (k.strip_suffix("_endpoint_override"), v) {
                let url = Url::parse(u).map_err(|e| ConfigError::Invalid {
                    cloud: cloud.into(),
                    field: k.clone(),
                    reason: format!("{u:?}: {e}"),
                })?;
                endpoint_overrides.insert(svc.replace('_', "-"), url);
            }
        }
        let verify = match cfg.get("verify") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(v)) => truthy(v),
            _ => true,
        };
        Ok(CloudConfig {
            name: cloud.into(),
            credentials: Credentials { auth_url, method },
            region_name: s(cfg, "region_name"),
            interface,
            cacert: s(cfg, "cacert").map(PathBuf::from),
            verify,
            endpoint_overrides,
        })
    }
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// `OS_USERNAME` → `username`, … for the auth keys clouds.yaml knows.
fn env_auth_map(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    const KEYS: [&str; 19] = [
        "auth_url",
        "username",
        "user_id",
        "password",
        "project_name",
        "project_id",
        "tenant_name",
        "tenant_id",
        "user_domain_name",
        "user_domain_id",
        "project_domain_name",
        "project_domain_id",
        "domain_name",
        "domain_id",
        "application_credential_id",
        "application_credential_name",
        "application_credential_secret",
        "token",
        "system_scope",
    ];
    KEYS.iter()
        .filter_map(|k| {
            env.get(&format!("OS_{}", k.to_ascii_uppercase()))
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect()
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value = serde_norway::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !v.is_object() && !v.is_null() {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            reason: "expected a mapping with a `clouds` key".into(),
        }
        .into());
    }
    Ok(v)
}

fn deep_merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => deep_merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use secrecy::ExposeSecret;

    const CLOUDS: &str = r#"
clouds:
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
  weird:
    auth_type: v3oidcpassword
    auth:
      auth_url: https://keystone.example.org/v3
"#;
    const SECURE: &str = "clouds:\n  prod:\n    auth:\n      password: from-secure\n";

    fn sources(dir: &Path, env: &[(&str, &str)]) -> ConfigSources {
        ConfigSources {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dirs: vec![dir.to_path_buf()],
        }
    }

    #[test]
    fn clouds_yaml_and_secure_yaml_merge_like_openstacksdk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clouds.yaml"), CLOUDS).unwrap();
        std::fs::write(dir.path().join("secure.yml"), SECURE).unwrap();
        let c = CloudConfig::load_from(None, &sources(dir.path(), &[("OS_CLOUD", "prod")])).unwrap();
        assert_eq!(c.region_name.as_deref(), Some("RegionTwo"));
        assert_eq!(c.interface, Interface::Internal);
        assert_eq!(
            c.endpoint_overrides["image"].as_str(),
            "https://glance.example.org/image"
        );
        match &c.credentials.method {
            AuthMethod::Password { user, password, scope } => {
                assert_eq!(user.name.as_deref(), Some("bot"));
                assert_eq!(user.domain, Some(DomainRef::Name("Default".into())));
                assert_eq!(password.expose_secret(), "from-secure");
                let Scope::Project(p) = scope else { panic!("{scope:?}") };
                assert_eq!(p.domain, Some(DomainRef::Id("default".into())));
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("from-secure"));
    }

    #[test]
    fn application_credentials_and_clear_errors() {
        let c = CloudConfig::from_yaml_str(CLOUDS, None, "appcred").unwrap();
        assert!(matches!(c.credentials.method, AuthMethod::ApplicationCredential { .. }));
        assert!(!format!("{c:?}").contains("shh"));

        let e = CloudConfig::from_yaml_str(CLOUDS, None, "weird").unwrap_err();
        assert!(matches!(e, Error::Config(ConfigError::UnknownAuthType { .. })), "{e}");
        assert!(e.to_string().contains("v3oidcpassword"));

        let e = CloudConfig::from_yaml_str(CLOUDS, None, "prod").unwrap_err();
        assert!(
            matches!(&e, Error::Config(ConfigError::MissingField { field, .. }) if field == "auth.password"),
            "{e}"
        );

        let e = CloudConfig::from_yaml_str(CLOUDS, None, "staging").unwrap_err();
        assert!(e.to_string().contains("appcred, prod, weird"), "{e}");

        let e = CloudConfig::from_yaml_str("clouds: [1, 2", None, "x").unwrap_err();
        assert!(matches!(e, Error::Config(ConfigError::Parse { .. })), "{e}");
    }

    #[test]
    fn missing_cloud_names_the_files_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clouds.yaml"), CLOUDS).unwrap();
        let e = CloudConfig::load_from(Some("nope"), &sources(dir.path(), &[])).unwrap_err();
        assert!(e.to_string().contains("clouds.yaml"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = CloudConfig::load_from(Some("nope"), &sources(empty.path(), &[])).unwrap_err();
        assert!(e.to_string().contains("no clouds.yaml"), "{e}");
    }

    #[test]
    fn plain_os_variables_work_without_a_file() {
        let env: BTreeMap<String, String> = [
            ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
            ("OS_USERNAME", "admin"),
            ("OS_PASSWORD", "pw"),
            ("OS_PROJECT_NAME", "admin"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", "RegionOne"),
            ("OS_INTERFACE", "publicURL"),
            ("OS_IMAGE_ENDPOINT_OVERRIDE", "http://127.0.0.1:9292"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = CloudConfig::from_env(&env).unwrap();
        assert_eq!(c.name, "envvars");
        assert_eq!(c.interface, Interface::Public);
        assert_eq!(c.endpoint_overrides["image"].as_str(), "http://127.0.0.1:9292/");
        assert!(matches!(
            CloudConfig::from_env(&BTreeMap::new()),
            Err(Error::Config(ConfigError::NoCloud))
        ));
    }
}
