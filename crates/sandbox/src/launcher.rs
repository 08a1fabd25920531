//! The launcher: a small process spawned by the factory (never forked from the server) that
//! turns itself into a sandbox and executes the runtime.
//!
//! ```text
//! launcher (host pid ns)            joins the cgroup, the pooled netns; unshares mnt/pid/ipc/uts
//!  └─ init (pid 1 in the sandbox)   builds the read-only root, pivots into it, reaps zombies
//!      └─ runtime                   drops to the unprivileged uid, no caps, no_new_privs,
//!                                   seccomp; execs the interpreter
//! ```
//! The outer launcher stays as the factory's child and exits with the runtime's status; if it
//! is killed, the kernel kills init (parent-death signal) and with it the whole pid namespace.
//!
//! Standard input is the proxy's listening socket (socket activation): the launcher and init
//! pass it down and, once their child has it, put `/dev/null` in its place, so that the runtime
//! is its only holder and the socket closes when the runtime exits.
#![allow(
    unsafe_code,
    reason = "fork, PR_CAPBSET_DROP and close_range have no safe wrappers; each use has a SAFETY note"
)]

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, chdir, execve, fork, pivot_root, sethostname};

use crate::spec::{LaunchSpec, MountSpec, SPEC_ENV};

/// Names the descriptor of the listening socket in the runtime's environment.
const LISTEN_FD_ENV: &str = brisk_invoker::LISTEN_FD_ENV;

/// Exit status of the launcher when the sandbox could not be set up.
pub const SETUP_FAILED: i32 = 125;

/// The descriptor the runtime finds the listening socket on (the factory names it in
/// `BRISK_LISTEN_FD`). The launcher receives the socket as stdin and moves it here.
pub const LISTENER_FD: i32 = 3;
/// Device nodes bound from the host into `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Entry point of the launcher process: reads the [`LaunchSpec`] from `BRISK_SANDBOX_SPEC`,
/// builds the sandbox and executes the runtime in it. Never returns; exits with the runtime's
/// status (128 + signal when it was killed) or [`SETUP_FAILED`] with a message on stderr.
///
/// Must be called from a single-threaded process (the first thing `main` does), because it
/// forks.
pub fn launcher_main() -> ! {
    let err = match launch() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("brisk-sandbox: {err}");
    std::process::exit(SETUP_FAILED)
}

type Res<T> = Result<T, String>;

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl std::fmt::Display) -> Res<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn launch() -> Res<Infallible> {
    let raw = ctx(std::env::var(SPEC_ENV), format!("read {SPEC_ENV}"))?;
    let spec: LaunchSpec = ctx(serde_json::from_str(&raw), "parse launch spec")?;
    enter(&spec, Mode::Exec)?;
    Err("the runtime returned instead of executing".into())
}

/// How the runtime process ends the launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `execve` the spec's `argv` (the launcher process).
    Exec,
    /// Return into the calling program, which then is the runtime (a forked zygote, see
    /// `zygote.rs`): the environment becomes the spec's and the listening socket moves to a
    /// free descriptor named in `BRISK_LISTEN_FD`, because the program's own descriptors
    /// (its event loop's) must stay as they are.
    Return,
}

/// Builds the sandbox around the calling process's descendants, as described at the top of
/// this file. The calling process stays outside as the "launcher", waits for the sandbox's
/// init and exits like it; init reaps the namespace; the runtime execs (`Mode::Exec`) or
/// returns `Ok` (`Mode::Return`, only ever in the runtime process). Setup failures before the
/// first fork are returned; failures in the forked processes exit them with [`SETUP_FAILED`].
///
/// The calling process must be single-threaded, or at least act as if it were: it forks.
pub(crate) fn enter(spec: &LaunchSpec, mode: Mode) -> Res<()> {
    let exit_file = join(spec)?;
    ctx(
        unshare(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS,
        ),
        "create namespaces",
    )?;
    // SAFETY: the caller is single-threaded (documented requirement), so the child may run
    // arbitrary code after fork.
    match ctx(unsafe { fork() }, "fork sandbox init")? {
        ForkResult::Parent { child } => {
            release_stdin();
            exit_like(child, exit_file)
        }
        ForkResult::Child => {
            // The sandbox never holds a host file.
            drop(exit_file);
            sandbox_init(spec, mode, Reporter::Launcher)
        }
    }
}

