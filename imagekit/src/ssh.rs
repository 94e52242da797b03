//! The SSH side of boot tests, on `russh`: an ephemeral ed25519 key per test VM; "ready" means an
//! authenticated session (QEMU's user networking accepts TCP long before the guest's sshd
//! answers, so a TCP connect proves nothing), within a deadline; commands with their own timeout,
//! arguments quoted for the remote shell, output captured up to a bound; test suites copied in as
//! a tar stream.
//!
//! ```no_run
//! # async fn demo() -> imagekit::Result<()> {
//! use std::time::Duration;
//! use imagekit::ssh::{Command, SshKey, Target, connect_when_ready};
//! let key = SshKey::generate()?;
//! // … put key.public_openssh() into the VM's authorized_keys (cloud-init, Nova keypair) …
//! let target = Target::new("127.0.0.1", 2222, "cloud-user");
//! let session = connect_when_ready(&target, &key, Duration::from_secs(300)).await?;
//! let r = session.run(&Command::new(["./runtests.sh", "mysql"]).timeout(Duration::from_secs(600))).await?;
//! println!("exit {:?}, {} bytes of output", r.exit_status, r.stdout.len());
//! # Ok(()) }
//! ```

use std::fmt;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::ChannelMsg;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use serde::Serialize;

use crate::error::{Error, Result};

/// An SSH key made for one test run; never printed, and written to disk only when asked
/// ([`SshKey::write_private`]).
#[derive(Clone)]
pub struct SshKey {
    key: Arc<PrivateKey>,
}

impl fmt::Debug for SshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshKey")
            .field("public", &self.public_openssh())
            .field("private", &"[REDACTED]")
            .finish()
    }
}

impl SshKey {
    /// A fresh ed25519 key.
    pub fn generate() -> Result<SshKey> {
        use rand::TryRng as _;
        // The seed comes from the operating system, as ssh-key's own `random` would take it.
        let mut seed = [0u8; 32];
        rand::rngs::SysRng.try_fill_bytes(&mut seed).map_err(|e| Error::Ssh {
            target: "-".into(),
            reason: format!("cannot generate a key: {e}"),
        })?;
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        seed.fill(0);
        Ok(SshKey { key: Arc::new(key) })
    }

    /// The private key, for the kit's SSH server's host key.
    #[cfg(feature = "testing")]
    pub(crate) fn private(&self) -> &PrivateKey {
        &self.key
    }

    /// The public key as an `authorized_keys` line (`ssh-ed25519 AAAA… imagekit`).
    pub fn public_openssh(&self) -> String {
        let mut public = self.key.public_key().clone();
        public.set_comment("imagekit");
        public.to_openssh().unwrap_or_default()
    }

    /// Writes the private key (OpenSSH format, unencrypted) to a new file of mode 0600, for a
    /// machine that outlives this process (the GitLab executor's stages are separate processes).
    /// The file must not exist. Whoever can read it can log in to the machine: keep it in a
    /// private directory and delete it with the machine.
    pub fn write_private(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        let text = self
            .key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| Error::InvalidInput(format!("cannot encode the SSH key: {e}")))?;
        let io = |e: std::io::Error| Error::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads a key written by [`SshKey::write_private`].
    pub fn read_private(path: &Path) -> Result<SshKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let key = PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| Error::InvalidInput(format!("{} is not an OpenSSH private key: {e}", path.display())))?;
        Ok(SshKey { key: Arc::new(key) })
    }
}

/// Where to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Host or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
}

impl Target {
    /// `user@host:port`.
    pub fn new(host: &str, port: u16, user: &str) -> Target {
        Target {
            host: host.into(),
            port,
            user: user.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Accepts the host key of a machine we just booted (there is no earlier key to compare with)
/// and remembers its fingerprint for the report.
struct Client {
    fingerprint: Arc<std::sync::Mutex<Option<String>>>,
}

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = Some(key.public_key().fingerprint(Default::default()).to_string());
        }
        Ok(true)
    }
}

/// An authenticated SSH session.
pub struct Session {
    handle: russh::client::Handle<Client>,
    target: Target,
    host_key: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("host_key", &self.host_key)
            .finish()
    }
}

fn ssh_err(target: &Target, reason: impl fmt::Display) -> Error {
    Error::Ssh {
        target: target.to_string(),
        reason: reason.to_string(),
    }
}

const NO_SESSION: &str = "no authenticated session within";
const NO_BANNER: &str = "no SSH banner within";

/// Connects and authenticates once.
pub async fn connect(target: &Target, key: &SshKey, timeout: Duration) -> Result<Session> {
    connect_with_banner_wait(target, key, timeout, None).await
}

