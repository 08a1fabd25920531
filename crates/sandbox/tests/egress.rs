//! The `egress` policy: outbound connections leave through NAT, while the host (any of its
//! addresses, so every platform port), its loopback services, link-local metadata addresses
//! and other containers stay unreachable.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brisk_invoker::Container;
use brisk_sandbox::{Netns, NetworkPolicy, SandboxFactory};
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

fn nft_missing() -> bool {
    let missing = Command::new("nft").arg("--version").output().is_err();
    if missing {
        eprintln!("SKIP: the nft command (Debian package nftables) is not installed");
    }
    missing
}

/// `ip -j …` run in the network namespace `ns`, parsed.
fn ip_in(ns: &Netns, args: &[&str]) -> serde_json::Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.proc_path()))
        .args(["ip", "-j"])
        .args(args)
        .output()
        .expect("run nsenter ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("ip -j output")
}

fn sys_net(dev: &str, file: &str) -> String {
    let path = Path::new("/sys/class/net").join(dev).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn has_flag(link: &serde_json::Value, flag: &str) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == flag))
}

/// What every egress namespace gets: `eth0` up with its address of the bridge's /16 (`n`, the
/// host end's suffix, gives `10.X.n/254.n%254+1`) and a default route via the bridge, loopback
/// up; on the host, `bk<tag><n>` up as an isolated port of the bridge.
#[test]
fn egress_namespaces_are_wired_to_isolated_bridge_ports() {
    if nft_missing() {
        return;
    }
    let instance = format!("t{}-wiring", std::process::id());
    let mut cfg = config(&instance);
    cfg.egress_available = true;
    // Only the namespaces made here, none from the pools' threads.
    cfg.netns_pool = 0;
    let factory = SandboxFactory::new(cfg).expect("egress factory");
    let gateway: Ipv4Addr = factory.egress_gateway().unwrap().parse().unwrap();
    let bridge = factory.egress_bridge().unwrap();

    // The bridge: up, with the gateway address.
    assert_eq!(
        u32::from_str_radix(sys_net(&bridge, "flags").trim_start_matches("0x"), 16).unwrap() & 1,
        1,
        "bridge up"
    );
    let out = Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", &bridge])
        .output()
        .unwrap();
    let addrs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let addr = &addrs[0]["addr_info"][0];
    assert_eq!(addr["local"], gateway.to_string(), "{addrs}");
    assert_eq!(addr["prefixlen"], 16, "{addrs}");

    let namespaces: Vec<Netns> = (0..2)
        .map(|_| factory.create_netns(NetworkPolicy::Egress).unwrap())
        .collect();
    let mut seen = Vec::new();
    for ns in &namespaces {
        let dev = ns.host_device().expect("host end of the veth");
        assert!(dev.starts_with(&format!("bk{}", &bridge[5..11])), "{dev}");
        let n = u32::from_str_radix(&dev[8..], 16).unwrap();
        let [_, octet, ..] = gateway.octets();
        let expected = Ipv4Addr::new(10, octet, (n / 254) as u8, (n % 254 + 1) as u8);

        // Host end: a port of this bridge, isolated, up, with carrier (its peer is up too).
        let master = std::fs::read_link(Path::new("/sys/class/net").join(dev).join("master"))
            .expect("host end has a master");
        assert_eq!(master.file_name().unwrap().to_str(), Some(bridge.as_str()));
        assert_eq!(sys_net(dev, "brport/isolated"), "1", "{dev} isolated");
        let flags = u32::from_str_radix(sys_net(dev, "flags").trim_start_matches("0x"), 16);
        assert_eq!(flags.unwrap() & 1, 1, "{dev} up");
        assert_eq!(sys_net(dev, "carrier"), "1", "{dev} carrier");

        // Inside: lo and eth0, both up; eth0's address; the default route.
        let links = ip_in(ns, &["link", "show"]);
        let names: Vec<&str> = links
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .collect();
        assert_eq!(names, ["lo", "eth0"], "{links}");
        for link in links.as_array().unwrap() {
            assert!(has_flag(link, "UP") && has_flag(link, "LOWER_UP"), "{link}");
        }
        let addrs = ip_in(ns, &["-4", "addr", "show", "dev", "eth0"]);
        let info = addrs[0]["addr_info"].as_array().unwrap();
        assert_eq!(info.len(), 1, "{addrs}");
        assert_eq!(info[0]["local"], expected.to_string(), "{addrs}");
        assert_eq!(info[0]["prefixlen"], 16, "{addrs}");
        assert_eq!(info[0]["scope"], "global", "{addrs}");
        let routes = ip_in(ns, &["-4", "route", "show", "default"]);
        assert_eq!(routes.as_array().map(Vec::len), Some(1), "{routes}");
        assert_eq!(routes[0]["gateway"], gateway.to_string(), "{routes}");
        assert_eq!(routes[0]["dev"], "eth0", "{routes}");
        seen.push(expected);
    }
    assert_ne!(seen[0], seen[1], "each namespace gets its own address");

    // Layer 2: from the first namespace, the gateway answers ARP but the second namespace,
    // behind another isolated port, never hears the question. (The firewall drops IP traffic
    // between containers too, so only ARP shows whether the ports are isolated.)
    let script = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for ip in ('{gateway}', '{}'):\n    s.sendto(b'x', (ip, 9))\ntime.sleep(0.3)\n",
        seen[1]
    );
    let ok = Command::new("nsenter")
        .arg(format!("--net={}", namespaces[0].proc_path()))
        .args([PYTHON, "-c", &script])
        .status()
        .unwrap()
        .success();
    assert!(ok, "send from the first namespace");
    let neighbours = ip_in(&namespaces[0], &["-4", "neigh", "show", "dev", "eth0"]);
    let lladdr = |ip: Ipv4Addr| {
        neighbours
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["dst"] == ip.to_string())
            .and_then(|n| n["lladdr"].as_str())
            .map(str::to_owned)
    };
    assert!(lladdr(gateway).is_some(), "gateway resolved: {neighbours}");
    assert_eq!(lladdr(seen[1]), None, "neighbour resolved: {neighbours}");

    drop(namespaces);
    drop(factory);
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge left after shutdown"
    );
}

#[tokio::test]
async fn egress_reaches_outside_but_not_host_or_neighbours() {
    if nft_missing() {
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
