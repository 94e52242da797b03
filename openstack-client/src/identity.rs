//! Keystone v3: credentials, tokens and the service catalog.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::config::Interface;
use crate::error::{Error, Result, service_message};

/// A domain, by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRef {
    /// `domain.id`.
    Id(String),
    /// `domain.name`.
    Name(String),
}

impl DomainRef {
    fn to_json(&self) -> Value {
        match self {
            DomainRef::Id(id) => json!({ "id": id }),
            DomainRef::Name(name) => json!({ "name": name }),
        }
    }
}

/// A user or project, by id, or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Named {
    /// Its id (takes precedence over the name).
    pub id: Option<String>,
    /// Its name (needs a domain).
    pub name: Option<String>,
    /// The domain that scopes the name.
    pub domain: Option<DomainRef>,
}

impl Named {
    /// By id.
    pub fn id(id: impl Into<String>) -> Self {
        Named {
            id: Some(id.into()),
            ..Default::default()
        }
    }
    /// By name in a domain given by name.
    pub fn name_in(name: impl Into<String>, domain_name: impl Into<String>) -> Self {
        Named {
            id: None,
            name: Some(name.into()),
            domain: Some(DomainRef::Name(domain_name.into())),
        }
    }

    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(id) = &self.id {
            m.insert("id".into(), json!(id));
        } else if let Some(name) = &self.name {
            m.insert("name".into(), json!(name));
            // Keystone needs a domain with a name; Default is what every deployment has.
            let d = self.domain.clone().unwrap_or(DomainRef::Id("default".into()));
            m.insert("domain".into(), d.to_json());
        }
        Value::Object(m)
    }
}

/// What a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// No scope (only identity calls work).
    #[default]
    Unscoped,
    /// A project: the usual scope for Glance, Nova, Ironic.
    Project(Named),
    /// A domain.
    Domain(DomainRef),
}

/// How to get a token.
#[derive(Clone)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `password` / `v3password`.
    Password {
        /// The user.
        user: Named,
        /// The password (never printed).
        password: SecretString,
        /// The scope.
        scope: Scope,
    },
    /// `v3applicationcredential`: by id, or by name with its user. Scope is fixed by the credential.
    ApplicationCredential {
        /// Credential id.
        id: Option<String>,
        /// Credential name (needs `user`).
        name: Option<String>,
        /// The owning user, for a credential given by name.
        user: Option<Named>,
        /// The secret (never printed).
        secret: SecretString,
    },
    /// `token` / `v3token`: exchange an existing token for a (re-)scoped one.
    Token {
        /// The token (never printed).
        token: SecretString,
        /// The scope.
        scope: Scope,
    },
}

impl fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMethod::Password { user, scope, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .field("password", &"[REDACTED]")
                .field("scope", scope)
                .finish(),
            AuthMethod::ApplicationCredential { id, name, user, .. } => f
                .debug_struct("ApplicationCredential")
                .field("id", id)
                .field("name", name)
                .field("user", user)
                .field("secret", &"[REDACTED]")
                .finish(),
            AuthMethod::Token { scope, .. } => f
                .debug_struct("Token")
                .field("token", &"[REDACTED]")
                .field("scope", scope)
                .finish(),
        }
    }
}

/// Where and how to authenticate.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Keystone's URL (`…/v3` or unversioned; `/v3` is added when missing).
    pub auth_url: Url,
    /// The method.
    pub method: AuthMethod,
}

impl Credentials {
    /// Password credentials scoped to a project, both by name in the `Default` domain.
    pub fn password(
        auth_url: Url,
        user: impl Into<String>,
        password: SecretString,
        project: impl Into<String>,
    ) -> Self {
        Credentials {
            auth_url,
            method: AuthMethod::Password {
                user: Named::name_in(user, "Default"),
                password,
                scope: Scope::Project(Named::name_in(project, "Default")),
            },
        }
    }

    /// Application credential by id.
    pub fn application_credential(auth_url: Url, id: impl Into<String>, secret: SecretString) -> Self {
        Credentials {
            auth_url,
            method: AuthMethod::ApplicationCredential {
                id: Some(id.into()),
                name: None,
                user: None,
                secret,
            },
        }
    }

    /// The `POST /v3/auth/tokens` URL.
    pub fn tokens_url(&self) -> Url {
        let mut u = self.auth_url.clone();
        let path = u.path().trim_end_matches('/').to_string();
        let base = if path.ends_with("/v3") {
            path
        } else {
            format!("{path}/v3")
        };
        u.set_path(&format!("{base}/auth/tokens"));
        u
    }

