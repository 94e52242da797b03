//! Kerberos (SPNEGO) `sslLogin` against a real MIT KDC (`dev/kdc-peer`, found through `IMAGEKIT_KDC`)
//! and a hub stand-in whose `/ssllogin` checks the token with a real GSSAPI acceptor holding the
//! `HTTP/127.0.0.1` keys. Without the KDC the tests skip, unless `IMAGEKIT_REAL_PEERS=1`, which makes a
//! missing peer a failure. The process must run with `KRB5_CONFIG=$IMAGEKIT_KDC/krb5.conf` (dev/test
//! sets it), so both sides use the test realm and never the machine's own.
#![cfg(feature = "gssapi")]
// Test helpers panic on setup failures; that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use koji_client::testing::{MockKoji, gssapi_acceptor};
use koji_client::{Auth, Client, ClientBuilder, Error, KerberosAuth, Profile};

struct Kdc {
    dir: PathBuf,
    realm: String,
}

impl Kdc {
    fn keytab(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.keytab"))
    }
    fn principal(&self, name: &str) -> String {
        format!("{name}@{}", self.realm)
    }
}

fn kdc() -> Option<Kdc> {
    let Some(dir) = std::env::var_os("IMAGEKIT_KDC").map(PathBuf::from) else {
        assert_ne!(
            std::env::var("IMAGEKIT_REAL_PEERS").as_deref(),
            Ok("1"),
            "IMAGEKIT_KDC is not set: dev/test starts dev/kdc-peer and sets it"
        );
        eprintln!("skipped: no KDC (dev/setup-test-deps, then dev/test)");
        return None;
    };
    let conf = dir.join("krb5.conf");
    assert_eq!(
        std::env::var_os("KRB5_CONFIG").map(PathBuf::from),
        Some(conf.clone()),
        "run with KRB5_CONFIG={} (dev/test does)",
        conf.display()
    );
    let realm = std::fs::read_to_string(dir.join("realm")).unwrap().trim().to_string();
    Some(Kdc { dir, realm })
}

async fn kerberos_hub() -> MockKoji {
    let hub = MockKoji::simulated().await;
    hub.require_negotiate(gssapi_acceptor());
    hub
}

fn kerberos_client(hub: &MockKoji, auth: KerberosAuth) -> Client {
    Client::builder()
        .hub(hub.hub_url())
        .auth(Auth::Kerberos(auth))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_keytab_login_is_accepted_by_a_real_acceptor_and_the_session_carries_calls() {
    let Some(kdc) = kdc() else { return };
    let hub = kerberos_hub().await;
    let koji = kerberos_client(
        &hub,
        KerberosAuth::new()
            .principal(kdc.principal("bot"))
            .keytab(kdc.keytab("bot")),
    );
    // Without the session, the simulated hub refuses this call (fault 1002).
    assert!(koji.get_logged_in_user().await.is_err());
    koji.login().await.unwrap();
    assert_eq!(hub.negotiated_principals(), vec![kdc.principal("bot")]);
    let user = koji.get_logged_in_user().await.unwrap().unwrap();
    assert_eq!(user.name, "releasebot");
    let logins = hub.calls_of("sslLogin");
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].path, "/kojihub/ssllogin");
    assert!(logins[0].headers["authorization"].starts_with("Negotiate "));
}

#[tokio::test]
async fn a_profile_s_principal_and_keytab_are_honoured() {
    let Some(kdc) = kdc() else { return };
    let hub = kerberos_hub().await;
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("koji.conf");
    std::fs::write(
        &conf,
        format!(
            "[cern]\nserver = {}\nauthtype = kerberos\nprincipal = {}\nkeytab = {}\n",
            hub.hub_url(),
            kdc.principal("bot"),
            kdc.keytab("bot").display()
        ),
    )
    .unwrap();
    let profile = Profile::load_from("cern", &[conf]).unwrap();
    let koji = ClientBuilder::from_profile(&profile).build().unwrap();
    koji.login().await.unwrap();
    assert!(koji.get_logged_in_user().await.unwrap().is_some());
    assert_eq!(hub.negotiated_principals(), vec![kdc.principal("bot")]);
}

#[tokio::test]
async fn a_keytab_without_a_principal_logs_in_as_its_first_principal() {
    let Some(kdc) = kdc() else { return };
    let hub = kerberos_hub().await;
    let koji = kerberos_client(&hub, KerberosAuth::new().keytab(kdc.keytab("bot")));
    koji.login().await.unwrap();
    assert_eq!(hub.negotiated_principals(), vec![kdc.principal("bot")]);
}

#[tokio::test]
async fn a_principal_alone_takes_its_ticket_from_the_credential_cache() {
    let Some(kdc) = kdc() else { return };
    // `kinit` into the default cache that the test krb5.conf names (a file beside it, which only this
    // test writes), as a user would before running the CLI.
    let status = std::process::Command::new("kinit")
        .args(["-k", "-t"])
        .arg(kdc.keytab("bot"))
        .arg(kdc.principal("bot"))
        .status()
        .unwrap();
    assert!(status.success());
    let hub = kerberos_hub().await;
    let koji = kerberos_client(&hub, KerberosAuth::new().principal(kdc.principal("bot")));
    koji.login().await.unwrap();
    assert_eq!(hub.negotiated_principals(), vec![kdc.principal("bot")]);

    // A principal with no ticket in the cache is refused before anything is sent.
    let koji = kerberos_client(&hub, KerberosAuth::new().principal(kdc.principal("stale")));
    let err = koji.login().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    assert!(msg.contains("stale@") && msg.contains("kinit"), "{msg}");
    assert_eq!(hub.calls_of("sslLogin").len(), 1);
}

#[tokio::test]
async fn bad_keytabs_and_unknown_principals_are_clear_auth_errors() {
    let Some(kdc) = kdc() else { return };
    let hub = kerberos_hub().await;
    let cases = [
        // A principal the KDC no longer knows.
        (
            KerberosAuth::new()
                .principal(kdc.principal("ghost"))
                .keytab(kdc.keytab("ghost")),
            "ghost",
        ),
        // Keys changed on the KDC since the keytab was written.
        (
            KerberosAuth::new()
                .principal(kdc.principal("stale"))
                .keytab(kdc.keytab("stale")),
            "stale",
        ),
        // A principal the keytab has no keys for.
        (
            KerberosAuth::new()
                .principal(kdc.principal("nobody"))
                .keytab(kdc.keytab("bot")),
            "nobody",
        ),
    ];
    for (auth, who) in cases {
        let koji = kerberos_client(&hub, auth.clone());
        let err = koji.login().await.unwrap_err();
        let msg = err.to_string();
        eprintln!("{who}: {msg}");
        assert!(matches!(err, Error::Auth(_)), "{auth:?}: {err:?}");
        assert!(msg.contains(who), "{auth:?}: {msg}");
        assert!(!koji.is_logged_in().await);
    }
    let missing = kdc.dir.join("no-such.keytab");
    let koji = kerberos_client(
        &hub,
        KerberosAuth::new().principal(kdc.principal("bot")).keytab(&missing),
    );
    let err = koji.login().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such.keytab"), "{err}");
    assert!(hub.negotiated_principals().is_empty());
}
