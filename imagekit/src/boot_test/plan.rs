//! Test plans: the tests of a suite written down with what they need, in TOML, and the selection
//! people make from them (`--test`, `--tag`, `--skip`).
//!
//! ```
//! use imagekit::boot_test::plan::{Selection, TestPlan};
//! let plan = TestPlan::from_toml(r#"
//! [[case]]
//! name = "p_mysql"
//! command = ["./runtests.sh", "p_mysql"]
//! tags = ["db"]
//! min_memory_mib = 2048
//!
//! [[case]]
//! name = "reboot"
//! command = ["./runtests.sh", "reboot"]
//! exclusive = true          # destructive: a machine of its own
//! arches = ["x86_64"]
//! platforms = ["nova", "qemu"]
//! timeout_seconds = 900
//! "#)?;
//! let cases = Selection::default().tag("db").apply(plan.cases())?;
//! assert_eq!(cases.len(), 1);
//! assert_eq!(cases[0].min_memory_mib, Some(2048));
//! # Ok::<(), imagekit::Error>(())
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TestCase;
use crate::error::{Error, Result};

/// One test as a plan writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CaseSpec {
    /// Its name (unique in the plan).
    pub name: String,
    /// The program and arguments, run in the suite directory (`["./runtests.sh", "p_mysql"]`).
    pub command: Vec<String>,
    /// Architectures it applies to (empty: all).
    #[serde(default)]
    pub arches: Vec<String>,
    /// Platforms it applies to: `qemu`, `nova`, `ironic` (empty: all).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Memory it needs, MiB.
    #[serde(default)]
    pub min_memory_mib: Option<u32>,
    /// Disk it needs, GiB.
    #[serde(default)]
    pub min_disk_gib: Option<u32>,
    /// Its timeout (default 1800).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Labels for `--tag`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Destructive: a fresh machine of its own.
    #[serde(default)]
    pub exclusive: bool,
    /// Health checks it may trip.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Reruns of a failure on a fresh machine (at most 3).
    #[serde(default)]
    pub rerun: u32,
}

fn default_timeout() -> u64 {
    1800
}

impl CaseSpec {
    /// Checks it: a name, a command, a timeout from 1 s to a week, known health checks, rerun ≤ 3.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("a case needs a `name`".into());
        }
        if self.command.is_empty() {
            return Err(format!("case {:?} needs a `command`", self.name));
        }
        if !(1..=7 * 24 * 3600).contains(&self.timeout_seconds) {
            return Err(format!(
                "case {:?}: `timeout_seconds` must be between 1 and 604800 (a week), not {}",
                self.name, self.timeout_seconds
            ));
        }
        if self.rerun > 3 {
            return Err(format!(
                "case {:?}: `rerun` is at most 3, not {}",
                self.name, self.rerun
            ));
        }
        if let Some(p) = self
            .platforms
            .iter()
            .find(|p| !["qemu", "nova", "ironic"].contains(&p.as_str()))
        {
            return Err(format!(
                "case {:?}: unknown platform {p:?} (qemu, nova or ironic)",
                self.name
            ));
        }
        if let Some(a) = self.allow.iter().find(|a| !super::health::is_check(a)) {
            return Err(format!("case {:?}: no health check is named {a:?}", self.name));
        }
        Ok(())
    }

    /// The test it describes.
    pub fn to_case(&self) -> TestCase {
        TestCase::new(&self.name, self.command.clone())
            .timeout(Duration::from_secs(self.timeout_seconds))
            .tags(self.tags.clone())
            .exclusive(self.exclusive)
            .arches(self.arches.clone())
            .platforms(self.platforms.clone())
            .needs(self.min_memory_mib, self.min_disk_gib)
            .allow(self.allow.clone())
            .rerun(self.rerun)
    }
}

/// A plan: its cases, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestPlan {
    /// `[[case]]` entries.
    #[serde(default, rename = "case")]
    cases: Vec<CaseSpec>,
}

impl TestPlan {
    /// A plan of these cases, checked.
    pub fn new(cases: Vec<CaseSpec>) -> Result<TestPlan> {
        let plan = TestPlan { cases };
        plan.check()?;
        Ok(plan)
    }

    /// Reads a plan file.
    pub fn load(path: &std::path::Path) -> Result<TestPlan> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        TestPlan::from_toml(&text).map_err(|e| Error::InvalidInput(format!("test plan {}: {e}", path.display())))
    }

    /// Parses a plan (`[[case]]` tables).
    pub fn from_toml(text: &str) -> Result<TestPlan> {
        let plan: TestPlan = toml::from_str(text).map_err(|e| Error::InvalidInput(format!("test plan: {e}")))?;
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<()> {
        for (i, c) in self.cases.iter().enumerate() {
            c.check().map_err(Error::InvalidInput)?;
            if self.cases[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::InvalidInput(format!("two cases are named {:?}", c.name)));
            }
        }
        Ok(())
    }

    /// The tests.
    pub fn cases(&self) -> Vec<TestCase> {
        self.cases.iter().map(CaseSpec::to_case).collect()
    }
}

