//! Text from peers, made safe to copy into errors.
//!
//! Hubs, proxies and web servers sometimes echo the request in a fault string or an HTTP error page
//! (a debug mode, a WAF, a Python traceback printing its locals). The request carries secrets:
//! `Koji-Session-Key`, the session id, a password in `login`'s arguments, an `Authorization:
//! Negotiate …` token. Every piece of peer text that goes into an [`crate::Error`] or a
//! [`crate::Fault`] passes through [`peer_text`], which:
//!
//! 1. replaces the secrets this process's clients hold (session keys, passwords, Negotiate tokens,
//!    registered with [`remember`]), wherever they appear;
//! 2. replaces the value after any name that looks like a credential, in the forms an echo takes:
//!    header lines (`Koji-Session-Key: …`, `Authorization: Negotiate …`), JSON or Python members
//!    (`"password": "…"`, `'session-key': '…'`), query strings (`session-key=…&`), and XML-RPC
//!    members (`<name>password</name><value>…</value>`, escaped or not);
//! 3. bounds the result to [`PEER_TEXT_LIMIT`] bytes on a character boundary, saying how much was cut.
//!
//! The registry of known secrets is process-wide because errors are built in decoders that have no
//! client at hand (task results, `multiCall` entries). It holds weak references: a secret is forgotten
//! once no client holds it. A secret shorter than [`MIN_KNOWN_SECRET`] bytes is not searched for (it
//! would shred ordinary words); the name patterns still apply.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use secrecy::{ExposeSecret, SecretString};

/// The most bytes of peer text copied into one error.
pub(crate) const PEER_TEXT_LIMIT: usize = 2048;

/// How much of a peer's text is examined at all; what lies beyond cannot reach the bounded output.
const SCAN_WINDOW: usize = 64 << 10;

/// Known secrets shorter than this are not searched for by value.
pub(crate) const MIN_KNOWN_SECRET: usize = 4;

/// What replaces a secret.
const REDACTED: &str = "[REDACTED]";

/// Names whose value is a credential (matched case-insensitively, anywhere in a name).
const SECRET_NAMES: &[&str] = &[
    "session-key",
    "session_key",
    "sessionkey",
    "session-id",
    "session_id",
    "sessionid",
    "authorization",
    "password",
    "passwd",
    "token",
    "secret",
    "cookie",
    "api-key",
    "api_key",
    "apikey",
];

static KNOWN: Mutex<Vec<Weak<SecretString>>> = Mutex::new(Vec::new());

/// Redact `secret` from peer text for as long as it is alive.
pub(crate) fn remember(secret: &Arc<SecretString>) {
    let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    known.retain(|w| w.strong_count() > 0);
    known.push(Arc::downgrade(secret));
}

fn known_secrets() -> Vec<Arc<SecretString>> {
    let known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    known.iter().filter_map(Weak::upgrade).collect()
}

/// A URL as errors show it: without a password in its user info (`https://bot:pw@hub/` shows as
/// `https://bot@hub/`).
pub(crate) fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Fails only for URLs that cannot have user info, which then have no password either.
        let _ = shown.set_password(None);
    }
    shown.to_string()
}

/// Peer text, redacted and bounded to [`PEER_TEXT_LIMIT`] bytes (see the module docs).
pub(crate) fn peer_text(text: &str) -> String {
    peer_text_within(text, PEER_TEXT_LIMIT)
}

