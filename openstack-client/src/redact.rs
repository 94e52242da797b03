//! Secrets out of error text. A peer's error body is copied into [`Error`](crate::Error)s, and a
//! peer that echoes the request (a misconfigured proxy, a debug page) would put the password of a
//! Keystone authentication, an application credential secret or an `X-Auth-Token` there. Every
//! error text taken from a peer goes through [`Secrets::scrub`]: the session's own secret values
//! are replaced wherever they appear, then anything that looks like one — a JSON string value
//! under a key naming a password, secret, token or credential, and the value of an
//! `X-Auth-Token`, `X-Subject-Token` or `Authorization` header line — and the text is bounded to
//! [`MAX_ERROR_TEXT`] bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};

use crate::identity::{AuthMethod, Credentials};

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// The most bytes of a peer's text kept in an error (the cut says how much was left out).
pub(crate) const MAX_ERROR_TEXT: usize = 2048;

/// How many issued tokens are remembered besides the credentials (the current one and those
/// before it, which a peer may still echo).
const TOKENS_KEPT: usize = 8;

/// The secret values a session holds: its credential's password, secret or token, and the tokens
/// Keystone issued it. Cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    inner: Arc<Mutex<Known>>,
}

#[derive(Default)]
struct Known {
    credentials: Vec<SecretString>,
    tokens: VecDeque<SecretString>,
}

impl Secrets {
    /// The secrets of `creds`.
    pub(crate) fn of(creds: &Credentials) -> Secrets {
        let credential = match &creds.method {
            AuthMethod::Password { password, .. } => password.clone(),
            AuthMethod::ApplicationCredential { secret, .. } => secret.clone(),
            AuthMethod::Token { token, .. } => token.clone(),
        };
        Secrets {
            inner: Arc::new(Mutex::new(Known {
                credentials: vec![credential],
                tokens: VecDeque::new(),
            })),
        }
    }

    /// Remember a token Keystone issued.
    pub(crate) fn add_token(&self, token: &SecretString) {
        let mut k = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if k.tokens.iter().any(|t| t.expose_secret() == token.expose_secret()) {
            return;
        }
        if k.tokens.len() >= TOKENS_KEPT {
            k.tokens.pop_front();
        }
        k.tokens.push_back(token.clone());
    }

    /// `text` with every known secret and every secret-looking value replaced by `[REDACTED]`,
    /// then bounded to [`MAX_ERROR_TEXT`] bytes.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let known: Vec<String> = {
            let k = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            k.credentials
                .iter()
                .chain(k.tokens.iter())
                .map(|s| s.expose_secret().to_string())
                .collect()
        };
        bound(&redact(text, &known), MAX_ERROR_TEXT)
    }
}

/// [`redact_known`], then [`redact_json_values`], then [`redact_header_lines`].
pub(crate) fn redact(text: &str, known: &[String]) -> String {
    redact_header_lines(&redact_json_values(&redact_known(text, known)))
}

/// Every occurrence of each known secret — as is, JSON-escaped (once and twice, for JSON inside a
/// JSON string) and percent-encoded — replaced. Longer secrets first, so one that contains another
/// goes whole.
pub(crate) fn redact_known(text: &str, known: &[String]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for s in known.iter().filter(|s| !s.is_empty()) {
        let once = json_escaped(s);
        let twice = json_escaped(&once);
        let percent: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        forms.extend([s.clone(), once, twice, percent]);
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = text.to_string();
    for f in forms.iter().filter(|f| !f.is_empty()) {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), REDACTED);
        }
    }
    out
}

/// `s` as it appears inside a JSON string (without the quotes).
fn json_escaped(s: &str) -> String {
    let q = serde_json::Value::String(s.to_string()).to_string();
    q[1..q.len() - 1].to_string()
}

/// Whether a JSON key names a secret.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "credential"]
        .iter()
        .any(|w| k.contains(w))
}