/// Which tests to run: those named (all when none), with one of the tags (any when none), minus
/// those skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Selection {
    /// `--test NAME`.
    pub tests: Vec<String>,
    /// `--tag T`.
    pub tags: Vec<String>,
    /// `--skip NAME`.
    pub skip: Vec<String>,
}

impl Selection {
    /// Only this test (repeatable).
    pub fn test(mut self, name: impl Into<String>) -> Self {
        self.tests.push(name.into());
        self
    }
    /// Only tests with this tag (repeatable: any of them).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    /// Not this test (repeatable).
    pub fn skip(mut self, name: impl Into<String>) -> Self {
        self.skip.push(name.into());
        self
    }
    /// The selected cases. A name given to `--test` or `--skip` that no case has is an error
    /// (a typo would otherwise run everything, or nothing, silently); so is selecting nothing.
    pub fn apply(&self, cases: Vec<TestCase>) -> Result<Vec<TestCase>> {
        if let Some(n) = self
            .tests
            .iter()
            .chain(&self.skip)
            .find(|n| !cases.iter().any(|c| &c.name == *n))
        {
            let known: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            return Err(Error::InvalidInput(format!(
                "no test is named {n:?}; the plan has: {}",
                known.join(", ")
            )));
        }
        let picked: Vec<TestCase> = cases
            .into_iter()
            .filter(|c| self.tests.is_empty() || self.tests.contains(&c.name))
            .filter(|c| self.tags.is_empty() || c.tags.iter().any(|t| self.tags.contains(t)))
            .filter(|c| !self.skip.contains(&c.name))
            .collect();
        if picked.is_empty() {
            return Err(Error::InvalidInput("the selection leaves no test to run".into()));
        }
        Ok(picked)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PLAN: &str = r#"
[[case]]
name = "smoke"
command = ["./runtests.sh", "smoke"]
tags = ["fast"]
[[case]]
name = "mysql"
command = ["./runtests.sh", "mysql"]
tags = ["db", "slow"]
min_memory_mib = 4096
[[case]]
name = "reboot"
command = ["./runtests.sh", "reboot"]
exclusive = true
arches = ["x86_64"]
"#;

    fn names(c: &[TestCase]) -> Vec<&str> {
        c.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn selection_by_name_tag_and_skip() {
        let plan = TestPlan::from_toml(PLAN).unwrap();
        let all = plan.cases();
        assert_eq!(
            names(&Selection::default().apply(all.clone()).unwrap()),
            ["smoke", "mysql", "reboot"]
        );
        assert_eq!(
            names(&Selection::default().tag("db").tag("fast").apply(all.clone()).unwrap()),
            ["smoke", "mysql"]
        );
        assert_eq!(
            names(&Selection::default().skip("mysql").apply(all.clone()).unwrap()),
            ["smoke", "reboot"]
        );
        assert_eq!(
            names(&Selection::default().test("reboot").apply(all.clone()).unwrap()),
            ["reboot"]
        );
        let e = Selection::default()
            .test("rebot")
            .apply(all.clone())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no test is named \"rebot\"; the plan has: smoke, mysql, reboot"),
            "{e}"
        );
        let e = Selection::default().tag("gpu").apply(all).unwrap_err().to_string();
        assert!(e.contains("leaves no test"), "{e}");
        let reboot = &plan.cases()[2];
        assert!(reboot.exclusive && reboot.applies_to(Some("x86_64"), "qemu"));
        assert!(!reboot.applies_to(Some("aarch64"), "qemu"));
    }

    #[test]
    fn bad_plans_say_what_is_wrong() {
        for (text, why) in [
            ("[[case]]\nname = \"a\"\n", "missing field `command`"),
            ("[[case]]\nname = \"a\"\ncommand = []\n", "needs a `command`"),
            (
                "[[case]]\nname = \"a\"\ncommand = [\"x\"]\ntimeout_seconds = 0\n",
                "`timeout_seconds` must be",
            ),
            (
                "[[case]]\nname = \"a\"\ncommand = [\"x\"]\nplatforms = [\"vmware\"]\n",
                "unknown platform",
            ),
            (
                "[[case]]\nname = \"a\"\ncommand = [\"x\"]\nallow = [\"panic\"]\n",
                "no health check is named",
            ),
            (
                "[[case]]\nname = \"a\"\ncommand = [\"x\"]\nexclusiv = true\n",
                "unknown field `exclusiv`",
            ),
            (
                "[[case]]\nname = \"a\"\ncommand = [\"x\"]\n[[case]]\nname = \"a\"\ncommand = [\"y\"]\n",
                "two cases are named",
            ),
        ] {
            let e = TestPlan::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
