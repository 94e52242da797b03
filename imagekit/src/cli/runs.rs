//! `imagekit run`, `imagekit resume` and `imagekit results`: pipelines and the run journal.

use std::path::Path;

use crate::journal::{Journal, RunId, rfc3339};
use crate::pipeline::{Pipeline, RunOptions, Runner, Services};
use serde_json::json;

use super::Cli;
use super::progress::{Progress, summary_table};
use super::shared::{cancellable, journal_path, to_json};

/// `imagekit run PIPELINE [--stop-after STAGE]`.
pub(super) async fn run_cmd(cli: &Cli, pipeline: &Path, stop_after: Option<&str>) -> crate::Result<String> {
    let pipeline = Pipeline::load(pipeline)?;
    let services = Services::from_pipeline(&pipeline)?;
    let journal = Journal::open(&journal_path(cli))?;
    let progress = Progress::new(cli.json);
    let shown = progress.clone();
    let mut opts = RunOptions::default().on_event(move |e| shown.run_event(e));
    if let Some(stage) = stop_after {
        opts = opts.stop_after(stage);
    }
    let report = cancellable(
        Runner::new(&pipeline, &services, &journal).run(&opts),
        &services.computes(),
        "the run",
        "; `imagekit results` shows the run to resume",
    )
    .await;
    finish(cli, &journal, &progress, report)
}

/// `imagekit resume RUN`: finished stages are not repeated.
pub(super) async fn resume_cmd(cli: &Cli, run: &str) -> crate::Result<String> {
    let id = RunId::parse(run)?;
    let journal = Journal::open_existing(&journal_path(cli))?;
    let record = journal.run(&id)?;
    let pipeline = Pipeline::from_recorded(&record.spec)?;
    let services = Services::from_pipeline(&pipeline)?;
    let progress = Progress::new(cli.json);
    let shown = progress.clone();
    let opts = RunOptions::default().on_event(move |e| shown.run_event(e));
    let report = cancellable(
        Runner::new(&pipeline, &services, &journal).resume(&id, &opts),
        &services.computes(),
        "the run",
        "; `imagekit resume` goes on",
    )
    .await;
    finish(cli, &journal, &progress, report)
}

/// Ends the display, prints the test matrix's summary (on stderr, for people: also when the run
/// failed, which is when it matters most), and gives the report or the error.
fn finish(
    cli: &Cli,
    journal: &Journal,
    progress: &Progress,
    report: crate::Result<crate::pipeline::RunReport>,
) -> crate::Result<String> {
    progress.finish();
    let run = match &report {
        Ok(r) => Some(r.run_id.clone()),
        Err(
            crate::Error::TestsFailed { run, .. }
            | crate::Error::LinesFailed { run, .. }
            | crate::Error::Interrupted { run, .. },
        ) => RunId::parse(run).ok(),
        Err(_) => None,
    };
    if !cli.json
        && let Some(run) = run
    {
        let table = summary_table(journal, &run);
        if !table.is_empty() {
            eprint!("\n{table}");
        }
        for stage in journal.stages(&run).unwrap_or_default() {
            eprint!("{}", failure_evidence(&stage));
        }
    }
    run_output(cli, &report?)
}

fn run_output(cli: &Cli, report: &crate::pipeline::RunReport) -> crate::Result<String> {
    if cli.json {
        return to_json(report);
    }
    let mut out = format!("run {}\n", report.run_id);
    for line in &report.lines {
        out += &format!(
            "{}: {}{}\n",
            line.name,
            line.build.nvr,
            if line.build.reused { " (reused build)" } else { "" }
        );
        for i in report.images.iter().filter(|i| i.line == line.name) {
            out += &format!(
                "  {:<10} {:<8} {:<6} {}  {}{}\n",
                i.store,
                i.arch,
                i.format,
                i.image.id,
                i.image.name,
                if i.promoted { "  [promoted]" } else { "" }
            );
        }
    }
    if !report.skipped_stages.is_empty() {
        out += &format!("  skipped (done before): {}\n", report.skipped_stages.join(", "));
    }
    Ok(out.trim_end().to_string())
}

pub(super) fn results(cli: &Cli, run: Option<&str>) -> crate::Result<String> {
    let run_id = run.map(RunId::parse).transpose()?;
    let journal = Journal::open_existing(&journal_path(cli))?;
    let Some(id) = run_id else {
        let runs = journal.runs()?;
        if cli.json {
            return to_json(&runs);
        }
        let mut out = String::new();
        for r in runs {
            out += &format!(
                "{}  {:<24} {:?}  started {}\n",
                r.id,
                r.pipeline,
                r.status,
                rfc3339(r.started_at)
            );
        }
        return Ok(out.trim_end().to_string());
    };
    let record = journal.run(&id)?;
    let stages = journal.stages(&id)?;
    let promotions = journal.promotions(Some(&id))?;
    let leaks = journal.live_resources(Some(&id))?;
    let tests = journal.test_results(&id)?;
    if cli.json {
        return to_json(
            &json!({"run": record, "stages": stages, "tests": tests, "promotions": promotions, "live_resources": leaks}),
        );
    }
    let mut out = format!("run {} ({}) {:?}\n", record.id, record.pipeline, record.status);
    for s in &stages {
        out += &format!(
            "  {:<32} {:?}{}{}\n",
            s.key,
            s.status,
            if s.attempts > 1 {
                format!(" after {} attempts", s.attempts)
            } else {
                String::new()
            },
            s.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    for t in &tests {
        out += &format!(
            "  test {:<24} {:<10} {:>6} ms{}\n",
            t.name,
            t.verdict,
            t.duration_ms,
            t.message.as_ref().map(|m| format!("  {m}")).unwrap_or_default()
        );
    }
    for s in &stages {
        out += &failure_evidence(s);
    }
    for p in &promotions {
        out += &format!(
            "  promoted {} in {} as {} — evidence {}\n",
            p.target,
            p.location,
            p.names.join(", "),
            p.evidence
        );
    }
    for r in &leaks {
        out += &format!("  not cleaned up: {} {} in {}\n", r.kind, r.id, r.location);
    }
    Ok(out.trim_end().to_string())
}

/// For a test stage with failures: each failed test with its logs, then the machine's console and
/// cloud-init logs, read from the report beside the stage's JUnit file. Empty when there is
/// nothing to show or the report is gone.
fn failure_evidence(stage: &crate::journal::StageRecord) -> String {
    let Some(output) = &stage.output else {
        return String::new();
    };
    if output["failed"].as_u64().unwrap_or(0) == 0 {
        return String::new();
    }
    let Some(dir) = output["junit"].as_str().and_then(|j| Path::new(j).parent()) else {
        return String::new();
    };
    let Ok(text) = std::fs::read(dir.join("report.json")) else {
        return String::new();
    };
    let Ok(report) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return String::new();
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut out = format!("  why {} failed:\n", stage.key);
    for t in report["tests"].as_array().into_iter().flatten() {
        if !matches!(t["verdict"].as_str(), Some("failed" | "timed_out" | "error")) {
            continue;
        }
        out += &format!(
            "    {}: {}\n",
            t["name"].as_str().unwrap_or("?"),
            t["message"].as_str().unwrap_or("failed")
        );
        for log in strings(&t["logs"]) {
            out += &format!("      log {log}\n");
        }
    }
    for a in strings(&report["artifacts"]) {
        let name = Path::new(&a)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("console") || name.contains("cloud-init") {
            out += &format!("    machine log {a}\n");
        }
    }
    out
}
