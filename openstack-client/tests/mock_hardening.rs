//! What peers that answer oddly get from the client: never a panic, a typed error or a sensible
//! reading. Odd token expiries, date-form `Retry-After`, oversized bodies, looping `next` links,
//! peers that echo requests (secrets included) in their error bodies, refused connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use openstack_client::glance::{Glance, ImageId, ListImages};
use openstack_client::ironic::{Ironic, ListNodes};
use openstack_client::nova::{ListServers, Nova};
use openstack_client::testing::MockOpenStack;
use openstack_client::{Error, Session};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod common;
use common::{catalog_entry, fixture};

/// A wiremock cloud: Keystone (tokens for `hunter2`), Glance at `/image/v2`, Nova at
/// `/compute/v2.1` and Ironic at `/baremetal`, with their version documents.
async fn cloud() -> (MockServer, Session) {
    let server = MockServer::start().await;
    let uri = server.uri();
    common::mock_keystone(
        &server,
        json!([
            catalog_entry("image", &format!("{uri}/image/v2")),
            catalog_entry("compute", &format!("{uri}/compute/v2.1")),
            catalog_entry("baremetal", &format!("{uri}/baremetal")),
        ]),
        3600,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/compute/v2.1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("nova/versions_v21-version-get-resp.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/baremetal"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("ironic/api-root-response.json")))
        .mount(&server)
        .await;
    let session = common::mock_session(&server);
    (server, session)
}

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

/// Fails instead of hanging when a listing never ends (as it did before loops were detected).
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the listing ended")
}

#[tokio::test]
async fn a_glance_next_link_back_to_a_fetched_page_is_a_loop_error() {
    let (server, session) = cloud().await;
    let mut page = fixture("glance/images-list-response.json");
    page["next"] = json!("/v2/images?marker=m1");
    Mock::given(method("GET"))
        .and(path("/image/v2/images"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;
    let e = bounded(Glance::new(session).list(&ListImages::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::PaginationLoop { next, .. } if next.ends_with("/image/v2/images?marker=m1")),
        "{e:?}"
    );
    assert_eq!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/image/v2/images")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_nova_servers_link_to_itself_relative_or_scheme_relative_is_a_loop_error() {
    for scheme_relative in [false, true] {
        let (server, session) = cloud().await;
        let host = server.uri().trim_start_matches("http:").to_string();
        let href = if scheme_relative {
            format!("{host}/compute/v2.1/servers/detail?marker=m1")
        } else {
            "detail?marker=m1".to_string()
        };
        let mut page = fixture("nova/servers_servers-details-resp.json");
        page["servers_links"] = json!([{"rel": "next", "href": href}]);
        Mock::given(method("GET"))
            .and(path("/compute/v2.1/servers/detail"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page))
            .mount(&server)
            .await;
        let e = bounded(Nova::new(session.clone()).list_servers(&ListServers::new()))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::PaginationLoop { next, .. } if next == &format!("{}/compute/v2.1/servers/detail?marker=m1", server.uri())),
            "{href}: {e:?}"
        );
    }
}

