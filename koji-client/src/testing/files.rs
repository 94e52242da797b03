//! The hub's file server (`topurl`): plain HTTP/1.1 on its own port, so that it can do what an
//! HTTP mock cannot — close the connection in the middle of a body, as a flaky proxy does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{HubState, lock};

/// What the next GETs do instead of serving normally.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FileFault {
    /// Answer with this status.
    Status(u16),
    /// Promise the whole body, send half, close.
    Cut,
    /// Serve the file with one byte flipped.
    Corrupt,
}

pub(crate) struct FileServer {
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn response(status: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

async fn serve(mut sock: tokio::net::TcpStream, state: Arc<Mutex<HubState>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65_536 {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, path) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    let path = path.split('?').next().unwrap_or_default().to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .and_then(|(_, v)| v.trim().strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok());
    let (data, fault) = {
        let mut st = lock(&state);
        st.file_log.push((path.clone(), range.map(|r| r as u64)));
        let data = st.files.get(&path).cloned();
        let fault = if data.is_some() && method == "GET" {
            st.file_faults.pop_front()
        } else {
            None
        };
        (data, fault)
    };
    let resp = match (data, fault) {
        (None, _) => response("404 Not Found", &[("Content-Length".into(), "9".into())], b"Not Found"),
        (Some(_), Some(FileFault::Status(s))) => response(
            &format!("{s} Injected"),
            &[("Content-Length".into(), "9".into())],
            b"try again",
        ),
        (Some(d), Some(FileFault::Cut)) => {
            let start = range.unwrap_or(0).min(d.len());
            let rest = &d[start..];
            let mut h = vec![("Content-Length".to_string(), rest.len().to_string())];
            let status = if range.is_some() {
                h.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{}", d.len().saturating_sub(1), d.len()),
                ));
                "206 Partial Content"
            } else {
                "200 OK"
            };
            response(status, &h, &rest[..rest.len() / 2])
        }
        (Some(mut d), fault) => {
            if matches!(fault, Some(FileFault::Corrupt))
                && let Some(b) = d.last_mut()
            {
                *b ^= 0xff;
            }
            match range {
                Some(s) if s >= d.len() => response(
                    "416 Range Not Satisfiable",
                    &[
                        ("Content-Range".into(), format!("bytes */{}", d.len())),
                        ("Content-Length".into(), "0".into()),
                    ],
                    b"",
                ),
                Some(s) => {
                    let body = if method == "HEAD" { &[][..] } else { &d[s..] };
                    response(
                        "206 Partial Content",
                        &[
                            ("Content-Length".into(), (d.len() - s).to_string()),
                            ("Content-Range".into(), format!("bytes {s}-{}/{}", d.len() - 1, d.len())),
                            ("Accept-Ranges".into(), "bytes".into()),
                        ],
                        body,
                    )
                }
                None => {
                    let body = if method == "HEAD" { &[][..] } else { &d[..] };
                    response(
                        "200 OK",
                        &[
                            ("Content-Length".into(), d.len().to_string()),
                            ("Accept-Ranges".into(), "bytes".into()),
                        ],
                        body,
                    )
                }
            }
        }
    };
    let _ = sock.write_all(&resp).await;
    let _ = sock.shutdown().await;
}

/// Starts the file server on 127.0.0.1; it serves `/kojifiles/...` from the hub's files.
pub(crate) async fn start(state: Arc<Mutex<HubState>>) -> std::io::Result<FileServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, state.clone()));
        }
    });
    Ok(FileServer {
        url: format!("http://{addr}/kojifiles"),
        task,
    })
}

/// The queue of injected file faults.
pub(crate) type Faults = VecDeque<FileFault>;
