//! Koji client profiles, read like the `koji` CLI reads them.
//!
//! Files, in order, later ones overriding earlier ones: `/etc/koji.conf`, `/etc/koji.conf.d/*.conf`,
//! `~/.koji/config.d/*.conf`, `~/.koji/config`. A profile is an INI section named after it
//! (`[koji]`, `[cern]`, ...). Paths may start with `~`.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::error::{Error, Result};

/// One profile's settings.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Profile {
    /// The profile (section) name.
    pub name: String,
    /// The hub's XML-RPC URL (`server`).
    pub server: String,
    /// The web UI URL.
    pub weburl: Option<String>,
    /// The file tree URL, for downloads.
    pub topurl: Option<String>,
    /// `ssl`, `kerberos`/`gssapi`, `password`, or unset.
    pub authtype: Option<String>,
    /// The client certificate (PEM with key) for `ssl`.
    pub cert: Option<PathBuf>,
    /// A CA bundle to trust for the hub.
    pub serverca: Option<PathBuf>,
    /// The user for password logins.
    pub user: Option<String>,
    /// The password for password logins (rarely kept in a file; never printed).
    pub password: Option<SecretString>,
    /// Kerberos principal.
    pub principal: Option<String>,
    /// Kerberos keytab.
    pub keytab: Option<PathBuf>,
    /// `max_retries`.
    pub max_retries: Option<usize>,
    /// `retry_interval`, seconds.
    pub retry_interval: Option<u64>,
    /// `offline_retry`.
    pub offline_retry: Option<bool>,
    /// `anon_retry`.
    pub anon_retry: Option<bool>,
    /// `timeout`, seconds.
    pub timeout: Option<u64>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("weburl", &self.weburl)
            .field("topurl", &self.topurl)
            .field("authtype", &self.authtype)
            .field("cert", &self.cert)
            .field("serverca", &self.serverca)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

/// The files the `koji` CLI reads, in the order it reads them, that exist on this machine.
pub fn default_config_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut files = vec![PathBuf::from("/etc/koji.conf")];
    files.extend(conf_d(Path::new("/etc/koji.conf.d")));
    if let Some(home) = &home {
        files.extend(conf_d(&home.join(".koji/config.d")));
        files.push(home.join(".koji/config"));
    }
    files.into_iter().filter(|p| p.is_file()).collect()
}

fn conf_d(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn expand_home(s: &str) -> PathBuf {
    if let Some(rest) = s.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    PathBuf::from(s)
}

fn parse_bool(file: &Path, key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        other => Err(Error::Config {
            path: file.to_path_buf(),
            reason: format!("{key} = {other:?} is not a boolean (use yes/no, true/false, 1/0)"),
        }),
    }
}

fn parse_num<T: std::str::FromStr>(file: &Path, key: &str, v: &str) -> Result<T> {
    v.trim().parse().map_err(|_| Error::Config {
        path: file.to_path_buf(),
        reason: format!("{key} = {v:?} is not a number"),
    })
}

impl Profile {
    /// Load `name` from the default configuration files.
    ///
    /// ```no_run
    /// let profile = koji_client::Profile::load("koji")?;
    /// let koji = koji_client::ClientBuilder::from_profile(&profile).build()?;
    /// # Ok::<(), koji_client::Error>(())
    /// ```
    pub fn load(name: &str) -> Result<Profile> {
        Self::load_from(name, &default_config_files())
    }