/// [`enter`] for a zygote's fork that is already pid 1 of a new pid namespace (the zygote
/// forked it so, see `zygote.rs`): the launcher and the sandbox's init are this one process,
/// which saves a fork of the zygote's address space and its exit. It joins the cgroup and the
/// network namespace, unshares the rest and goes on as init, which writes the runtime's exit
/// status to the spec's `exit_file` itself. Returns only in the runtime process.
pub(crate) fn enter_as_init(spec: &LaunchSpec) -> Res<()> {
    let exit_file = join(spec)?;
    ctx(
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS),
        "create namespaces",
    )?;
    sandbox_init(spec, Mode::Return, Reporter::Init(exit_file))
}

/// What the launcher does before the sandbox's namespaces: the scheduling policy, the exit
/// file, the cgroup and the network namespace.
fn join(spec: &LaunchSpec) -> Res<Option<File>> {
    // Inherited by init, the runtime and every thread and process the action starts.
    ctx(brisk_invoker::sched::batch(0), "set the SCHED_BATCH policy")?;
    // Opened now: once init pivots into the sandbox's root, this process's root moves with it
    // (the mount namespace is theirs too), and the host path is out of reach.
    let exit_file = match &spec.exit_file {
        Some(path) => Some(ctx(File::create(path), format_args!("create {path}"))?),
        None => None,
    };
    // The pid as this process's own pid namespace numbers it, which is how the kernel reads
    // what is written (1 for a zygote's fork that is init already).
    let pid = std::process::id().to_string();
    for file in &spec.cgroup_join {
        let value = if file.ends_with("/tasks") { "0" } else { &pid };
        ctx(fs::write(file, value), format_args!("join cgroup {file}"))?;
    }
    match &spec.netns {
        Some(path) => {
            let ns = ctx(
                File::open(path),
                format_args!("open network namespace {path}"),
            )?;
            ctx(
                setns(&ns, CloneFlags::CLONE_NEWNET),
                "join network namespace",
            )?;
        }
        None => {
            ctx(
                unshare(CloneFlags::CLONE_NEWNET),
                "create network namespace",
            )?;
            ctx(crate::netns::loopback_up(), "bring up loopback")?;
        }
    }
    Ok(exit_file)
}

/// Gives up this process's copy of the listening socket (stdin) once a child holds it:
/// `/dev/null` takes its place (or, should that fail, nothing does).
fn release_stdin() {
    match File::open("/dev/null") {
        Ok(null) => {
            if nix::unistd::dup2(null.as_raw_fd(), 0).is_err() {
                let _ = nix::unistd::close(0);
            }
        }
        Err(_) => {
            let _ = nix::unistd::close(0);
        }
    }
}

/// Waits for `child` and exits with its status, which it first writes to `exit_file` (when
/// given: the factory is not this process's parent and cannot learn it otherwise).
fn exit_like(child: Pid, exit_file: Option<File>) -> ! {
    let code = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break SETUP_FAILED,
        }
    };
    report_and_quit(code, exit_file)
}

/// Writes `code` to `exit_file`, when there is one, and exits with it.
fn report_and_quit(code: i32, exit_file: Option<File>) -> ! {
    if let Some(mut file) = exit_file {
        use std::io::Write;
        let _ = file.write_all(code.to_string().as_bytes());
    }
    quit(code)
}

/// Ends the process at once: no exit handlers, which in a forked zygote are the
/// interpreter's and must not run twice.
fn quit(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Reports a setup failure in a forked process and ends it.
fn fail(e: &str) -> ! {
    eprintln!("brisk-sandbox: {e}");
    quit(SETUP_FAILED)
}

/// Who reports the sandbox's exit status, which the factory reads.
enum Reporter {
    /// The launcher, init's parent outside the sandbox: init dies with it.
    Launcher,
    /// Init itself, the process the factory watches (a zygote's fork), writing to the spec's
    /// exit file when there is one. It does not die with its parent, the zygote, whose death
    /// must not end the containers it forked.
    Init(Option<File>),
}

impl Reporter {
    /// Ends init with `code`, reported first when init reports.
    fn quit(self, code: i32) -> ! {
        match self {
            Reporter::Launcher => quit(code),
            Reporter::Init(file) => report_and_quit(code, file),
        }
    }
}

/// Pid 1 of the sandbox. Returns only in the runtime process, with `Mode::Return`.
fn sandbox_init(spec: &LaunchSpec, mode: Mode, reporter: Reporter) -> Res<()> {
    let setup = (|| -> Res<Vec<seccompiler::BpfProgram>> {
        if matches!(reporter, Reporter::Launcher) {
            ctx(
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
                "set parent-death signal",
            )?;
        }
        build_root(spec)?;
        ctx(sethostname(&spec.hostname), "set hostname")?;
        ctx(crate::seccomp::filters(), "compile seccomp filters")
    })();
    let filters = match setup {
        Ok(f) => f,
        Err(e) => {
            eprintln!("brisk-sandbox: {e}");
            reporter.quit(SETUP_FAILED)
        }
    };
    // SAFETY: this process is single-threaded (a fork of a single-threaded launcher, or of a
    // zygote in its fork server loop, see `zygote.rs`).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            release_stdin();
            reap_until(child, reporter)
        }
        Ok(ForkResult::Child) => {
            // The runtime never holds a host file.
            drop(reporter);
            match mode {
                Mode::Exec => match exec_runtime(spec, &filters) {
                    Ok(never) => match never {},
                    Err(e) => fail(&e),
                },
                Mode::Return => become_runtime(spec, &filters).map_err(|e| fail(&e)),
            }
        }
        Err(e) => {
            eprintln!("brisk-sandbox: fork runtime: {e}");
            reporter.quit(SETUP_FAILED)
        }
    }
}