/// [`connect`]; with `banner_wait`, a connection on which the server has said nothing (no SSH
/// banner) within that time is given up at once. A user-mode network (QEMU's slirp) accepts the
/// connection before the guest listens and retries its own SYN to the guest with backoff (1, 3,
/// 7, 15 s): a fresh connection gets through as soon as the guest listens; the old one would wait.
async fn connect_with_banner_wait(
    target: &Target,
    key: &SshKey,
    timeout: Duration,
    banner_wait: Option<Duration>,
) -> Result<Session> {
    let config = Arc::new(russh::client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        ..Default::default()
    });
    let fingerprint = Arc::new(std::sync::Mutex::new(None));
    let handler = Client {
        fingerprint: fingerprint.clone(),
    };
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| ssh_err(target, format!("connect: {e}")))?;
        if let Some(wait) = banner_wait {
            let mut first = [0u8; 1];
            match tokio::time::timeout(wait, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Ok(_)) => return Err(ssh_err(target, "connect: the server closed the connection")),
                Ok(Err(e)) => return Err(ssh_err(target, format!("connect: {e}"))),
                Err(_) => return Err(ssh_err(target, format!("connect: {NO_BANNER} {wait:?}"))),
            }
        }
        let _ = stream.set_nodelay(true);
        let mut handle = russh::client::connect_stream(config, stream, handler)
            .await
            .map_err(|e| ssh_err(target, format!("connect: {e}")))?;
        let auth = handle
            .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key.key.clone(), None))
            .await
            .map_err(|e| ssh_err(target, format!("authentication: {e}")))?;
        if !auth.success() {
            return Err(ssh_err(target, "the server refused our key"));
        }
        Ok(handle)
    };
    let handle = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ssh_err(target, format!("{NO_SESSION} {timeout:?}")))??;
    let host_key = fingerprint.lock().ok().and_then(|f| f.clone());
    Ok(Session {
        handle,
        target: target.clone(),
        host_key,
    })
}

