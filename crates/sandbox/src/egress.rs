//! The `egress` network policy: a host bridge, one veth per pooled namespace (the container
//! side is `eth0`), masquerading of outbound traffic, and nftables rules that keep the host and
//! other containers unreachable.
//!
//! * Host: everything arriving from the bridge for a local address (the bridge address, the
//!   machine's own addresses, hence every platform port) is dropped in the `input` hook, except
//!   replies to connections the host opened. A container's `127.0.0.1` is its own loopback.
//! * Other containers: the veths are isolated bridge ports, so containers cannot talk to each
//!   other at layer 2; forwarding into the bridge only lets replies through.
//! * Link-local addresses (cloud metadata services) are dropped.
//!
//! Devices, addresses and routes are made with rtnetlink requests from this process
//! ([`crate::rtnl`]); the firewall with the `nft` command, once per factory. Requires
//! `ip_forward`, which the factory turns on.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::rtnl::Rtnl;

/// Prefix length of the bridge's network, `10.X.0.0/16`.
const PREFIX_LEN: u8 = 16;

/// Host-side plumbing shared by every egress namespace of one factory.
#[derive(Debug)]
pub struct Egress {
    /// Bridge device (`brisk<hash>`), also the suffix of the nftables tables.
    bridge: String,
    /// The bridge's ifindex (the master of every host-side veth).
    bridge_index: u32,
    /// Second octet of the factory's `10.X.0.0/16`.
    octet: u8,
    tag: String,
    next_host: AtomicU32,
}

