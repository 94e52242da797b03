//! `imagekit gitlab-executor`, driven as gitlab-runner drives a custom executor (which cannot be
//! installed here): the same four stages in the same order, each a new process in a process group
//! of its own, with the runner's environment (`CUSTOM_ENV_*` job variables, the two failure exit
//! codes, `BUILD_EXIT_CODE_FILE`, `JOB_RESPONSE_FILE`), a script file per run sub-stage, the
//! runner's stage timeouts (SIGTERM to the group, then SIGKILL after the graceful-kill timeout),
//! `prepare` retried on a system failure with `cleanup` in between, and `cleanup` always last.
//!
//! On QEMU with the tiny guest (`IMAGEKIT_TINY_GUEST`) and on the testing kit's Nova whose
//! servers are the local sshd (`IMAGEKIT_SSHD`): a job that passes, a job whose script fails, a
//! machine that never boots, SIGTERM in `prepare` and in `run`, SIGKILL in `prepare`, a held
//! machine, two jobs at once (one booting a file, one an image of a local store).
//! After each job, nothing is left: no state, no VM directory, no QEMU process, no Nova resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagekit::openstack::testing::MockOpenStack;
use tokio::io::AsyncReadExt as _;

mod common;

/// Unusual values: a driver that hard-codes 1 or 2 fails these tests.
const BUILD_FAILURE: i32 = 37;
const SYSTEM_FAILURE: i32 = 41;

/// What the runner does around one stage process.
struct Timeouts {
    stage: Duration,
    graceful_kill: Duration,
}

