//! Kickstart validation before a build is asked for: pykickstart's `ksvalidator`, for the syntax
//! of the target distribution's installer, so that a typo fails in seconds with the file and the
//! line, not an hour later inside a Koji task.
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use imagekit::build::kickstart;
//!
//! let version = kickstart::syntax_for_distro("RHEL-9.5").unwrap(); // "RHEL9"
//! kickstart::validate("alma9-cloud.ks".as_ref(), &version).await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// How long `ksvalidator` may take (it reads one file, and `%include`s when asked).
const TIMEOUT: Duration = Duration::from_secs(120);

/// pykickstart's syntax version for an Oz distro string or a distribution name: `RHEL-9.5`,
/// `AlmaLinux-9`, `Rocky-8.10` and `CentOS-Stream-9` → `RHEL9`/`RHEL8`; `Fedora-41` or `F41` →
/// `F41`. `None` when it cannot tell (name the version with `kickstart_version` then).
pub fn syntax_for_distro(distro: &str) -> Option<String> {
    let lower = distro.to_ascii_lowercase();
    let major = |rest: &str| -> Option<u32> {
        let digits: String = rest
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let fedora = lower.strip_prefix("fedora").or_else(|| {
        lower
            .strip_prefix('f')
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    });
    if let Some(rest) = fedora {
        return major(rest).map(|m| format!("F{m}"));
    }
    [
        "rhel",
        "redhat",
        "almalinux",
        "alma",
        "rocky",
        "centos-stream",
        "centos",
        "oraclelinux",
        "ol",
    ]
    .iter()
    .find_map(|p| lower.strip_prefix(p))
    .and_then(major)
    .map(|m| format!("RHEL{m}"))
}

/// Validates `file` against kickstart syntax `version` (`RHEL9`, `F41`) with `ksvalidator`.
///
/// A problem is [`Error::Kickstart`] with the file, the line when ksvalidator says it, and its
/// message; a missing `ksvalidator` (pykickstart) or an unknown version is an error that says
/// how to fix it.
pub async fn validate(file: &Path, version: &str) -> Result<()> {
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new("ksvalidator")
            .args(["--version", version, "--followincludes"])
            .arg(file)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| kickstart_error(file, None, version, format!("ksvalidator took longer than {TIMEOUT:?}")))?
    .map_err(|e| {
        kickstart_error(
            file,
            None,
            version,
            format!("cannot run ksvalidator ({e}): install pykickstart (pip install pykickstart)"),
        )
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (line, mut problem) = parse_problem(&text);
    if problem.is_empty() {
        problem = format!("ksvalidator exited with {} and said nothing", out.status);
    }
    Err(kickstart_error(file, line, version, problem))
}

fn kickstart_error(file: &Path, line: Option<usize>, version: &str, problem: String) -> Error {
    Error::Kickstart {
        file: file.to_path_buf(),
        line,
        version: version.to_string(),
        problem,
    }
}

/// The line and the message of ksvalidator's report: "The following problem occurred on line 5
/// of the kickstart file:\n\nUnknown command: bogus". Without such a report, its last lines.
fn parse_problem(text: &str) -> (Option<usize>, String) {
    const MARK: &str = "problem occurred on line ";
    if let Some(at) = text.find(MARK) {
        let rest = &text[at + MARK.len()..];
        let line = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok();
        let message = rest
            .split_once(':')
            .map(|(_, m)| m)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        return (line, message);
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Checking kickstart file"))
        .collect();
    let start = lines.len().saturating_sub(3);
    (None, lines[start..].join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distros_map_to_pykickstart_versions() {
        for (distro, want) in [
            ("RHEL-9.5", Some("RHEL9")),
            ("rhel-8.10", Some("RHEL8")),
            ("AlmaLinux-9", Some("RHEL9")),
            ("Rocky-8.10", Some("RHEL8")),
            ("CentOS-Stream-10", Some("RHEL10")),
            ("Fedora-41", Some("F41")),
            ("F40", Some("F40")),
            ("Debian-12", None),
            ("freebsd-14", None),
            ("", None),
        ] {
            assert_eq!(syntax_for_distro(distro).as_deref(), want, "{distro}");
        }
    }

    #[test]
    fn ksvalidator_reports_give_the_line_and_the_message() {
        let report = "\nChecking kickstart file /w/a.ks\n\nThe following problem occurred on line 5 of the kickstart file:\n\nUnknown command: bogus-command\n\n";
        assert_eq!(
            parse_problem(report),
            (Some(5), "Unknown command: bogus-command".into())
        );
        let other = "Checking kickstart file x.ks\nTraceback...\nUnknown version: RHEL99\n";
        assert_eq!(
            parse_problem(other),
            (None, "Traceback... Unknown version: RHEL99".into())
        );
    }
}
