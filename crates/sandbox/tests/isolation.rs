//! What a process inside a sandbox can see and do. Each test runs a small script as the
//! container's runtime and checks what it reports.

mod common;

use brisk_invoker::Container;
use common::*;

#[tokio::test]
async fn sees_only_its_own_processes() {
    let f = fixture("pidns");
    let o = f
        .run(
            "c1",
            PYTHON,
            r#"
import os
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
print('pid=%d' % os.getpid())
print('pids=%s' % ','.join(map(str, pids)))
print('hostname=%s' % os.uname().nodename)
"#,
        )
        .await;
    o.ok();
    // pid 1 is the sandbox's init, the runtime comes right after it.
    assert_eq!(o.get("pid"), "2");
    assert_eq!(o.get("pids"), "1,2");
    assert_eq!(o.get("hostname"), "sandbox");
    f.factory.shutdown().await;
}

#[tokio::test]
async fn runs_unprivileged_without_capabilities() {
    let f = fixture("creds");
    let o = f
        .run(
            "c1",
            PYTHON,
            r#"
import os
print('uid=%d gid=%d' % (os.getuid(), os.getgid()))
print('euid=%d groups=%s' % (os.geteuid(), os.getgroups()))
import getpass, pwd
print('user=%s' % getpass.getuser())
print('accounts=%s' % ','.join(p.pw_name for p in pwd.getpwall()))
print('batch=%s' % (os.sched_getscheduler(0) == os.SCHED_BATCH))
for line in open('/proc/self/status'):
    k, v = line.split(':', 1)
    if k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp'):
        print('%s=%s' % (k, v.strip()))
"#,
        )
        .await;
    o.ok();
    assert_eq!(o.get("uid"), "65534 gid=65534");
    assert_eq!(o.get("euid"), "65534 groups=[65534]");
    // A synthetic passwd: the sandbox user resolves, the host's accounts are not there.
    assert_eq!(o.get("user"), "sandbox");
    assert_eq!(o.get("accounts"), "root,sandbox");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(o.get(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(o.get("NoNewPrivs"), "1");
    assert_eq!(o.get("Seccomp"), "2");
    // Actions never preempt the server on wake-up (brisk_invoker::sched).
    assert_eq!(o.get("batch"), "True");
    f.factory.shutdown().await;
}

#[tokio::test]
async fn cannot_read_host_files_or_other_containers() {
    let f = fixture("files");
    // Another container's private directory with a secret in its code.
    let (other, _out) = f.start("other", "/bin/sh", "sleep 60", 64).await;
    let other_code = f.run_dir().join("other/code/secret.js");
    std::fs::write(&other_code, "the other action's code").unwrap();
    let data_dir = f.tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("brisk.db"), "platform secrets").unwrap();
    let script = format!(
        r#"
import os
for i, p in enumerate(['/etc/shadow', '/etc/hostname', '/root', '/home', '/work', '/var', '/run',
          '/sys', '{other}', '{other_dir}', '{data}', '/proc/1/root/etc/shadow', '/usr/local',
          '/usr/src']):
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p).read()
        print('read%d=yes %s' % (i, p))
    except OSError as e:
        print('read%d=no %s' % (i, type(e).__name__))
"#,
        other = other_code.display(),
        other_dir = f.run_dir().join("other").display(),
        data = data_dir.join("brisk.db").display(),
    );
    let o = f.run("c1", PYTHON, &script).await;
    o.ok();
    for i in 0..14 {
        let r = o.get(&format!("read{i}"));
        assert!(r.starts_with("no "), "read{i}: {r}\n{o:#?}");
    }
    other.destroy().await;
    f.factory.shutdown().await;
}

#[tokio::test]
async fn root_is_read_only_except_tmp() {
    let f = fixture("rofs");
    let code = f.run_dir().join("c1/code");
    let script = format!(
        r#"
import os
for i, p in enumerate(['/x', '/usr/x', '/etc/x', '/dev/x', '/proc/x', '{code}/x', '/tmp/x']):
    try:
        with open(p, 'w') as fh:
            fh.write('x')
        print('write%d=yes' % i)
    except OSError as e:
        print('write%d=no %s' % (i, e.strerror))
# HOME (the private directory; the host's one, with the proxy's socket, is not visible) is a
# small tmpfs: writable, but nothing reaches the host's disk.
try:
    with open(os.path.join(os.environ['HOME'], 'big'), 'wb') as fh:
        for _ in range(4):
            fh.write(b'x' * (1 << 20))
            fh.flush()
    print('home=unbounded')
except OSError as e:
    print('home=%s' % e.strerror)
"#,
        code = code.display()
    );
    let o = f.run("c1", PYTHON, &script).await;
    o.ok();
    for i in 0..6 {
        let r = o.get(&format!("write{i}"));
        assert!(r.starts_with("no "), "write{i}: {r}\n{o:#?}");
    }
    assert_eq!(o.get("write6"), "yes");
    assert_eq!(o.get("home"), "No space left on device");
    assert!(!f.run_dir().join("c1/big").exists());
    f.factory.shutdown().await;
}

