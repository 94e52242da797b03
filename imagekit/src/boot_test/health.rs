//! Health checks: lines in a machine's console that mean a broken image whatever the tests say —
//! a kernel panic, an oops or warning, an emergency shell, dracut giving up, a segfault or core
//! dump, the OOM killer, a systemd ordering cycle, a hung task. The patterns are those OS test
//! harnesses (Fedora CoreOS's kola among them) fail a test on.
//!
//! A boot test checks each test's own window of the console: what the console gained while the
//! test ran. What the boot printed before the first test is the `boot` check's. So a segfault at
//! boot fails the boot check, not every later test; a panic during a test fails that test. A test
//! can allow named checks ([`crate::boot_test::TestCase::allow`]), e.g. a test that kills a
//! process on purpose allows `core_dump`.
//!
//! ```
//! use imagekit::boot_test::health::{scan, Window};
//! let mut window = Window::default();
//! let boot = "[    1.2] systemd[1]: Started sshd.service\n";
//! assert!(scan(window.advance(boot), &[]).is_empty());
//! let during = format!("{boot}[   42.0] Kernel panic - not syncing: Attempted to kill init!\n");
//! let found = scan(window.advance(&during), &[]);
//! assert_eq!(found[0].check, "kernel_panic");
//! assert_eq!(found[0].line, "[   42.0] Kernel panic - not syncing: Attempted to kill init!");
//! assert!(scan(window.advance(&during), &[]).is_empty(), "each line is judged once");
//! ```

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// One named check.
#[derive(Debug)]
pub struct Check {
    /// Its name (what [`crate::boot_test::TestCase::allow`] takes).
    pub name: &'static str,
    /// What a match means.
    pub description: &'static str,
    pattern: Regex,
}

/// What the checks look for, by name.
const PATTERNS: &[(&str, &str, &str)] = &[
    ("kernel_panic", "kernel panic", r"Kernel panic - not syncing"),
    ("oops", "kernel oops", r"Oops: "),
    (
        "kernel_warning",
        "kernel warning",
        r"WARNING: CPU: [0-9]+ PID: [0-9]+ at ",
    ),
    (
        "emergency_shell",
        "emergency shell",
        r"Press Enter for emergency shell|Starting Emergency Shell|You are in emergency mode|Entering emergency mode",
    ),
    (
        "dracut_fatal",
        "dracut refused to continue",
        r"dracut[^:]*: Refusing to continue",
    ),
    (
        "segfault",
        "segmentation fault",
        r"segfault at [0-9a-f]+|SIGSEGV|=11/SEGV",
    ),
    ("core_dump", "core dump", r"[Cc]ore dump|dumped core"),
    (
        "oom_killer",
        "the OOM killer ran",
        r"invoked oom-killer|Out of memory: Kill",
    ),
    (
        "ordering_cycle",
        "systemd ordering cycle",
        r"[Oo]rdering cycle found|[Ff]ound ordering cycle",
    ),
    ("hung_task", "hung task", r"blocked for more than [0-9]+ seconds"),
    (
        "offline_device",
        "I/O to an offline disk",
        r"rejecting I/O to offline device",
    ),
    (
        "generator_failure",
        "systemd generator failed",
        r"system-generators/[^ ]+ (failed with exit status|terminated by signal|failed due to unknown reason)",
    ),
];

static CHECKS: LazyLock<Vec<Check>> = LazyLock::new(|| {
    PATTERNS
        .iter()
        .map(|(name, description, pattern)| Check {
            name,
            description,
            pattern: Regex::new(pattern).unwrap_or_else(|e| unreachable!("health check {name}: {e}")),
        })
        .collect()
});

/// Every check.
pub fn checks() -> &'static [Check] {
    &CHECKS
}

/// Whether `name` is a check (for validating allow lists where they are written).
pub fn is_check(name: &str) -> bool {
    PATTERNS.iter().any(|(n, _, _)| *n == name)
}

/// A console line a check matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// The check's name (`kernel_panic`).
    pub check: String,
    /// What it means (`kernel panic`).
    pub description: String,
    /// The first line it matched, trimmed (at most 300 characters).
    pub line: String,
    /// How many lines it matched.
    pub count: usize,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on the console: {}", self.description, self.line)?;
        if self.count > 1 {
            write!(f, " (and {} more)", self.count - 1)?;
        }
        Ok(())
    }
}

/// Scans `text` line by line with every check not in `allow`; one finding per check that matched,
/// in the order of the checks.
pub fn scan(text: &str, allow: &[String]) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    for check in checks().iter().filter(|c| !allow.iter().any(|a| a == c.name)) {
        let mut hits = text.lines().filter(|l| check.pattern.is_match(l));
        if let Some(first) = hits.next() {
            found.push(Finding {
                check: check.name.into(),
                description: check.description.into(),
                line: first.trim().chars().take(300).collect(),
                count: 1 + hits.count(),
            });
        }
    }
    found
}

