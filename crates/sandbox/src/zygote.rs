//! The runtime zygote's native module: Node.js loads this crate's shared object
//! (`libbrisk_sandbox.so`) as an N-API module and calls its `serve` function; the Python proxies
//! load it with `ctypes` and call `brisk_zygote_serve`. Either call turns the zygote into a fork
//! server for sandboxes.
//!
//! ```text
//! zygote (node or python, root, host namespaces; has loaded the proxy, never user code)
//!  └─ init (a fork, pid 1 of a new     joins cgroup and netns, unshares ┐ launcher.rs
//!      pid namespace)                  the rest, builds the root, reaps │ `enter_as_init`, the
//!      └─ runtime                      drops privileges, seccomp,       │ code the launcher
//!                                      *returns* into the proxy         ┘ process runs too
//! ```
//!
//! The zygote unshares a pid namespace for its next child before each fork and sets it back
//! after, so the fork is init at once. (Should the zygote be unable to, the fork plays the
//! launcher, as a launched container's launcher does: it forks init and waits for it.)
//!
//! Protocol on the control socket (a `SOCK_SEQPACKET` socket on the zygote's stdin): the factory
//! sends one message per container, the [`LaunchSpec`] as JSON with three descriptors attached
//! (`SCM_RIGHTS`: the listening socket, then the write ends of the stdout and stderr pipes); the
//! zygote answers with the host pid of its fork (4 bytes, little endian; negative:
//! the spec was refused). The zygote exits when the factory closes its end. Its forks (each
//! a sandbox's init) are reaped by the kernel (the zygote ignores `SIGCHLD`); each writes the
//! sandbox's exit status to the spec's `exit_file` first.
//!
//! The N-API and libuv functions are looked up when Node.js loads the module (`dlsym` in the process
//! that loads it), so this crate links against neither.
#![allow(
    unsafe_code,
    reason = "an N-API module is C ABI: raw pointers from the host, fork, recvmsg; each use has a SAFETY note"
)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, send};
use nix::unistd::{ForkResult, fork};

use crate::launcher::{Mode, enter, enter_as_init};
use crate::spec::LaunchSpec;

/// Largest launch spec accepted (they are a few kilobytes).
pub const MAX_SPEC: usize = 256 * 1024;
/// Descriptors that come with each spec: listening socket, stdout, stderr.
pub const SPEC_FDS: usize = 3;

type Env = *mut c_void;
type Value = *mut c_void;
type CallbackInfo = *mut c_void;
type Status = c_int;
type Callback = unsafe extern "C" fn(Env, CallbackInfo) -> Value;

/// The host functions this module calls, resolved once.
struct Napi {
    get_cb_info: unsafe extern "C" fn(
        Env,
        CallbackInfo,
        *mut usize,
        *mut Value,
        *mut Value,
        *mut *mut c_void,
    ) -> Status,
    get_value_int32: unsafe extern "C" fn(Env, Value, *mut i32) -> Status,
    create_string_utf8: unsafe extern "C" fn(Env, *const c_char, usize, *mut Value) -> Status,
    create_function: unsafe extern "C" fn(
        Env,
        *const c_char,
        usize,
        Callback,
        *mut c_void,
        *mut Value,
    ) -> Status,
    set_named_property: unsafe extern "C" fn(Env, Value, *const c_char, Value) -> Status,
    throw_error: unsafe extern "C" fn(Env, *const c_char, *const c_char) -> Status,
    uv_default_loop: unsafe extern "C" fn() -> *mut c_void,
    uv_loop_fork: unsafe extern "C" fn(*mut c_void) -> c_int,
}

static NAPI: std::sync::OnceLock<Option<Napi>> = std::sync::OnceLock::new();

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a valid C string only reads.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// The symbol `name` of the host process as a function pointer of type `F`.
///
/// # Safety
/// `F` must be the C signature of that function.
unsafe fn function<F: Copy>(name: &CStr) -> Option<F> {
    assert_eq!(size_of::<F>(), size_of::<*mut c_void>());
    let p = symbol(name)?;
    // SAFETY: a function pointer of the symbol's signature (the caller's promise) and of the
    // size of a data pointer (asserted).
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

fn napi() -> Option<&'static Napi> {
    NAPI.get_or_init(|| {
        // SAFETY: each field's type is the C signature of the host's function of that name
        // (N-API's `js_native_api.h`, libuv's `uv.h`).
        unsafe {
            Some(Napi {
                get_cb_info: function(c"napi_get_cb_info")?,
                get_value_int32: function(c"napi_get_value_int32")?,
                create_string_utf8: function(c"napi_create_string_utf8")?,
                create_function: function(c"napi_create_function")?,
                set_named_property: function(c"napi_set_named_property")?,
                throw_error: function(c"napi_throw_error")?,
                uv_default_loop: function(c"uv_default_loop")?,
                uv_loop_fork: function(c"uv_loop_fork")?,
            })
        }
    })
    .as_ref()
}

