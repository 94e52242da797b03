//! Kerberos login: `sslLogin` posted to `{hub}/ssllogin` with an SPNEGO `Authorization: Negotiate`
//! header, as `koji` does through requests-gssapi. The ticket comes from the default credential cache
//! (`kinit` first, or `KRB5CCNAME`).

use base64::Engine as _;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::xmlrpc::{self, Value};

/// The first SPNEGO token for `HTTP@host`.
fn initial_token(host: String) -> Result<Vec<u8>> {
    let service = format!("HTTP@{host}");
    let name = Name::new(service.as_bytes(), Some(&GSS_NT_HOSTBASED_SERVICE))
        .and_then(|n| n.canonicalize(Some(&GSS_MECH_KRB5)))
        .map_err(|e| Error::Auth(format!("cannot name the Kerberos service {service}: {e}")))?;
    let mut ctx = ClientCtx::new(None, name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(&GSS_MECH_KRB5));
    let token = ctx.step(None, None).map_err(|e| {
        Error::Auth(format!(
            "no Kerberos ticket for {service} ({e}); run `kinit` or set KRB5CCNAME"
        ))
    })?;
    token
        .map(|t| t.to_vec())
        .ok_or_else(|| Error::Auth("Kerberos produced no token".into()))
}

pub(crate) async fn login(client: &Client, renew: bool) -> Result<serde_json::Value> {
    let hub = client.inner.hub.clone();
    let host = hub
        .host_str()
        .ok_or_else(|| Error::InvalidInput(format!("hub URL {hub} has no host")))?
        .to_string();
    let token = tokio::task::spawn_blocking(move || initial_token(host))
        .await
        .map_err(|e| Error::Auth(format!("Kerberos worker failed: {e}")))??;
    let mut url = hub.clone();
    url.path_segments_mut()
        .map_err(|()| Error::InvalidInput("hub URL cannot be a base".into()))?
        .pop_if_empty()
        .push("ssllogin");
    let kwargs = if renew {
        vec![("renew".to_string(), Value::Boolean(true))]
    } else {
        vec![]
    };
    let body = xmlrpc::encode_call("sslLogin", &[], &kwargs)?;
    let resp = client
        .inner
        .http
        .post(url.clone())
        .header("Content-Type", "text/xml")
        .header(
            "Authorization",
            format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(token)),
        )
        .body(body)
        .send()
        .await
        .map_err(|source| Error::Transport {
            method: "sslLogin".into(),
            url: url.to_string(),
            source,
        })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|source| Error::Transport {
        method: "sslLogin".into(),
        url: url.to_string(),
        source,
    })?;
    if !status.is_success() {
        return Err(Error::Http {
            method: "sslLogin".into(),
            url: url.to_string(),
            status: status.as_u16(),
            body: text.chars().take(300).collect(),
            retry_after: None,
        });
    }
    let v = xmlrpc::decode_response("sslLogin", &text)?;
    crate::client::decode("sslLogin", v)
}
