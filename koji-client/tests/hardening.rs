//! Peers that answer too much, echo secrets, refuse connections or send odd times: the client bounds
//! what it reads, redacts what it repeats, says why a connection failed, and never panics.

// Test helpers panic on setup failures; that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use koji_client::testing::{Answer, MockKoji};
use koji_client::{Client, ClientBuilder, Error, RetryPolicy, TaskId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn client(url: &str) -> ClientBuilder {
    Client::builder().hub(url).retry(RetryPolicy::none())
}

/// Read one HTTP request (headers and a `Content-Length` body) so the client sees its answer.
async fn read_request(conn: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = conn.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - header_end;
    while have < length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

/// A server that answers every request with `head` and then a chunked body of 64 KiB chunks, up to
/// `max` bytes or until the client goes away. Returns its URL and the body bytes it managed to send.
async fn chunked_server(head: &'static str, max: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/kojihub", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                read_request(&mut conn).await;
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = b"10000\r\n".to_vec();
                chunk.extend(std::iter::repeat_n(b'x', 0x10000));
                chunk.extend_from_slice(b"\r\n");
                while counter.load(Ordering::SeqCst) < max {
                    if conn.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(0x10000, Ordering::SeqCst);
                }
                let _ = conn.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (url, sent)
}

fn xml_string_answer(len: usize) -> String {
    format!(
        "<?xml version='1.0'?>\n<methodResponse><params><param><value><string>{}</string></value></param></params></methodResponse>\n",
        "k".repeat(len)
    )
}

#[tokio::test]
async fn an_answer_over_the_configured_limit_is_body_too_large_and_one_under_it_is_read() {
    let hub = MockKoji::start().await;
    let koji = client(&hub.hub_url()).max_response_body(256 << 10).build().unwrap();

    hub.answer("getKojiVersion", Answer::Raw(xml_string_answer(200 << 10)));
    let v = koji.call("getKojiVersion", vec![], vec![]).await.unwrap();
    assert!(matches!(v, koji_client::Value::String(s) if s.len() == 200 << 10));

    hub.clear("getKojiVersion")
        .answer("getKojiVersion", Answer::Raw(xml_string_answer(300 << 10)));
    let err = koji.call("getKojiVersion", vec![], vec![]).await.unwrap_err();
    assert!(
        matches!(&err, Error::BodyTooLarge { method, limit, .. } if method == "getKojiVersion" && *limit == 256 << 10),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("256 KiB") && msg.contains("max_response_body"), "{msg}");
    assert!(!err.is_retryable(), "the same call would get the same answer");
}

#[tokio::test]
async fn a_chunked_answer_without_a_length_stops_being_read_at_the_limit() {
    let (url, sent) = chunked_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n",
        256 << 20,
    )
    .await;
    let koji = client(&url).max_response_body(1 << 20).build().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), koji.call("listBuilds", vec![], vec![]))
        .await
        .expect("the client stops reading at the limit")
        .unwrap_err();
    assert!(matches!(err, Error::BodyTooLarge { .. }), "{err:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < 64 << 20,
        "the server could push {sent} bytes: the client kept reading"
    );
}

#[tokio::test]
async fn the_default_limit_is_64_mib_and_a_larger_content_length_is_refused_unread() {
    assert_eq!(ClientBuilder::DEFAULT_MAX_RESPONSE_BODY, 64 << 20);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/kojihub", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        read_request(&mut conn).await;
        // Claims one byte over 64 MiB, sends a few and then waits: a client reading it would hang.
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n<?xml",
            (64 << 20) + 1
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let koji = client(&url).build().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), koji.call("listBuilds", vec![], vec![]))
        .await
        .expect("refused from Content-Length alone")
        .unwrap_err();
    assert!(
        matches!(err, Error::BodyTooLarge { limit, .. } if limit == 64 << 20),
        "{err:?}"
    );
    assert!(err.to_string().contains("64 MiB"), "{err}");
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_up_to_its_small_cap() {
    let (url, sent) = chunked_server(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n",
        usize::MAX,
    )
    .await;
    let koji = client(&url).build().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), koji.call("getAPIVersion", vec![], vec![]))
        .await
        .expect("an error body is not read to its end")
        .unwrap_err();
    match &err {
        Error::Http { status: 502, body, .. } => {
            assert!(body.len() < 2200, "{}", body.len());
            assert!(body.ends_with("more bytes not shown]"), "{}", &body[body.len() - 40..]);
        }
        other => panic!("{other:?}"),
    }
    assert!(sent.load(Ordering::SeqCst) < 64 << 20);
}

/// The session key the simulated hub issued to `koji`'s last call.
fn session_key(hub: &MockKoji) -> String {
    hub.requests()
        .iter()
        .rev()
        .find_map(|r| r.headers.get("koji-session-key").cloned())
        .expect("calls carry the session key")
}

