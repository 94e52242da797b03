//! [`SshTarget`]: the kit's own SSH server, so that boot tests on the kit's Nova run their suites
//! with no system sshd and no root.
//!
//! It is an in-process SSH server (russh) on 127.0.0.1 that plays every machine the kit's Nova
//! boots. It accepts the public keys that "cloud-init" authorized (the kit's Nova writes each
//! server's key to [`SshTarget::authorized_keys`]) under any user name, and runs each `exec`
//! request as `sh -c COMMAND` as the test's own user, in the target's home directory, with a clean
//! environment (`HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`, `LANG`), as sshd would: stdin, stdout
//! and stderr are streamed, the exit status is returned, a `signal` request or a channel closed
//! before the command ended kills every process the command started (found by an environment
//! marker, so `setsid` and background jobs are caught too). What it does not do: terminals
//! (`pty-req`, `shell`), subsystems (SFTP), port forwarding and agent forwarding are refused, as a
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
        marked_processes(&format!("{}:", self.shared.id))
            .into_iter()
            .filter(|p| runs(*p))
            .collect()
    }
}

impl Drop for SshTarget {
    fn drop(&mut self) {
        self.server.shutdown("the test's SSH target is stopping".into());
        self.task.abort();
        let pids = self.processes();
        signal_all(&pids, "KILL");
        // SIGKILL is delivered asynchronously: wait (briefly) until none of them runs, so that a
        // test that ends sees nothing of its commands left.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while pids.iter().any(|p| runs(*p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
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

/// The pids whose environment carries the marker with a value starting with `prefix`.
fn marked_processes(prefix: &str) -> Vec<u32> {
    let needle = format!("{MARKER}={prefix}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var.starts_with(needle.as_bytes())))
        })
        .collect()
}

fn signal_all(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status();
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
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let n = self.shared.channels.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{}:{n}", self.shared.id);
        tokio::spawn(serve_channel(channel, self.shared.home.clone(), marker));
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
/// output, and reports its exit status.
async fn serve_channel(channel: Channel<Msg>, home: PathBuf, marker: String) {
    let (mut read, write) = channel.split();
    let write = Arc::new(write);
    // Input that arrives before the exec request is kept for the command.
    let mut early: Vec<u8> = Vec::new();
    let mut early_eof = false;
    let command = loop {
        match read.wait().await {
            Some(ChannelMsg::Exec { command, .. }) => break command,
            Some(ChannelMsg::Data { data }) => early.extend_from_slice(&data),
            Some(ChannelMsg::Eof) => early_eof = true,
            Some(ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    };
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(String::from_utf8_lossy(&command).into_owned())
        .current_dir(&home)
        .env_clear()
        .env("HOME", &home)
        .env("USER", user_name())
        .env("LOGNAME", user_name())
        .env("SHELL", "/bin/sh")
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LANG", "C.UTF-8")
        .env(MARKER, &marker)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
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
    let mut stdin = child.stdin.take();
    if let Some(s) = stdin.as_mut()
        && !early.is_empty()
        && s.write_all(&early).await.is_err()
    {
        stdin = None;
    }
    if early_eof {
        stdin = None;
    }
    let out = tokio::spawn(pump(child.stdout.take(), write.clone(), None));
    let err = tokio::spawn(pump(child.stderr.take(), write.clone(), Some(1)));
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
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some(ChannelMsg::Eof) => stdin = None,
                Some(ChannelMsg::Signal { signal }) => {
                    signal_all(&marked_processes(&marker), signal_name(&signal));
                }
                // The client went away before the command ended: nothing may outlive it.
                Some(ChannelMsg::Close) | None => {
                    signal_all(&marked_processes(&marker), "KILL");
                    return;
                }
                Some(_) => {}
            },
        }
    };
    let code = status.map_or(255, |s| {
        use std::os::unix::process::ExitStatusExt as _;
        s.code()
            .unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            .try_into()
            .unwrap_or(255)
    });
    let _ = write.exit_status(code).await;
    let _ = write.eof().await;
    let _ = write.close().await;
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

/// The test's own user name (commands run as it).
fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into())
}
