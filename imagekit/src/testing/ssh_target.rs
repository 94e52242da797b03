//! [`SshTarget`]: the kit's own SSH server, so that boot tests on the kit's Nova run their suites
//! with no system sshd and no root.
//!
//! It is an in-process SSH server (russh) on 127.0.0.1 that plays every machine the kit's Nova
//! boots. It accepts the public keys that "cloud-init" authorized (the kit's Nova writes each
//! server's key to [`SshTarget::authorized_keys`]) under any user name, and runs each `exec`
//! request as `sh -c COMMAND` as the test's own user, in the target's home directory, with a clean
//! environment (`HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`, `LANG`), as sshd would: stdin, stdout
//! and stderr are streamed, the exit status (or the signal the command died of) is returned, a
//! `signal` request or a channel closed before the command ended kills every process the command
//! started (found by an environment marker, so `setsid` and background jobs are caught too; a
//! program that clears its environment escapes). What it does not do: terminals (`pty-req`,
//! `shell`), `env` requests, subsystems (SFTP), X11, port and agent forwarding are refused, as a
//! hardened sshd would.
//!
//! The "machine" is this host: commands see its filesystem. Suites should work below `$HOME` or
//! the remote directory [`Kit::boot_test_options`](super::Kit::boot_test_options) chooses, which is
//! inside the target's home.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Server as _, Session};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::ssh::SshKey;

/// The name of the environment variable that marks every process a command of a target started.
const MARKER: &str = "IMAGEKIT_KIT_SSH_TARGET";

/// An SSH server on 127.0.0.1 for boot tests on the kit. See the [module docs](self).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use imagekit::ssh::{Command, SshKey, Target, connect};
/// use imagekit::testing::SshTarget;
///
/// let target = SshTarget::start().await.unwrap();
/// let key = SshKey::generate().unwrap();
/// target.authorize(&key.public_openssh());
/// let session = connect(&Target::new("127.0.0.1", target.port(), "cloud-user"), &key, Duration::from_secs(10))
///     .await
///     .unwrap();
/// let r = session.run(&Command::shell("echo hello from $USER; exit 3")).await.unwrap();
/// assert_eq!((r.exit_status, r.stdout.starts_with(b"hello from")), (Some(3), true));
/// # }
/// ```
pub struct SshTarget {
    port: u16,
    shared: Arc<Shared>,
    server: russh::server::RunningServerHandle,
    task: tokio::task::JoinHandle<()>,
    home: tempfile::TempDir,
}

impl std::fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("port", &self.port)
            .field("home", &self.home.path())
            .finish()
    }
}

struct Shared {
    /// Unique per target: the marker's value prefix.
    id: String,
    home: PathBuf,
    authorized_keys: PathBuf,
    logins: AtomicU64,
    channels: AtomicU64,
    /// Users that logged in, in order.
    users: Mutex<Vec<String>>,
    /// True once the target is dropped: channels end, new ones are refused.
    closed: tokio::sync::watch::Sender<bool>,
}

