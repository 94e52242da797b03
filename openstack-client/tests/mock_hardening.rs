//! What peers that answer oddly get from the client: never a panic, a typed error or a sensible
//! reading. Odd token expiries, date-form `Retry-After`, oversized bodies, looping `next` links,
//! peers that echo requests (secrets included) in their error bodies, refused connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openstack_client::glance::{Glance, ListImages};
use openstack_client::testing::MockOpenStack;

#[tokio::test]
async fn a_token_with_an_odd_expiry_is_used_and_renewed_before_each_use_never_a_panic() {
    for odd in [
        "2026-11-24T10:35:00+٠١:٠٠",
        "2026-11-24T10:35:inf",
        "2026-11-24T10:35:infZ",
        "99999-01-01T00:00:00Z",
        "292277026596-12-04T15:30:07Z",
        "+262143-12-31T23:59:59Z",
        "02-31T99:99",
    ] {
        let cloud = MockOpenStack::start().await;
        cloud.set_token_expires_at(Some(odd));
        let session = cloud.session();
        let glance = Glance::new(session.clone());
        glance.list(&ListImages::new()).await.unwrap();
        glance.list(&ListImages::new()).await.unwrap();
        let token = session.token().await.unwrap();
        // Unreadable: the session cannot know when it expires, so it authenticates again before
        // each use. Readable but far away (year 262143): used as said.
        if token.expires_at.is_none() {
            assert_eq!(token.remaining(), std::time::Duration::ZERO, "{odd}");
            assert!(session.auth_count() >= 3, "{odd}: {}", session.auth_count());
        }
    }
}

#[tokio::test]
async fn a_refused_connection_says_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let creds = openstack_client::Credentials::password(
        format!("http://127.0.0.1:{port}/identity/v3").parse().unwrap(),
        "admin",
        "pw".to_string().into(),
        "admin",
    );
    let session = openstack_client::Session::builder(creds)
        .retry(openstack_client::RetryPolicy::none())
        .build()
        .unwrap();
    let e = session.token().await.unwrap_err();
    assert!(matches!(e, openstack_client::Error::Transport { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}

#[tokio::test]
async fn a_date_form_retry_after_is_honoured_and_a_past_date_means_now() {
    use openstack_client::testing::Service;
    let cloud = MockOpenStack::start().await;
    let glance = Glance::new(cloud.session());
    glance.list(&ListImages::new()).await.unwrap();
    // RFC 850 and asctime forms, both in the past: retried at once, the call succeeds.
    cloud.throttle_until(Service::Image, 1, "Sunday, 06-Nov-94 08:49:37 GMT");
    glance.list(&ListImages::new()).await.unwrap();
    cloud.throttle_until(Service::Image, 1, "Sun Nov  6 08:49:37 1994");
    glance.list(&ListImages::new()).await.unwrap();
    // An IMF-fixdate a day away: longer than the policy obeys, so it fails at once, saying so.
    let tomorrow = httpdate_in(86_400);
    cloud.throttle_until(Service::Image, 1, &tomorrow);
    let e = glance.list(&ListImages::new()).await.unwrap_err();
    assert_eq!(e.status(), Some(429), "{e}");
    let ra = e.retry_after().expect("the date was read");
    assert!(
        ra > std::time::Duration::from_secs(86_000) && ra <= std::time::Duration::from_secs(86_400),
        "{ra:?}"
    );
}

/// An IMF-fixdate `secs` from now.
fn httpdate_in(secs: i64) -> String {
    let t = chrono::Utc::now() + chrono::TimeDelta::seconds(secs);
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