/// Follows a console as it grows, handing out what is new each time: the part of a test's window.
///
/// Backends give the console whole (QEMU's log) or its tail (Nova keeps the last lines): when the
/// text no longer starts with what was seen, the new part is what follows the last line seen,
/// or all of it when that line is gone too.
#[derive(Debug, Clone, Default)]
pub struct Window {
    seen: String,
}

impl Window {
    /// The text `console` has that was not handed out before.
    pub fn advance<'c>(&mut self, console: &'c str) -> &'c str {
        let new = if let Some(rest) = console.strip_prefix(self.seen.as_str()) {
            rest
        } else {
            match self.seen.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(last) => match console.rfind(last) {
                    Some(i) => {
                        let rest = &console[i + last.len()..];
                        rest.strip_prefix("\r\n")
                            .or_else(|| rest.strip_prefix('\n'))
                            .unwrap_or(rest)
                    }
                    None => console,
                },
                None => console,
            }
        };
        self.seen = console.to_string();
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_matches_what_real_kernels_and_systemd_print() {
        let samples = [
            (
                "kernel_panic",
                "[   12.345678] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
            ),
            ("oops", "[  101.1] Oops: 0000 [#1] PREEMPT SMP NOPTI"),
            (
                "kernel_warning",
                "[   3.2] WARNING: CPU: 1 PID: 231 at drivers/gpu/drm/drm_edid.c:1234 foo+0x12/0x30",
            ),
            (
                "emergency_shell",
                "You are in emergency mode. After logging in, type \"journalctl -xb\"",
            ),
            (
                "dracut_fatal",
                "[  190.0] dracut-initqueue[312]: dracut: Refusing to continue",
            ),
            (
                "segfault",
                "[  55.0] httpd[1234]: segfault at 0 ip 00007f0a sp 00007ffd error 4 in libc.so.6",
            ),
            (
                "core_dump",
                "systemd-coredump[900]: Process 880 (sleep) of user 0 dumped core.",
            ),
            (
                "oom_killer",
                "[  77.7] stress invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)",
            ),
            (
                "ordering_cycle",
                "systemd[1]: basic.target: Found ordering cycle on sockets.target/start",
            ),
            (
                "hung_task",
                "[ 245.0] INFO: task jbd2/vda1-8:170 blocked for more than 120 seconds.",
            ),
            ("offline_device", "sd 2:0:0:0: rejecting I/O to offline device"),
            (
                "generator_failure",
                "systemd[1]: /usr/lib/systemd/system-generators/foo-generator failed with exit status 1.",
            ),
        ];
        for (check, line) in samples {
            let found = scan(line, &[]);
            assert_eq!(found.len(), 1, "{check}: {found:?}");
            assert_eq!(found[0].check, check);
            assert_eq!(found[0].line, line.trim());
        }
        let clean = "[    0.0] Linux version 6.1.0-57-amd64\n[    1.0] systemd[1]: Reached target multi-user.target\n\
                     Debian GNU/Linux 12 guest ttyS0\nguest login: ";
        assert_eq!(scan(clean, &[]), vec![]);
    }

    #[test]
    fn allowed_checks_are_not_reported_and_counts_add_up() {
        let text = "a segfault at 0 ip 1\nb segfault at 10 ip 2\nKernel panic - not syncing: x\n";
        let all = scan(text, &[]);
        assert_eq!(
            all.iter().map(|f| (f.check.as_str(), f.count)).collect::<Vec<_>>(),
            [("kernel_panic", 1), ("segfault", 2)]
        );
        assert_eq!(
            all[1].to_string(),
            "segmentation fault on the console: a segfault at 0 ip 1 (and 1 more)"
        );
        let allowed = scan(text, &["segfault".to_string()]);
        assert_eq!(allowed.len(), 1);
        assert!(is_check("segfault") && !is_check("segfaults"));
    }

    #[test]
    fn a_window_hands_out_each_line_once_also_when_the_console_is_a_moving_tail() {
        let mut w = Window::default();
        assert_eq!(w.advance("a\nb\n"), "a\nb\n");
        assert_eq!(w.advance("a\nb\nc\n"), "c\n");
        // Nova's tail: the start is gone; what follows the last line seen is new.
        assert_eq!(w.advance("b\nc\nd\n"), "d\n");
        assert_eq!(w.advance("b\nc\nd\n"), "");
        // Nothing recognisable left: all of it is new.
        assert_eq!(w.advance("x\ny\n"), "x\ny\n");
    }
}
