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
//! Set up with the `ip` and `nft` commands once per factory and once per pooled namespace (off
//! the cold path). Requires `ip_forward`, which the factory turns on.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// Host-side plumbing shared by every egress namespace of one factory.
#[derive(Debug)]
pub struct Egress {
    /// Bridge device (`brisk<hash>`), also the suffix of the nftables tables.
    bridge: String,
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
            let package = if program == "nft" {
                "nftables"
            } else {
                "iproute2"
            };
            std::io::Error::new(
                e.kind(),
                format!(
                    "`{program}` is not installed: install the {package} package \
                     (apt-get install {package}) or run containers without network \
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
        let eg = Self {
            bridge: format!("brisk{}", &tag[..8]),
            octet: 128 + (h % 64) as u8,
            tag,
            next_host: AtomicU32::new(2),
        };
        eg.teardown();
        let fail = |e: std::io::Error| Error::Egress(e.to_string());
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| Error::Egress(format!("enable ip_forward: {e}")))?;
        let (br, o) = (&eg.bridge, eg.octet);
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "link add {br} type bridge\naddr add 10.{o}.0.1/16 dev {br}\nlink set {br} up\n"
            )),
        )
        .map_err(fail)?;
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
    pub fn gateway(&self) -> String {
        format!("10.{}.0.1", self.octet)
    }

    /// Connects the namespace the calling thread is in (whose descriptor is `_ns`) to the
    /// bridge; the thread must be able to return home to run the host-side half, which
    /// [`Egress::attach_host_side`] does.
    pub fn wire(&self, _ns: &OwnedFd) -> std::io::Result<String> {
        let n = self.next_host.fetch_add(1, Ordering::Relaxed) % 65_000 + 2;
        let ip = format!("10.{}.{}.{}", self.octet, n / 254, n % 254 + 1);
        let host_dev = format!("bk{}{:x}", &self.tag[..6], n);
        let script = format!(
            "link add eth0 type veth peer name {host_dev} netns {pid}\n\
             addr add {ip}/16 dev eth0\n\
             link set eth0 up\n\
             route add default via {gw}\n",
            pid = std::process::id(),
            gw = self.gateway(),
        );
        run("ip", &["-batch", "-"], Some(&script))?;
        Ok(host_dev)
    }

    /// Host half of [`Egress::wire`]: enslaves the host end to the bridge as an isolated port.
    pub fn attach_host_side(&self, host_dev: &str) -> std::io::Result<()> {
        let br = &self.bridge;
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "link set {host_dev} master {br}\n\
                 link set dev {host_dev} type bridge_slave isolated on\n\
                 link set {host_dev} up\n"
            )),
        )
    }

    /// Removes the rules, the bridge and every host-side veth of this factory (they would die
    /// with their namespaces, but the kernel frees namespaces asynchronously). Idempotent.
    pub fn teardown(&self) {
        let t = &self.tag;
        let prefix = format!("bk{}", &t[..6]);
        if let Ok(devs) = std::fs::read_dir("/sys/class/net") {
            for d in devs.flatten() {
                let name = d.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    let _ = run("ip", &["link", "del", &name], None);
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
        let _ = run("ip", &["link", "del", &self.bridge], None);
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