/// [`peer_text`] with a tighter bound (for short snippets).
pub(crate) fn peer_text_within(text: &str, limit: usize) -> String {
    let text = text.trim();
    let window = floor_char_boundary(text, SCAN_WINDOW);
    let unseen = text.len() - window;
    let mut out = text[..window].to_string();
    for secret in known_secrets() {
        let s = secret.expose_secret();
        if s.len() < MIN_KNOWN_SECRET {
            continue;
        }
        out = out.replace(s, REDACTED);
        // An echoed XML body carries the secret escaped.
        let escaped = xml_escape(s);
        if escaped != s {
            out = out.replace(&escaped, REDACTED);
        }
    }
    let out = redact_named(&out);
    bound(out, limit, unseen)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `text` cut to `limit` bytes, with a note of how much was left out (`unseen` bytes were never read).
fn bound(text: String, limit: usize, unseen: usize) -> String {
    if text.len() <= limit && unseen == 0 {
        return text;
    }
    let cut = floor_char_boundary(&text, limit);
    let more = text.len() - cut + unseen;
    format!("{}… [{more} more bytes not shown]", &text[..cut])
}

/// Replace the values of credential-like names (see the module docs).
fn redact_named(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let Some(name) = SECRET_NAMES.iter().find(|n| bytes[i..].starts_with(n.as_bytes())) else {
            i += 1;
            continue;
        };
        let after = i + name.len();
        match value_span(bytes, after) {
            Some((start, end)) => {
                // Spans start and end at ASCII delimiters or the end of the text: char boundaries.
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                i = end.max(after);
            }
            None => i = after,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the value of a name ending at `at` lies, in the lower-cased text.
fn value_span(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut j = at;
    // The rest of the name (`session-key-hash`), closing quotes and blanks.
    while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'_')) {
        j += 1;
    }
    while j < b.len() && matches!(b[j], b'"' | b'\'' | b' ' | b'\t') {
        j += 1;
    }
    // An XML-RPC member: the value is the <value> element right after the name (blanks between).
    for (name_end, open, close) in [
        (&b"</name>"[..], &b"<value>"[..], &b"</value>"[..]),
        (b"&lt;/name&gt;", b"&lt;value&gt;", b"&lt;/value&gt;"),
    ] {
        if b[j..].starts_with(name_end) {
            let mut from = j + name_end.len();
            while from < b.len() && b[from].is_ascii_whitespace() {
                from += 1;
            }
            if !b[from..].starts_with(open) {
                return None;
            }
            let start = from + open.len();
            let end = find(&b[start..], close).map_or(b.len(), |e| start + e);
            return (end > start).then_some((start, end));
        }
    }
    // `name: value`, `name = value`, `name => value`.
    if j >= b.len() || !matches!(b[j], b':' | b'=') {
        return None;
    }
    j += 1;
    if j < b.len() && b[j] == b'>' {
        j += 1;
    }
    while j < b.len() && matches!(b[j], b' ' | b'\t') {
        j += 1;
    }
    if j < b.len() && matches!(b[j], b'"' | b'\'') {
        let quote = b[j];
        let start = j + 1;
        let end = b[start..]
            .iter()
            .position(|c| *c == quote || *c == b'\n')
            .map_or(b.len(), |e| start + e);
        return (end > start).then_some((start, end));
    }
    let start = j;
    let end = b[start..]
        .iter()
        .position(|c| {
            matches!(
                c,
                b'\r' | b'\n' | b'&' | b'<' | b',' | b';' | b'"' | b'\'' | b'}' | b']' | b')'
            )
        })
        .map_or(b.len(), |e| start + e);
    (end > start).then_some((start, end))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_lose_their_credentials() {
        let echo = "POST /kojihub\nKoji-Session-Id: 7\nKoji-Session-Key: 7-Abc123\nAuthorization: Negotiate YIIabc==\nContent-Type: text/xml\n";
        let out = peer_text(echo);
        for secret in ["7-Abc123", "YIIabc==", "Negotiate"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("Koji-Session-Key: [REDACTED]"), "{out}");
        assert!(out.contains("Content-Type: text/xml"), "{out}");
    }

    #[test]
    fn json_python_query_and_xml_members_lose_their_credentials() {
        for (text, secret) in [
            (r#"{"user": "bot", "password": "hunter22"}"#, "hunter22"),
            ("{'Koji-Session-Key': '7-xyz9', 'x': 1}", "7-xyz9"),
            ("GET /x?session-id=7&session-key=7-qqq9&callnum=3", "7-qqq9"),
            ("token</name>\nKoji-Session-Key: 7-www9\n<value>x</value>", "7-www9"),
            (
                "<member><name>password</name><value><string>hunter22</string></value></member>",
                "hunter22",
            ),
            (
                "&lt;member&gt;&lt;name&gt;token&lt;/name&gt;&lt;value&gt;&lt;string&gt;t0k3n&lt;/string&gt;",
                "t0k3n",
            ),
        ] {
            let out = peer_text(text);
            assert!(!out.contains(secret), "{text} -> {out}");
            assert!(out.contains(REDACTED), "{text} -> {out}");
        }
    }

    #[test]
    fn prose_mentioning_a_token_is_kept() {
        let text = "Kerberos authentication failed: the token is not base64";
        assert_eq!(peer_text(text), text);
        assert_eq!(
            peer_text("Invalid arch for build tag: ppc64le"),
            "Invalid arch for build tag: ppc64le"
        );
    }

    #[test]
    fn remembered_secrets_are_redacted_wherever_they_appear_until_dropped() {
        let secret = Arc::new(SecretString::from("s3cr&t-value-42".to_string()));
        remember(&secret);
        let text = "login('bot', 's3cr&t-value-42') <string>s3cr&amp;t-value-42</string>";
        let out = peer_text(text);
        assert!(!out.contains("s3cr&t-value-42") && !out.contains("s3cr&amp;t"), "{out}");
        drop(secret);
        assert!(
            peer_text(text).contains("s3cr&t-value-42"),
            "a dropped secret is forgotten"
        );
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_saying_how_much() {
        let text = "é".repeat(3000); // 6000 bytes
        let out = peer_text(&text);
        assert!(out.len() < PEER_TEXT_LIMIT + 64, "{}", out.len());
        assert!(
            out.ends_with("… [3952 more bytes not shown]"),
            "{}",
            &out[out.len() - 40..]
        );
        let huge = "x".repeat(SCAN_WINDOW + 10);
        let out = peer_text(&huge);
        assert!(
            out.ends_with(&format!("[{} more bytes not shown]", huge.len() - PEER_TEXT_LIMIT)),
            "{out}"
        );
    }
}
