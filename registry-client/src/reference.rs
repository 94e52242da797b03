//! Image references: `[registry[:port]/]repository[:tag][@digest]`, normalised like Docker:
//! no registry means `docker.io`, a one-part Docker Hub name means `library/NAME`, no tag and no
//! digest means `latest`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// The registry (`docker.io`, `registry.cern.ch`, `localhost:5001`).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The repository (`library/centos`, `cern/cc7-base`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest (`sha256:…`), when the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn target(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
    /// The host the registry API answers on (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        check_tag(&self.to_string(), tag)?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }
    /// The same repository at a digest (and no tag).
    pub fn with_digest(&self, digest: &str) -> Result<Reference> {
        check_digest(&self.to_string(), digest)?;
        Ok(Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        input: input.into(),
        reason: reason.into(),
    }
}

fn check_tag(input: &str, tag: &str) -> Result<()> {
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        return Err(invalid(
            input,
            format!("tag {tag:?} must be 1–128 of [A-Za-z0-9_.-], not starting with . or -"),
        ));
    }
    Ok(())
}

fn check_digest(input: &str, digest: &str) -> Result<()> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or_else(|| invalid(input, format!("digest {digest:?} must be ALGORITHM:HEX")))?;
    let want = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(invalid(
                input,
                format!("digest algorithm {algo:?} is not sha256 or sha512"),
            ));
        }
    };
    if hex.len() != want || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return Err(invalid(
            input,
            format!("{algo} digest must be {want} lower-case hex digits"),
        ));
    }
    Ok(())
}

/// The registry part: `host[:port]`, where the host is DNS labels (letters, digits, inner `-`)
/// separated by dots, or an IPv6 address in brackets; the port is 1–65535. Anything else
/// (`?`, `#`, `@`, spaces, `_`) would change the meaning of the API URL built from it.
fn check_registry(input: &str, registry: &str) -> Result<()> {
    let bad = |why: &str| invalid(input, format!("registry {registry:?}: {why}"));
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("only `:PORT` may follow `]`"))?),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad(
                "the host must be DNS labels of letters, digits and inner `-`, separated by dots",
            ));
        }
    }
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || !(1..=65535).contains(&port.parse::<u32>().unwrap_or(0)))
    {
        return Err(bad("the port must be a number from 1 to 65535"));
    }
    // The API URL is built from it: a host a URL cannot hold (`a.0`, whose numeric last label
    // makes it an invalid IPv4 address) is refused here rather than at the first request.
    if url::Url::parse(&format!("https://{registry}/")).map_or(true, |u| u.host_str().is_none()) {
        return Err(bad("not a host name or address a URL can hold"));
    }
    Ok(())
}

/// One path component: lower-case alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn check_component(input: &str, c: &str) -> Result<()> {
    let bad = || {
        invalid(
            input,
            format!("repository part {c:?} must be lower-case letters and digits, separated by . _ __ or -"),
        )
    };
    if c.is_empty() {
        return Err(invalid(input, "empty repository part (double or trailing slash)"));
    }
    let bytes = c.as_bytes();
    if !bytes[0].is_ascii_lowercase() && !bytes[0].is_ascii_digit() {
        return Err(bad());
    }
    if !bytes[bytes.len() - 1].is_ascii_lowercase() && !bytes[bytes.len() - 1].is_ascii_digit() {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__`, or one or more `-`.
        let start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-')) {
            return Err(bad());
        }
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(input, "empty"));
        }
        if s.contains("://") {
            return Err(invalid(input, "a reference has no scheme: drop http:// or https://"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(input, d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                let t = &t[1..];
                check_tag(input, t)?;
                (n, Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        check_registry(input, &registry)?;
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        for c in repository.split('/') {
            check_component(input, c)?;
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid(input, "the name is longer than 255 characters"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn references_normalise_like_docker() {
        let cases = [
            ("centos", "docker.io/library/centos:latest"),
            ("centos:7", "docker.io/library/centos:7"),
            ("cern/cc7-base:20261124", "docker.io/cern/cc7-base:20261124"),
            ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3"),
            (
                "registry.cern.ch/linuxsupport/alma9-base:latest",
                "registry.cern.ch/linuxsupport/alma9-base:latest",
            ),
            ("localhost:5001/a/b", "localhost:5001/a/b:latest"),
            ("localhost/a", "localhost/a:latest"),
            ("127.0.0.1:5001/x_y.z__w--v", "127.0.0.1:5001/x_y.z__w--v:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).to_string(), want, "{input}");
        }
        assert_eq!(parse("[::1]:5000/a").registry(), "[::1]:5000");
        assert_eq!(parse("Reg-1.Example.org/a").registry(), "Reg-1.Example.org");
        let r = parse(&format!("localhost:5001/cc7@{D}"));
        assert_eq!((r.tag(), r.digest()), (None, Some(D)));
        assert_eq!(r.target(), D);
        let both = parse(&format!("cc7:test@{D}"));
        assert_eq!(both.tag(), Some("test"));
        assert_eq!(both.target(), D, "a digest wins over a tag");
        assert_eq!(parse("alpine").api_host(), "registry-1.docker.io");
        assert_eq!(parse("localhost:5001/a").api_host(), "localhost:5001");
        assert_eq!(
            parse("a/b:test").with_tag("latest").unwrap().to_string(),
            "docker.io/a/b:latest"
        );
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("https://registry.cern.ch/a", "scheme"),
            ("CentOS:7", "lower-case"),
            ("a//b", "empty repository part"),
            ("a/b:", "tag"),
            ("a/b:-x", "tag"),
            ("a/b@sha256:abc", "64"),
            ("a/b@md5:0123", "not sha256"),
            ("a/b-", "lower-case"),
            ("a/b.-c", "lower-case"),
            ("reg.example?x=/a", "registry"),
            ("reg.example#/a", "registry"),
            ("user@reg.example/a", "digest"),
            ("reg_1.example/a", "registry"),
            ("reg.example:0/a", "port"),
            ("reg.example:99999/a", "port"),
            ("reg.example:/a", "port"),
            ("[::1/a", "registry"),
            ("[::g]:5000/a", "registry"),
            ("reg.0/a", "registry"),
            ("10.0.0.256:5000/a", "registry"),
        ];
        for (input, why) in cases {
            let e = input.parse::<Reference>().unwrap_err();
            assert!(e.to_string().contains(why), "{input:?}: {e}");
        }
        assert!(parse("a/b").with_tag("bad tag").is_err());
    }
}
