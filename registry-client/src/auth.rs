//! Registry authentication: `WWW-Authenticate` challenges, HTTP Basic, and the Bearer token flow
//! Docker Hub uses (ask the challenge's realm for a token for `service` and `scope`, with Basic
//! credentials or an OAuth2 refresh token), with a token cache shared by all requests.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::credentials::Credential;
use crate::error::{Error, Result};

/// How a registry wants to be authenticated, from its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// HTTP Basic on every request.
    Basic,
    /// A Bearer token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass on.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value: a scheme and `key="value"` pairs, where quoted values
/// may hold commas (`scope="repository:a:pull,push"`).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// The access a request needs: `repository:NAME:ACTIONS` scopes, space-separated when several
/// (a cross-repository mount needs push on the target and pull on the source).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scope(Vec<String>);

impl Scope {
    pub(crate) fn pull(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull")])
    }
    pub(crate) fn push(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull,push")])
    }
    /// What cancelling an upload needs: distribution authorizes every `DELETE` with `delete`,
    /// and the upload was made with `pull,push`. Token servers grant the subset the user holds, so
    /// a user without `delete` still gets a token (and the registry purges the session later).
    pub(crate) fn cancel_upload(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull,push,delete")])
    }
    pub(crate) fn delete(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:delete")])
    }
    pub(crate) fn and_pull(mut self, repo: &str) -> Scope {
        self.0.push(format!("repository:{repo}:pull"));
        self
    }
    pub(crate) fn parts(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// A Bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: SecretString,
    pub(crate) renew_at: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    /// Kept as any JSON: token services send integers, floats, strings or nonsense here, and a
    /// lifetime we cannot read is not worth failing the request for (the default applies).
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The lifetime assumed when a token answer gives none we can use: Docker's default.
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The shortest lifetime we plan with (a token used at once is still worth having).
pub(crate) const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(10);
/// The longest lifetime we trust a token for, whatever `expires_in` says (up to `u64::MAX`
/// seconds, from a broken or hostile token service): an hour. A token that is still good
/// after that is simply fetched again; one that stops working earlier is refreshed on 401.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How long to use a token for, from the answer's `expires_in`: whole or fractional seconds,
/// as a number or a numeric string; anything else (negative, NaN, huge, not a number) gives
/// [`DEFAULT_TOKEN_LIFETIME`]. The result lies in [`MIN_TOKEN_LIFETIME`]..=[`MAX_TOKEN_LIFETIME`].
pub(crate) fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let secs: Option<f64> = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let lifetime = match secs {
        // Capped before the conversion, and `try_from_secs_f64` refuses instead of panicking.
        Some(s) if s.is_finite() && s >= 0.0 => {
            Duration::try_from_secs_f64(s.min(MAX_TOKEN_LIFETIME.as_secs_f64())).unwrap_or(DEFAULT_TOKEN_LIFETIME)
        }
        _ => DEFAULT_TOKEN_LIFETIME,
    };
    lifetime.clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME)
}

/// Reads a token service's answer: the token (`token`, else `access_token`) and how long to
/// use it before fetching another (90 % of its lifetime, so no request starts with a token
/// about to expire).
pub(crate) fn parse_token_answer(url: &str, body: &[u8]) -> Result<(SecretString, Duration)> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| Error::Protocol {
        url: url.to_string(),
        reason: format!("token response is not the expected JSON: {e}"),
    })?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Protocol {
            url: url.to_string(),
            reason: "token response has neither `token` nor `access_token`".into(),
        })?;
    let lifetime = token_lifetime(parsed.expires_in.as_ref());
    Ok((SecretString::from(value), lifetime - lifetime / 10))
}

/// Per-client authentication state: the challenge each registry answered with, cached tokens
/// per (registry, scope), and the credential resolved for each registry.
#[derive(Default)]
pub(crate) struct AuthState {
    pub(crate) challenges: Mutex<HashMap<String, Challenge>>,
    pub(crate) tokens: Mutex<HashMap<(String, Scope), Token>>,
}

/// Builds the `Authorization` value for HTTP Basic.
pub(crate) fn basic_header(username: &str, password: &SecretString) -> String {
    let raw = format!("{username}:{}", password.expose_secret());
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// Asks a token endpoint for a token, the way `docker login` does: GET with Basic credentials
/// (or none, for anonymous pulls), or POST an OAuth2 refresh-token grant for identity tokens.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scope: &Scope,
    credential: &Credential,
) -> Result<Token> {
    let mut url = url::Url::parse(realm).map_err(|e| Error::Protocol {
        url: realm.to_string(),
        reason: format!("token realm is not a URL: {e}"),
    })?;
    let request = match credential {
        Credential::IdentityToken(refresh) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("client_id", "imagekit")
                .append_pair("refresh_token", refresh.expose_secret());
            if let Some(s) = service {
                form.append_pair("service", s);
            }
            form.append_pair("scope", &scope.to_string());
            http.post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.finish())
        }
        _ => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for part in scope.parts() {
                    q.append_pair("scope", part);
                }
            }
            let rb = http.get(url.clone());
            match credential {
                Credential::Basic { username, password } => {
                    rb.header(reqwest::header::AUTHORIZATION, basic_header(username, password))
                }
                _ => rb,
            }
        }
    };
    let method = if matches!(credential, Credential::IdentityToken(_)) {
        "POST"
    } else {
        "GET"
    };
    // Never put the query in errors: a refresh token travels in the body, but keep URLs short.
    url.set_query(None);
    let response = request.send().await.map_err(|source| Error::Transport {
        method: method.into(),
        url: url.to_string(),
        source,
    })?;
    let status = response.status();
    let request_id = crate::client::request_id(response.headers());
    let body = crate::client::read_body(method, url.as_str(), response, crate::client::TOKEN_BODY).await?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Error::Unauthorized {
            registry: registry.to_string(),
            scope: scope.to_string(),
            reason: format!(
                "the token service {url} refused {} (HTTP {status}): {}; check the credentials for {registry} \
                 (docker login, ~/.docker/config.json or the ones given to the client)",
                describe(credential),
                crate::client::error_message(&body, &crate::redact::credential_secrets(credential))
            ),
        });
    }
    if !status.is_success() {
        return Err(Error::Http {
            method: method.into(),
            url: url.to_string(),
            status: status.as_u16(),
            code: None,
            message: crate::client::error_message(&body, &crate::redact::credential_secrets(credential)),
            retry_after: None,
            request_id,
        });
    }
    let (value, use_for) = parse_token_answer(url.as_str(), &body)?;
    let now = Instant::now();
    Ok(Token {
        value,
        // `use_for` is at most an hour, but an Instant near its platform's end could still
        // overflow: then the token is used once and fetched again.
        renew_at: now.checked_add(use_for).unwrap_or(now),
    })
}

