//! User data for test machines: the test's SSH key, merged into a variant's own cloud-init
//! profile (`puppet`, `unmanaged`, …).
//!
//! ```
//! use imagekit::boot_test::user_data::with_key;
//! let profile = "#cloud-config\npackages: [puppet]\nssh_authorized_keys: [ssh-ed25519 AAAA ops]\n";
//! let merged = with_key(Some(profile), "ssh-ed25519 BBBB imagekit").unwrap();
//! assert!(merged.starts_with("#cloud-config\n"));
//! assert!(merged.contains("puppet") && merged.contains("AAAA ops") && merged.contains("BBBB imagekit"));
//! // A script is kept whole, beside the key's cloud-config, as a MIME multipart.
//! let script = with_key(Some("#!/bin/sh\necho hi\n"), "ssh-ed25519 BBBB imagekit").unwrap();
//! assert!(script.contains("text/x-shellscript") && script.contains("echo hi"));
//! ```

use serde_norway::{Mapping, Value};

use crate::error::{Error, Result};

const BOUNDARY: &str = "==imagekit-user-data==";

/// The plain cloud-config that authorizes `public_key`.
fn key_config(public_key: &str) -> String {
    format!("#cloud-config\nssh_authorized_keys:\n  - {}\n", public_key.trim())
}

/// `profile` with `public_key` authorized: a `#cloud-config` document gets the key appended to its
/// `ssh_authorized_keys`; a shell script, boothook or include list is sent whole beside the key's
/// cloud-config in a MIME multipart (cloud-init runs both). `None` is the key's cloud-config alone.
///
/// A profile that is already MIME, or that cloud-init would not recognise, is an error that says
/// so: the machine would boot without the key, and fail much later, as an SSH timeout.
pub fn with_key(profile: Option<&str>, public_key: &str) -> Result<String> {
    let Some(profile) = profile else {
        return Ok(key_config(public_key));
    };
    let bad = |why: String| Error::InvalidInput(format!("user data: {why}"));
    if let Some(body) = profile.strip_prefix("#cloud-config") {
        let mut doc: Value = serde_norway::from_str(body).map_err(|e| bad(format!("not valid YAML: {e}")))?;
        if doc.is_null() {
            doc = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = &mut doc else {
            return Err(bad("a #cloud-config document must be a mapping".into()));
        };
        let keys = map
            .entry(Value::String("ssh_authorized_keys".into()))
            .or_insert_with(|| Value::Sequence(Vec::new()));
        let Value::Sequence(keys) = keys else {
            return Err(bad("`ssh_authorized_keys` must be a list".into()));
        };
        keys.push(Value::String(public_key.trim().into()));
        let yaml = serde_norway::to_string(&doc).map_err(|e| bad(e.to_string()))?;
        return Ok(format!("#cloud-config\n{yaml}"));
    }
    let content_type = [
        ("#!", "text/x-shellscript"),
        ("#cloud-boothook", "text/cloud-boothook"),
        ("#include", "text/x-include-url"),
    ]
    .iter()
    .find(|(start, _)| profile.starts_with(start))
    .map(|(_, t)| *t)
    .ok_or_else(|| {
        bad(format!(
            "it starts with {:?}; a profile is a #cloud-config document, a #! script, a #cloud-boothook or an \
             #include list (MIME user data cannot take the test key: merge it yourself)",
            profile.lines().next().unwrap_or_default()
        ))
    })?;
    if profile.contains(BOUNDARY) {
        return Err(bad(format!("it contains the MIME boundary {BOUNDARY:?}")));
    }
    Ok(format!(
        "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\nMIME-Version: 1.0\n\n\
         --{BOUNDARY}\nContent-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\n\
         Content-Disposition: attachment; filename=\"imagekit-key.cfg\"\n\n{}\n\
         --{BOUNDARY}\nContent-Type: {content_type}; charset=\"utf-8\"\nMIME-Version: 1.0\n\
         Content-Disposition: attachment; filename=\"profile\"\n\n{}\n--{BOUNDARY}--\n",
        key_config(public_key),
        profile.trim_end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3Nza imagekit";

    #[test]
    fn the_key_joins_a_cloud_config_profile_and_keeps_the_rest() {
        let p = "#cloud-config\nruncmd:\n  - [puppet, agent, -t]\nusers: [default]\n";
        let out = with_key(Some(p), KEY).unwrap();
        let doc: Value = serde_norway::from_str(out.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        assert_eq!(doc["ssh_authorized_keys"][0].as_str(), Some(KEY));
        assert_eq!(doc["runcmd"][0][1].as_str(), Some("agent"));
        assert_eq!(doc["users"][0].as_str(), Some("default"));
        // An empty profile is the key alone.
        let empty = with_key(Some("#cloud-config\n"), KEY).unwrap();
        assert!(empty.contains(KEY));
    }

    #[test]
    fn a_profile_that_cannot_carry_the_key_is_refused() {
        for (p, says) in [
            ("#cloud-config\nssh_authorized_keys: one\n", "must be a list"),
            ("#cloud-config\n- a\n- b\n", "mapping"),
            ("#cloud-config\n{ unclosed\n", "YAML"),
            ("Content-Type: multipart/mixed; boundary=x\n", "MIME"),
            ("hello\n", "starts with"),
        ] {
            let e = with_key(Some(p), KEY).unwrap_err().to_string();
            assert!(e.contains(says), "{p:?}: {e}");
        }
    }

    #[test]
    fn a_script_goes_beside_the_key_in_a_multipart() {
        let out = with_key(Some("#!/bin/bash\nset -e\ntouch /root/managed\n"), KEY).unwrap();
        assert_eq!(out.matches(&format!("--{BOUNDARY}\n")).count(), 2, "{out}");
        assert!(out.ends_with(&format!("--{BOUNDARY}--\n")));
        assert!(out.contains(&format!("#cloud-config\nssh_authorized_keys:\n  - {KEY}\n")));
        assert!(out.contains("text/x-shellscript") && out.contains("touch /root/managed"));
    }
}
