//! Keystone v3: credentials, tokens and the service catalog.

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::config::Interface;
use crate::error::{Error, Result};

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
#[non_exhaustive]
pub struct Credentials {
    /// Keystone's URL (`…/v3` or unversioned; `/v3` is added when missing).
    pub auth_url: Url,
    /// The method.
    pub method: AuthMethod,
}

impl Credentials {
    /// Any method (a token, a password scoped to a domain, …) against Keystone at `auth_url`.
    pub fn new(auth_url: Url, method: AuthMethod) -> Self {
        Credentials { auth_url, method }
    }

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
    /// When Keystone says it expires. `None` when its `expires_at` could not be read or is outside
    /// what this platform's clock can represent: such a token counts as expiring at once, so the
    /// session authenticates again before each use rather than trusting a time it cannot know.
    pub expires_at: Option<SystemTime>,
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

    /// Time left before expiry (zero when expired, or when the expiry is unknown).
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or_default()
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
pub(crate) async fn authenticate(
    http: &reqwest::Client,
    creds: &Credentials,
    secrets: &crate::redact::Secrets,
) -> Result<Token> {
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
    if !resp.status().is_success() {
        // The one error mapper (bounded, secrets redacted); a refusal of the credentials says so.
        return Err(
            match crate::session::api_error(&reqwest::Method::POST, &url, resp, secrets).await {
                Error::Api {
                    status: status @ (400 | 401 | 403 | 404),
                    message,
                    ..
                } => Error::Auth {
                    auth_url: creds.auth_url.to_string(),
                    status,
                    message,
                },
                other => other,
            },
        );
    }
    let header = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body =
        crate::session::read_capped(&reqwest::Method::POST, &url, resp, crate::session::AnswerKind::Token).await?;
    let token = parse_token(&url, header, &body, secrets)?;
    secrets.add_token(token.secret());
    Ok(token)
}

/// Keystone's token answer: the `X-Subject-Token` header's value and the JSON body.
pub(crate) fn parse_token(
    url: &Url,
    header: Option<String>,
    body: &[u8],
    secrets: &crate::redact::Secrets,
) -> Result<Token> {
    let decode = |reason: String| Error::Decode {
        method: "POST".into(),
        url: url.to_string(),
        reason,
    };
    let value = header.ok_or_else(|| decode("no X-Subject-Token header in Keystone's answer".into()))?;
    let parsed: TokenBody =
        serde_json::from_slice(body).map_err(|e| decode(crate::session::decode_reason(&e, body, secrets)))?;
    let t = parsed.token;
    Ok(Token {
        value: SecretString::from(value),
        expires_at: expiry(&t.expires_at),
        catalog: Catalog(t.catalog),
        project_id: t.project.as_ref().and_then(|p| p.id.clone()),
        project_name: t.project.and_then(|p| p.name),
        user_id: t.user.and_then(|u| u.id),
        roles: t.roles.into_iter().filter_map(|r| r.name).collect(),
    })
}

/// A token's `expires_at`; `None` (with a warning) when it cannot be read or represented.
fn expiry(expires_at: &str) -> Option<SystemTime> {
    let t = crate::time::parse_timestamp(expires_at);
    if t.is_none() {
        tracing::warn!(
            expires_at = %crate::error::truncate(expires_at, 64),
            "Keystone's token expiry is not a usable timestamp; authenticating again before each use"
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_token_with_an_unreadable_or_unrepresentable_expiry_counts_as_expiring_now() {
        let token = |expires_at: Option<SystemTime>| Token {
            value: SecretString::from("t"),
            expires_at,
            catalog: Catalog::default(),
            project_id: None,
            project_name: None,
            user_id: None,
            roles: Vec::new(),
        };
        assert_eq!(token(None).remaining(), Duration::ZERO);
        let later = SystemTime::now().checked_add(Duration::from_secs(3600));
        assert!(token(later).remaining() > Duration::from_secs(3500));
        assert_eq!(token(Some(UNIX_EPOCH)).remaining(), Duration::ZERO);
        for odd in [
            "2026-11-24T10:35:00+٠١:٠٠",
            "2026-11-24T10:35:inf",
            "99999-01-01T00:00:00Z",
            "292277026596-12-04T15:30:07Z",
            "02-31T99:99",
        ] {
            assert_eq!(token(expiry(odd)).remaining(), Duration::ZERO, "{odd}");
        }
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
