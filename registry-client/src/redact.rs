//! Secrets kept out of error text copied from peers.
//!
//! A registry, token service or proxy that echoes the request in its error body (some proxies do,
//! and so do debugging endpoints left on) would put our `Authorization` header, a refresh token
//! from a form body, or a password into [`crate::Error`], and from there into logs, reports and
//! journals. Text copied from a peer goes through [`redact`]: it removes the secrets the client
//! holds (passwords, the Basic header value, bearer, identity and refresh tokens, also in their
//! URL-encoded and JSON-escaped forms) and what looks like a secret whoever holds it
//! (`Authorization:`-like header lines, `Basic …`/`Bearer …` credentials, JSON string values and
//! form fields under keys naming a password, secret or token). Then [`bound`] cuts it for display.

use std::collections::VecDeque;

use secrecy::{ExposeSecret as _, SecretString};

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Longest peer text kept in an error (bytes): enough for any real error message.
pub(crate) const DISPLAY_MAX: usize = 2 << 10;

/// Known secrets shorter than this are not searched for: a two-letter password would blank out
/// every occurrence of two letters. Such values are still caught where they stand as a header,
/// a `Basic`/`Bearer` credential or a secret-named field.
const MIN_KNOWN_SECRET: usize = 4;

/// How many bearer tokens are remembered for redaction (the newest): older ones have expired.
const MAX_TOKENS: usize = 64;

/// The secrets a client holds, for redaction. Debug never shows them.
#[derive(Default)]
pub(crate) struct KnownSecrets {
    credentials: Vec<SecretString>,
    tokens: VecDeque<SecretString>,
}

impl std::fmt::Debug for KnownSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KnownSecrets({} credential values, {} tokens)",
            self.credentials.len(),
            self.tokens.len()
        )
    }
}

impl KnownSecrets {
    /// Remembers a credential's secret values (password and Basic value, or identity token).
    pub(crate) fn add_credential(&mut self, c: &crate::credentials::Credential) {
        for s in credential_secrets(c) {
            if !self.credentials.iter().any(|k| k.expose_secret() == s.expose_secret()) {
                self.credentials.push(s);
            }
        }
    }

    /// Remembers a bearer token.
    pub(crate) fn add_token(&mut self, token: &SecretString) {
        if self.tokens.iter().any(|k| k.expose_secret() == token.expose_secret()) {
            return;
        }
        if self.tokens.len() >= MAX_TOKENS {
            self.tokens.pop_front();
        }
        self.tokens.push_back(token.clone());
    }

    /// All of them, for [`redact`].
    pub(crate) fn all(&self) -> Vec<SecretString> {
        self.credentials.iter().chain(&self.tokens).cloned().collect()
    }
}

/// The secret values of a credential as they may appear on the wire: the password and the Basic
/// header's base64 value, or the identity (refresh) token.
pub(crate) fn credential_secrets(c: &crate::credentials::Credential) -> Vec<SecretString> {
    use crate::credentials::Credential;
    match c {
        Credential::Anonymous => Vec::new(),
        Credential::Basic { username, password } => {
            let header = crate::auth::basic_header(username, password);
            let b64 = header.trim_start_matches("Basic ").to_string();
            vec![password.clone(), SecretString::from(b64)]
        }
        Credential::IdentityToken(t) => vec![t.clone()],
    }
}

/// `text` without the `known` secrets and without anything that looks like a secret.
pub(crate) fn redact(text: &str, known: &[SecretString]) -> String {
    let mut out = text.to_string();
    // Longest first, so a secret containing another is removed whole.
    let mut forms: Vec<String> = Vec::new();
    for k in known {
        let s = k.expose_secret();
        if s.chars().count() < MIN_KNOWN_SECRET {
            continue;
        }
        forms.push(s.to_string());
        forms.push(url::form_urlencoded::byte_serialize(s.as_bytes()).collect());
        if let Ok(json) = serde_json::to_string(s) {
            forms.push(json.trim_matches('"').to_string());
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    for f in forms.iter().filter(|f| !f.is_empty()) {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), REDACTED);
        }
    }
    let out = redact_header_lines(&out);
    let out = redact_schemes(&out);
    let out = redact_json_values(&out);
    redact_form_fields(&out)
}

/// Whether a header, JSON key or form field of this name holds a secret.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "password",
        "passwd",
        "secret",
        "token",
        "cookie",
        "api-key",
        "api_key",
        "apikey",
        "credential",
        "session-key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// `Name: value` lines whose name is a secret's: the value goes.