/// N-API's module entry point: `exports.serve(controlFd)`.
///
/// # Safety
/// Called by Node.js with a valid environment and exports object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn napi_register_module_v1(env: Env, exports: Value) -> Value {
    let Some(n) = napi() else {
        return exports;
    };
    let functions: [(&CStr, Callback); 2] = [(c"serve", js_serve), (c"exit", js_exit)];
    for (name, callback) in functions {
        let mut f: Value = std::ptr::null_mut();
        // SAFETY: env and exports come from the host; the name is a valid C string.
        unsafe {
            if (n.create_function)(
                env,
                name.as_ptr(),
                name.to_bytes().len(),
                callback,
                std::ptr::null_mut(),
                &mut f,
            ) == 0
            {
                (n.set_named_property)(env, exports, name.as_ptr(), f);
            }
        }
    }
    exports
}

/// The first argument of a call, as an `i32`.
fn int_arg(n: &Napi, env: Env, info: CallbackInfo) -> Option<i32> {
    let mut argc = 1usize;
    let mut argv: [Value; 1] = [std::ptr::null_mut()];
    let mut value = 0i32;
    // SAFETY: argv has room for argc values; the host fills them.
    let ok = unsafe {
        (n.get_cb_info)(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ) == 0
            && argc >= 1
            && (n.get_value_int32)(env, argv[0], &mut value) == 0
    };
    ok.then_some(value)
}

/// `exit(code)`: ends the process at once. A fork must not run Node.js's own exit, which
/// joins the platform's threads — threads that exist only in the zygote (it crashes).
unsafe extern "C" fn js_exit(env: Env, info: CallbackInfo) -> Value {
    let code = napi().and_then(|n| int_arg(n, env, info)).unwrap_or(1);
    quit(code & 0xff)
}

/// `serve(fd)`: returns only in a forked runtime, with a JSON text `{"pid", "seed"}`; throws
/// when the zygote cannot serve (bad argument).
unsafe extern "C" fn js_serve(env: Env, info: CallbackInfo) -> Value {
    let Some(n) = napi() else {
        return std::ptr::null_mut();
    };
    let fd = int_arg(n, env, info).unwrap_or(-1);
    if fd < 0 {
        // SAFETY: valid C strings.
        unsafe {
            (n.throw_error)(
                env,
                std::ptr::null(),
                c"serve(fd) needs a descriptor".as_ptr(),
            )
        };
        return std::ptr::null_mut();
    }
    // The runtime: the event loop's descriptors are the zygote's; make its own.
    // SAFETY: the default loop exists (the interpreter runs on it).
    serve(fd, || unsafe {
        (n.uv_loop_fork)((n.uv_default_loop)());
    });
    let mut seed = [0u8; 16];
    // SAFETY: the buffer is valid for its length.
    let got = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if got != seed.len() as isize {
        quit(crate::SETUP_FAILED);
    }
    let words: Vec<u32> = seed
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let text = serde_json::json!({ "pid": std::process::id(), "seed": words }).to_string();
    let mut v: Value = std::ptr::null_mut();
    // SAFETY: the pointer and length describe `text`.
    unsafe { (n.create_string_utf8)(env, text.as_ptr().cast(), text.len(), &mut v) };
    v
}

/// `brisk_zygote_serve(fd)`, the fork server for hosts that call C directly (the Python
/// proxies, through `ctypes.PyDLL`, which keeps the interpreter's lock held during the call):
/// returns 0 only in a forked runtime, -1 at once for a bad descriptor. The host then does its
/// own after-fork work (Python: `PyOS_AfterFork_Child`, and reading the new environment).
///
/// # Safety
/// The calling process must be single-threaded but for threads that hold no lock the runtime
/// needs after the fork, and `ctl` its control socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn brisk_zygote_serve(ctl: c_int) -> c_int {
    if ctl < 0 {
        return -1;
    }
    serve(ctl, || {});
    0
}