/// How one stage process ended.
#[derive(Debug)]
struct Ended {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Ended {
    fn log(&self) -> String {
        format!("{}{}", self.out, self.err)
    }
}

/// When the harness signals a stage, as a cancelled job or a timeout would.
#[derive(Clone)]
enum Interrupt {
    None,
    /// SIGTERM once the stage's output contains this.
    When(&'static str),
    /// The same, after a check of the output so far (a person using a held machine).
    Checked(&'static str, fn(&str)),
    /// SIGKILL (no chance to clean up) once a file of this name exists in the state directory.
    KilledOnceExists(&'static str),
}

/// gitlab-runner, as far as the custom executor sees it.
struct Runner {
    config: PathBuf,
    work: tempfile::TempDir,
    /// Environment every stage gets (the runner passes its own environment on).
    env: Vec<(String, String)>,
    timeouts: Timeouts,
    prepare_attempts: u32,
}

/// One job of a `.gitlab-ci.yml`.
struct Job {
    id: u64,
    image: String,
    script: String,
    /// `step_*` stages before the script (GitLab's own steps, unknown to the driver).
    steps: Vec<(&'static str, String)>,
    variables: Vec<(&'static str, String)>,
    interrupt: Vec<(&'static str, Interrupt)>,
}

impl Job {
    fn new(id: u64, image: &str, script: &str) -> Job {
        Job {
            id,
            image: image.into(),
            script: script.into(),
            steps: Vec::new(),
            variables: Vec::new(),
            interrupt: Vec::new(),
        }
    }
    fn interrupt(&self, stage: &str) -> Interrupt {
        self.interrupt
            .iter()
            .find(|(s, _)| *s == stage)
            .map_or(Interrupt::None, |(_, i)| i.clone())
    }
}

/// What a job did: each stage's exit code and the job log (what GitLab shows).
#[derive(Debug, Default)]
struct Outcome {
    stages: Vec<(String, Option<i32>)>,
    log: String,
    /// The real exit code the driver reported for the failed script.
    exit_code_file: Option<String>,
    /// The config stage's answer.
    config: serde_json::Value,
    /// The machine's state while the job ran (read before cleanup).
    state: Option<serde_json::Value>,
}

impl Outcome {
    fn code(&self, stage: &str) -> Option<i32> {
        self.stages.iter().find(|(s, _)| s == stage).and_then(|(_, c)| *c)
    }
    fn ran(&self, stage: &str) -> bool {
        self.stages.iter().any(|(s, _)| s == stage)
    }
}

impl Runner {
    /// A runner with this driver configuration, where `@STATE@` is the state directory (in the
    /// runner's work directory).
    fn new(config: &str, env: Vec<(String, String)>) -> Runner {
        let work = tempfile::tempdir().unwrap();
        let path = work.path().join("gitlab-executor.toml");
        let state = work.path().join("state");
        std::fs::write(&path, config.replace("@STATE@", &state.display().to_string())).unwrap();
        Runner {
            config: path,
            work,
            env,
            timeouts: Timeouts {
                stage: Duration::from_secs(600),
                graceful_kill: Duration::from_secs(60),
            },
            prepare_attempts: 3,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.work.path().join("state")
    }

    /// The environment of one stage of `job`, as the runner sets it.
    fn stage_env(&self, job: &Job, builds_dir: &str) -> Vec<(String, String)> {
        let project_dir = format!("{builds_dir}/group/project-{}", job.id);
        let mut env = self.env.clone();
        env.extend(
            [
                ("CUSTOM_ENV_CI_JOB_ID", job.id.to_string()),
                ("CUSTOM_ENV_CI_PROJECT_DIR", project_dir),
                ("CUSTOM_ENV_CI_BUILDS_DIR", builds_dir.to_string()),
                ("CUSTOM_ENV_CI_JOB_TIMEOUT", "3600".into()),
                ("CUSTOM_ENV_IMAGEKIT_IMAGE", job.image.clone()),
                ("BUILD_FAILURE_EXIT_CODE", BUILD_FAILURE.to_string()),
                ("SYSTEM_FAILURE_EXIT_CODE", SYSTEM_FAILURE.to_string()),
                ("IMAGEKIT_EXECUTOR_CONFIG", self.config.display().to_string()),
                (
                    "JOB_RESPONSE_FILE",
                    self.work
                        .path()
                        .join(format!("job-{}.json", job.id))
                        .display()
                        .to_string(),
                ),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        env.extend(
            job.variables
                .iter()
                .map(|(k, v)| (format!("CUSTOM_ENV_{k}"), v.clone())),
        );
        env
    }

    /// Runs one stage process: its own process group, the stage timeout, then SIGTERM to the
    /// group and SIGKILL after the graceful-kill timeout.
    async fn exec(&self, args: &[&str], env: &[(String, String)], interrupt: Interrupt, timeout: Duration) -> Ended {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_imagekit"));
        cmd.arg("gitlab-executor")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("BUILD_EXIT_CODE_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((_, v)) = env.iter().find(|(k, _)| k == "BUILD_EXIT_CODE_FILE") {
            cmd.env("BUILD_EXIT_CODE_FILE", v);
        }
        let mut child = cmd.spawn().unwrap();
        let pgid = child.id().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let pump = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>, into: Arc<Mutex<String>>| {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let po = pump(Box::new(child.stdout.take().unwrap()), out.clone());
        let pe = pump(Box::new(child.stderr.take().unwrap()), err.clone());
        let signal = |sig: &str| {
            let _ = std::process::Command::new("kill")
                .args([sig, "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        };
        let watch = async {
            match interrupt {
                Interrupt::None => std::future::pending::<()>().await,
                Interrupt::KilledOnceExists(name) => loop {
                    if file_exists_under(&self.state_dir(), name) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                },
                Interrupt::When(marker) | Interrupt::Checked(marker, _) => loop {
                    let seen = format!("{}{}", out.lock().unwrap(), err.lock().unwrap());
                    if seen.contains(marker) {
                        if let Interrupt::Checked(_, check) = interrupt {
                            tokio::task::spawn_blocking(move || check(&seen)).await.unwrap();
                        }
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                },
            }
        };
        let status = tokio::select! {
            s = child.wait() => Some(s.unwrap()),
            _ = tokio::time::sleep(timeout) => None,
            _ = watch => None,
        };
        let status = match status {
            Some(s) => s,
            None if matches!(interrupt, Interrupt::KilledOnceExists(_)) => {
                signal("-KILL");
                child.wait().await.unwrap()
            }
            None => {
                signal("-TERM");
                match tokio::time::timeout(self.timeouts.graceful_kill, child.wait()).await {
                    Ok(s) => s.unwrap(),
                    Err(_) => {
                        signal("-KILL");
                        child.wait().await.unwrap()
                    }
                }
            }
        };
        let _ = tokio::join!(po, pe);
        let (out, err) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
        Ended {
            code: status.code(),
            out,
            err,
        }
    }

    /// One job from config to cleanup, as the runner runs it.
    async fn run_job(&self, job: &Job) -> Outcome {
        let mut outcome = Outcome::default();
        let base_env = self.stage_env(job, "/builds");
        let config = self
            .exec(&["config"], &base_env, Interrupt::None, Duration::from_secs(60))
            .await;
        outcome.stages.push(("config".into(), config.code));
        outcome.log.push_str(&config.err);
        assert_eq!(config.code, Some(0), "config: {}", config.log());
        outcome.config = serde_json::from_str(&config.out).expect("config prints JSON");
        let builds_dir = outcome.config["builds_dir"].as_str().unwrap().to_string();
        let env = self.stage_env(job, &builds_dir);

        // prepare_exec: up to 3 attempts, 3 s apart, on a system failure; cleanup after each.
        let mut prepared = false;
        for attempt in 1..=self.prepare_attempts {
            let p = self
                .exec(&["prepare"], &env, job.interrupt("prepare"), self.timeouts.stage)
                .await;
            outcome.stages.push(("prepare".into(), p.code));
            outcome.log.push_str(&p.log());
            if p.code == Some(0) {
                prepared = true;
                break;
            }
            if p.code != Some(SYSTEM_FAILURE) || attempt == self.prepare_attempts {
                break;
            }
            let c = self
                .exec(&["cleanup"], &env, Interrupt::None, self.timeouts.stage)
                .await;
            outcome.stages.push(("cleanup".into(), c.code));
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if prepared {
            outcome.state = self.state(job);
            self.run_stages(job, &env, &mut outcome).await;
        }
        let c = self
            .exec(&["cleanup"], &env, job.interrupt("cleanup"), self.timeouts.stage)
            .await;
        outcome.stages.push(("cleanup".into(), c.code));
        outcome
    }

    /// The run sub-stages in the runner's order: a failed stage up to the script skips the rest
    /// up to `after_script`, which always runs, then the on-failure variants.
    async fn run_stages(&self, job: &Job, env: &[(String, String)], outcome: &mut Outcome) {
        let project = env
            .iter()
            .find(|(k, _)| k == "CUSTOM_ENV_CI_PROJECT_DIR")
            .unwrap()
            .1
            .clone();
        // The runner's scripts export the job's variables themselves.
        let header = format!("export CI_PROJECT_DIR='{project}' CI_JOB_ID='{}'\n", job.id);
        let mut stages: Vec<(String, String)> = vec![
            ("prepare_script".into(), "echo \"Running on $(hostname)\"".into()),
            (
                "get_sources".into(),
                "mkdir -p \"$CI_PROJECT_DIR\" && echo 'the sources' > \"$CI_PROJECT_DIR/README\"".into(),
            ),
            ("restore_cache".into(), "true".into()),
            ("download_artifacts".into(), "true".into()),
        ];
        stages.extend(job.steps.iter().map(|(n, s)| (n.to_string(), s.clone())));
        stages.push(("step_script".into(), format!("cd \"$CI_PROJECT_DIR\"\n{}", job.script)));
        let mut failed = false;
        for (stage, body) in &stages {
            if self
                .run_stage(job, env, stage, &format!("{header}{body}"), outcome)
                .await
                != Some(0)
            {
                failed = true;
                break;
            }
        }
        let after = [
            (
                "after_script",
                "cd \"$CI_PROJECT_DIR\" && echo after_script ran".to_string(),
            ),
            if failed {
                ("archive_cache_on_failure", "true".into())
            } else {
                ("archive_cache", "true".into())
            },
            if failed {
                (
                    "upload_artifacts_on_failure",
                    "cd \"$CI_PROJECT_DIR\" && for f in imagekit-debug/*; do echo \"artifact $f $(wc -c < $f)\"; done"
                        .into(),
                )
            } else {
                ("upload_artifacts_on_success", "true".into())
            },
            ("cleanup_file_variables", "true".into()),
        ];
        for (stage, body) in after {
            self.run_stage(job, env, stage, &format!("{header}{body}"), outcome)
                .await;
        }
    }

    async fn run_stage(
        &self,
        job: &Job,
        env: &[(String, String)],
        stage: &str,
        body: &str,
        outcome: &mut Outcome,
    ) -> Option<i32> {
        let dir = self.work.path().join(format!("job-{}-scripts", job.id));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join(format!("script-{stage}"));
        std::fs::write(&script, body).unwrap();
        let code_file = dir.join(format!("exit-code-{stage}"));
        let _ = std::fs::remove_file(&code_file);
        let mut env = env.to_vec();
        env.push(("BUILD_EXIT_CODE_FILE".into(), code_file.display().to_string()));
        let r = self
            .exec(
                &["run", script.to_str().unwrap(), stage],
                &env,
                job.interrupt(stage),
                self.timeouts.stage,
            )
            .await;
        outcome.log.push_str(&r.log());
        outcome.stages.push((stage.to_string(), r.code));
        if let Ok(code) = std::fs::read_to_string(&code_file) {
            outcome.exit_code_file = Some(code);
        }
        r.code
    }

    fn state(&self, job: &Job) -> Option<serde_json::Value> {
        let text = std::fs::read(self.state_dir().join(format!("job-{}/state.json", job.id))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Nothing of any job is left: no job directory, and no process started from one.
    fn assert_nothing_left(&self) {
        let jobs: Vec<_> = std::fs::read_dir(self.state_dir())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(jobs.is_empty(), "job state left: {jobs:?}");
        let left = processes_in(&self.state_dir());
        assert!(left.is_empty(), "processes left: {left:?}");
    }
}

impl Drop for Runner {
    /// A test that failed half-way leaves no VM running: what its stages started is killed.
    fn drop(&mut self) {
        for pid in processes_of(&self.state_dir()) {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// The processes whose command line mentions `dir`: (pid, command line).
fn processes_in(dir: &Path) -> Vec<(String, String)> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push((p.file_name().to_string_lossy().into_owned(), cmdline));
            }
        }
    }
    found
}

fn file_exists_under(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        e.file_name() == name || (path.is_dir() && file_exists_under(&path, name))
    })
}

fn processes_of(dir: &Path) -> Vec<String> {
    processes_in(dir).into_iter().map(|(pid, _)| pid).collect()
}

// ---------------------------------------------------------------------------------------------
// QEMU, with the tiny guest.

fn tiny_guest() -> Option<PathBuf> {
    common::peer("IMAGEKIT_TINY_GUEST", "the tiny guest (QEMU)")
}

/// A runner whose machines are tiny guests (busybox: `sh`, root).
fn qemu_runner(guest: &Path, extra: &str) -> Runner {
    Runner::new(
        &format!(
            r#"
state_dir = "@STATE@"
user = "root"
shell = "sh"
ssh_timeout_seconds = 240
{extra}
[qemu]
image_dirs = ["{guest}"]
memory_mib = 256
cpus = 1
kernel = "{guest}/vmlinuz"
initrd = "{guest}/initrd.img"
"#,
            guest = guest.display(),
        ),
        Vec::new(),
    )
}

fn disk(guest: &Path) -> String {
    guest.join("disk.qcow2").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_a_job_that_passes_runs_every_stage_in_its_machine_and_leaves_nothing() {
    let Some(guest) = tiny_guest() else { return };
    let runner = qemu_runner(&guest, "");
    let mut job = Job::new(1001, &disk(&guest), "cat README\necho \"job script on $(hostname)\"");
    job.steps.push(("step_release", "echo an unknown step ran".into()));
    let o = runner.run_job(&job).await;
    for (stage, code) in &o.stages {
        assert_eq!(*code, Some(0), "{stage}: {}", o.log);
    }
    assert_eq!(o.config["hostname"], "imagekit-ci-1001");
    assert_eq!(o.config["driver"]["name"], "imagekit");
    assert!(o.log.contains("Running on imagekit-ci-1001"), "{}", o.log);
    assert!(o.log.contains("the sources"), "{}", o.log);
    assert!(o.log.contains("an unknown step ran"), "{}", o.log);
    assert!(o.log.contains("job script on imagekit-ci-1001"), "{}", o.log);
    assert!(o.log.contains("after_script ran"), "{}", o.log);
    assert!(o.ran("upload_artifacts_on_success") && !o.ran("upload_artifacts_on_failure"));
    assert_eq!(o.exit_code_file, None);
    let state = o.state.unwrap();
    assert_eq!(state["machine"]["backend"], "qemu", "{state}");
    runner.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_a_failing_script_gives_the_build_failure_code_and_its_own_code_in_the_file() {
    let Some(guest) = tiny_guest() else { return };
    let runner = qemu_runner(&guest, "");
    let job = Job::new(1002, &disk(&guest), "echo about to fail\nexit 7\necho never");
    let o = runner.run_job(&job).await;
    assert_eq!(o.code("prepare"), Some(0), "{}", o.log);
    assert_eq!(o.code("step_script"), Some(BUILD_FAILURE), "{}", o.log);
    assert_eq!(o.exit_code_file.as_deref(), Some("7"));
    assert!(o.log.contains("about to fail") && !o.log.contains("never"), "{}", o.log);
    // after_script still runs; the console log is there for the artifacts of a failed job.
    assert_eq!(o.code("after_script"), Some(0), "{}", o.log);
    assert_eq!(o.code("upload_artifacts_on_failure"), Some(0), "{}", o.log);
    let console = o
        .log
        .lines()
        .find(|l| l.starts_with("artifact imagekit-debug/console.log"))
        .unwrap_or_else(|| panic!("no console log among the artifacts: {}", o.log));
    let size: u64 = console.rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(size > 100, "{console}");
    assert_eq!(o.code("cleanup"), Some(0));
    runner.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_a_machine_that_never_boots_is_a_system_failure_and_leaves_nothing() {
    let Some(guest) = tiny_guest() else { return };
    // No init: the kernel panics at once, every attempt.
    let runner = qemu_runner(&guest, "");
    let config = std::fs::read_to_string(&runner.config).unwrap().replace(
        "[qemu]\n",
        "[qemu]\nappend = \"console=ttyS0 panic=-1 rdinit=/no/such/init\"\n",
    );
    std::fs::write(&runner.config, config).unwrap();
    let job = Job::new(1003, &disk(&guest), "echo never runs");
    let o = runner.run_job(&job).await;
    let prepares: Vec<_> = o.stages.iter().filter(|(s, _)| s == "prepare").collect();
    assert_eq!(prepares.len(), 3, "the runner retries a system failure: {:?}", o.stages);
    assert!(
        prepares.iter().all(|(_, c)| *c == Some(SYSTEM_FAILURE)),
        "{:?}",
        o.stages
    );
    assert!(!o.ran("step_script"));
    assert!(
        o.log.contains("Kernel panic"),
        "the console's tail is in the job log: {}",
        o.log
    );
    runner.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_sigterm_in_prepare_or_run_leaves_nothing() {
    let Some(guest) = tiny_guest() else { return };
    let runner = qemu_runner(&guest, "");
    // Cancelled while the machine boots: prepare deletes it itself, before cleanup runs.
    let mut job = Job::new(1004, &disk(&guest), "echo never runs");
    job.interrupt.push(("prepare", Interrupt::When("imagekit: booting")));
    let env = runner.stage_env(&job, "/builds");
    let p = runner
        .exec(&["prepare"], &env, job.interrupt("prepare"), Duration::from_secs(300))
        .await;
    assert_eq!(p.code, Some(SYSTEM_FAILURE), "{}", p.log());
    runner.assert_nothing_left();
    let c = runner
        .exec(&["cleanup"], &env, Interrupt::None, Duration::from_secs(60))
        .await;
    assert_eq!(c.code, Some(0), "a cleanup with nothing to clean: {}", c.log());

    // Cancelled while the script runs: the script stops, and cleanup deletes the machine.
    let mut job = Job::new(1005, &disk(&guest), "echo started; sleep 611; echo not cancelled");
    job.interrupt.push(("step_script", Interrupt::When("started")));
    let o = runner.run_job(&job).await;
    assert_eq!(o.code("step_script"), Some(SYSTEM_FAILURE), "{}", o.log);
    assert!(!o.log.contains("not cancelled"));
    assert!(o.log.contains("stopping its script"), "{}", o.log);
    assert_eq!(o.code("cleanup"), Some(0), "{}", o.log);
    runner.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_a_prepare_killed_mid_boot_is_cleaned_up_by_cleanup() {
    let Some(guest) = tiny_guest() else { return };
    let runner = qemu_runner(&guest, "");
    let mut job = Job::new(1009, &disk(&guest), "echo never runs");
    // Killed once QEMU runs (it wrote its pid file), before SSH answers.
    job.interrupt.push(("prepare", Interrupt::KilledOnceExists("qemu.pid")));
    let env = runner.stage_env(&job, "/builds");
    let p = runner
        .exec(&["prepare"], &env, job.interrupt("prepare"), Duration::from_secs(300))
        .await;
    assert_eq!(p.code, None, "killed: {}", p.log());
    assert!(!p.log().contains("is ready"), "{}", p.log());
    // Its QEMU lives on, in a process group of its own; cleanup finds it by the job's name.
    let running = processes_in(&runner.state_dir());
    assert!(running.iter().any(|(_, c)| c.contains("qemu-system")), "{running:?}");
    let c = runner
        .exec(&["cleanup"], &env, Interrupt::None, Duration::from_secs(120))
        .await;
    assert_eq!(c.code, Some(0), "{}", c.log());
    runner.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_two_jobs_at_once_each_have_their_own_machine() {
    let Some(guest) = tiny_guest() else { return };
    // One job boots a file, the other an image of the local store, by name.
    let store = tempfile::tempdir().unwrap();
    let runner = qemu_runner(&guest, "");
    let config = std::fs::read_to_string(&runner.config)
        .unwrap()
        .replace("[qemu]\n", &format!("[qemu]\nstore = \"{}\"\n", store.path().display()));
    std::fs::write(&runner.config, config).unwrap();
    let file = tokio::fs::File::open(guest.join("disk.qcow2")).await.unwrap();
    let length = file.metadata().await.unwrap().len();
    let data = imagekit::store::ImageData {
        reader: Box::pin(file),
        length,
    };
    imagekit::store::ImageStore::create_and_upload(
        &imagekit::store::LocalStore::new(store.path()),
        &imagekit::store::NewImage::new("tiny-1", "qcow2"),
        data,
        &|_| Ok(()),
    )
    .await
    .unwrap();
    let (a, b) = (
        Job::new(
            1006,
            &disk(&guest),
            "echo \"I am $(hostname)\"; touch /tmp/mine-1006; ls /tmp",
        ),
        Job::new(
            1007,
            "tiny-1",
            "echo \"I am $(hostname)\"; touch /tmp/mine-1007; ls /tmp",
        ),
    );
    let (oa, ob) = tokio::join!(runner.run_job(&a), runner.run_job(&b));
    for (o, me, other) in [(&oa, 1006, 1007), (&ob, 1007, 1006)] {
        assert!(o.stages.iter().all(|(_, c)| *c == Some(0)), "{:?}\n{}", o.stages, o.log);
        assert!(o.log.contains(&format!("I am imagekit-ci-{me}")), "{}", o.log);
        assert!(o.log.contains(&format!("mine-{me}")), "{}", o.log);
        assert!(
            !o.log.contains(&format!("mine-{other}")),
            "a machine of its own: {}",
            o.log
        );
    }
    let (sa, sb) = (oa.state.unwrap(), ob.state.unwrap());
    assert_ne!(sa["machine"]["ssh_port"], sb["machine"]["ssh_port"]);
    assert!(
        sb["image"]
            .as_str()
            .unwrap()
            .starts_with(&store.path().display().to_string()),
        "{sb}"
    );
    runner.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_a_failed_job_s_machine_is_held_until_sigterm_and_reachable_meanwhile() {
    let Some(guest) = tiny_guest() else { return };
    let runner = qemu_runner(&guest, "max_hold_minutes = 30");
    let mut job = Job::new(1008, &disk(&guest), "exit 3");
    job.variables.push(("IMAGEKIT_HOLD_MINUTES", "90".into()));
    job.interrupt
        .push(("cleanup", Interrupt::Checked("holding", log_in_as_told)));
    let o = runner.run_job(&job).await;
    assert_eq!(o.code("step_script"), Some(BUILD_FAILURE));
    // How to reach it is in the job log: the key, the port, the user; the hold is bounded.
    let how = o
        .log
        .lines()
        .find(|l| l.trim_start().starts_with("ssh -i "))
        .unwrap_or_else(|| panic!("{}", o.log));
    assert!(
        how.contains("UserKnownHostsFile=/dev/null"),
        "a machine's key is not for known_hosts: {how}"
    );
    assert!(o.log.contains("held for 30 min"), "{}", o.log);
    let state = o.state.clone().unwrap();
    let port = state["machine"]["ssh_port"].as_u64().unwrap();
    assert!(
        how.contains(&format!(" -p {port} ")) && how.ends_with(" root@127.0.0.1"),
        "{how}"
    );
    // The SIGTERM ended the hold, and cleanup deleted the machine.
    assert_eq!(o.code("cleanup"), Some(0));
    runner.assert_nothing_left();
}

/// Logs in to a held machine with OpenSSH, exactly as cleanup's log says to.
fn log_in_as_told(log: &str) {
    let line = log.lines().find(|l| l.contains("holding")).unwrap();
    let ssh = &line[line.find("ssh -i ").unwrap()..];
    let mut argv: Vec<&str> = ssh.split_whitespace().collect();
    let dest = argv.pop().unwrap();
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .args(["-o", "BatchMode=yes", dest, "hostname"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{ssh}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "imagekit-ci-1008");
}

#[tokio::test]
async fn bad_input_is_a_clear_error_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(dir.path().join("secret"), "not an image").unwrap();
    let runner = Runner::new(
        &format!(
            "state_dir = \"@STATE@\"\n[qemu]\nimage_dirs = [\"{}\"]\n",
            images.display()
        ),
        Vec::new(),
    );
    // No image named by the job: the job's fault, not retried.
    let mut job = Job::new(2001, "", "true");
    let env = runner.stage_env(&job, "/builds");
    let p = runner
        .exec(&["prepare"], &env, Interrupt::None, Duration::from_secs(60))
        .await;
    assert_eq!(p.code, Some(BUILD_FAILURE), "{}", p.log());
    assert!(p.err.contains("IMAGEKIT_IMAGE"), "{}", p.err);
    // A file outside the allowed directories (a symlink into them does not help).
    std::os::unix::fs::symlink(dir.path().join("secret"), images.join("link.qcow2")).unwrap();
    for image in [
        dir.path().join("secret"),
        images.join("link.qcow2"),
        images.join("../secret"),
    ] {
        job.image = image.display().to_string();
        let env = runner.stage_env(&job, "/builds");
        let p = runner
            .exec(&["prepare"], &env, Interrupt::None, Duration::from_secs(60))
            .await;
        assert_eq!(p.code, Some(BUILD_FAILURE), "{image:?}: {}", p.log());
        assert!(p.err.contains("not an image file this runner may boot"), "{}", p.err);
    }
    assert!(!runner.state_dir().join("job-2001").exists());
    // Not run by a runner: no exit codes to use.
    let mut env = runner.stage_env(&job, "/builds");
    env.retain(|(k, _)| k != "SYSTEM_FAILURE_EXIT_CODE");
    let p = tokio::process::Command::new(env!("CARGO_BIN_EXE_imagekit"))
        .args(["gitlab-executor", "prepare"])
        .env_clear()
        .envs(env)
        .output()
        .await
        .unwrap();
    assert_eq!(p.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&p.stderr).contains("SYSTEM_FAILURE_EXIT_CODE is not set"));
    // A broken configuration is the runner's problem: a system failure, with the file named.
    std::fs::write(&runner.config, "[qemu]\nimage_dirz = []\n").unwrap();
    let env = runner.stage_env(&job, "/builds");
    let p = runner
        .exec(&["config"], &env, Interrupt::None, Duration::from_secs(60))
        .await;
    assert_eq!(p.code, Some(SYSTEM_FAILURE), "{}", p.log());
    assert!(
        p.err.contains("gitlab-executor.toml") && p.err.contains("image_dirz"),
        "{}",
        p.err
    );
}

// ---------------------------------------------------------------------------------------------
// Nova: the testing kit's, whose servers are the local sshd.

struct NovaRunner {
    runner: Runner,
    cloud: MockOpenStack,
    builds: tempfile::TempDir,
}

async fn nova_runner(ssh_port: Option<u16>, ssh_timeout: u64) -> Option<NovaRunner> {
    let sshd = common::sshd()?;
    let cloud = MockOpenStack::start().await;
    common::machines_are_sshd(&cloud, &sshd);
    cloud.set_console("[    0.000000] Linux version 6.1.0 (the kit's console)\n");
    let builds = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
state_dir = "@STATE@"
user = "{user}"
shell = "sh"
builds_dir = "{builds}/builds"
cache_dir = "{builds}/cache"
ssh_timeout_seconds = {ssh_timeout}
[nova]
cloud = "kit"
flavor = "m1.small"
ssh_port = {port}
boot_timeout_seconds = 30
"#,
        user = sshd.user,
        builds = builds.path().display(),
        port = ssh_port.unwrap_or(sshd.port),
    );
    let mut runner = Runner::new(&config, Vec::new());
    let clouds = runner.work.path().join("clouds.yaml");
    std::fs::write(&clouds, cloud.clouds_yaml("kit")).unwrap();
    runner
        .env
        .push(("OS_CLIENT_CONFIG_FILE".into(), clouds.display().to_string()));
    Some(NovaRunner { runner, cloud, builds })
}

impl NovaRunner {
    fn assert_nothing_left(&self) {
        self.runner.assert_nothing_left();
        assert_eq!(self.cloud.leaks(), vec![], "nothing left on Nova");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_a_passing_and_a_failing_job_at_once_each_on_its_own_server() {
    let Some(n) = nova_runner(None, 60).await else { return };
    let pass = Job::new(3001, "IMAGE-1", "cat README; echo passed on the server");
    let fail = Job::new(3002, "IMAGE-1", "echo failing; exit 9");
    let (op, of) = tokio::join!(n.runner.run_job(&pass), n.runner.run_job(&fail));
    assert!(
        op.stages.iter().all(|(_, c)| *c == Some(0)),
        "{:?}\n{}",
        op.stages,
        op.log
    );
    assert!(
        op.log.contains("the sources") && op.log.contains("passed on the server"),
        "{}",
        op.log
    );
    assert_eq!(of.code("step_script"), Some(BUILD_FAILURE), "{}", of.log);
    assert_eq!(of.exit_code_file.as_deref(), Some("9"));
    // The console comes from Nova's console log.
    assert!(of.log.contains("artifact imagekit-debug/console.log"), "{}", of.log);
    let project = n
        .builds
        .path()
        .join("builds/group/project-3002/imagekit-debug/console.log");
    assert!(std::fs::read_to_string(project).unwrap().contains("the kit's console"));
    let (sp, sf) = (op.state.clone().unwrap(), of.state.clone().unwrap());
    assert_eq!(sp["machine"]["backend"], "nova");
    assert_ne!(sp["machine"]["server"], sf["machine"]["server"], "a server each");
    assert_eq!(of.code("cleanup"), Some(0));
    n.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_a_server_that_never_boots_is_a_system_failure_and_leaves_nothing() {
    let Some(n) = nova_runner(None, 60).await else { return };
    for _ in 0..3 {
        n.cloud.fail_next_boot("No valid host was found.");
    }
    let o = n.runner.run_job(&Job::new(3003, "IMAGE-1", "true")).await;
    let prepares: Vec<_> = o.stages.iter().filter(|(s, _)| s == "prepare").collect();
    assert_eq!(prepares.len(), 3, "{:?}", o.stages);
    assert!(
        prepares.iter().all(|(_, c)| *c == Some(SYSTEM_FAILURE)),
        "{:?}",
        o.stages
    );
    assert!(o.log.contains("No valid host was found"), "{}", o.log);
    n.assert_nothing_left();

    // Up, but SSH never answers: the same, within the configured wait.
    let Some(n) = nova_runner(Some(closed_port()), 3).await else {
        return;
    };
    let o = n.runner.run_job(&Job::new(3004, "IMAGE-1", "true")).await;
    assert_eq!(o.code("prepare"), Some(SYSTEM_FAILURE), "{}", o.log);
    assert!(o.log.contains("SSH login"), "{}", o.log);
    n.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_sigterm_in_run_then_cleanup_leaves_nothing() {
    let Some(n) = nova_runner(None, 60).await else { return };
    let mut job = Job::new(3005, "IMAGE-1", "echo started; sleep 611; echo not cancelled");
    job.interrupt.push(("step_script", Interrupt::When("started")));
    let o = n.runner.run_job(&job).await;
    assert_eq!(o.code("step_script"), Some(SYSTEM_FAILURE), "{}", o.log);
    assert!(!o.log.contains("not cancelled"));
    // The script's processes are gone from the (shared) sshd host too.
    let ps = std::process::Command::new("pgrep")
        .args(["-f", "sleep 611"])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "the script was stopped: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    assert_eq!(o.code("cleanup"), Some(0));
    n.assert_nothing_left();
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
