//! Live progress of runs and boot tests. On a terminal: a line per stage and per cell of the test
//! matrix (indicatif), each with its state and elapsed time. Off a terminal, or with `--json`:
//! plain lines on stderr, one per change, with the time since the start. At the end, a summary
//! table of every cell's verdicts.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::boot_test::{Event, Verdict};
use crate::journal::{Journal, RunId, TestRecord};
use crate::pipeline::RunEvent;

/// One line of the display: a stage, or a cell with its test counts.
struct Row {
    bar: Option<indicatif::ProgressBar>,
    since: Instant,
    passed: usize,
    failed: usize,
}

/// The progress display of one command.
pub(super) struct Progress {
    multi: Option<indicatif::MultiProgress>,
    rows: Mutex<BTreeMap<String, Row>>,
    start: Instant,
}

/// A stage key's row: test stages share their cell's row (`[LINE/]test/ARCH/…` → `[LINE/]ARCH/…`).
fn row_of(key: &str) -> String {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.iter().position(|p| *p == "test") {
        Some(i) if i <= 1 => parts
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| *p)
            .collect::<Vec<_>>()
            .join("/"),
        _ => key.to_string(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Progress {
    /// Live bars when stderr is a terminal and the output is not JSON; plain lines otherwise.
    pub(super) fn new(json: bool) -> Arc<Progress> {
        let live = !json && std::io::stderr().is_terminal();
        Arc::new(Progress {
            multi: live.then(indicatif::MultiProgress::new),
            rows: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
        })
    }

    /// Shows `text` on `row` (created on first use); `done` ends the row's bar.
    fn show(&self, row: &str, text: &str, done: bool) {
        let Ok(mut rows) = self.rows.lock() else { return };
        let entry = rows.entry(row.to_string()).or_insert_with(|| Row {
            bar: self.multi.as_ref().map(|m| {
                let bar = m.add(indicatif::ProgressBar::new_spinner());
                if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} ({elapsed})")
                {
                    bar.set_style(style);
                }
                bar.set_prefix(row.to_string());
                bar.enable_steady_tick(Duration::from_millis(150));
                bar
            }),
            since: Instant::now(),
            passed: 0,
            failed: 0,
        });
        match &entry.bar {
            Some(bar) if done => bar.finish_with_message(format!("{text} in {}", secs(entry.since.elapsed()))),
            Some(bar) => bar.set_message(text.to_string()),
            None => eprintln!("[{:>7}] {row}: {text}", secs(self.start.elapsed())),
        }
    }

    /// A run's event.
    pub(super) fn run_event(&self, e: &RunEvent) {
        match e {
            RunEvent::StageStarted { key } => self.show(&row_of(key), "started", false),
            RunEvent::StageDone { key } => {
                let row = row_of(key);
                let text = self.counts(&row).unwrap_or_else(|| "done".into());
                self.show(&row, &text, true);
            }
            RunEvent::StageSkipped { key } => self.show(&row_of(key), "done before (skipped)", true),
            RunEvent::StageFailed { key, error } => self.show(&row_of(key), &format!("FAILED: {error}"), true),
            RunEvent::Test { cell, event } => self.test_event(cell, event),
        }
    }

    /// The passed/failed counts of a cell that ran tests.
    fn counts(&self, row: &str) -> Option<String> {
        let rows = self.rows.lock().ok()?;
        let r = rows.get(row)?;
        (r.passed + r.failed > 0).then(|| format!("{} passed, {} failed", r.passed, r.failed))
    }

    /// A boot test's event, in the row of `cell`.
    pub(super) fn test_event(&self, cell: &str, e: &Event) {
        let text = match e {
            Event::Booting { machine } => format!("booting {machine}"),
            Event::Ready { machine, after } => format!("{machine} ready after {}", secs(*after)),
            Event::MachineFailed { machine, error } => format!("{machine} failed: {error}"),
            Event::TestStarted { test } => format!("running {test}"),
            Event::TestFinished {
                test,
                verdict,
                duration,
            } => {
                if let Ok(mut rows) = self.rows.lock()
                    && let Some(r) = rows.get_mut(cell)
                {
                    match verdict {
                        Verdict::Passed | Verdict::Flaky => r.passed += 1,
                        _ => r.failed += 1,
                    }
                }
                format!("{test} {} ({})", verdict.as_str(), secs(*duration))
            }
        };
        self.show(cell, &text, false);
    }

    /// Ends every bar still running (a run that stopped on an error).
    pub(super) fn finish(&self) {
        if let Ok(rows) = self.rows.lock() {
            for r in rows.values() {
                if let Some(bar) = &r.bar
                    && !bar.is_finished()
                {
                    bar.abandon();
                }
            }
        }
    }
}

/// The verdicts of every cell of a run, as a table (empty when it ran no tests).
pub(super) fn summary_table(journal: &Journal, run: &RunId) -> String {
    let Ok(records) = journal.test_results(run) else {
        return String::new();
    };
    summarize(&records)
}

fn summarize(records: &[TestRecord]) -> String {
    // Per cell: passed, failed, flaky, quarantined, machines replaced.
    let mut cells: BTreeMap<String, [usize; 5]> = BTreeMap::new();
    for r in records {
        let c = cells.entry(row_of(&r.stage)).or_default();
        let column = match r.verdict.as_str() {
            "passed" => 0,
            "flaky" => 2,
            "quarantined" => 3,
            "infrastructure" => 4,
            _ => 1,
        };
        c[column] += 1;
    }
    if cells.is_empty() {
        return String::new();
    }
    let width = cells.keys().map(String::len).max().unwrap_or(0).max(4);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>6}  {:>5}  {:>11}  {:>8}\n",
        "cell", "passed", "failed", "flaky", "quarantined", "replaced"
    );
    for (cell, c) in &cells {
        out += &format!(
            "{cell:<width$}  {:>6}  {:>6}  {:>5}  {:>11}  {:>8}\n",
            c[0], c[1], c[2], c[3], c[4]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stages_share_their_cells_row() {
        assert_eq!(row_of("test/x86_64/qcow2"), "x86_64/qcow2");
        assert_eq!(row_of("alma9/test/x86_64/qcow2/nova"), "alma9/x86_64/qcow2/nova");
        assert_eq!(
            row_of("alma9/upload/x86_64/qcow2/prod"),
            "alma9/upload/x86_64/qcow2/prod"
        );
        assert_eq!(row_of("build"), "build");
    }

    #[test]
    fn the_summary_counts_each_cells_verdicts() {
        let rec = |stage: &str, verdict: &str| TestRecord {
            stage: stage.into(),
            image: "i".into(),
            name: "t".into(),
            verdict: verdict.into(),
            duration_ms: 0,
            message: None,
        };
        let table = summarize(&[
            rec("a/test/x86_64/qcow2/nova", "passed"),
            rec("a/test/x86_64/qcow2/nova", "timed_out"),
            rec("a/test/x86_64/qcow2/nova", "infrastructure"),
            rec("b/test/x86_64/qcow2/nova", "flaky"),
            rec("b/test/x86_64/qcow2/nova", "quarantined"),
        ]);
        let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            lines[0],
            ["cell", "passed", "failed", "flaky", "quarantined", "replaced"]
        );
        assert_eq!(lines[1], ["a/x86_64/qcow2/nova", "1", "1", "0", "0", "1"]);
        assert_eq!(lines[2], ["b/x86_64/qcow2/nova", "0", "0", "1", "1", "0"]);
        assert_eq!(summarize(&[]), "");
    }
}