fn assert_no_secret(err: &Error, secrets: &[&str]) {
    let shown = format!("{err}\n{err:?}");
    for s in secrets {
        assert!(!shown.contains(s), "{s:?} leaked into: {shown}");
    }
    assert!(shown.contains("[REDACTED]"), "the echo was kept, redacted: {shown}");
}

#[tokio::test]
async fn a_hub_echoing_requests_in_errors_exposes_no_session_key_and_no_password() {
    let hub = MockKoji::simulated().await;
    let password = "pw-Secret-42";
    let koji = client(&hub.hub_url())
        .password("releasebot", password.to_string().into())
        .build()
        .unwrap();

    // A login answered with an echo of its body, which carries the password as a positional argument.
    hub.echo_next_calls(1, 200);
    let err = koji.login().await.unwrap_err();
    assert!(err.fault().is_some(), "{err:?}");
    assert_no_secret(&err, &[password]);

    koji.login().await.unwrap();
    koji.call("getLoggedInUser", vec![], vec![]).await.unwrap();
    let key = session_key(&hub);
    let id = hub.requests().last().unwrap().headers["koji-session-id"].clone();

    // A fault echoing the headers and the body.
    hub.echo_next_calls(1, 200);
    let err = koji.get_task_info(TaskId(1)).await.unwrap_err();
    assert!(err.fault().is_some(), "{err:?}");
    assert_no_secret(&err, &[&key, password]);
    assert!(
        err.to_string()
            .to_ascii_lowercase()
            .contains("koji-session-id: [redacted]"),
        "the session id {id} is redacted too: {err}"
    );

    // An HTTP error page echoing them.
    hub.echo_next_calls(1, 500);
    let err = koji.get_task_info(TaskId(1)).await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 500, .. }), "{err:?}");
    assert_no_secret(&err, &[&key, password]);

    // The session still works: redaction changed the errors, not the client.
    koji.call("getLoggedInUser", vec![], vec![]).await.unwrap();
}

#[tokio::test]
async fn a_refused_connection_says_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A password in the hub URL (basic auth through a proxy) is not shown either.
    let koji = client(&format!("http://bot:Url-Secret-9@127.0.0.1:{port}/kojihub"))
        .topurl(format!("http://127.0.0.1:{port}/kojifiles"))
        .build()
        .unwrap();
    let err = koji.call("getAPIVersion", vec![], vec![]).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().to_ascii_lowercase().contains("refused"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("http://bot@127.0.0.1:{port}/kojihub")),
        "{err}"
    );
    assert!(!format!("{err}{err:?}").contains("Url-Secret-9"), "{err:?}");

    let dir = tempfile::tempdir().unwrap();
    let url = koji_client::task_output_url(koji.topurl().unwrap(), TaskId(42), "DEFAULT", "a.qcow2").unwrap();
    let err = koji
        .download_url(&url, &dir.path().join("a.qcow2"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().to_ascii_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn hub_timestamps_no_clock_can_hold_decode_to_no_time() {
    let hub = MockKoji::start().await;
    let koji = client(&hub.hub_url()).build().unwrap();
    for ts in ["nan", "inf", "-inf", "1e300", "-1e300", "1.7976931348623157e308"] {
        let body = format!(
            "<?xml version='1.0'?>\n<methodResponse><params><param><value><struct>\
             <member><name>id</name><value><int>1</int></value></member>\
             <member><name>method</name><value><string>image</string></value></member>\
             <member><name>state</name><value><int>2</int></value></member>\
             <member><name>create_ts</name><value><double>{ts}</double></value></member>\
             <member><name>start_ts</name><value><double>{ts}</double></value></member>\
             <member><name>completion_ts</name><value><double>{ts}</double></value></member>\
             </struct></value></param></params></methodResponse>"
        );
        hub.clear("getTaskInfo").answer("getTaskInfo", Answer::Raw(body));
        match koji.get_task_info(TaskId(1)).await {
            Ok(info) => {
                assert_eq!(info.created_at(), None, "{ts}");
                assert_eq!(info.started_at(), None, "{ts}");
                assert_eq!(info.completed_at(), None, "{ts}");
            }
            // A double the XML-RPC decoder does not accept is a typed error, never a panic.
            Err(e) => assert!(matches!(e, Error::InvalidResponse { .. }), "{ts}: {e:?}"),
        }
    }
    hub.clear("getBuild").answer(
        "getBuild",
        Answer::value(
            serde_json::json!({"id": 5, "build_id": 5, "name": "x", "version": "1", "release": "1", "nvr": "x-1-1",
            "state": 1, "creation_ts": -1e300, "completion_ts": 1764000000.0}),
        ),
    );
    let b = koji.get_build("x-1-1").await.unwrap().unwrap();
    assert_eq!(b.created_at(), None);
    assert_eq!(
        b.completed_at(),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1_764_000_000))
    );
}
