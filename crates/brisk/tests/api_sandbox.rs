//! Hostile actions, written as ordinary Node.js and Python actions and invoked through the API of
//! a real `brisk serve` running its sandbox backend. Each proves one isolation property.
//! (These need root, as CI has; without it they skip with a printed reason.)

mod api;

use std::time::Duration;

use api::*;

fn root() -> bool {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .unwrap_or_default();
    uid.split_whitespace().nth(1) == Some("0")
}

fn sandboxed(extra: &[&str]) -> Option<Brisk> {
    if !root() {
        eprintln!("skipping: the sandbox needs root");
        return None;
    }
    let mut args = vec!["--isolation", "sandbox"];
    args.extend_from_slice(extra);
    Some(Brisk::start(&args))
}

fn py(b: &Brisk, name: &str, body: &str) {
    let code = format!("import os, sys, socket, ctypes, errno\ndef main(a):\n{body}");
    b.action(name, "python:3.11", &code, json!({}));
}

#[test]
fn actions_see_only_themselves_and_hold_no_privileges() {
    let Some(b) = sandboxed(&[]) else { return };
    py(
        &b,
        "procs",
        "    status = open('/proc/self/status').read()\n    field = lambda k: [l.split(':')[1].strip() for l in status.splitlines() if l.startswith(k)][0]\n    return {'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), 'uid': os.getuid(), 'caps': field('CapEff'), 'nnp': field('NoNewPrivs'), 'seccomp': field('Seccomp')}\n",
    );
    let r = b.invoke_result("procs", json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let pids = r.body["pids"].as_array().unwrap();
    assert!(
        pids.len() <= 3,
        "only the sandbox's own processes: {pids:?}"
    );
    assert!(
        !pids.iter().any(|p| p.as_u64() == Some(u64::from(b.pid()))),
        "the server is invisible"
    );
    assert_ne!(r.body["uid"], 0);
    assert_eq!(r.body["caps"], "0000000000000000");
    assert_eq!(
        (r.body["nnp"].as_str(), r.body["seccomp"].as_str()),
        (Some("1"), Some("2"))
    );

    // ptrace and mount are refused.
    py(
        &b,
        "syscalls",
        "    libc = ctypes.CDLL(None, use_errno=True)\n    out = {}\n    r = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\n    out['mount'] = (r, ctypes.get_errno())\n    r = libc.ptrace(16, 1, None, None)\n    out['ptrace'] = (r, ctypes.get_errno())\n    return out\n",
    );
    let r = b.invoke_result("syscalls", json!({}));
    assert_eq!(
        r.body["mount"],
        json!([-1, 1]),
        "mount fails with EPERM: {}",
        r.text
    );
    assert_eq!(
        r.body["ptrace"],
        json!([-1, 1]),
        "ptrace fails with EPERM: {}",
        r.text
    );
}

#[test]
fn child_processes_read_end_of_file_on_stdin_and_never_get_the_socket() {
    let Some(b) = sandboxed(&[]) else { return };
    // What a child started with the action's own stdin sees: `wc -c` counts its stdin (0 for
    // /dev/null; it fails on a listening socket), and the shell reports its descriptor 3.
    let probe = "wc -c; readlink /proc/$$/fd/3 || echo none";
    b.action(
        "node-child",
        "nodejs:20",
        &format!(
            "const cp = require('child_process');\n\
             function main() {{\n\
               const r = cp.spawnSync('/bin/sh', ['-c', '{probe}'], {{stdio: ['inherit', 'pipe', 'pipe']}});\n\
               const stdin = require('fs').readlinkSync('/proc/self/fd/0');\n\
               return {{status: r.status, out: r.stdout.toString().trim().split('\\n'), stdin}};\n\
             }}"
        ),
        json!({}),
    );
    py(
        &b,
        "py-child",
        &format!(
            "    import subprocess\n    r = subprocess.run(['/bin/sh', '-c', '{probe}'], capture_output=True, close_fds=False)\n    return {{'status': r.returncode, 'out': r.stdout.decode().strip().split('\\n'), 'stdin': os.readlink('/proc/self/fd/0')}}\n"
        ),
    );
    for name in ["node-child", "py-child"] {
        let r = b.invoke_result(name, json!({}));
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        assert_eq!(
            r.body,
            json!({"status": 0, "out": ["0", "none"], "stdin": "/dev/null"}),
            "{name}"
        );
    }
}

#[test]
fn actions_cannot_read_or_write_what_is_not_theirs() {
    let Some(b) = sandboxed(&[]) else { return };
    // A neighbour leaves a secret in its /tmp and its code.
    py(
        &b,
        "neighbour",
        "    open('/tmp/secret', 'w').write('s3cret')\n    return {'cwd': os.getcwd(), 'file': __file__ if '__file__' in globals() else ''}\n",
    );
    let n = b.invoke_result("neighbour", json!({}));
    assert_eq!(n.status, 200, "{}", n.text);
    let data_dir = b.dir.to_string_lossy().to_string();
    py(
        &b,
        "snoop",
        "    found = {}\n    for p in a['paths']:\n        try:\n            open(p).read(1)\n            found[p] = 'read'\n        except Exception as e:\n            found[p] = type(e).__name__\n    writes = {}\n    for p in ['/etc/brisk-test', '/usr/brisk-test', '/brisk-test', '/tmp/mine']:\n        try:\n            open(p, 'w').write('x')\n            writes[p] = 'written'\n        except Exception as e:\n            writes[p] = type(e).__name__\n    return {'found': found, 'writes': writes, 'tmp': os.listdir('/tmp')}\n",
    );
    let r = b.invoke_result(
        "snoop",
        json!({"paths": ["/etc/shadow", format!("{data_dir}/brisk.db"), format!("{data_dir}/runtimes/node/proxy.js"), "/root/.bashrc", "/tmp/secret"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for (path, outcome) in r.body["found"].as_object().unwrap() {
        assert_ne!(outcome, "read", "{path} must be invisible: {}", r.text);
    }
    let writes = &r.body["writes"];
    assert_eq!(writes["/tmp/mine"], "written");
    for p in ["/etc/brisk-test", "/usr/brisk-test", "/brisk-test"] {
        assert_ne!(writes[p], "written", "{p} is read-only");
    }
    assert!(
        !r.body["tmp"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "secret"),
        "another action's /tmp is invisible"
    );
}

#[test]
fn actions_cannot_reach_the_platform_or_loopback_services() {
    let Some(b) = sandboxed(&[]) else { return };
    let port: u16 = b.base.rsplit(':').next().unwrap().parse().unwrap();
    py(
        &b,
        "connect",
        "    out = {}\n    for host, port in a['targets']:\n        s = socket.socket()\n        s.settimeout(1)\n        try:\n            s.connect((host, port))\n            out['%s:%d' % (host, port)] = 'connected'\n        except Exception as e:\n            out['%s:%d' % (host, port)] = type(e).__name__\n        finally:\n            s.close()\n    return out\n",
    );
    // The API port, PostgreSQL, Redis and NATS on the host's loopback, and the host's own address.
    let host_ip = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1".into());
    let targets = json!([
        ["127.0.0.1", port],
        ["127.0.0.1", 5432],
        ["127.0.0.1", 6379],
        ["127.0.0.1", 4222],
        [host_ip, port]
    ]);
    let r = b.invoke_result("connect", json!({"targets": targets}));
    assert_eq!(r.status, 200, "{}", r.text);
    for (target, outcome) in r.body.as_object().unwrap() {
        assert_ne!(
            outcome, "connected",
            "{target} must be unreachable: {}",
            r.text
        );
    }
}

#[test]
fn memory_hogs_and_fork_bombs_are_contained() {
    let Some(b) = sandboxed(&[]) else { return };
    b.action(
        "ok",
        "nodejs:20",
        "function main() { return {fine: true} }",
        json!({}),
    );
    b.action(
        "hog",
        "nodejs:20",
        "function main() { const a = []; for (;;) a.push(Buffer.alloc(16 * 1024 * 1024, 1)); }",
        json!({"limits": {"memory": 128}}),
    );
    let r = b.invoke("hog", json!({}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(
        r.body["response"]["result"]["error"],
        "The action exhausted its memory and was aborted."
    );
    assert_eq!(
        b.invoke_result("ok", json!({})).body,
        json!({"fine": true}),
        "others keep working"
    );
    // Spawning tiny processes, so that the pids limit (not memory) is what stops it.
    py(
        &b,
        "bomb",
        "    kids = 0\n    err = None\n    try:\n        for _ in range(5000):\n            os.posix_spawn('/bin/sleep', ['sleep', '30'], {})\n            kids += 1\n    except OSError as e:\n        err = e.errno\n    return {'kids': kids, 'errno': err}\n",
    );
    let r = b.invoke_result("bomb", json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["kids"].as_u64().unwrap() < 5000,
        "the pids limit stops the bomb: {}",
        r.text
    );
    assert_eq!(r.body["errno"], 11, "fork fails with EAGAIN");
    assert_eq!(b.invoke_result("ok", json!({})).body, json!({"fine": true}));
}

#[test]
fn paused_containers_use_no_cpu_and_resume() {
    let Some(b) = sandboxed(&["--pause-grace-ms", "200"]) else {
        return;
    };
    // A background timer bumps a counter while the container lives.
    b.action(
        "ticker",
        "nodejs:20",
        "let n = 0; setInterval(() => n++, 5); function main() { return {n} }",
        json!({}),
    );
    b.invoke_result("ticker", json!({}));
    std::thread::sleep(Duration::from_millis(600)); // paused after 200 ms idle
    let before = b.invoke_result("ticker", json!({})).body["n"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // paused again
    let after = b.invoke_result("ticker", json!({})).body["n"]
        .as_u64()
        .unwrap();
    // Running all along, the timer would have fired ~300 times in 1.5 s; frozen, it barely moves.
    assert!(
        after - before < 150,
        "ticks while paused: {}",
        after - before
    );
    assert!(after > before, "the container resumed and kept its state");
}

#[test]
fn a_stopped_server_leaves_no_sandbox_behind() {
    let Some(mut b) = sandboxed(&[]) else { return };
    b.action("a", "nodejs:20", "function main() { return {} }", json!({}));
    b.invoke_result("a", json!({}));
    let dir = b.dir.clone();
    assert!(b.stop());
    // No process of ours remains: proxies run from the data dir's runtimes.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let dir = dir.to_string_lossy();
    assert!(
        !ps.lines().any(|l| l.contains(dir.as_ref())),
        "leftover processes:\n{ps}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.as_ref()), "leftover mounts");
}

/// `(pid, ppid)` of every process.
fn processes() -> Vec<(u32, u32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 2..]
                .split(' ')
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// A `kB` field of `/proc/<pid>/smaps_rollup`.
fn rollup_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn container_wrappers_stay_small() {
    let Some(b) = sandboxed(&["--prewarm", "false", "--zygotes", "false"]) else {
        return;
    };
    py(&b, "small", "    return {}\n");
    assert_eq!(b.invoke_result("small", json!({})).status, 200);
    // Each launched container's launcher (a child of the server) and the sandbox's init under
    // it wait for the container's whole life: they are the small launcher-only binary built
    // beside `brisk`, not `brisk` itself. (A zygote's forks share the zygote's pages instead.)
    let all = processes();
    let children = |of: u32| all.iter().filter(move |(_, pp)| *pp == of).map(|(p, _)| *p);
    let launchers: Vec<u32> = children(b.pid())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
                String::from_utf8_lossy(argv0).ends_with("/brisk-launcher")
            })
        })
        .collect();
    assert_eq!(launchers.len(), 1, "one container, one launcher");
    let inits: Vec<u32> = launchers.iter().flat_map(|l| children(*l)).collect();
    assert_eq!(inits.len(), 1, "the launcher's child is the sandbox's init");
    for pid in launchers.into_iter().chain(inits) {
        assert_eq!(rollup_kb(pid, "AnonHugePages:"), 0, "process {pid}");
        // ~100 kB each here; `brisk` re-executed as the launcher held 400-500 kB.
        let anon = rollup_kb(pid, "Pss_Anon:");
        assert!(anon < 320, "process {pid}: {anon} kB of anonymous memory");
    }
}

/// Node.js and Python actions run in forks of the runtime zygotes by default (the zygote's own options, such
/// as `--single-threaded`, show in `process.execArgv`), each with its own random numbers and pid;
/// `--zygotes false` starts a fresh interpreter per container.
#[test]
fn node_containers_are_zygote_forks_unless_turned_off() {
    let code = "function main() { return { argv: process.execArgv, pid: process.pid, \
                self: Number(require('fs').readlinkSync('/proc/self')), r: Math.random() }; }";
    let Some(b) = sandboxed(&[]) else { return };
    let mut randoms = Vec::new();
    for name in ["fork1", "fork2"] {
        b.action(name, "nodejs:20", code, json!({}));
        let r = b.invoke_result(name, json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            r.body["argv"].to_string().contains("--single-threaded"),
            "a fork of the zygote: {}",
            r.text
        );
        assert_eq!(r.body["pid"], r.body["self"], "{}", r.text);
        randoms.push(r.body["r"].to_string());
    }
    assert_ne!(randoms[0], randoms[1], "forks draw different numbers");
    // Python actions too: a fork has the zygote's `ctypes` loaded (the zygote calls the fork
    // server through it); a fresh interpreter has not.
    b.action("pyfork", "python:3.11", PY_FORKED, json!({}));
    let r = b.invoke_result("pyfork", json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["forked"], true, "a fork of the zygote: {}", r.text);
    assert_eq!(r.body["home"], r.body["cwd"], "{}", r.text);
    drop(b);
    let Some(b) = sandboxed(&["--zygotes", "false"]) else {
        return;
    };
    b.action("fresh", "nodejs:20", code, json!({}));
    let r = b.invoke_result("fresh", json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        !r.body["argv"].to_string().contains("--single-threaded"),
        "a fresh interpreter: {}",
        r.text
    );
    b.action("pyfresh", "python:3.11", PY_FORKED, json!({}));
    let r = b.invoke_result("pyfresh", json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["forked"], false, "a fresh interpreter: {}", r.text);
}

const PY_FORKED: &str = "import os, sys\ndef main(a):\n    return {'forked': 'ctypes' in sys.modules, \
                         'home': os.environ.get('HOME'), 'cwd': os.getcwd()}\n";
