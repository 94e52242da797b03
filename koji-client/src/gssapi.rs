//! Kerberos login: `sslLogin` posted to `{hub}/ssllogin` with an SPNEGO `Authorization: Negotiate`
//! header, as `koji` does through requests-gssapi.
//!
//! The credential follows the profile's `principal` and `keytab` like `koji`'s `gssapi_login`:
//! with a keytab, a ticket is obtained from it (`gss_acquire_cred_from` with a `client_keytab` and a
//! private in-memory `ccache`, so the user's credential cache is neither read nor written); with a
//! principal alone, that principal's ticket is taken from the credential cache collection; with
//! neither, the default cache's (`kinit` first, or `KRB5CCNAME`).
//!
//! The service is `HTTP@<hub host>`, which MIT Kerberos maps to `HTTP/<host>@REALM` (canonicalising
//! the host name unless `dns_canonicalize_hostname = false`).

use std::sync::Arc;

use base64::Engine as _;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest as _;

use crate::client::{Client, KerberosAuth};
use crate::error::{Error, Result};
use crate::xmlrpc::{self, Value};

/// The client credential `auth` asks for; `None` means the library's default (the default cache).
fn client_cred(auth: &KerberosAuth) -> Result<Option<Cred>> {
    match (&auth.keytab, &auth.principal) {
        (Some(keytab), principal) => {
            // A clear error for the common mistake, before the library's vaguer one.
            std::fs::metadata(keytab).map_err(|e| Error::Config {
                path: keytab.clone(),
                reason: format!("the profile's Kerberos keytab cannot be read: {e}"),
            })?;
            // One private cache per (principal, keytab) in this process: a renewed login reuses the
            // ticket it holds, and nothing lands in the user's own cache.
            let mut h = sha2::Sha256::new();
            h.update(principal.as_deref().unwrap_or_default().as_bytes());
            h.update([0]);
            h.update(keytab.as_os_str().as_encoded_bytes());
            let ccache = format!("MEMORY:koji-client-{}", &hex::encode(h.finalize())[..16]);
            let keytab_name = format!("FILE:{}", keytab.display());
            store::acquire_initiate(
                principal.as_deref(),
                &[("client_keytab", &keytab_name), ("ccache", &ccache)],
            )
            .map(Some)
            .map_err(|e| {
                Error::Auth(format!(
                    "cannot use keytab {} for {}: {e}; `klist -k {}` lists the principals it holds",
                    keytab.display(),
                    principal.as_deref().unwrap_or("its first principal"),
                    keytab.display()
                ))
            })
        }
        (None, Some(principal)) => {
            let name = Name::new(principal.as_bytes(), Some(&GSS_NT_KRB5_PRINCIPAL))
                .map_err(|e| Error::Auth(format!("{principal:?} is not a Kerberos principal: {e}")))?;
            Cred::acquire(Some(&name), None, CredUsage::Initiate, None)
                .map(Some)
                .map_err(|e| {
                    Error::Auth(format!(
                        "no Kerberos ticket for {principal} in the credential cache ({e}); run `kinit {principal}` or set `keytab` in the profile"
                    ))
                })
        }
        (None, None) => Ok(None),
    }
}

/// The first SPNEGO token for `HTTP@host`.
fn initial_token(host: &str, auth: &KerberosAuth) -> Result<Vec<u8>> {
    let service = format!("HTTP@{host}");
    let name = Name::new(service.as_bytes(), Some(&GSS_NT_HOSTBASED_SERVICE))
        .and_then(|n| n.canonicalize(Some(&GSS_MECH_KRB5)))
        .map_err(|e| Error::Auth(format!("cannot name the Kerberos service {service}: {e}")))?;
    let cred = client_cred(auth)?;
    let mut ctx = ClientCtx::new(cred, name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(&GSS_MECH_KRB5));
    let token = ctx.step(None, None).map_err(|e| {
        let hint = match (&auth.keytab, &auth.principal) {
            (Some(kt), _) => format!("check that keytab {} holds current keys", kt.display()),
            (None, Some(p)) => format!("run `kinit {p}` or set `keytab` in the profile"),
            (None, None) => "run `kinit` or set KRB5CCNAME".into(),
        };
        Error::Auth(format!("no Kerberos ticket for {service} ({e}); {hint}"))
    })?;
    token
        .map(|t| t.to_vec())
        .ok_or_else(|| Error::Auth("Kerberos produced no token".into()))
}