impl SshTarget {
    /// Starts the server on a free port of 127.0.0.1, with a fresh ed25519 host key, an empty
    /// `authorized_keys` and a new home directory (deleted when the target is dropped).
    pub async fn start() -> std::io::Result<SshTarget> {
        let home = tempfile::Builder::new().prefix("imagekit-kit-ssh-").tempdir()?;
        let authorized_keys = home.path().join(".ssh-authorized_keys");
        std::fs::write(&authorized_keys, b"")?;
        let host_key = SshKey::generate().map_err(std::io::Error::other)?;
        let config = russh::server::Config {
            keys: vec![host_key.private().clone()],
            // A test that offers the wrong key should learn it at once, not after sshd's delay.
            auth_rejection_time: Duration::from_millis(10),
            auth_rejection_time_initial: Some(Duration::ZERO),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        static TARGETS: AtomicU64 = AtomicU64::new(0);
        let shared = Arc::new(Shared {
            id: format!("{}-{}", std::process::id(), TARGETS.fetch_add(1, Ordering::Relaxed)),
            home: home.path().to_path_buf(),
            authorized_keys,
            logins: AtomicU64::new(0),
            channels: AtomicU64::new(0),
            users: Mutex::new(Vec::new()),
            closed: tokio::sync::watch::Sender::new(false),
        });
        let (started, handle) = tokio::sync::oneshot::channel();
        let served = shared.clone();
        let task = tokio::spawn(async move {
            let mut server = Server(served);
            let running = server.run_on_socket(Arc::new(config), &listener);
            let _ = started.send(running.handle());
            let _ = running.await;
        });
        let handle = handle
            .await
            .map_err(|_| std::io::Error::other("the SSH target's server did not start"))?;
        Ok(SshTarget {
            port,
            shared,
            server: handle,
            task,
            home,
        })
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file of public keys it accepts, one `authorized_keys` line each, read at every login:
    /// give it to [`MockOpenStack::authorize_keys_in`](super::MockOpenStack::authorize_keys_in)
    /// so that booted servers' keys are accepted.
    pub fn authorized_keys(&self) -> &Path {
        &self.shared.authorized_keys
    }

    /// Accepts this public key (an `authorized_keys` line) from now on.
    pub fn authorize(&self, public_openssh: &str) {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.shared.authorized_keys)
        {
            let _ = f.write_all(format!("{}\n", public_openssh.trim()).as_bytes());
        }
    }

    /// The home directory commands run in.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// How many logins succeeded so far.
    pub fn logins(&self) -> u64 {
        self.shared.logins.load(Ordering::Relaxed)
    }

    /// The user names of the logins so far, in order.
    pub fn users(&self) -> Vec<String> {
        self.shared.users.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// The processes commands started that still run (their pids).
    pub fn processes(&self) -> Vec<u32> {
        Marked::Target(self.shared.id.clone()).running()
    }
}

impl Drop for SshTarget {
    fn drop(&mut self) {
        // Channels still open end now (their commands killed), and new ones are refused; the
        // server stops accepting connections.
        self.shared.closed.send_replace(true);
        self.server.shutdown("the test's SSH target is stopping".into());
        self.task.abort();
        // Waits until nothing of its commands runs (at most a moment): a test that ends sees
        // nothing left.
        Marked::Target(self.shared.id.clone()).stop("KILL");
    }
}

/// Whether the process exists and is not a zombie.
pub(crate) fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold any byte.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The processes of one channel's command, or of every command of a target, found by the marker
/// in their environment (which `setsid` and background jobs keep; a program that clears its
/// environment escapes it).
#[derive(Debug, Clone)]
enum Marked {
    /// One channel's: the marker's exact value.
    Channel(String),
    /// A target's: values starting with its id and `:`.
    Target(String),
}

impl Marked {
    fn matches(&self, var: &[u8]) -> bool {
        let Some(value) = var.strip_prefix(format!("{MARKER}=").as_bytes()) else {
            return false;
        };
        match self {
            Marked::Channel(m) => value == m.as_bytes(),
            Marked::Target(id) => value.strip_prefix(id.as_bytes()).is_some_and(|r| r.starts_with(b":")),
        }
    }

    /// Their pids, zombies left out.
    fn running(&self) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|var| self.matches(var)))
            })
            .filter(|pid| runs(*pid))
            .collect()
    }

    /// Sends `signal` to them. For `KILL`, again to whatever a survivor forked meanwhile, until
    /// none runs (a killed process cannot fork, so this ends), for at most 2 s.
    fn stop(&self, signal: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let pids = self.running();
            if pids.is_empty() {
                return;
            }
            // The shell's own `kill`: wherever commands run, `sh` is.
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("kill -s {signal} {} 2>/dev/null", pids.join(" ")))
                .status();
            if signal != "KILL" || std::time::Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// [`Marked::stop`] off the runtime's threads.
    async fn stop_async(&self, signal: &'static str) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.stop(signal)).await;
    }
}

struct Server(Arc<Shared>);

impl russh::server::Server for Server {
    type Handler = Connection;
    fn new_client(&mut self, _peer: Option<std::net::SocketAddr>) -> Connection {
        Connection { shared: self.0.clone() }
    }
}

struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    fn accepts(&self, key: &PublicKey) -> bool {
        let Ok(text) = std::fs::read_to_string(&self.shared.authorized_keys) else {
            return false;
        };
        text.lines()
            .filter_map(|l| PublicKey::from_openssh(l.trim()).ok())
            .any(|k| k.key_data() == key.key_data())
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        Ok(if self.accepts(key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        if !self.accepts(key) {
            return Ok(Auth::reject());
        }
        self.shared.logins.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut users) = self.shared.users.lock() {
            users.push(user.to_string());
        }
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if *self.shared.closed.borrow() {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let n = self.shared.channels.fetch_add(1, Ordering::Relaxed);
        let task = ChannelTask {
            session: session.handle(),
            home: self.shared.home.clone(),
            marked: Marked::Channel(format!("{}:{n}", self.shared.id)),
            closed: self.shared.closed.subscribe(),
        };
        tokio::spawn(task.serve(channel));
        reply.accept().await;
        Ok(())
    }

    // The channel's task runs the command (it sees the request as `ChannelMsg::Exec`); this
    // answers the client, which waits for the reply.
    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // russh's signature
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    // As sshd without `AcceptEnv`: a command's environment is the login's.
    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }
}

/// One session channel: waits for its exec request, runs the command, streams its input and
/// output, and reports how it ended.
struct ChannelTask {
    session: russh::server::Handle,
    home: PathBuf,
    marked: Marked,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl ChannelTask {
    async fn serve(mut self, channel: Channel<Msg>) {
        let id = channel.id();
        let (mut read, write) = channel.split();
        let write = Arc::new(write);
        // Input goes to the command through its own task, so that a command that does not read
        // its stdin never stops this loop from seeing a signal or a close. Input that arrives
        // before the exec request waits in the queue.
        let (input, queued) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let mut input = Some(input);
        let command = loop {
            match read.wait().await {
                Some(ChannelMsg::Exec { command, .. }) => break command,
                Some(ChannelMsg::Data { data }) => {
                    if let Some(i) = &input {
                        let _ = i.send(data.to_vec());
                    }
                }
                Some(ChannelMsg::Eof) => input = None,
                Some(ChannelMsg::Close) | None => return,
                Some(_) => {}
            }
        };
        let mut child = match self.spawn(&command) {
            Ok(c) => c,
            Err(e) => {
                let _ = write
                    .extended_data_bytes(1, format!("imagekit kit SSH target: cannot run sh: {e}\n").into_bytes())
                    .await;
                let _ = write.exit_status(127).await;
                let _ = write.eof().await;
                let _ = write.close().await;
                return;
            }
        };
        let out = tokio::spawn(pump(child.stdout.take(), write.clone(), None));
        let err = tokio::spawn(pump(child.stderr.take(), write.clone(), Some(1)));
        tokio::spawn(feed(queued, child.stdin.take()));
        let finished = async {
            let status = child.wait().await;
            let _ = out.await;
            let _ = err.await;
            status
        };
        tokio::pin!(finished);
        let status = loop {
            tokio::select! {
                s = &mut finished => break s.ok(),
                m = read.wait() => match m {
                    Some(ChannelMsg::Data { data }) => {
                        if let Some(i) = &input {
                            let _ = i.send(data.to_vec());
                        }
                    }
                    Some(ChannelMsg::Eof) => input = None,
                    Some(ChannelMsg::Signal { signal }) => self.marked.stop_async(signal_name(&signal)).await,
                    // The client went away before the command ended: nothing may outlive it.
                    Some(ChannelMsg::Close) | None => {
                        self.marked.stop_async("KILL").await;
                        return;
                    }
                    Some(_) => {}
                },
                _ = until_closed(&mut self.closed) => {
                    self.marked.stop_async("KILL").await;
                    let _ = write.close().await;
                    return;
                }
            }
        };
        // As sshd: a command killed by a signal is reported as that signal, not as a status.
        use std::os::unix::process::ExitStatusExt;
        match status.as_ref().and_then(ExitStatusExt::signal) {
            Some(n) => {
                let _ = self
                    .session
                    .exit_signal_request(id, signal_of(n), false, String::new(), String::new())
                    .await;
            }
            None => {
                let code = status.and_then(|s| s.code()).unwrap_or(255);
                let _ = write.exit_status(u32::try_from(code).unwrap_or(255)).await;
            }
        }
        let _ = write.eof().await;
        let _ = write.close().await;
    }

    /// `sh -c COMMAND` in the home directory, with a login's environment and the marker.
    fn spawn(&self, command: &[u8]) -> std::io::Result<tokio::process::Child> {
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(String::from_utf8_lossy(command).into_owned())
            .current_dir(&self.home)
            .env_clear()
            .env("HOME", &self.home)
            .env("USER", user_name())
            .env("LOGNAME", user_name())
            .env("SHELL", "/bin/sh")
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .env(
                MARKER,
                match &self.marked {
                    Marked::Channel(m) | Marked::Target(m) => m,
                },
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    }
}

/// Returns once the target is closed (dropped).
async fn until_closed(closed: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here, before anything else awaits.
    let _ = closed.wait_for(|c| *c).await.is_ok();
}

/// Writes the channel's input to the command; the command's stdin closes (EOF) when the input
/// ends or the command stops reading.
async fn feed(mut queued: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>, stdin: Option<tokio::process::ChildStdin>) {
    let Some(mut stdin) = stdin else { return };
    while let Some(chunk) = queued.recv().await {
        if stdin.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// Copies one of the command's outputs to the channel (`ext`: `Some(1)` for stderr).
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    from: Option<R>,
    to: Arc<russh::ChannelWriteHalf<Msg>>,
    ext: Option<u32>,
) {
    let Some(mut from) = from else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = buf[..n].to_vec();
                let sent = match ext {
                    Some(ext) => to.extended_data_bytes(ext, chunk).await,
                    None => to.data_bytes(chunk).await,
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

fn signal_name(sig: &russh::Sig) -> &'static str {
    match sig {
        russh::Sig::ABRT => "ABRT",
        russh::Sig::ALRM => "ALRM",
        russh::Sig::FPE => "FPE",
        russh::Sig::HUP => "HUP",
        russh::Sig::ILL => "ILL",
        russh::Sig::INT => "INT",
        russh::Sig::PIPE => "PIPE",
        russh::Sig::QUIT => "QUIT",
        russh::Sig::SEGV => "SEGV",
        russh::Sig::USR1 => "USR1",
        russh::Sig::TERM => "TERM",
        // KILL, and names this server does not know: the safe end is to stop the command.
        _ => "KILL",
    }
}

/// The signal a process died of, as SSH names it.
fn signal_of(n: i32) -> russh::Sig {
    match n {
        1 => russh::Sig::HUP,
        2 => russh::Sig::INT,
        3 => russh::Sig::QUIT,
        4 => russh::Sig::ILL,
        6 => russh::Sig::ABRT,
        8 => russh::Sig::FPE,
        9 => russh::Sig::KILL,
        10 => russh::Sig::USR1,
        11 => russh::Sig::SEGV,
        13 => russh::Sig::PIPE,
        14 => russh::Sig::ALRM,
        15 => russh::Sig::TERM,
        n => russh::Sig::Custom(n.to_string()),
    }
}

/// The test's own user name, which commands run as: `$USER`, `$LOGNAME`, or what `id -un` says
/// (CI containers often set neither variable).
pub(crate) fn user_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                let out = std::process::Command::new("id").arg("-un").output().ok()?;
                let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
                (out.status.success() && !name.is_empty()).then_some(name)
            })
            .unwrap_or_else(|| "unknown".into())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(value: &str) -> Vec<u8> {
        format!("{MARKER}={value}").into_bytes()
    }

    #[test]
    fn a_channel_s_marker_matches_its_own_processes_only() {
        let one = Marked::Channel("7-0:1".into());
        assert!(one.matches(&var("7-0:1")));
        // Channels 10-19 and 100-199 are others, not this one's.
        assert!(!one.matches(&var("7-0:10")));
        assert!(!one.matches(&var("7-0:1x")));
        assert!(!one.matches(b"OTHER=7-0:1"));
        let target = Marked::Target("7-0".into());
        assert!(target.matches(&var("7-0:1")) && target.matches(&var("7-0:12")));
        // Target 7-0 is not target 7-01.
        assert!(!target.matches(&var("7-01:1")));
    }

    #[test]
    fn signals_are_named_as_ssh_names_them() {
        assert!(matches!(signal_of(9), russh::Sig::KILL));
        assert!(matches!(signal_of(15), russh::Sig::TERM));
        assert!(matches!(signal_of(64), russh::Sig::Custom(n) if n == "64"));
    }
}