/// Tries to log in until it works or `deadline` passes: ready means authenticated, not merely
/// that a TCP port answers. The error names the last reason it failed.
pub async fn connect_when_ready(target: &Target, key: &SshKey, deadline: Duration) -> Result<Session> {
    let started = Instant::now();
    let mut last = String::from("never tried");
    let mut pause = Duration::from_millis(250);
    while started.elapsed() < deadline {
        let left = deadline.saturating_sub(started.elapsed());
        let per_attempt = left.min(Duration::from_secs(30));
        // A silent connection is retried at once for the first minute; after that the server may
        // just be slow, and gets 10 s to say hello.
        let banner = if started.elapsed() < Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        match connect_with_banner_wait(target, key, per_attempt, Some(banner.min(per_attempt))).await {
            Ok(s) => return Ok(s),
            // An attempt cut short by the overall deadline says less than the one before it.
            Err(Error::Ssh { reason, .. })
                if reason.starts_with(NO_SESSION) && per_attempt < Duration::from_secs(30) && last != "never tried" => {
            }
            // The silent connection already took its time: try a fresh one at once.
            Err(Error::Ssh { reason, .. }) if reason.contains(NO_BANNER) => {
                if last == "never tried" {
                    last = format!("{target}: {reason}");
                }
                continue;
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(pause.min(deadline.saturating_sub(started.elapsed()))).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    Err(Error::Timeout {
        what: format!("SSH login to {target}"),
        after: deadline,
        last: last.to_string(),
    })
}

/// Quotes one argument for a POSIX shell: `'…'`, with `'` written as `'\''`.
pub fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A command to run in the guest.
#[derive(Debug, Clone)]
pub struct Command {
    argv: Vec<String>,
    shell: Option<String>,
    timeout: Duration,
    max_output: usize,
    cwd: Option<String>,
}

impl Command {
    /// A program and its arguments, each quoted for the remote shell (no word splitting, no globs).
    pub fn new<I, S>(argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command {
            argv: argv.into_iter().map(Into::into).collect(),
            shell: None,
            timeout: Duration::from_secs(600),
            max_output: 1 << 20,
            cwd: None,
        }
    }

    /// A shell command line, as written (pipes, redirections).
    pub fn shell(line: &str) -> Command {
        Command {
            shell: Some(line.to_string()),
            ..Command::new(Vec::<String>::new())
        }
    }

    /// How long it may run (default 10 minutes); then it is killed and the result says so.
    pub fn timeout(mut self, t: Duration) -> Command {
        self.timeout = t;
        self
    }

    /// How many bytes of stdout and of stderr to keep (default 1 MiB each); the rest is counted.
    pub fn max_output(mut self, n: usize) -> Command {
        self.max_output = n;
        self
    }

    /// Run in this directory.
    pub fn cwd(mut self, dir: &str) -> Command {
        self.cwd = Some(dir.to_string());
        self
    }

    /// The command line run by the remote shell, inside the watchdog of [`Command::remote_script`].
    pub fn line(&self) -> String {
        let body = match &self.shell {
            Some(s) => s.clone(),
            None => self.argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        };
        match &self.cwd {
            Some(d) => format!("cd {} && {body}", quote(d)),
            None => body,
        }
    }
}

/// Which output of a remote command some bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

/// What a command did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CommandResult {
    /// The command line.
    pub command: String,
    /// Its exit status, when it exited.
    pub exit_status: Option<u32>,
    /// The signal that ended it, when one did.
    pub signal: Option<String>,
    /// Whether it was killed for running longer than its timeout.
    pub timed_out: bool,
    /// Stdout, up to the bound.
    #[serde(skip)]
    pub stdout: Vec<u8>,
    /// Stderr, up to the bound.
    #[serde(skip)]
    pub stderr: Vec<u8>,
    /// Bytes of output dropped beyond the bound (stdout + stderr).
    pub dropped_bytes: u64,
    /// How long it ran.
    pub duration: Duration,
}

impl Command {
    /// What is actually sent: the command in its own session and process group (`setsid`, when
    /// the guest has it), and a watchdog that kills that whole group when the timeout passes
    /// (`kill -9 -PGID`: dash's `kill` does not take `--`). OpenSSH does not deliver signals to commands
    /// without a terminal, and closing the channel does not stop a process that ignores its pipes,
    /// so the guest itself must enforce the timeout.
    pub fn remote_script(&self) -> String {
        let secs = self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0);
        let cmd = quote(&self.line());
        format!(
            "exec 3<&0\n\
             if command -v setsid >/dev/null 2>&1; then setsid sh -c {cmd} <&3 3<&- & else sh -c {cmd} <&3 3<&- & fi\n\
             c=$!\n\
             exec 3<&-\n\
             ( sleep {secs}; kill -9 -$c 2>/dev/null || kill -9 $c ) >/dev/null 2>&1 &\n\
             w=$!\n\
             wait $c\n\
             s=$?\n\
             kill $w 2>/dev/null\n\
             exit $s"
        )
    }
}

impl CommandResult {
    /// Exit status 0, not timed out.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0) && !self.timed_out
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8], max: usize, dropped: &mut u64) {
    let room = max.saturating_sub(buf.len());
    let n = room.min(data.len());
    buf.extend_from_slice(&data[..n]);
    *dropped += (data.len() - n) as u64;
}

impl Session {
    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The server's host key fingerprint (SHA-256), as seen at login.
    pub fn host_key(&self) -> Option<&str> {
        self.host_key.as_deref()
    }

    /// Runs a command. A timeout kills it (SIGKILL, then the channel is closed) and is reported in
    /// the result, not as an error: errors are for the connection itself.
    pub async fn run(&self, command: &Command) -> Result<CommandResult> {
        self.run_with_input(command, None).await
    }

    async fn run_with_input(&self, command: &Command, input: Option<Vec<u8>>) -> Result<CommandResult> {
        let (max, mut out, mut err, mut dropped) = (command.max_output, Vec::new(), Vec::new(), 0);
        let mut result = self
            .exec(command, input, &mut |stream, data| match stream {
                Stream::Stdout => keep(&mut out, data, max, &mut dropped),
                Stream::Stderr => keep(&mut err, data, max, &mut dropped),
            })
            .await?;
        (result.stdout, result.stderr, result.dropped_bytes) = (out, err, dropped);
        Ok(result)
    }