pub(crate) async fn login(client: &Client, auth: &KerberosAuth, renew: bool) -> Result<serde_json::Value> {
    let hub = client.inner.hub.clone();
    let host = hub
        .host_str()
        .ok_or_else(|| Error::InvalidInput(format!("hub URL {hub} has no host")))?
        .to_string();
    let auth = auth.clone();
    let token = tokio::task::spawn_blocking(move || initial_token(&host, &auth))
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
    // The token is redacted from whatever the hub answers while this login runs.
    let token = Arc::new(SecretString::from(
        base64::engine::general_purpose::STANDARD.encode(token),
    ));
    crate::redact::remember(&token);
    let resp = client
        .inner
        .http
        .post(url.clone())
        .header("Content-Type", "text/xml")
        .header("Authorization", format!("Negotiate {}", token.expose_secret()))
        .body(body)
        .send()
        .await
        .map_err(|source| Error::transport("sslLogin", &url, source))?;
    let status = resp.status();
    if !status.is_success() {
        let body = crate::body::read_error_body(resp).await;
        return Err(Error::http("sslLogin", &url, status.as_u16(), &body, None));
    }
    let text = crate::client::read_answer(resp, "sslLogin", &url, client.inner.max_response_body).await?;
    let v = xmlrpc::decode_response("sslLogin", &text)?;
    crate::client::decode("sslLogin", v)
}

/// `gss_acquire_cred_from`, which the `libgssapi` crate does not wrap: the only way to honour a
/// keytab per call (KRB5_CLIENT_KTNAME would be process-wide, and setting variables is unsafe in a
/// threaded program). This is the crate's only unsafe code.
#[allow(unsafe_code)]
mod store {
    use std::ffi::{CString, c_void};
    use std::ptr;

    use libgssapi::credential::Cred;
    use libgssapi::error::{Error, MajorFlags};
    use libgssapi::oid::GSS_NT_KRB5_PRINCIPAL;
    use libgssapi_sys as sys;

    /// Frees an imported name on every path.
    struct NameGuard(sys::gss_name_t);

    impl Drop for NameGuard {
        fn drop(&mut self) {
            if !self.0.is_null() {
                let mut minor = 0;
                // SAFETY: self.0 came from gss_import_name and is released once, here.
                unsafe { sys::gss_release_name(&mut minor, &mut self.0) };
            }
        }
    }

    fn failed(major: u32, minor: u32) -> Error {
        Error {
            major: MajorFlags::from_bits_retain(major),
            minor,
        }
    }

    /// An initiator credential for `principal` (the store's default when `None`) from the credential
    /// store `elements` (MIT keys such as `client_keytab` and `ccache`).
    pub(super) fn acquire_initiate(principal: Option<&str>, elements: &[(&str, &str)]) -> Result<Cred, String> {
        let pairs = elements
            .iter()
            .map(|(k, v)| Ok((CString::new(*k)?, CString::new(*v)?)))
            .collect::<Result<Vec<_>, std::ffi::NulError>>()
            .map_err(|_| "a path or name contains a NUL byte".to_string())?;
        let mut descs: Vec<sys::gss_key_value_element_desc> = pairs
            .iter()
            .map(|(k, v)| sys::gss_key_value_element_desc {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let store = sys::gss_key_value_set_desc {
            count: u32::try_from(descs.len()).map_err(|_| "too many credential store entries".to_string())?,
            elements: descs.as_mut_ptr(),
        };
        let mut minor: sys::OM_uint32 = 0;
        let mut name = NameGuard(ptr::null_mut());
        if let Some(p) = principal {
            let mut buf = sys::gss_buffer_desc {
                length: p.len(),
                value: p.as_ptr().cast_mut().cast::<c_void>(),
            };
            // The name type's bytes are a static that outlives the call; gss_import_name only reads them.
            let oid_bytes: &'static [u8] = &GSS_NT_KRB5_PRINCIPAL;
            let mut oid = sys::gss_OID_desc {
                length: u32::try_from(oid_bytes.len()).map_err(|_| "bad OID".to_string())?,
                elements: oid_bytes.as_ptr().cast_mut().cast::<c_void>(),
            };
            // SAFETY: buf and oid point at live bytes for the duration of the call (the library
            // copies what it keeps); the out pointer is a valid, null-initialised gss_name_t.
            let major = unsafe { sys::gss_import_name(&mut minor, &mut buf, &mut oid, &mut name.0) };
            if major != sys::GSS_S_COMPLETE {
                return Err(format!("{p:?} is not a Kerberos principal: {}", failed(major, minor)));
            }
        }
        let mut cred: sys::gss_cred_id_t = ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `store` and its elements borrow `pairs` and
        // `descs`, which live until the end of this function; the name is null or imported above;
        // null mechanism set and null out-parameters are allowed by RFC 5588 / MIT's API.
        let major = unsafe {
            sys::gss_acquire_cred_from(
                &mut minor,
                name.0,
                sys::_GSS_C_INDEFINITE,
                ptr::null_mut(),
                sys::GSS_C_INITIATE as sys::gss_cred_usage_t,
                &store,
                &mut cred,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if major != sys::GSS_S_COMPLETE {
            return Err(failed(major, minor).to_string());
        }
        // Cred takes ownership and releases it with gss_release_cred when dropped.
        Ok(Cred::from(cred))
    }
}