/// FNV-1a: a short stable tag per instance, for device and table names.
fn tag_of(instance: &str) -> u32 {
    instance.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<()> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            std::io::Error::new(
                e.kind(),
                format!(
                    "`{program}` is not installed: install the nftables package \
                     (apt-get install nftables) or run containers without network \
                     (brisk serve --network none)"
                ),
            )
        } else {
            e
        }
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Egress {
    /// Removes what a previous run of `instance` left, then creates the bridge and the rules.
    pub fn setup(instance: &str, deny: &[String]) -> Result<Self> {
        for cidr in deny {
            let ok = cidr.split_once('/').map_or(
                cidr.parse::<std::net::Ipv4Addr>().is_ok(),
                |(a, p)| {
                    a.parse::<std::net::Ipv4Addr>().is_ok()
                        && p.parse::<u8>().is_ok_and(|p| p <= 32)
                },
            );
            if !ok {
                return Err(Error::Config(format!(
                    "egress_deny entry `{cidr}` is not an IPv4 CIDR"
                )));
            }
        }
        let h = tag_of(instance);
        let tag = format!("{:08x}", h);
        let mut eg = Self {
            bridge: format!("brisk{}", &tag[..8]),
            bridge_index: 0,
            octet: 128 + (h % 64) as u8,
            tag,
            next_host: AtomicU32::new(2),
        };
        eg.teardown();
        let fail = |e: std::io::Error| Error::Egress(e.to_string());
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| Error::Egress(format!("enable ip_forward: {e}")))?;
        let made = (|| {
            let mut nl = Rtnl::open()?;
            nl.add_bridge(&eg.bridge)?;
            let index = nl.link_index(&eg.bridge)?;
            nl.add_address(index, eg.gateway(), PREFIX_LEN)?;
            nl.set_up(&eg.bridge)?;
            Ok(index)
        })();
        eg.bridge_index = match made {
            Ok(index) => index,
            Err(e) => {
                eg.teardown();
                return Err(fail(e));
            }
        };
        let (br, o) = (&eg.bridge, eg.octet);
        let t = &eg.tag;
        let extra: String = deny
            .iter()
            .map(|cidr| format!("    iifname \"{br}\" ip daddr {cidr} drop\n"))
            .collect();
        let rules = format!(
            r#"table inet brisk_{t} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname "{br}" ct state established,related accept
    iifname "{br}" drop
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    oifname "{br}" ct state established,related accept
    oifname "{br}" drop
    iifname "{br}" ip daddr 169.254.0.0/16 drop
    iifname "{br}" ip daddr 127.0.0.0/8 drop
{extra}  }}
}}
table ip brisk_nat_{t} {{
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr 10.{o}.0.0/16 oifname != "{br}" masquerade
  }}
}}
"#
        );
        if let Err(e) = run("nft", &["-f", "-"], Some(&rules)) {
            eg.teardown();
            return Err(fail(e));
        }
        Ok(eg)
    }

    /// Gateway (bridge) address, as seen from containers.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 0, 1)
    }

    /// Wires the namespace `ns` to the bridge: a veth pair, `eth0` inside with the next
    /// address of `10.X.0.0/16`, up, and a default route via the bridge; `bk<tag><n>` on the
    /// host, an isolated port of the bridge, up. `inside` must be a socket opened in `ns`; the
    /// calling thread must be in the host's namespace. Returns the host end's name; on failure
    /// the pair is deleted again.
    pub fn wire(&self, ns: &OwnedFd, inside: &mut Rtnl) -> std::io::Result<String> {
        let n = self.next_host.fetch_add(1, Ordering::Relaxed) % 65_000 + 2;
        let ip = Ipv4Addr::new(10, self.octet, (n / 254) as u8, (n % 254 + 1) as u8);
        let host_dev = format!("bk{}{:x}", &self.tag[..6], n);
        let mut host = Rtnl::open()?;
        // Enslaved at creation, made isolated, and only then up, so the port never forwards
        // between containers.
        host.add_veth(&host_dev, self.bridge_index, "eth0", ns.as_fd())?;
        let rest = (|| {
            host.set_bridge_port_isolated(&host_dev)?;
            host.set_up(&host_dev)?;
            let eth0 = inside.link_index("eth0")?;
            inside.add_address(eth0, ip, PREFIX_LEN)?;
            inside.set_up("eth0")?;
            inside.add_default_route(self.gateway())
        })();
        match rest {
            Ok(()) => Ok(host_dev),
            Err(e) => {
                // The pair would go with the namespace, but the kernel frees namespaces
                // later; meanwhile the host end would sit on the bridge.
                let _ = host.delete_link(&host_dev);
                Err(e)
            }
        }
    }

    /// Removes the rules, the bridge and every host-side veth of this factory (they would die
    /// with their namespaces, but the kernel frees namespaces asynchronously). Idempotent.
    pub fn teardown(&self) {
        let t = &self.tag;
        let prefix = format!("bk{}", &t[..6]);
        let mut nl = Rtnl::open().ok();
        if let (Some(nl), Ok(devs)) = (&mut nl, std::fs::read_dir("/sys/class/net")) {
            for d in devs.flatten() {
                let name = d.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    let _ = nl.delete_link(&name);
                }
            }
        }
        let _ = run(
            "nft",
            &["delete", "table", "inet", &format!("brisk_{t}")],
            None,
        );
        let _ = run(
            "nft",
            &["delete", "table", "ip", &format!("brisk_nat_{t}")],
            None,
        );
        if let Some(nl) = &mut nl {
            let _ = nl.delete_link(&self.bridge);
        }
    }

    /// The bridge device's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_tool_names_the_package_to_install() {
        let e = super::run("nft-that-does-not-exist", &[], None).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("is not installed"), "{e}");
        assert!(e.to_string().contains("--network none"), "{e}");
    }

    use super::*;

    #[test]
    fn names_fit_interface_limits() {
        let h = tag_of("default");
        assert_eq!(h, tag_of("default"));
        assert_ne!(h, tag_of("other"));
        let tag = format!("{h:08x}");
        assert!(format!("brisk{tag}").len() <= 15);
        assert!(format!("bk{}{:x}", &tag[..6], 65_001).len() <= 15);
    }
}
