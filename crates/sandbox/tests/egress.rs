//! The `egress` policy: outbound connections leave through NAT, while the host (any of its
//! addresses, so every platform port), its loopback services, link-local metadata addresses
//! and other containers stay unreachable.

mod common;

use std::process::Command;
use std::time::Duration;

use brisk_invoker::Container;
use brisk_sandbox::{NetworkPolicy, SandboxFactory};
use common::*;
use tokio::io::AsyncBufReadExt;

const NONE_SCRIPT: &str = "import socket\n\
print('ifaces=%s' % ','.join(n for _, n in socket.if_nameindex()))\n\
s = socket.socket()\ns.settimeout(1)\n\
try:\n    s.connect(('198.51.100.2', 8099))\n    print('outside=yes')\n\
except OSError:\n    print('outside=no')\n";

fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

/// An "outside" host: a network namespace behind a veth at 198.51.100.2, reachable from the
/// host only by routing (as the internet would be). Removed on drop.
struct Outside {
    ns: String,
    dev: String,
}

impl Outside {
    fn new() -> Self {
        let id = std::process::id() % 100_000;
        let (ns, dev) = (format!("bext{id}"), format!("bxh{id}"));
        sh(&format!(
            "ip netns add {ns} && ip link add {dev} type veth peer name bxc netns {ns} && \
             ip addr add 198.51.100.1/29 dev {dev} && ip link set {dev} up && \
             ip -n {ns} addr add 198.51.100.2/29 dev bxc && \
             ip -n {ns} addr add 198.51.100.3/29 dev bxc && ip -n {ns} link set bxc up && \
             ip -n {ns} link set lo up"
        ));
        Self { ns, dev }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.dev]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[tokio::test]
async fn egress_reaches_outside_but_not_host_or_neighbours() {
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("SKIP: the nft command (Debian package nftables) is not installed");
        return;
    }
    let instance = format!("t{}-egress", std::process::id());
    let mut cfg = config(&instance);
    cfg.network = NetworkPolicy::Egress;
    cfg.egress_available = true;
    // As if the platform's database lived at the outside host's second address.
    cfg.egress_deny = vec!["198.51.100.3/32".into()];
    let f = Fixture {
        factory: SandboxFactory::new(cfg).expect("egress factory"),
        tmp: tempfile::tempdir().unwrap(),
        instance,
    };
    let gateway = f.factory.egress_gateway().unwrap();
    let bridge = f.factory.egress_bridge().unwrap();
    let outside = Outside::new();

    // Outside listener: reports the peer address it sees (masqueraded).
    let mut ext = tokio::process::Command::new("ip")
        .args(["netns", "exec", &outside.ns, PYTHON, "-c"])
        .arg(
            "import socket\ns=socket.socket()\ns.bind(('0.0.0.0', 8099))\ns.listen(1)\n\
             print('listening', flush=True)\nc,a=s.accept()\nprint('peer=%s' % a[0], flush=True)",
        )
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut ext_out = tokio::io::BufReader::new(ext.stdout.take().unwrap()).lines();
    assert_eq!(
        ext_out.next_line().await.unwrap().as_deref(),
        Some("listening")
    );

    // Platform ports on every host address.
    let host = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = host.local_addr().unwrap().port();

    // A neighbour container listening on its own address.
    let (b, b_out) = f
        .start(
            "b",
            PYTHON,
            "import socket\nu=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             u.connect(('198.51.100.2', 9))\nprint(u.getsockname()[0], flush=True)\n\
             s=socket.socket()\ns.bind(('0.0.0.0', 8098))\ns.listen(1)\ns.accept()\n\
             print('neighbour reached', flush=True)",
            64,
        )
        .await;
    let mut b_lines = tokio::io::BufReader::new(b_out.stdout).lines();
    let b_ip = b_lines
        .next_line()
        .await
        .unwrap()
        .expect("neighbour address");

    let script = format!(
        r#"
import socket
def try_connect(key, host, port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((host, port))
        print('%s=yes' % key, flush=True)
    except OSError as e:
        print('%s=no %s' % (key, type(e).__name__), flush=True)
try_connect('outside', '198.51.100.2', 8099)
try_connect('gateway', '{gateway}', {port})
try_connect('host_addr', '198.51.100.1', {port})
try_connect('loopback', '127.0.0.1', {port})
try_connect('neighbour', '{b_ip}', 8098)
try_connect('metadata', '169.254.169.254', 80)
try_connect('denied', '198.51.100.3', 5432)
try_connect('refused', '198.51.100.2', 5432)
"#
    );
    let o = f.run("a", PYTHON, &script).await;
    o.ok();
    assert_eq!(o.get("outside"), "yes", "{o:#?}");
    for key in [
        "gateway",
        "host_addr",
        "loopback",
        "neighbour",
        "metadata",
        "denied",
    ] {
        assert!(o.get(key).starts_with("no "), "{key}: {o:#?}");
    }
    let peer = tokio::time::timeout(Duration::from_secs(5), ext_out.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer.as_deref(), Some("peer=198.51.100.1"), "masqueraded");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), host.accept())
            .await
            .is_err(),
        "the host listener saw a connection"
    );

    // A per-namespace override to `none` in an egress deployment: loopback only.
    let spec = f.spec("c", PYTHON, NONE_SCRIPT, 64);
    let (c, out) = f
        .factory
        .create_sandbox_with(&spec, NetworkPolicy::None)
        .await
        .unwrap();
    let (stdout, _) = read_all(out);
    assert_eq!(c.wait().await, Some(0));
    let text = stdout.await.unwrap();
    assert!(
        text.contains("ifaces=lo\n") && text.contains("outside=no"),
        "{text}"
    );
    c.destroy().await;

    b.destroy().await;
    f.factory.shutdown().await;
    // Nothing of the network plumbing is left.
    let links = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!links.contains(&bridge), "bridge left: {links}");
    assert!(
        !links.contains(&format!("bk{}", &bridge[5..11])),
        "veth left: {links}"
    );
    let tables = String::from_utf8(
        Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!tables.contains(&bridge[5..]), "nft tables left: {tables}");
    drop(outside);
}