/// The length of the run of backslashes that ends just before `i` (counted up to 64: deeper
/// nesting than that is not JSON anyone sends).
fn backslashes_before(b: &[u8], i: usize) -> usize {
    b[..i].iter().rev().take(64).take_while(|&&c| c == b'\\').count()
}

/// Whether the quote at `i` closes a string opened with `depth` backslashes before its quote
/// (0 in plain JSON, 1 in JSON inside a JSON string, …): inside such a string an escaped quote
/// carries more backslashes.
fn closes(b: &[u8], i: usize, depth: usize) -> bool {
    let r = backslashes_before(b, i);
    r == depth || (r > depth && (r - depth).is_multiple_of(2 * (depth + 1)))
}

/// The next quote in `from..to` that closes a string of `depth`.
fn closing_quote(b: &[u8], from: usize, to: usize, depth: usize) -> Option<usize> {
    (from..to.min(b.len())).find(|&i| b[i] == b'"' && closes(b, i, depth))
}

/// The longest key looked at: keeps the scan linear on hostile text full of quotes.
const MAX_KEY: usize = 256;

/// JSON string values under keys that name a secret (`"password": "…"`, `"X-Auth-Token": "…"`,
/// `\"secret\": \"…\"` in JSON inside a string) replaced. Text that is not JSON passes through; a
/// value cut off by the end of the text is redacted to the end.
pub(crate) fn redact_json_values(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    let skip_space = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    while i < b.len() {
        // Every quote may open a key (no attempt to track which strings are keys: a value may
        // hold JSON of its own, and misplaced guesses only cost a look).
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let depth = backslashes_before(b, i);
        let Some(key_end) = closing_quote(b, i + 1, i + 1 + MAX_KEY, depth) else {
            i += 1;
            continue;
        };
        let key = text.get(i + 1..key_end.saturating_sub(depth)).unwrap_or("");
        let colon = skip_space(key_end + 1);
        if !(colon < b.len() && b[colon] == b':' && secret_key(key)) {
            i += 1;
            continue;
        }
        // The value's opening quote: `depth` backslashes, then `"`.
        let j = skip_space(colon + 1);
        let opens = j + depth < b.len() && b[j..j + depth].iter().all(|&c| c == b'\\') && b[j + depth] == b'"';
        if !opens {
            i += 1;
            continue;
        }
        let value_start = j + depth + 1;
        let value_end = closing_quote(b, value_start, b.len(), depth).map_or(b.len(), |q| q - depth);
        match text.get(copied..value_start) {
            Some(head) if text.is_char_boundary(value_end) && value_end >= value_start => {
                out.push_str(head);
                out.push_str(REDACTED);
                copied = value_end;
                i = value_end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    out
}

/// The value of `X-Auth-Token:`, `X-Subject-Token:`, `Authorization:` (and
/// `Proxy-Authorization:`) header lines replaced, up to the end of the line (or of its JSON
/// escape, `\r\n` written out, or a closing quote), wherever the header name appears.
pub(crate) fn redact_header_lines(text: &str) -> String {
    const NAMES: [&str; 3] = ["x-auth-token", "x-subject-token", "authorization"];
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let Some(name) = NAMES.iter().find(|n| lower.as_bytes()[i..].starts_with(n.as_bytes())) else {
            i += 1;
            continue;
        };
        let mut j = i + name.len();
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if !(j < b.len() && b[j] == b':') {
            i += 1;
            continue;
        }
        j += 1;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        let end = (j..b.len())
            .find(|&k| matches!(b[k], b'\r' | b'\n' | b'\\' | b'"'))
            .unwrap_or(b.len());
        if end > j
            && let Some(head) = text.get(copied..j)
        {
            out.push_str(head);
            out.push_str(REDACTED);
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    out
}

/// `text` cut to at most `max` bytes on a character boundary, saying how much was left out.
pub(crate) fn bound(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} more bytes not shown)", &text[..cut], text.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_go_in_every_spelling() {
        let known = vec!["pa\"ss/wörd".to_string(), "gAAAAAtoken".to_string()];
        let text =
            r#"pa"ss/wörd {"x": "pa\"ss/wörd"} {"m": "{\"y\": \"pa\\\"ss/wörd\"}"} pa%22ss%2Fw%C3%B6rd gAAAAAtoken"#;
        let out = redact_known(text, &known);
        assert!(
            !out.contains("ss/w") && !out.contains("ss%2F") && !out.contains("gAAAAA"),
            "{out}"
        );
        assert_eq!(out.matches(REDACTED).count(), 5, "{out}");
    }

    #[test]
    fn json_values_under_secret_keys_go() {
        let auth = r#"{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": "hunter2", "domain": {"id": "default"}}}}}}"#;
        let out = redact_json_values(auth);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains(r#""name": "admin""#), "{out}");
        assert!(out.contains(r#""methods": ["password"]"#), "{out}");

        let ac = r#"{"application_credential": {"id": "423f", "secret": "rEaq\"vJka"}, "X-Auth-Token":"abc", "Token_ID" : "t1"}"#;
        let out = redact_json_values(ac);
        assert!(
            !out.contains("rEaq") && !out.contains("vJka") && !out.contains("abc") && !out.contains("t1"),
            "{out}"
        );
        assert!(out.contains("423f"), "{out}");

        // JSON inside a JSON string (Ironic's error bodies).
        let inner = r#"{"error_message": "{\"faultstring\": \"bad\", \"password\": \"s3cr\\\"et\", \"n\": 1}"}"#;
        let out = redact_json_values(inner);
        assert!(!out.contains("s3cr") && !out.contains("et\\\""), "{out}");
        assert!(out.contains(r#"\"faultstring\": \"bad\""#), "{out}");

        // Cut off mid-value: redacted to the end.
        let out = redact_json_values(r#"{"password": "hunt"#);
        assert_eq!(out, r#"{"password": "[REDACTED]"#);
        // Not JSON, non-ASCII, stray quotes: passes through.
        for s in ["", "\"", "\"\"", "é\"password\":", "\"password\": 5", "\"a\" \"b\""] {
            assert_eq!(redact_json_values(s), s);
        }
    }

    #[test]
    fn header_lines_go() {
        let echo = "GET /image/v2/images HTTP/1.1\r\nx-auth-token: gAAAAAB-tok\r\nAuthorization: Basic YWRtaW46aHVudGVyMg==\r\nX-Subject-Token:tok2\nhost: h\r\n";
        let out = redact_header_lines(echo);
        for s in ["gAAAAAB", "YWRtaW46", "tok2"] {
            assert!(!out.contains(s), "{out}");
        }
        assert!(out.contains("host: h"), "{out}");
        assert!(out.contains("x-auth-token: [REDACTED]\r\n"), "{out}");
        // Written out inside a JSON string.
        let out = redact_header_lines(r#"{"message": "X-Auth-Token: abc\r\nHost: h"}"#);
        assert_eq!(out, r#"{"message": "X-Auth-Token: [REDACTED]\r\nHost: h"}"#);
        assert_eq!(redact_header_lines("token: x"), "token: x");
        assert_eq!(redact_header_lines("é x-auth-token"), "é x-auth-token");
    }

    #[test]
    fn bounds_cut_on_a_character_boundary_and_say_how_much() {
        assert_eq!(bound("short", 10), "short");
        let s = "é".repeat(2000); // 4000 bytes
        let b = bound(&s, MAX_ERROR_TEXT);
        assert!(b.starts_with(&"é".repeat(1024)), "{b}");
        assert!(b.ends_with("… (1952 more bytes not shown)"), "{b}");
        let odd = format!("x{}", "é".repeat(2000));
        assert!(bound(&odd, MAX_ERROR_TEXT).contains("more bytes not shown"));
    }
}
