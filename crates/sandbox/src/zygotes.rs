//! The factory's side of the runtime zygotes (`zygote.rs` is the zygote's): one zygote process
//! per Node.js or Python runtime (interpreter, options, proxy), started on first use, restarted
//! when it died, stopped with the factory.
//!
//! A zygote is `node --single-threaded <options> proxy.js` (or `python3 <options> proxy.pyc`)
//! with `BRISK_ZYGOTE` naming this crate's shared object: the proxy loads its code and warms up
//! as a stem cell would, then hands its process to [`crate::zygote`]'s fork server instead of
//! listening. Every container
//! of that runtime is then a fork: no interpreter start-up, and the loaded code and heap are
//! shared copy-on-write between all of them.

#![allow(
    unsafe_code,
    reason = "pidfd_open and pidfd_send_signal have no safe wrappers; each use has a SAFETY note"
)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, sendmsg, socketpair,
};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::spec::LaunchSpec;

/// Names the zygote's native module in the zygote's environment (the proxy's signal to serve
/// forks on its stdin).
pub const ZYGOTE_ENV: &str = "BRISK_ZYGOTE";
/// How long a zygote may take to answer one request (a fork and a reply: a few milliseconds).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a runtime whose zygote failed twice in a row starts containers without one.
const BROKEN_FOR: Duration = Duration::from_secs(60);
/// How long stopping waits for killed zygotes to exit.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Which zygote serves a container: the runtime command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    interpreter: PathBuf,
    args: Vec<String>,
    proxy: PathBuf,
}

/// One running zygote.
struct Zygote {
    /// The control socket; one request at a time.
    ctl: Mutex<OwnedFd>,
    child: Mutex<Child>,
}

impl Zygote {
    fn is_alive(&self) -> bool {
        matches!(self.child.lock().try_wait(), Ok(None))
    }
}

/// The zygotes of one factory.
pub(crate) struct Zygotes {
    /// This crate's shared object, loaded by the zygotes.
    lib: PathBuf,
    running: Mutex<HashMap<Key, Arc<Zygote>>>,
    /// Runtimes whose freshly started zygote failed too, and since when: their containers start
    /// with the launcher for [`BROKEN_FOR`] rather than each paying for a zygote that fails.
    broken: Mutex<HashMap<Key, std::time::Instant>>,
}

/// The interpreters whose proxies speak the zygote protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Node,
    Python,
}

fn host(interpreter: &Path, proxy: &Path) -> Option<Host> {
    let name = interpreter.file_name()?.to_string_lossy();
    let ext = proxy.extension()?;
    if name.starts_with("node") && ext == "js" {
        Some(Host::Node)
    } else if name.starts_with("python") && (ext == "py" || ext == "pyc") {
        Some(Host::Python)
    } else {
        None
    }
}

/// Whether a runtime is served by a zygote: the Node.js and Python proxies speak the zygote
/// protocol.
pub(crate) fn serves(interpreter: &Path, proxy: &Path) -> bool {
    host(interpreter, proxy).is_some()
}

impl Zygotes {
    pub(crate) fn new(lib: PathBuf) -> Self {
        Self {
            lib,
            running: Mutex::new(HashMap::new()),
            broken: Mutex::new(HashMap::new()),
        }
    }