/// The fork server's loop. Returns only in a forked runtime process, after `after_fork` (the
/// host's own re-initialization) and [`privatize`].
fn serve(ctl: RawFd, after_fork: impl FnOnce()) {
    // The forks are reaped by the kernel; they report through their exit files.
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    mark_inherited(ctl);
    shed_file_pages();
    // This process's own pid namespace: after each fork made pid 1 of a new one, the namespace
    // of later children is set back to it. Without it, forks go through a launcher.
    let own_pids = std::fs::File::open("/proc/self/ns/pid").ok();
    let mut buf = vec![0u8; MAX_SPEC];
    loop {
        let (len, fds) = match receive(ctl, &mut buf) {
            Ok(Some(m)) => m,
            // The factory closed its end (or the socket broke): nothing more will come.
            Ok(None) | Err(_) => quit(0),
        };
        let spec = match serde_json::from_slice::<LaunchSpec>(&buf[..len]) {
            Ok(s) if fds.len() == SPEC_FDS => s,
            _ => {
                drop(fds);
                reply(ctl, -1);
                continue;
            }
        };
        allow_fork_copies();
        // The fork is made pid 1 of a pid namespace of its own (`unshare` sets the namespace of
        // this process's next children, not its own): it is the sandbox's init at once, with no
        // launcher between the zygote and init, which saves a copy of this address space and
        // its teardown per container.
        let as_init = own_pids.is_some() && unshare(CloneFlags::CLONE_NEWPID).is_ok();
        // SAFETY: the zygote's other threads (the interpreter's idle helpers) hold no lock the
        // child needs: it runs only the launcher's code and, as the runtime, the interpreter's
        // own thread, whose event loop it re-creates before any use (`uv_loop_fork`).
        match unsafe { fork() } {
            Ok(ForkResult::Parent { child }) => {
                drop(fds);
                reply(ctl, child.as_raw());
            }
            Ok(ForkResult::Child) => {
                // SAFETY: restoring the default disposition installs no handler code.
                unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
                let _ = nix::unistd::close(ctl);
                for (i, fd) in fds.iter().enumerate() {
                    if nix::unistd::dup2(fd.as_raw_fd(), i as RawFd).is_err() {
                        quit(crate::SETUP_FAILED);
                    }
                }
                // The originals sit above 2 (received while 0–2 were open): close them.
                drop(fds);
                drop(own_pids);
                let entered = if as_init {
                    enter_as_init(&spec)
                } else {
                    enter(&spec, Mode::Return)
                };
                if let Err(e) = entered {
                    eprintln!("brisk-sandbox: {e}");
                    quit(crate::SETUP_FAILED);
                }
                after_fork();
                privatize();
                return;
            }
            Err(_) => {
                drop(fds);
                reply(ctl, -2);
            }
        }
        // Later children must not join that namespace: should it stay set, this zygote ends
        // (the factory starts another).
        let restored = || {
            own_pids
                .as_ref()
                .is_some_and(|ns| setns(ns, CloneFlags::CLONE_NEWPID).is_ok())
        };
        if as_init && !restored() {
            quit(crate::SETUP_FAILED);
        }
    }
}

/// One request: its length and descriptors; `None` at the end of the stream.
fn receive(ctl: RawFd, buf: &mut [u8]) -> nix::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut space = nix::cmsg_space!([RawFd; SPEC_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(ctl, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            // Should the interpreter have made its stdin non-blocking: wait for a request.
            Err(nix::errno::Errno::EAGAIN) => {
                let mut pfd = libc::pollfd {
                    fd: ctl,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, -1) };
                continue;
            }
            r => r?,
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in this process.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if msg.bytes == 0 && fds.is_empty() {
            return Ok(None);
        }
        return Ok(Some((msg.bytes, fds)));
    }
}

fn reply(ctl: RawFd, pid: i32) {
    let _ = send(ctl, &pid.to_le_bytes(), MsgFlags::MSG_NOSIGNAL);
}

/// Node.js's allocators mark the JavaScript heap `MADV_DONTFORK` (so that spawning a child
/// process copies less); a forked runtime needs it. Every mapping is made inheritable again.
fn allow_fork_copies() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: MADV_DOFORK only changes whether the range is copied into children; the
        // range is one of this process's mappings. Failures (a gone mapping) are harmless.
        unsafe { libc::madvise(a as *mut c_void, b - a, libc::MADV_DOFORK) };
    }
}

/// Marks every open file description the zygote holds (other than its control socket): its
/// "signal for asynchronous I/O" (`F_SETSIG`) becomes [`INHERITED`]. Without `O_ASYNC` the
/// kernel never sends it; it is a plain number stored with the description, which every fork
/// shares, so a fork can tell which of its descriptors still reach objects that its siblings
/// hold too (objects made after the fork start at 0).
fn mark_inherited(ctl: RawFd) {
    for fd in open_fds() {
        if fd > 2 && fd != ctl {
            // SAFETY: F_SETSIG takes a signal number and no pointers.
            unsafe { libc::fcntl(fd, F_SETSIG, INHERITED) };
        }
    }
}

