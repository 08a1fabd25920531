//! Network namespaces, created ahead of time by a pool thread and reused.
//!
//! Creating a network namespace is cheap at the median but its teardown makes the tail slow
//! (p99 ~6 ms here), so containers take ready namespaces from a pool and give them back when
//! destroyed. The pool holds them as file descriptors of this process: nothing is mounted, so a
//! crash leaves nothing behind (the kernel frees them with the last descriptor). The launcher
//! joins one through `/proc/<invoker pid>/fd/<n>`.
#![allow(
    unsafe_code,
    reason = "the SIOCSIFFLAGS ioctl has no safe wrapper; see `loopback_up`"
)]

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sched::{CloneFlags, setns, unshare};
use parking_lot::{Condvar, Mutex};

use crate::egress::Egress;
use crate::rtnl::Rtnl;

/// A network namespace held open by the invoker.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    /// Host end of the namespace's veth (egress only).
    host_dev: Option<String>,
}

impl Netns {
    /// Path the launcher opens to join this namespace.
    pub fn proc_path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// Name of the host end of the namespace's `eth0` (`bk<tag><n>`), when it is wired for
    /// egress.
    pub fn host_device(&self) -> Option<&str> {
        self.host_dev.as_deref()
    }
}

struct State {
    ready: Vec<Netns>,
    stopping: bool,
}

/// Keeps `target` namespaces ready.
pub struct NetnsPool {
    target: usize,
    state: Mutex<State>,
    wake: Condvar,
    egress: Option<Arc<Egress>>,
}

impl NetnsPool {
    /// Starts the refill thread. With `egress`, every namespace is wired to the bridge.
    pub fn start(target: usize, egress: Option<Arc<Egress>>) -> Arc<Self> {
        let pool = Arc::new(Self {
            target,
            state: Mutex::new(State {
                ready: Vec::new(),
                stopping: false,
            }),
            wake: Condvar::new(),
            egress,
        });
        if target > 0 {
            let p = pool.clone();
            let spawned = std::thread::Builder::new()
                .name("brisk-netns".into())
                .spawn(move || p.refill_loop());
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "start network namespace pool; creating on demand");
            }
        }
        pool
    }

    /// A ready namespace, or `None` when the pool is empty (the launcher then creates one).
    pub fn take(&self) -> Option<Netns> {
        let mut st = self.state.lock();
        let ns = st.ready.pop();
        self.wake.notify_one();
        ns
    }

    /// Returns a namespace whose processes have all exited.
    pub fn give_back(&self, ns: Netns) {
        let mut st = self.state.lock();
        if !st.stopping && st.ready.len() < self.target * 2 {
            st.ready.push(ns);
        }
    }

    /// Whether the pool wires namespaces for egress.
    pub fn egress(&self) -> bool {
        self.egress.is_some()
    }

    /// Stops the refill thread and drops every namespace.
    pub fn stop(&self) {
        let mut st = self.state.lock();
        st.stopping = true;
        st.ready.clear();
        self.wake.notify_all();
    }

    fn refill_loop(&self) {
        loop {
            {
                let mut st = self.state.lock();
                while !st.stopping && st.ready.len() >= self.target {
                    self.wake.wait(&mut st);
                }
                if st.stopping {
                    return;
                }
            }
            match create(self.egress.as_deref()) {
                Ok(ns) => {
                    let mut st = self.state.lock();
                    if st.stopping {
                        return;
                    }
                    st.ready.push(ns);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "create pooled network namespace");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Creates a namespace right now on the calling thread (the slow path when the pool is
    /// empty).
    pub fn create_now(&self) -> std::io::Result<Netns> {
        create(self.egress.as_deref())
    }
}

impl Drop for NetnsPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates a namespace, wired for egress if asked. The calling thread moves into it only to
/// bring up loopback and open a netlink socket there (which keeps talking to the new namespace),
/// and returns to its own namespace before the wiring.
fn create(egress: Option<&Egress>) -> std::io::Result<Netns> {
    let home = File::open("/proc/thread-self/ns/net")?;
    let made = (|| {
        unshare(CloneFlags::CLONE_NEWNET)?;
        let fd: OwnedFd = File::open("/proc/thread-self/ns/net")?.into();
        loopback_up()?;
        let inside = egress.map(|_| Rtnl::open()).transpose()?;
        Ok::<_, std::io::Error>((fd, inside))
    })();
    // Always go home, also after a failure half-way.
    setns(&home, CloneFlags::CLONE_NEWNET)?;
    let (fd, inside) = made?;
    let host_dev = match (egress, inside) {
        (Some(eg), Some(mut inside)) => Some(eg.wire(&fd, &mut inside)?),
        _ => None,
    };
    Ok(Netns { fd, host_dev })
}

/// Sets `lo` up in the calling thread's network namespace.
pub fn loopback_up() -> std::io::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as i16;
    // SAFETY: SIOCSIFFLAGS reads a `struct ifreq`; `req` is a valid, initialised one that lives
    // across the call, and `sock` is an open socket.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