fn describe(c: &Credential) -> String {
    match c {
        Credential::Anonymous => "an anonymous request".into(),
        Credential::Basic { username, .. } => format!("user {username:?}"),
        Credential::IdentityToken(_) => "the identity token".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_like_docker_hub_and_distribution_send_them() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/centos:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="basic-realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"bearer  realm=http://127.0.0.1:5080/token , error="invalid_token""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:5080/token".into(),
                service: None
            })
        );
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "a Bearer challenge needs a realm"
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn token_lifetimes_from_outside_are_bounded_and_never_panic() {
        let life = |v: serde_json::Value| token_lifetime(Some(&v));
        assert_eq!(life(serde_json::json!(300)), Duration::from_secs(300));
        assert_eq!(life(serde_json::json!(u64::MAX)), MAX_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!(1e300)), MAX_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!(0)), MIN_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!(-5)), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!(i64::MIN)), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!(90.5)), Duration::from_secs_f64(90.5));
        assert_eq!(life(serde_json::json!("120")), Duration::from_secs(120));
        assert_eq!(life(serde_json::json!("inf")), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!("NaN")), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!("soon")), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(life(serde_json::json!({"s": 1})), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(None), DEFAULT_TOKEN_LIFETIME);
        let (_, use_for) = parse_token_answer(
            "u",
            br#"{"token":"t","expires_in":18446744073709551615,"issued_at":"+999999-99"}"#,
        )
        .unwrap();
        assert_eq!(use_for, MAX_TOKEN_LIFETIME - MAX_TOKEN_LIFETIME / 10);
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        /// Any JSON scalar or small container, as token services put in `expires_in` & co.
        fn odd_value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| f.to_string()),
                "-?[0-9]{1,40}(\\.[0-9]{0,10})?([eE][-+]?[0-9]{1,4})?",
                any::<String>().prop_map(|s| serde_json::Value::String(s).to_string()),
                Just("null".to_string()),
                Just("[]".to_string()),
                Just("{}".to_string()),
                Just("true".to_string()),
            ]
        }

        proptest! {
            #![proptest_config(config())]

            /// Token answers: no panic; a token and a use-by within the documented bounds, or a
            /// typed error.
            #[test]
            fn fuzz_token_answers(
                token in prop_oneof![Just("\"t\"".to_string()), odd_value()],
                expires_in in odd_value(),
                issued_at in odd_value(),
                key in prop::sample::select(vec!["token", "access_token", "expires_in", "x"]),
                raw in any::<Vec<u8>>(),
            ) {
                let doc = format!(r#"{{"{key}":{token},"expires_in":{expires_in},"issued_at":{issued_at}}}"#);
                for body in [doc.as_bytes(), &raw[..]] {
                    match parse_token_answer("u", body) {
                        Ok((_, use_for)) => prop_assert!(use_for >= MIN_TOKEN_LIFETIME / 2 && use_for <= MAX_TOKEN_LIFETIME),
                        Err(e) => prop_assert!(matches!(e, Error::Protocol { .. }), "{e:?}"),
                    }
                }
            }

            /// `WWW-Authenticate` values: no panic; a Bearer challenge always has its realm.
            #[test]
            fn fuzz_challenges(
                header in prop_oneof![
                    any::<String>(),
                    "(Bearer|bearer|Basic|BASIC|Negotiate)?[ ,]{0,2}((realm|service|scope|error)=(\"[^\"]{0,12}\"?|[a-z:/.,]{0,12})[ ,]{0,2}){0,4}",
                    "[a-zA-Z =\",\\\\]{0,40}",
                ]
            ) {
                if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(&header) {
                    prop_assert!(header.to_ascii_lowercase().contains("realm"), "{header:?} gave realm {realm:?}");
                }
            }
        }
    }

    #[test]
    fn scopes_join_with_spaces() {
        let s = Scope::push("cern/alma9").and_pull("cern/base");
        assert_eq!(
            s.to_string(),
            "repository:cern/alma9:pull,push repository:cern/base:pull"
        );
    }
}