/// The mark of [`mark_inherited`]: a real-time signal number nothing else sets.
const INHERITED: c_int = 62;
/// `fcntl` commands of Linux (`<fcntl.h>`) that the libc crate does not name.
const F_SETSIG: c_int = 10;
const F_GETSIG: c_int = 11;

fn open_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Gives the runtime its own kernel objects in place of those it still shares with the zygote
/// and so with every sibling container: the event loops of the zygote's other threads (gone
/// in the fork) hold pipes, eventfds and epoll instances that the fork keeps open. Each is
/// replaced by a fresh object of the same kind under the same descriptor (pipes keep their
/// direction, flags are kept), so nothing the runtime holds is reachable from another
/// container. `/dev/null` is shared harmlessly; any other inherited file is closed. What the
/// runtime's own event loop uses was re-created by `uv_loop_fork` and by libuv's fork
/// handlers, so it is not marked and stays.
fn privatize() {
    let mut pipes: std::collections::HashMap<String, (OwnedFd, OwnedFd)> =
        std::collections::HashMap::new();
    for fd in open_fds() {
        // SAFETY: F_GETSIG reads a number of an open descriptor (or fails on a closed one).
        if fd <= 2 || unsafe { libc::fcntl(fd, F_GETSIG) } != INHERITED {
            continue;
        }
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        // SAFETY: F_GETFL and F_GETFD read flags of an open descriptor.
        let (fl, cloexec) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFL),
                libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0,
            )
        };
        let nonblock = fl >= 0 && fl & libc::O_NONBLOCK != 0;
        // SAFETY: each call creates a new descriptor (or returns -1).
        let fresh: RawFd = unsafe {
            if target.starts_with("pipe:") {
                let (r, w) = match pipes.get(&target) {
                    Some(p) => p,
                    None => {
                        let Ok(p) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
                            quit(crate::SETUP_FAILED);
                        };
                        pipes.entry(target.clone()).or_insert(p)
                    }
                };
                let end = if fl & libc::O_ACCMODE == libc::O_RDONLY {
                    r
                } else {
                    w
                };
                libc::fcntl(end.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3)
            } else if target == "anon_inode:[eventfd]" {
                libc::eventfd(0, libc::EFD_CLOEXEC)
            } else if target == "anon_inode:[eventpoll]" {
                libc::epoll_create1(libc::EPOLL_CLOEXEC)
            } else if target == "/dev/null" {
                continue;
            } else {
                libc::close(fd);
                continue;
            }
        };
        if fresh < 0 {
            quit(crate::SETUP_FAILED);
        }
        // SAFETY: both descriptors are open; dup3 replaces `fd` atomically, then the temporary
        // copy is closed and the original status flags restored.
        unsafe {
            let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
            if libc::dup3(fresh, fd, flags) < 0 {
                quit(crate::SETUP_FAILED);
            }
            libc::close(fresh);
            if nonblock {
                libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            }
        }
    }
}

/// Unmaps the pages of read-only file mappings (the interpreter's code and read-only data, its
/// start-up snapshot and symbol tables) from the zygote itself. It waits in `serve` for good,
/// and a fork does not inherit these page-table entries anyway (it maps what it uses as it
/// runs): without this, everything the interpreter touched while starting up stays mapped by
/// the zygote alone, ~19 MB of Node.js's binary, which the kernel then cannot reclaim. The
/// pages stay in the page cache for whoever uses them. Mappings holding anonymous pages (data
/// relocated at load, then made read-only) are left alone: their contents are not the file's.
fn shed_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    let mut candidates = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            current = (path.starts_with('/') && !perms.contains('w') && perms.ends_with('p'))
                .then_some((a, b));
            continue;
        }
        if first == "Anonymous:"
            && let Some(range) = current.take()
            && fields.next() == Some("0")
        {
            candidates.push(range);
        }
    }
    for (a, b) in candidates {
        // SAFETY: the range is a private, unwritable file mapping without anonymous pages:
        // dropping its pages only makes later accesses read them from the file again.
        unsafe { libc::madvise(a as *mut c_void, b - a, libc::MADV_DONTNEED) };
    }
}

fn quit(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns; no exit handlers of the host run.
    unsafe { libc::_exit(code) }
}