    pub(crate) fn request_body(&self) -> Value {
        let scope_json = |s: &Scope| match s {
            Scope::Unscoped => None,
            Scope::Project(p) => Some(json!({ "project": p.to_json() })),
            Scope::Domain(d) => Some(json!({ "domain": d.to_json() })),
        };
        let (identity, scope) = match &self.method {
            AuthMethod::Password { user, password, scope } => {
                let mut u = user.to_json();
                u["password"] = json!(password.expose_secret());
                (
                    json!({ "methods": ["password"], "password": { "user": u } }),
                    scope_json(scope),
                )
            }
            AuthMethod::ApplicationCredential { id, name, user, secret } => {
                let mut ac = json!({ "secret": secret.expose_secret() });
                match (id, name) {
                    (Some(id), _) => ac["id"] = json!(id),
                    (None, Some(name)) => {
                        ac["name"] = json!(name);
                        if let Some(u) = user {
                            ac["user"] = u.to_json();
                        }
                    }
                    (None, None) => {}
                }
                (
                    json!({ "methods": ["application_credential"], "application_credential": ac }),
                    None,
                )
            }
            AuthMethod::Token { token, scope } => (
                json!({ "methods": ["token"], "token": { "id": token.expose_secret() } }),
                scope_json(scope),
            ),
        };
        let mut auth = json!({ "identity": identity });
        if let Some(s) = scope {
            auth["scope"] = s;
        }
        json!({ "auth": auth })
    }
}

/// One endpoint of a catalog entry.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Endpoint {
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// Region id.
    #[serde(default)]
    pub region_id: Option<String>,
    /// Region (older spelling of `region_id`).
    #[serde(default)]
    pub region: Option<String>,
    /// URL.
    pub url: String,
    /// Endpoint id.
    #[serde(default)]
    pub id: Option<String>,
}

/// One service of the catalog.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct CatalogEntry {
    /// Service type (`image`, `compute`, `baremetal`, …).
    #[serde(rename = "type")]
    pub service_type: String,
    /// Service name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// The service catalog that came with a token.
#[derive(Debug, Clone, Default)]
pub struct Catalog(pub Vec<CatalogEntry>);