/// Reaps every process of the namespace (orphans are re-parented to pid 1) until the runtime
/// itself exits, then exits with its status, which ends the namespace.
fn reap_until(runtime: Pid, reporter: Reporter) -> ! {
    let code = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => break code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == runtime => break 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break SETUP_FAILED,
        }
    };
    reporter.quit(code)
}

fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn do_mount(
    src: Option<&str>,
    dst: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Res<()> {
    ctx(
        mount(src, dst, fstype, flags, data),
        format_args!("mount {} on {}", src.unwrap_or("-"), dst.display()),
    )
}

/// Assembles the root file system on a tmpfs at `spec.root` and pivots into it.
fn build_root(spec: &LaunchSpec) -> Res<()> {
    let root = Path::new(&spec.root);
    // Nothing mounted from here on propagates back to the host.
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    do_mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        base,
        Some("size=256k,mode=0755"),
    )?;

    let tmp = under(root, "/tmp");
    mkdirs(&tmp)?;
    let tmp_opts = format!("size={},mode=1777", spec.tmp_bytes);
    do_mount(Some("tmpfs"), &tmp, Some("tmpfs"), base, Some(&tmp_opts))?;

    let dev = under(root, "/dev");
    mkdirs(&dev)?;
    do_mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0755"),
    )?;
    for d in DEVICES {
        let target = dev.join(d);
        ctx(
            File::create(&target),
            format_args!("create {}", target.display()),
        )?;
        do_mount(
            Some(&format!("/dev/{d}")),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ctx(
            symlink(target, dev.join(link)),
            format_args!("link /dev/{link}"),
        )?;
    }
    do_mount(
        None,
        &dev,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0755"),
    )?;

    let proc_dir = under(root, "/proc");
    mkdirs(&proc_dir)?;
    do_mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        base | MsFlags::MS_NOEXEC,
        None,
    )?;

    for m in &spec.mounts {
        match m {
            MountSpec::Ro { src, dst } | MountSpec::Rw { src, dst } => {
                let target = under(root, dst);
                let is_dir = ctx(fs::metadata(src), format_args!("stat {src}"))?.is_dir();
                if is_dir {
                    mkdirs(&target)?;
                } else if !target.exists() {
                    if let Some(parent) = target.parent() {
                        mkdirs(parent)?;
                    }
                    ctx(
                        File::create(&target),
                        format_args!("create {}", target.display()),
                    )?;
                }
                do_mount(Some(src), &target, None, MsFlags::MS_BIND, None)?;
                let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | base;
                if matches!(m, MountSpec::Ro { .. }) {
                    flags |= MsFlags::MS_RDONLY;
                }
                do_mount(None, &target, None, flags, None)?;
            }
            MountSpec::Tmpfs { dst, bytes } => {
                let target = under(root, dst);
                mkdirs(&target)?;
                let opts = format!("size={bytes},mode=0700,uid={},gid={}", spec.uid, spec.gid);
                do_mount(Some("tmpfs"), &target, Some("tmpfs"), base, Some(&opts))?;
            }
            MountSpec::Symlink { target, dst } => {
                let link = under(root, dst);
                if let Some(parent) = link.parent() {
                    mkdirs(parent)?;
                }
                ctx(symlink(target, &link), format_args!("link {dst}"))?;
            }
        }
    }
    // The assembled root itself becomes read-only; /tmp is its own (writable) mount.
    do_mount(
        None,
        root,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
        Some("size=256k,mode=0755"),
    )?;
    ctx(chdir(root), "enter new root")?;
    ctx(pivot_root(".", "."), "pivot_root")?;
    // The old root is now stacked on the new one; detach it.
    ctx(umount2(".", MntFlags::MNT_DETACH), "detach old root")?;
    ctx(chdir("/"), "chdir /")?;
    Ok(())
}

