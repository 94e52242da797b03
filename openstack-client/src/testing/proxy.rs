//! A small HTTP/1.1 proxy in front of the mock, for what wiremock cannot do: carry out a request
//! and then close the client's connection without relaying the answer — the lost answer of a
//! flaky network or load balancer, after which a client cannot know whether its POST happened.
//!
//! The proxy is generic: it forwards every request to the upstream server and relays the answer,
//! except answers marked with the [`DROP_HEADER`] header, after which it closes the connection.
//! Which answers to mark is the mock's business (see `MockOpenStack::drop_answer_to_next`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream answer carrying this header is not relayed: the client's connection is closed.
pub(crate) const DROP_HEADER: &str = "x-mock-drop-connection";

/// The running proxy; stops when dropped.
pub(crate) struct Proxy {
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a proxy on 127.0.0.1 in front of `upstream` (`http://host:port`).
pub(crate) async fn start(upstream: String) -> std::io::Result<Proxy> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, upstream.clone(), http.clone()));
        }
    });
    Ok(Proxy {
        url: format!("http://{addr}"),
        task,
    })
}

/// One request as read off the client's connection.
struct Incoming {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

async fn serve(mut sock: TcpStream, upstream: String, http: reqwest::Client) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut sock, &mut buf).await else {
            return;
        };
        let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
            return;
        };
        let mut rb = http.request(method.clone(), format!("{upstream}{}", req.target));
        for (k, v) in &req.headers {
            if !hop_by_hop(k) {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        let Ok(resp) = rb.body(req.body).send().await else {
            return;
        };
        if resp.headers().contains_key(DROP_HEADER) {
            // The request was carried out upstream; the client never hears of it.
            return;
        }
        let status = resp.status();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Unknown")
        );
        let upstream_length = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        for (k, v) in resp.headers() {
            if !hop_by_hop(k.as_str())
                && let Ok(v) = v.to_str()
            {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        let Ok(body) = resp.bytes().await else {
            return;
        };
        let no_body = status.as_u16() == 204 || status.as_u16() == 304 || (100..200).contains(&status.as_u16());
        if method == reqwest::Method::HEAD {
            if let Some(l) = upstream_length {
                head.push_str(&format!("content-length: {l}\r\n"));
            }
        } else if !no_body {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        if req.close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if method != reqwest::Method::HEAD && !no_body {
            out.extend_from_slice(&body);
        }
        if sock.write_all(&out).await.is_err() || req.close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

fn hop_by_hop(name: &str) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Reads one request (head, then a body by `Content-Length` or chunked); `None` when the client
/// closed the connection or sent something this proxy does not understand.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Incoming> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        read_more(sock, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, target, version) = (first.next()?.to_string(), first.next()?.to_string(), first.next()?);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let close = get("connection").is_some_and(|c| c.contains("close")) || version == "HTTP/1.0";
    let body = if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(sock, buf).await?
    } else {
        let len: usize = get("content-length").map_or(Some(0), |l| l.parse().ok())?;
        while buf.len() < len {
            read_more(sock, buf).await?;
        }
        buf.drain(..len).collect()
    };
    Some(Incoming {
        method,
        target,
        headers,
        body,
        close,
    })
}

async fn read_chunked(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            read_more(sock, buf).await?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                if let Some(i) = find(buf, b"\r\n") {
                    let empty = i == 0;
                    buf.drain(..i + 2);
                    if empty {
                        return Some(body);
                    }
                } else {
                    read_more(sock, buf).await?;
                }
            }
        }
        while buf.len() < size + 2 {
            read_more(sock, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match sock.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
