//! API microversions (Nova `compute X.Y`, Ironic `1.N`): discovered from the service's version
//! document, negotiated against what this crate implements, and sent on every request.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use url::Url;

use crate::error::{Error, Result};

/// A microversion `MAJOR.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion(pub u32, pub u32);

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl FromStr for Microversion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidInput(format!("{s:?} is not a microversion like 2.79"));
        let (a, b) = s.trim().trim_start_matches('v').split_once('.').ok_or_else(bad)?;
        Ok(Microversion(
            a.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
        ))
    }
}

/// The range a service supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// Oldest.
    pub min: Microversion,
    /// Newest.
    pub max: Microversion,
}

impl VersionRange {
    /// Read `{"version": {...}}`, `{"versions": [...]}` or Ironic's `{"default_version": {...}}`,
    /// preferring the entry whose id is `id` (e.g. `v2.1`, `v1`).
    pub fn from_document(doc: &Value, id: &str) -> Option<Self> {
        let pick = |v: &Value| -> Option<VersionRange> {
            let max = v.get("version")?.as_str().filter(|s| !s.is_empty())?.parse().ok()?;
            let min = v.get("min_version")?.as_str().filter(|s| !s.is_empty())?.parse().ok()?;
            Some(VersionRange { min, max })
        };
        if let Some(v) = doc.get("version") {
            return pick(v);
        }
        if let Some(v) = doc.get("default_version")
            && v.get("id").and_then(Value::as_str) == Some(id)
        {
            return pick(v);
        }
        doc.get("versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("id").and_then(Value::as_str) == Some(id))
            .and_then(pick)
    }

    /// The version to use: `fixed` when given (and supported), else the highest both sides know.
    pub fn negotiate(
        &self,
        client_max: Microversion,
        fixed: Option<Microversion>,
        service: &str,
    ) -> Result<Microversion> {
        match fixed {
            Some(v) if v < self.min || v > self.max => Err(Error::InvalidInput(format!(
                "{service} supports microversions {}–{}, not the requested {v}",
                self.min, self.max
            ))),
            Some(v) => Ok(v),
            None if client_max < self.min => Err(Error::InvalidInput(format!(
                "{service} needs microversion {} or newer; this client implements up to {client_max}",
                self.min
            ))),
            None => Ok(self.max.min(client_max)),
        }
    }
}

/// Fetch `doc_url`'s version document and negotiate: the version `fixed` or the highest both know.
pub(crate) async fn discover(
    session: &crate::Session,
    doc_url: &Url,
    id: &str,
    client_max: Microversion,
    fixed: Option<Microversion>,
    service: &str,
) -> Result<Microversion> {
    // Through the session, so that a 503 or a dropped connection is retried like any GET.
    let doc: Value = session
        .send_json(crate::session::ApiRequest::new(reqwest::Method::GET, doc_url.clone()))
        .await?;
    let range = VersionRange::from_document(&doc, id).ok_or_else(|| Error::Decode {
        method: "GET".into(),
        url: doc_url.to_string(),
        reason: format!("no {id} microversion range in {service}'s version document"),
    })?;
    let v = range.negotiate(client_max, fixed, service)?;
    tracing::debug!(microversion = %v, service, "API microversion negotiated");
    Ok(v)
}

/// GET a version document (no token needed, but harmless).
pub(crate) async fn fetch_document(
    http: &reqwest::Client,
    url: &Url,
    secrets: &crate::redact::Secrets,
) -> Result<Value> {
    let resp = http.get(url.clone()).send().await.map_err(|source| Error::Transport {
        method: "GET".into(),
        url: url.to_string(),
        source,
    })?;
    // Glance answers 300 Multiple Choices at its root: a document all the same.
    if !(200..400).contains(&resp.status().as_u16()) {
        return Err(crate::session::api_error(&reqwest::Method::GET, url, resp, secrets).await);
    }
    let body =
        crate::session::read_capped(&reqwest::Method::GET, url, resp, crate::session::AnswerKind::Resource).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Decode {
        method: "GET".into(),
        url: url.to_string(),
        reason: format!("version document is not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_nova_and_ironic_documents_and_negotiate() {
        let nova: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/nova/versions_v21-version-get-resp.json"
        ))
        .unwrap();
        let r = VersionRange::from_document(&nova, "v2.1").unwrap();
        assert_eq!((r.min, r.max), (Microversion(2, 1), Microversion(2, 104)));
        assert_eq!(
            r.negotiate(Microversion(2, 100), None, "Nova").unwrap(),
            Microversion(2, 100)
        );
        assert_eq!(
            r.negotiate(Microversion(2, 200), None, "Nova").unwrap(),
            Microversion(2, 104)
        );
        assert_eq!(
            r.negotiate(Microversion(2, 100), Some(Microversion(2, 37)), "Nova")
                .unwrap(),
            Microversion(2, 37)
        );
        assert!(
            r.negotiate(Microversion(2, 100), Some(Microversion(2, 999)), "Nova")
                .is_err()
        );

        let ironic: Value =
            serde_json::from_str(include_str!("../tests/fixtures/ironic/api-root-response.json")).unwrap();
        let r = VersionRange::from_document(&ironic, "v1").unwrap();
        assert_eq!(r.max, Microversion(1, 37));
        assert!(Microversion(1, 9) < Microversion(1, 37), "numeric, not lexical order");
        assert_eq!("1.115".parse::<Microversion>().unwrap().to_string(), "1.115");
    }
}