#[tokio::test]
async fn tmp_size_is_capped() {
    let mut config = config(&format!("t{}-tmpcap", std::process::id()));
    config.tmp_size_mb = 8;
    let f = Fixture {
        factory: brisk_sandbox::SandboxFactory::new(config).unwrap(),
        tmp: tempfile::tempdir().unwrap(),
        instance: String::new(),
    };
    let o = f
        .run(
            "c1",
            PYTHON,
            r#"
import errno
written = 0
try:
    with open('/tmp/fill', 'wb') as fh:
        for _ in range(64):
            fh.write(b'x' * (1 << 20))
            fh.flush()
            written += 1
    print('result=filled %d' % written)
except OSError as e:
    print('result=%s after %d MB' % (errno.errorcode[e.errno], written))
"#,
        )
        .await;
    o.ok();
    let r = o.get("result");
    assert!(r.starts_with("ENOSPC after "), "{r}");
    let mb: u32 = r.rsplit(' ').nth(1).unwrap().parse().unwrap();
    assert!(mb <= 8, "{mb} MB written");
    f.factory.shutdown().await;
}

#[tokio::test]
async fn dangerous_syscalls_fail_with_eperm() {
    let f = fixture("seccomp");
    let o = f
        .run(
            "c1",
            PYTHON,
            r#"
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(rc):
    return 0 if rc == 0 else ctypes.get_errno()
NR = {'ptrace': 101, 'bpf': 321, 'keyctl': 250, 'perf_event_open': 298, 'setns': 308,
      'init_module': 175, 'kexec_load': 246, 'pivot_root': 155, 'reboot': 169}
print('mount=%d' % errno_of(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)))
print('umount=%d' % errno_of(libc.umount2(b'/tmp', 2)))
print('unshare_user=%d' % errno_of(libc.unshare(0x10000000)))
print('unshare_net=%d' % errno_of(libc.unshare(0x40000000)))
print('ptrace_traceme=%d' % errno_of(libc.ptrace(0, 0, None, None)))
for name in ['bpf', 'keyctl', 'perf_event_open', 'setns', 'init_module', 'kexec_load', 'pivot_root', 'reboot']:
    libc.syscall.restype = ctypes.c_long
    print('%s=%d' % (name, errno_of(libc.syscall(NR[name], 0, 0, 0, 0, 0))))
# Ordinary process creation still works (clone3 falls back to clone).
print('spawn=%s' % subprocess.run(['/bin/echo', 'ok'], capture_output=True).stdout.decode().strip())
pid = os.fork()
if pid == 0:
    os._exit(7)
print('fork=%d' % os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#,
        )
        .await;
    o.ok();
    for name in [
        "mount",
        "umount",
        "unshare_user",
        "unshare_net",
        "ptrace_traceme",
        "bpf",
        "keyctl",
        "perf_event_open",
        "setns",
        "init_module",
        "kexec_load",
        "pivot_root",
        "reboot",
    ] {
        assert_eq!(o.get(name), "1", "{name} should fail with EPERM\n{o:#?}");
    }
    assert_eq!(o.get("spawn"), "ok");
    assert_eq!(o.get("fork"), "7");
    f.factory.shutdown().await;
}

#[tokio::test]
async fn network_none_cannot_reach_host_loopback() {
    let f = fixture("netnone");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        r#"
import socket
print('ifaces=%s' % ','.join(n for _, n in socket.if_nameindex()))
for i, host in enumerate(['127.0.0.1', '10.0.0.1', '1.1.1.1']):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, {port}))
        print('connect%d=yes' % i)
    except OSError as e:
        print('connect%d=no %s' % (i, type(e).__name__))
# Its own loopback works.
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname()); print('own_loopback=ok')
"#
    );
    let o = f.run("c1", PYTHON, &script).await;
    o.ok();
    assert_eq!(o.get("ifaces"), "lo");
    for i in 0..3 {
        let r = o.get(&format!("connect{i}"));
        assert!(r.starts_with("no "), "connect{i}: {r}");
    }
    assert_eq!(o.get("own_loopback"), "ok");
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept()).await;
    assert!(accepted.is_err(), "the host listener saw a connection");
    f.factory.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sandboxes_start_in_parallel() {
    let f = std::sync::Arc::new(fixture("parallel"));
    let runs = (0..24).map(|i| {
        let f = f.clone();
        tokio::spawn(async move {
            let o = f
                .run(
                    &format!("p{i}"),
                    "/bin/sh",
                    "echo pid=$$; echo host=$(hostname)",
                )
                .await;
            (o.get("pid").to_owned(), o.get("host").to_owned())
        })
    });
    for r in runs.collect::<Vec<_>>() {
        let (pid, host) = r.await.unwrap();
        assert_eq!(pid, "2");
        assert_eq!(host, "sandbox");
    }
    f.factory.shutdown().await;
    assert_eq!(std::fs::read_dir(f.run_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn interpreter_args_come_before_the_script() {
    let f = fixture("args");
    let mut spec = f.spec(
        "c1",
        PYTHON,
        "import sys\nprint('nosite=%d' % sys.flags.no_site)\nprint('x=%s' % sys._xoptions.get('brisk'))\n",
        64,
    );
    spec.args = vec!["-S".into(), "-X".into(), "brisk=yes".into()];
    let (c, out) = f.factory.create_sandbox(&spec).await.unwrap();
    let (stdout, stderr) = read_all(out);
    assert_eq!(c.wait().await, Some(0));
    let (stdout, stderr) = (stdout.await.unwrap(), stderr.await.unwrap());
    assert!(stdout.contains("nosite=1\n"), "{stdout}{stderr}");
    assert!(stdout.contains("x=yes\n"), "{stdout}{stderr}");
    c.destroy().await;
    f.factory.shutdown().await;
}