    /// Forks a container from the runtime's zygote (starting the zygote when none runs):
    /// sends `spec` with the listening socket and the output pipes, and returns the host pid of
    /// the forked launcher. Blocking.
    pub(crate) fn launch(
        &self,
        interpreter: &Path,
        args: &[String],
        proxy: &Path,
        spec: &LaunchSpec,
        fds: [&OwnedFd; 3],
    ) -> std::io::Result<i32> {
        let key = Key {
            interpreter: interpreter.to_path_buf(),
            args: args.to_vec(),
            proxy: proxy.to_path_buf(),
        };
        let json = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
        if json.len() > crate::zygote::MAX_SPEC {
            return Err(std::io::Error::other(
                "launch spec too large for the zygote",
            ));
        }
        if let Some(since) = self.broken.lock().get(&key)
            && since.elapsed() < BROKEN_FOR
        {
            return Err(std::io::Error::other(
                "the runtime's zygote failed recently; not trying again yet",
            ));
        }
        // A zygote that died since its last fork is replaced once.
        for attempt in 0..2 {
            let z = self.get(&key, attempt > 0)?;
            match request(&z, &json, fds) {
                Ok(pid) => {
                    self.broken.lock().remove(&key);
                    return Ok(pid);
                }
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %e, "runtime zygote failed; starting a new one");
                    self.running.lock().remove(&key);
                }
                Err(e) => {
                    self.running.lock().remove(&key);
                    self.broken.lock().insert(key, std::time::Instant::now());
                    return Err(e);
                }
            }
        }
        unreachable!("the loop returns")
    }

    fn get(&self, key: &Key, fresh: bool) -> std::io::Result<Arc<Zygote>> {
        let mut running = self.running.lock();
        if !fresh
            && let Some(z) = running.get(key)
            && z.is_alive()
        {
            return Ok(z.clone());
        }
        let z = Arc::new(self.start(key)?);
        running.insert(key.clone(), z.clone());
        Ok(z)
    }

    /// Starts a zygote. It is ready when it reads its control socket; requests sent before
    /// wait in the socket.
    fn start(&self, key: &Key) -> std::io::Result<Zygote> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let timeout = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
        let mut cmd = Command::new(&key.interpreter);
        // Node.js's platform threads would not survive a fork; Python starts none.
        if host(&key.interpreter, &key.proxy) == Some(Host::Node) {
            cmd.arg("--single-threaded");
        }
        cmd.args(&key.args)
            .arg(&key.proxy)
            .current_dir("/")
            .env_clear()
            .env("PATH", brisk_invoker::BASE_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", "/")
            .env(ZYGOTE_ENV, OsString::from(&self.lib))
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        // Whatever the zygote itself prints (nothing, unless it fails) goes to the log.
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!(%line, "runtime zygote");
                }
            });
        }
        tracing::debug!(pid = ?child.id(), interpreter = %key.interpreter.display(), "runtime zygote started");
        Ok(Zygote {
            ctl: Mutex::new(ours),
            child: Mutex::new(child),
        })
    }

    /// Stops every zygote (their forks are containers and stay) and waits (briefly) until each
    /// has exited. Blocking.
    pub(crate) fn stop(&self) {
        let stopped: Vec<Arc<Zygote>> = self.running.lock().drain().map(|(_, z)| z).collect();
        for z in &stopped {
            let _ = z.child.lock().start_kill();
        }
        let deadline = std::time::Instant::now() + STOP_WAIT;
        for z in &stopped {
            while !matches!(z.child.lock().try_wait(), Ok(Some(_)) | Err(_))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// One request and its reply on a zygote's control socket.
fn request(z: &Zygote, json: &[u8], fds: [&OwnedFd; 3]) -> std::io::Result<i32> {
    let ctl = z.ctl.lock();
    let raw = fds.map(|f| f.as_raw_fd());
    let cmsg = [ControlMessage::ScmRights(&raw)];
    sendmsg::<()>(
        ctl.as_raw_fd(),
        &[IoSlice::new(json)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    let mut buf = [0u8; 4];
    let n = loop {
        match recv(ctl.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r?,
        }
    };
    if n != 4 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the runtime zygote closed its control socket",
        ));
    }
    let pid = i32::from_le_bytes(buf);
    if pid <= 0 {
        return Err(std::io::Error::other(format!(
            "the runtime zygote refused the container ({pid})"
        )));
    }
    Ok(pid)
}

/// A pipe for a forked container's output: the read end for the invoker (non-blocking, for
/// tokio), the write end for the zygote to pass down.
pub(crate) fn pipe() -> std::io::Result<(tokio::net::unix::pipe::Receiver, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let r = tokio::net::unix::pipe::Receiver::from_owned_fd(r)?;
    Ok((r, w))
}

/// A pidfd for `pid` (a forked launcher: not our child, so no `waitpid`).
pub(crate) fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// Sends `SIGKILL` through a pidfd (never to a recycled pid).
pub(crate) fn kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// A pidfd registered with the runtime: readable once the process has exited.
pub(crate) fn readable(pidfd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the descriptor, which stays open until it is dropped.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}