impl Catalog {
    /// The URL for a service type, interface and (optional) region.
    pub fn endpoint(&self, service_type: &str, interface: Interface, region: Option<&str>) -> Result<Url> {
        let types = aliases(service_type);
        let found = self
            .0
            .iter()
            .filter(|e| types.contains(&e.service_type.as_str()))
            .flat_map(|e| e.endpoints.iter())
            .find(|ep| {
                ep.interface == interface.as_str()
                    && region.is_none_or(|r| ep.region_id.as_deref().or(ep.region.as_deref()) == Some(r))
            });
        match found {
            Some(ep) => Url::parse(&ep.url).map_err(|e| Error::Decode {
                method: "POST".into(),
                url: "auth/tokens".into(),
                reason: format!("catalog URL {:?} for {service_type}: {e}", ep.url),
            }),
            None => Err(Error::EndpointNotFound {
                service_type: service_type.into(),
                interface: interface.as_str().into(),
                region: region.map(str::to_string),
                available: self
                    .0
                    .iter()
                    .map(|e| e.service_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Service-type aliases from the service-types authority.
fn aliases(t: &str) -> Vec<&str> {
    match t {
        "block-storage" => vec!["block-storage", "volumev3", "volume"],
        "baremetal" => vec!["baremetal"],
        other => vec![other],
    }
}

/// A Keystone token and what came with it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Token {
    value: SecretString,
    /// When Keystone says it expires.
    pub expires_at: SystemTime,
    /// Its catalog.
    pub catalog: Catalog,
    /// Project id, for project-scoped tokens.
    pub project_id: Option<String>,
    /// Project name.
    pub project_name: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .field("project_id", &self.project_id)
            .field("user_id", &self.user_id)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// The token itself, for `X-Auth-Token`.
    pub fn secret(&self) -> &SecretString {
        &self.value
    }

    /// Time left before expiry (zero when expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at.duration_since(SystemTime::now()).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct TokenInfo {
    expires_at: String,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
    #[serde(default)]
    project: Option<IdName>,
    #[serde(default)]
    user: Option<IdName>,
    #[serde(default)]
    roles: Vec<IdName>,
}

#[derive(Deserialize)]
struct IdName {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v3/auth/tokens`.
pub(crate) async fn authenticate(http: &reqwest::Client, creds: &Credentials) -> Result<Token> {
    let url = creds.tokens_url();
    let resp = http
        .post(url.clone())
        .json(&creds.request_body())
        .send()
        .await
        .map_err(|source| Error::Transport {
            method: "POST".into(),
            url: url.to_string(),
            source,
        })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) && !matches!(status, 400 | 401 | 403 | 404) {
        return Err(crate::session::api_error(&reqwest::Method::POST, &url, resp).await);
    }
    let header = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.map_err(|source| Error::Transport {
        method: "POST".into(),
        url: url.to_string(),
        source,
    })?;
    if matches!(status, 400 | 401 | 403 | 404) {
        return Err(Error::Auth {
            auth_url: creds.auth_url.to_string(),
            status,
            message: service_message(&body),
        });
    }
    let decode = |reason: String| Error::Decode {
        method: "POST".into(),
        url: url.to_string(),
        reason,
    };
    let value = header.ok_or_else(|| decode("no X-Subject-Token header in Keystone's answer".into()))?;
    let parsed: TokenBody = serde_json::from_slice(&body).map_err(|e| {
        decode(format!(
            "{e}; body starts {:?}",
            crate::error::truncate(&String::from_utf8_lossy(&body), 120)
        ))
    })?;
    let t = parsed.token;
    Ok(Token {
        value: SecretString::from(value),
        expires_at: parse_rfc3339(&t.expires_at)
            .ok_or_else(|| decode(format!("expires_at {:?} is not a timestamp", t.expires_at)))?,
        catalog: Catalog(t.catalog),
        project_id: t.project.as_ref().and_then(|p| p.id.clone()),
        project_name: t.project.and_then(|p| p.name),
        user_id: t.user.and_then(|u| u.id),
        roles: t.roles.into_iter().filter_map(|r| r.name).collect(),
    })
}

/// `2015-11-07T02:58:43.578887Z` (or with an offset) → `SystemTime`.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i >= 8) {
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').unwrap_or((&off[1..3.min(off.len())], "0"));
        (
            t,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    } else {
        (rest, 0)
    };
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec: f64 = t.next().unwrap_or("0").parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(
        UNIX_EPOCH
            + Duration::from_secs(secs)
            + Duration::from_secs_f64(sec.fract().max(0.0))
            + Duration::from_secs(sec.trunc() as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        let t = parse_rfc3339("2015-11-07T02:58:43.578887Z").unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_446_865_123);
        let t2 = parse_rfc3339("2015-11-07T03:58:43+01:00").unwrap();
        assert_eq!(t2.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_446_865_123);
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn request_bodies_match_the_api_reference() {
        let url = Url::parse("http://ks:5000/v3").unwrap();
        let c = Credentials::application_credential(
            url.clone(),
            "423f19a4ac1e4f48bbb4180756e6eb6c",
            "rEaqvJka48mpv".to_string().into(),
        );
        let want: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/keystone/admin_auth-application-credential-id-request.json"
        ))
        .unwrap();
        assert_eq!(c.request_body(), want);
        assert_eq!(c.tokens_url().as_str(), "http://ks:5000/v3/auth/tokens");
        let unversioned =
            Credentials::application_credential(Url::parse("http://ks:5000").unwrap(), "a", "b".to_string().into());
        assert_eq!(unversioned.tokens_url().as_str(), "http://ks:5000/v3/auth/tokens");

        let c = Credentials {
            auth_url: url,
            method: AuthMethod::Token {
                token: "'$OS_TOKEN'".to_string().into(),
                scope: Scope::Project(Named::id("5b50efd009b540559104ee3c03bbb2b7")),
            },
        };
        let want: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/keystone/admin_auth-token-scoped-request.json"
        ))
        .unwrap();
        assert_eq!(c.request_body(), want);
        assert!(!format!("{c:?}").contains("OS_TOKEN"));
    }

    #[test]
    fn catalog_lookup_by_type_interface_and_region() {
        let body: TokenBody = serde_json::from_str(include_str!(
            "../tests/fixtures/keystone/admin_auth-password-project-scoped-response.json"
        ))
        .unwrap();
        let cat = Catalog(body.token.catalog);
        let u = cat.endpoint("compute", Interface::Public, Some("RegionOne")).unwrap();
        assert!(u.as_str().contains(":8774/"), "{u}");
        let e = cat.endpoint("compute", Interface::Public, Some("Mars")).unwrap_err();
        assert!(matches!(e, Error::EndpointNotFound { .. }));
        assert!(e.to_string().contains("compute"), "{e}");
        assert!(cat.endpoint("baremetal", Interface::Public, None).is_err());
    }
}

/// An application credential just created; the secret is only shown once.
#[derive(Clone)]
#[non_exhaustive]
pub struct ApplicationCredential {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its secret (never printed).
    pub secret: SecretString,
    /// The project it is scoped to.
    pub project_id: Option<String>,
}

impl fmt::Debug for ApplicationCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationCredential")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret", &"[REDACTED]")
            .field("project_id", &self.project_id)
            .finish()
    }
}
