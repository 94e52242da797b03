//! Keypairs. Nova no longer generates keys (2.92+): create the key locally and import its public half.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::Nova;
use crate::error::Result;

/// A keypair known to Nova.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Keypair {
    /// Name.
    pub name: String,
    /// The public key.
    pub public_key: String,
    /// Fingerprint.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// `ssh` or `x509`.
    #[serde(rename = "type", default)]
    pub key_type: Option<String>,
    /// When it was created (in the answer for one keypair, not in listings).
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Keypair {
    /// [`Keypair::created_at`] as a time.
    pub fn created(&self) -> Option<std::time::SystemTime> {
        self.created_at.as_deref().and_then(crate::time::parse_timestamp)
    }
}

#[derive(Deserialize)]
struct Listed {
    keypairs: Vec<One>,
}

#[derive(Deserialize)]
struct One {
    keypair: Keypair,
}

impl Nova {
    /// Import a public key (`ssh-ed25519 AAAA…`) under a name.
    ///
    /// The name is the keypair's key: when the answer is lost, a keypair of that name with the same
    /// public key is the one this call imported, and is returned instead of importing again.
    pub async fn import_keypair(&self, name: &str, public_key: &str) -> Result<Keypair> {
        let r = self
            .request(Method::POST, "os-keypairs")
            .await?
            .json(json!({"keypair": {"name": name, "public_key": public_key}}));
        let find = || async {
            match self.get_keypair(name).await {
                Ok(k) if k.public_key.trim() == public_key.trim() => Ok(Some(One { keypair: k })),
                // Another key under this name: the retry's 409 will say so.
                Ok(_) => Ok(None),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        };
        let k: One = self.session.create_json(r, Some(find)).await?;
        tracing::info!(keypair = name, "keypair imported");
        Ok(k.keypair)
    }

    /// One keypair, with its creation time.
    pub async fn get_keypair(&self, name: &str) -> Result<Keypair> {
        let r = self
            .request(Method::GET, &format!("os-keypairs/{}", crate::session::segment(name)))
            .await?;
        let k: One = self.session.send_json(r).await?;
        Ok(k.keypair)
    }

    /// The project user's keypairs (names and public keys).
    pub async fn list_keypairs(&self) -> Result<Vec<Keypair>> {
        let r = self.request(Method::GET, "os-keypairs").await?.page();
        let l: Listed = self.session.send_json(r).await?;
        Ok(l.keypairs.into_iter().map(|k| k.keypair).collect())
    }

    /// Delete a keypair. Already gone counts as done.
    pub async fn delete_keypair(&self, name: &str) -> Result<()> {
        let r = self
            .request(
                Method::DELETE,
                &format!("os-keypairs/{}", crate::session::segment(name)),
            )
            .await?;
        match self.session.send(r).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }
}