fn mkdirs(p: &Path) -> Res<()> {
    ctx(
        fs::create_dir_all(p),
        format_args!("create {}", p.display()),
    )
}

/// Drops every privilege: supplementary groups, gid, the capability bounding set, uid (which
/// clears the other capability sets), then sets `no_new_privs` and enters the working directory.
fn drop_privileges(spec: &LaunchSpec) -> Res<()> {
    let gid = Gid::from_raw(spec.gid);
    let uid = Uid::from_raw(spec.uid);
    ctx(nix::unistd::setgroups(&[gid]), "setgroups")?;
    ctx(nix::unistd::setresgid(gid, gid, gid), "setresgid")?;
    // Empty the bounding set while we still hold CAP_SETPCAP; EINVAL past the last capability.
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(format!("drop capability {cap} from the bounding set: {e}"));
        }
    }
    // From uid 0 to non-zero without keep-caps: permitted, effective and ambient are cleared.
    ctx(nix::unistd::setresuid(uid, uid, uid), "setresuid")?;
    ctx(nix::sys::prctl::set_no_new_privs(), "set no_new_privs")?;
    ctx(
        chdir(Path::new(&spec.cwd)),
        format_args!("chdir {}", spec.cwd),
    )
}

/// Puts `/dev/null` on stdin (the listening socket must already be elsewhere): what an
/// action starts with an inherited stdin reads end of file, not the socket.
fn null_stdin() -> Res<()> {
    let null = ctx(File::open("/dev/null"), "open /dev/null")?;
    ctx(
        nix::unistd::dup2(null.as_raw_fd(), 0),
        "make /dev/null stdin",
    )?;
    Ok(())
}

/// Drops every privilege and executes the runtime.
fn exec_runtime(spec: &LaunchSpec, filters: &[seccompiler::BpfProgram]) -> Res<Infallible> {
    drop_privileges(spec)?;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only flags descriptors; nothing is closed
    // under code that still uses it, and only stdin, stdout and stderr survive the exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    // The listening socket moves from stdin to its own descriptor (left inheritable by dup2,
    // so it survives the exec) and /dev/null becomes stdin. The proxies keep the socket from
    // their own children.
    ctx(
        nix::unistd::dup2(0, LISTENER_FD),
        "move the listening socket",
    )?;
    null_stdin()?;
    let cstr = |s: &str| ctx(CString::new(s), "nul byte in argument");
    let argv: Vec<CString> = spec.argv.iter().map(|a| cstr(a)).collect::<Res<_>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Res<_>>()?;
    let Some(prog) = argv.first() else {
        return Err("empty argv".into());
    };
    for f in filters {
        ctx(seccompiler::apply_filter(f), "install seccomp filter")?;
    }
    ctx(
        execve(prog, &argv, &env),
        format_args!("execute {}", spec.argv[0]),
    )
}

/// [`exec_runtime`] without the `execve`: the calling program goes on as the runtime. Its
/// descriptors stay open (they are its own; the zygote passes nothing else down), the socket
/// moves to a free descriptor (close-on-exec, so the runtime's children never get it) named
/// in `BRISK_LISTEN_FD`, and the environment becomes the spec's.
fn become_runtime(spec: &LaunchSpec, filters: &[seccompiler::BpfProgram]) -> Res<()> {
    // A fork of a multi-threaded interpreter can crash on its way out (its exit joins threads
    // the fork does not have): never with a core dump of the zygote's memory.
    ctx(
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0),
        "disable core dumps",
    )?;
    drop_privileges(spec)?;
    // SAFETY: F_DUPFD_CLOEXEC takes a descriptor number and returns a new descriptor.
    let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, LISTENER_FD) };
    if fd < 0 {
        return Err(format!(
            "move the listening socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    null_stdin()?;
    let vars: Vec<std::ffi::OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    // SAFETY: the process is single-threaded here (forked), so nothing reads the environment
    // while it changes.
    unsafe {
        for k in vars {
            std::env::remove_var(k);
        }
        for (k, v) in &spec.env {
            if k == LISTEN_FD_ENV {
                std::env::set_var(k, fd.to_string());
            } else {
                std::env::set_var(k, v);
            }
        }
    }
    for f in filters {
        ctx(seccompiler::apply_filter(f), "install seccomp filter")?;
    }
    Ok(())
}