    /// Load `name` from the given files; later files override earlier ones key by key.
    pub fn load_from(name: &str, files: &[PathBuf]) -> Result<Profile> {
        let mut p = Profile {
            name: name.to_string(),
            ..Default::default()
        };
        let mut found = false;
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|e| Error::Config {
                path: file.clone(),
                reason: format!("cannot be read: {e}"),
            })?;
            let ini = ini::Ini::load_from_str(&text).map_err(|e| Error::Config {
                path: file.clone(),
                reason: format!("not a valid INI file: {e}"),
            })?;
            let Some(section) = ini.section(Some(name)) else {
                continue;
            };
            found = true;
            for (key, value) in section.iter() {
                let v = value.trim().to_string();
                match key {
                    "server" => p.server = v,
                    "weburl" => p.weburl = Some(v),
                    "topurl" => p.topurl = Some(v),
                    "authtype" => p.authtype = Some(v.to_ascii_lowercase()),
                    "cert" => p.cert = Some(expand_home(&v)),
                    "serverca" => p.serverca = Some(expand_home(&v)),
                    "user" => p.user = Some(v),
                    "password" => p.password = Some(SecretString::from(v)),
                    "principal" => p.principal = Some(v),
                    "keytab" => p.keytab = Some(expand_home(&v)),
                    "max_retries" => p.max_retries = Some(parse_num(file, key, &v)?),
                    "retry_interval" => p.retry_interval = Some(parse_num(file, key, &v)?),
                    "timeout" => p.timeout = Some(parse_num(file, key, &v)?),
                    "offline_retry" => p.offline_retry = Some(parse_bool(file, key, &v)?),
                    "anon_retry" => p.anon_retry = Some(parse_bool(file, key, &v)?),
                    // The CLI knows many more keys (topdir, krb_rdns, plugin_paths, ...); they do not
                    // change how this client talks to the hub.
                    _ => {}
                }
            }
        }
        if !found {
            return Err(Error::ProfileNotFound {
                profile: name.to_string(),
                searched: files.to_vec(),
            });
        }
        if p.server.is_empty() {
            return Err(Error::Config {
                path: files.last().cloned().unwrap_or_default(),
                reason: format!(
                    "profile [{name}] has no `server` (the hub URL, e.g. https://koji.example.org/kojihub)"
                ),
            });
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn later_files_override_earlier_ones_key_by_key() {
        let d = tempfile::tempdir().unwrap();
        let etc = write(
            d.path(),
            "koji.conf",
            "[koji]\nserver = https://koji.example.org/kojihub\ntopurl = https://pkgs.example.org\nauthtype = ssl\ncert = ~/.koji/client.pem\n",
        );
        let user = write(
            d.path(),
            "config",
            "[koji]\ntopurl = https://mirror.example.org\nmax_retries = 3\nanon_retry = yes\n",
        );
        let p = Profile::load_from("koji", &[etc, user]).unwrap();
        assert_eq!(p.server, "https://koji.example.org/kojihub");
        assert_eq!(p.topurl.as_deref(), Some("https://mirror.example.org"));
        assert_eq!(p.authtype.as_deref(), Some("ssl"));
        assert!(p.cert.unwrap().ends_with(".koji/client.pem"));
        assert_eq!(p.max_retries, Some(3));
        assert_eq!(p.anon_retry, Some(true));
    }

    #[test]
    fn a_missing_profile_names_the_files_searched() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "koji.conf", "[other]\nserver = http://x/kojihub\n");
        let err = Profile::load_from("cern", &[f]).unwrap_err();
        assert!(matches!(err, Error::ProfileNotFound { .. }));
        assert!(err.to_string().contains("koji.conf"), "{err}");
    }

    #[test]
    fn malformed_values_say_which_key_and_file() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "koji.conf",
            "[koji]\nserver = http://x/kojihub\nmax_retries = many\n",
        );
        let err = Profile::load_from("koji", &[f]).unwrap_err().to_string();
        assert!(err.contains("max_retries") && err.contains("koji.conf"), "{err}");
        let f = write(d.path(), "k2.conf", "[koji]\ntopurl = http://x\n");
        let err = Profile::load_from("koji", &[f]).unwrap_err().to_string();
        assert!(err.contains("no `server`"), "{err}");
    }

    #[test]
    fn passwords_are_redacted_in_debug() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "koji.conf",
            "[koji]\nserver = http://x/kojihub\nuser = bot\npassword = s3cret\n",
        );
        let p = Profile::load_from("koji", &[f]).unwrap();
        assert!(!format!("{p:?}").contains("s3cret"));
    }
}