    /// Runs a command and hands its output to `sink` as it arrives (a CI job's live log), with
    /// `input` as its stdin. The result holds no output. As with [`Session::run`], a timeout kills
    /// the command and is reported in the result.
    pub async fn run_streaming(
        &self,
        command: &Command,
        input: Option<Vec<u8>>,
        sink: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<CommandResult> {
        self.exec(command, input, sink).await
    }

    async fn exec(
        &self,
        command: &Command,
        input: Option<Vec<u8>>,
        sink: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<CommandResult> {
        let line = command.line();
        let script = command.remote_script();
        let started = Instant::now();
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| ssh_err(&self.target, format!("open session: {e}")))?;
        channel
            .exec(true, format!("sh -c {}", quote(&script)))
            .await
            .map_err(|e| ssh_err(&self.target, format!("exec: {e}")))?;
        if let Some(data) = input {
            channel
                .data(&data[..])
                .await
                .map_err(|e| ssh_err(&self.target, format!("send input: {e}")))?;
        }
        // No input is an empty stdin, not one left open: a command that reads it ends.
        channel
            .eof()
            .await
            .map_err(|e| ssh_err(&self.target, format!("send input: {e}")))?;
        let mut result = CommandResult {
            command: line,
            exit_status: None,
            signal: None,
            timed_out: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
            dropped_bytes: 0,
            duration: Duration::ZERO,
        };
        // The guest's watchdog ends it on time; this is the fallback if the guest cannot.
        let deadline = tokio::time::Instant::now() + command.timeout + Duration::from_secs(5);
        loop {
            let msg = tokio::select! {
                m = channel.wait() => m,
                _ = tokio::time::sleep_until(deadline) => {
                    result.timed_out = true;
                    let _ = channel.signal(russh::Sig::KILL).await;
                    let _ = channel.close().await;
                    break;
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => sink(Stream::Stdout, &data),
                Some(ChannelMsg::ExtendedData { data, .. }) => sink(Stream::Stderr, &data),
                Some(ChannelMsg::ExitStatus { exit_status }) => result.exit_status = Some(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => result.signal = Some(format!("{signal_name:?}")),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        result.duration = started.elapsed();
        // Killed by the watchdog: SIGKILL (exit 137 through `wait`) once the timeout had passed.
        if result.duration >= command.timeout && matches!(result.exit_status, Some(137)) {
            result.timed_out = true;
        }
        Ok(result)
    }

    /// Copies a local directory into the guest at `remote_dir` (created), as a tar stream
    /// unpacked by the guest's `tar` — no SFTP needed.
    pub async fn upload_dir(&self, local: &Path, remote_dir: &str) -> Result<()> {
        let local = local.to_path_buf();
        let tarball = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut b = tar::Builder::new(Vec::new());
            b.follow_symlinks(false);
            b.append_dir_all(".", &local)?;
            b.into_inner()
        })
        .await
        .map_err(|e| ssh_err(&self.target, format!("packing the suite: {e}")))?
        .map_err(|e| ssh_err(&self.target, format!("packing the suite: {e}")))?;
        let q = quote(remote_dir);
        let cmd = Command::shell(&format!("mkdir -p {q} && tar -xf - -C {q}")).timeout(Duration::from_secs(600));
        let r = self.run_with_input(&cmd, Some(tarball)).await?;
        if !r.success() {
            return Err(ssh_err(
                &self.target,
                format!(
                    "unpacking into {remote_dir} failed ({:?}): {}",
                    r.exit_status,
                    String::from_utf8_lossy(&r.stderr)
                ),
            ));
        }
        Ok(())
    }

    /// Writes `data` to a file in the guest (made 0600 when new; its directory must exist).
    pub async fn write_file(&self, path: &str, data: Vec<u8>) -> Result<()> {
        let cmd = Command::shell(&format!("umask 077 && cat > {}", quote(path))).timeout(Duration::from_secs(600));
        let r = self.run_with_input(&cmd, Some(data)).await?;
        if !r.success() {
            return Err(ssh_err(
                &self.target,
                format!(
                    "writing {path} failed ({:?}): {}",
                    r.exit_status,
                    String::from_utf8_lossy(&r.stderr).trim()
                ),
            ));
        }
        Ok(())
    }

    /// Reads a file from the guest, up to `max` bytes (`None` when it does not exist).
    pub async fn read_file(&self, path: &str, max: usize) -> Result<Option<Vec<u8>>> {
        let r = self
            .run(
                &Command::shell(&format!("cat {}", quote(path)))
                    .max_output(max)
                    .timeout(Duration::from_secs(60)),
            )
            .await?;
        Ok(r.success().then_some(r.stdout))
    }

    /// Closes the session.
    pub async fn close(self) -> Result<()> {
        self.handle
            .disconnect(russh::Disconnect::ByApplication, "done", "en")
            .await
            .map_err(|e| ssh_err(&self.target, format!("disconnect: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments_are_quoted_for_the_remote_shell() {
        assert_eq!(quote("mysql"), "mysql");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(
            Command::new(["./runtests.sh", "my test*"]).cwd("/tmp/suite dir").line(),
            "cd '/tmp/suite dir' && ./runtests.sh 'my test*'"
        );
    }

    #[test]
    fn keys_are_ed25519_and_never_printed() {
        let k = SshKey::generate().unwrap();
        assert!(k.public_openssh().starts_with("ssh-ed25519 "));
        assert!(format!("{k:?}").contains("[REDACTED]"));
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }
}