#[tokio::test]
async fn an_ironic_next_to_itself_is_a_loop_error() {
    let (server, session) = cloud().await;
    let mut page = fixture("ironic/nodes-list-details-response.json");
    page["next"] = json!(format!("{}/baremetal/v1/nodes/detail?limit=1&marker=n1", server.uri()));
    Mock::given(method("GET"))
        .and(path("/baremetal/v1/nodes/detail"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;
    let e = bounded(Ironic::new(session).list(&ListNodes::new())).await.unwrap_err();
    assert!(matches!(e, Error::PaginationLoop { .. }), "{e:?}");
}

/// `{"padding": "xxxx…"}` of about `n` bytes.
fn padded(mut v: Value, n: usize) -> Value {
    v["padding"] = json!("x".repeat(n));
    v
}

#[tokio::test]
async fn a_token_answer_over_its_cap_is_refused_with_a_typed_error() {
    let server = MockServer::start().await;
    let body = padded(
        fixture("keystone/admin_auth-password-project-scoped-response.json"),
        9 << 20,
    );
    Mock::given(method("POST"))
        .and(path("/identity/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", "tok")
                .set_body_json(body),
        )
        .mount(&server)
        .await;
    let e = common::mock_session(&server).token().await.unwrap_err();
    assert!(
        matches!(&e, Error::BodyTooLarge { what: "token", limit, .. } if *limit == 8 << 20),
        "{e}"
    );
    assert!(e.to_string().contains("/identity/v3/auth/tokens"), "{e}");
}

#[tokio::test]
async fn a_resource_answer_over_its_cap_is_refused_and_a_huge_error_body_is_cut() {
    let (server, session) = cloud().await;
    let image = padded(fixture("glance/image-show-response.json"), 5 << 20);
    Mock::given(method("GET"))
        .and(path("/image/v2/images/big"))
        .respond_with(ResponseTemplate::new(200).set_body_json(image))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/image/v2/images/err"))
        .respond_with(ResponseTemplate::new(400).set_body_string("y".repeat(8 << 20)))
        .mount(&server)
        .await;
    let glance = Glance::new(session);
    let e = glance.get(&ImageId::from("big")).await.unwrap_err();
    assert!(matches!(&e, Error::BodyTooLarge { what: "resource", .. }), "{e}");
    assert!(e.to_string().contains("/image/v2/images/big"), "{e}");
    let e = glance.get(&ImageId::from("err")).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().len() < 4096, "{} bytes", e.to_string().len());
}

#[tokio::test]
async fn a_chunked_answer_without_length_is_cut_at_its_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let _ = sock.read(&mut buf).await;
        let head = "HTTP/1.1 201 Created\r\nX-Subject-Token: tok\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if sock.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 1 << 20];
        // Endless whitespace: valid JSON so far, never finished.
        for _ in 0..64 {
            let frame = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat();
            if sock.write_all(&frame).await.is_err() {
                return;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let creds = openstack_client::Credentials::password(
        format!("http://127.0.0.1:{port}/identity/v3").parse().unwrap(),
        "admin",
        "pw".to_string().into(),
        "admin",
    );
    let session = Session::builder(creds)
        .retry(openstack_client::RetryPolicy::none())
        .build()
        .unwrap();
    let e = session.token().await.unwrap_err();
    assert!(matches!(&e, Error::BodyTooLarge { what: "token", .. }), "{e}");
    assert!(
        sent.load(std::sync::atomic::Ordering::SeqCst) < 64,
        "the client stopped reading"
    );
}

#[tokio::test]
async fn a_peer_echoing_requests_leaks_no_password_or_token_into_errors() {
    use openstack_client::testing::Service;
    const PASSWORD: &str = "Tr0ub4dor&3-horse";
    let cloud = MockOpenStack::start().await;
    cloud.set_password(PASSWORD);

    // Keystone echoes the authentication request: the password is in its body. As a refusal
    // (Error::Auth) and as a server error (Error::Api).
    for status in [401, 500] {
        cloud.echo_next(Service::Identity, 1, status);
        let session = openstack_client::Session::builder(cloud.credentials())
            .retry(openstack_client::RetryPolicy::none())
            .build()
            .unwrap();
        let e = session.token().await.unwrap_err();
        assert_eq!(e.status(), Some(status), "{e}");
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(
                text.contains("POST /identity/v3/auth/tokens HTTP/1.1"),
                "the echo is kept: {text}"
            );
            assert!(!text.contains(PASSWORD), "{text}");
            assert!(!text.contains("horse"), "{text}");
        }
    }

    // Glance echoes a request that carries the token.
    let session = cloud.session();
    let glance = Glance::new(session.clone());
    glance.list(&ListImages::new()).await.unwrap();
    let token = session.token().await.unwrap();
    let token = secrecy::ExposeSecret::expose_secret(token.secret()).to_string();
    cloud.echo_next(Service::Image, 1, 400);
    let e = glance.get(&ImageId::from("some-image")).await.unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(text.contains("GET /image/v2/images/some-image HTTP/1.1"), "{text}");
        assert!(text.to_lowercase().contains("x-auth-token: [redacted]"), "{text}");
        assert!(!text.contains(&token), "{text}");
        assert!(!text.contains("mock-token"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[tokio::test]
async fn a_long_error_body_is_bounded_and_says_how_much_was_cut() {
    use openstack_client::testing::Service;
    let cloud = MockOpenStack::start().await;
    let glance = Glance::new(cloud.session());
    glance.list(&ListImages::new()).await.unwrap();
    // The echo of a listing with a long, non-ASCII query (cut on a character boundary).
    cloud.echo_next(Service::Image, 1, 400);
    let e = glance
        .list(&ListImages::new().filter("os_distro", "é".repeat(3000)))
        .await
        .unwrap_err();
    let Error::Api { message, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(message.ends_with("more bytes not shown)"), "{message}");
    assert!(message.len() < 2048 + 64, "{} bytes", message.len());
}

#[tokio::test]
async fn a_fault_message_is_redacted_and_bounded_too() {
    use openstack_client::WaitOptions;
    use openstack_client::nova::CreateServer;
    const PASSWORD: &str = "c0rrect-b4ttery";
    let cloud = MockOpenStack::start().await;
    cloud.set_password(PASSWORD);
    // A fault that quotes what it was given, at length.
    cloud.fail_next_boot(&format!(
        "Build of instance failed: {{\"auth\": {{\"password\": \"{PASSWORD}\"}}}} {}",
        "trace ".repeat(2000)
    ));
    let nova = Nova::new(cloud.session());
    let s = nova.create_server(&CreateServer::new("t", "img", "1")).await.unwrap();
    let e = nova
        .wait_for_active(
            &s.id,
            &WaitOptions::timeout(Duration::from_secs(10))
                .with_interval(Duration::from_millis(5), Duration::from_millis(10)),
        )
        .await
        .unwrap_err();
    let Error::Failed { reason, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(reason.starts_with("Build of instance failed"), "{reason}");
    assert!(!format!("{e} {e:?}").contains(PASSWORD), "{e}");
    assert!(
        reason.ends_with("more bytes not shown)") && reason.len() < 2048 + 64,
        "{reason}"
    );
}