fn redact_header_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix("\r\n") {
            Some(b) => (b, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            },
        };
        let header = body.split_once(':').filter(|(name, _)| {
            let name = name.trim();
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && is_secret_name(name)
        });
        match header {
            Some((name, _)) => {
                out.push_str(name);
                out.push_str(": ");
                out.push_str(REDACTED);
                out.push_str(end);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Whether `b` can be part of a credential after `Basic ` or `Bearer ` (base64, base64url, JWT,
/// and the backslash of a JSON-escaped `/`).
fn is_credential_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'-' | b'\\' | b'%')
}

/// `Basic <credential>` and `Bearer <credential>` anywhere (in a JSON string, a quoted request):
/// the credential goes. Challenges (`Bearer realm="…"`) are left alone.
fn redact_schemes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let scheme_len = ["basic", "bearer"].iter().find_map(|s| {
            let end = i + s.len();
            (end < bytes.len()
                && bytes[i..end].eq_ignore_ascii_case(s.as_bytes())
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()))
            .then_some(s.len())
        });
        let Some(len) = scheme_len else {
            i += 1;
            continue;
        };
        let mut start = i + len;
        if !bytes[start].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        while start < bytes.len() && (bytes[start] == b' ' || bytes[start] == b'\t') {
            start += 1;
        }
        let mut end = start;
        while end < bytes.len() && is_credential_byte(bytes[end]) {
            end += 1;
        }
        // A challenge parameter (`realm="…"`) ends in `="`. Credentials are at least 8 bytes and
        // not a plain lower-case word ("basic authentication required").
        let is_param = end < bytes.len() && bytes[end] == b'"' && end > start && bytes[end - 1] == b'=';
        let looks_encoded = bytes[start..end]
            .iter()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || matches!(b, b'+' | b'/' | b'=' | b'.'));
        if end - start >= 8 && !is_param && looks_encoded {
            // `start` and `end` sit next to ASCII bytes: both are char boundaries.
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(&text[copied..]);
    out
}

/// The end (exclusive) of the JSON string literal starting with the quote at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// `"<secret name>": "value"` in JSON (or JSON-like text): the value goes.
fn redact_json_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(key_end) = string_end(bytes, i) else { break };
        let key = &text[i + 1..key_end - 1];
        let mut j = key_end;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b':' && is_secret_name(key) {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'"' {
                let value_end = string_end(bytes, j).unwrap_or(bytes.len());
                out.push_str(&text[copied..=j]);
                out.push_str(REDACTED);
                out.push('"');
                copied = value_end;
                i = value_end;
                continue;
            }
        }
        i = key_end;
    }
    if copied < text.len() {
        out.push_str(&text[copied..]);
    }
    out
}

/// `<secret name>=value` in form bodies and query strings (`refresh_token=…&password=…`): the
/// value goes.
fn redact_form_fields(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            i += 1;
            continue;
        }
        let mut k = i;
        while k > 0 && (bytes[k - 1].is_ascii_alphanumeric() || matches!(bytes[k - 1], b'_' | b'-' | b'.')) {
            k -= 1;
        }
        let name = &text[k..i];
        let mut end = i + 1;
        while end < bytes.len()
            && !matches!(bytes[end], b'&' | b'"' | b'\'' | b',' | b';' | b'<' | b'>')
            && !bytes[end].is_ascii_whitespace()
        {
            end += 1;
        }
        if !name.is_empty() && is_secret_name(name) && end > i + 1 && &text[i + 1..end] != REDACTED {
            out.push_str(&text[copied..=i]);
            out.push_str(REDACTED);
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(&text[copied..]);
    out
}

/// `text` cut to at most [`DISPLAY_MAX`] bytes (on a char boundary), saying how much was cut.
pub(crate) fn bound(text: &str) -> String {
    bound_to(text, DISPLAY_MAX)
}

fn bound_to(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} more bytes cut]", &text[..cut], text.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_go_in_every_form() {
        let known = [
            SecretString::from("pa ss/w+rd\"x".to_string()),
            SecretString::from("id-token-123".to_string()),
            SecretString::from("ab".to_string()),
        ];
        let text = "pw pa ss/w+rd\"x form pa+ss%2Fw%2Brd%22x json pa ss/w+rd\\\"x id-token-123 ab";
        let r = redact(text, &known);
        assert!(
            !r.contains("ss/w") && !r.contains("ss%2F") && !r.contains("id-token"),
            "{r}"
        );
        assert!(r.ends_with(" ab"), "short ones are left: {r}");
    }

    #[test]
    fn secret_looking_text_goes_whoever_holds_it() {
        let text = "POST /token HTTP/1.1\r\nAuthorization: Basic Ym90OnMzY3JldA==\r\nX-Auth-Token: t0k3n\r\n\
                    Accept: */*\r\n\r\ngrant_type=refresh_token&refresh_token=r3fr3sh&client_id=imagekit\n\
                    {\"Password\": \"hunter22\", \"user\": \"bot\", \"access_token\" : \"jwt.jwt.jwt\"}\n\
                    {\"request\": \"GET / HTTP/1.1\\r\\nauthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\\r\\n\"}\n\
                    WWW-Authenticate: Bearer realm=\"https://auth.example/token\",service=\"r\"";
        let r = redact(text, &[]);
        assert_eq!(
            redact("the registry wants basic authentication", &[]),
            "the registry wants basic authentication"
        );
        for secret in ["Ym90OnMzY3JldA", "t0k3n", "r3fr3sh", "hunter22", "jwt.jwt", "eyJhbGci"] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        for kept in [
            "POST /token HTTP/1.1",
            "Accept: */*",
            "grant_type=refresh_token",
            "client_id=imagekit",
            "\"user\": \"bot\"",
            "Bearer realm=\"https://auth.example/token\"",
        ] {
            assert!(r.contains(kept), "{kept} not in {r}");
        }
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_saying_how_much() {
        let text = "é".repeat(2000);
        let b = bound(&text);
        assert!(b.len() < DISPLAY_MAX + 40, "{}", b.len());
        assert!(b.ends_with("… [1952 more bytes cut]"), "{}", &b[b.len() - 40..]);
        assert_eq!(bound("short"), "short");
    }
}
