//! A small synchronous rtnetlink client: the link, address and route requests that build the
//! egress bridge and wire each pooled namespace to it, sent from this process instead of
//! running `ip` (whose exec and dynamic linking cost ~2.5 ms of CPU each time).
//!
//! A netlink socket talks to the network namespace of the thread that opened it, wherever it is
//! used afterwards: the pool's thread opens one inside a new namespace, returns home, and
//! configures both sides from there.
//!
//! Messages are built and emitted with `netlink-packet-route`; replies are read at the buffer
//! level (acknowledgements and one link header), so attributes a newer kernel adds to its
//! replies can never fail a request that succeeded.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    ErrorBuffer, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
    NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkHeader, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// `RTM_NEWLINK`, the kernel's reply to `RTM_GETLINK`.
const RTM_NEWLINK: u16 = 16;
/// `NLMSGERR_ATTR_MSG`: the extended acknowledgement's human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Largest datagram the kernel sends us: a link's description with its statistics is a few
/// kilobytes.
const RECV_BUF: usize = 32 * 1024;

/// A route netlink socket bound to the network namespace it was opened in.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a socket to the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        fn step(what: &'static str) -> impl Fn(io::Error) -> io::Error {
            move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
        }
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(step("open a netlink socket"))?;
        socket.bind_auto().map_err(step("bind a netlink socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(step("connect a netlink socket to the kernel"))?;
        // Refusals carry the kernel's explanation (extended acknowledgements, Linux 4.12;
        // without them only that text is missing) and echo only the request's header.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            send_buf: Vec::new(),
            recv_buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Creates the bridge `name` (down, no address).
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("create bridge {name}"),
        )
        .map(drop)
    }

    /// Creates a veth pair: `name` here, a port of the bridge `master` (an ifindex), and its
    /// peer `peer_name` in the network namespace `peer_ns`. Both ends are down.
    pub fn add_veth(
        &mut self,
        name: &str,
        master: u32,
        peer_name: &str,
        peer_ns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(peer_name.to_owned()),
            LinkAttribute::NetNsFd(peer_ns.as_raw_fd()),
        ];
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Controller(master),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("create veth {name} (peer {peer_name} in the new namespace)"),
        )
        .map(drop)
    }

    /// Makes the bridge port `name` isolated (`IFLA_BRPORT_ISOLATED`): it exchanges traffic
    /// with the bridge's non-isolated ports (the bridge itself) only, never with another
    /// isolated port.
    pub fn set_bridge_port_isolated(&mut self, name: &str) -> io::Result<()> {
        // Port ("slave") options go in RTM_NEWLINK, as `ip link set … type bridge_slave`
        // sends them; the device must already be a port of the bridge.
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                    true,
                )])),
            ]),
        ];
        self.request(RouteNetlinkMessage::NewLink(link), 0, || {
            format!("make {name} an isolated bridge port")
        })
        .map(drop)
    }

    /// Sets the link `name` up.
    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        self.request(RouteNetlinkMessage::SetLink(link), 0, || {
            format!("set {name} up")
        })
        .map(drop)
    }

    /// Deletes the link `name` (a veth takes its peer along).
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        self.request(RouteNetlinkMessage::DelLink(link), 0, || {
            format!("delete {name}")
        })
        .map(drop)
    }

    /// The ifindex of the link `name`.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        let what = || format!("look up {name}");
        let reply = self.request(RouteNetlinkMessage::GetLink(link), 0, what)?;
        let header = reply
            .as_deref()
            .and_then(|payload| LinkHeader::parse(payload).ok())
            .ok_or_else(|| io::Error::other(format!("{}: no link in the reply", what())))?;
        Ok(header.index)
    }

    /// Adds `addr/prefix_len` to the link `index` (scope global, no broadcast: as `ip addr
    /// add` does).
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
        ];
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("add address {addr}/{prefix_len} to link {index}"),
        )
        .map(drop)
    }

    /// Adds the IPv4 default route via `gateway` to the main table (protocol `boot`, as `ip
    /// route add` does).
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("add default route via {gateway}"),
        )
        .map(drop)
    }

    /// Sends `msg` with `flags` and waits for the kernel's acknowledgement. Returns the payload
    /// of the reply that came before it, if any (`RTM_NEWLINK` for `RTM_GETLINK`). A refusal
    /// becomes an error saying `what` failed, with the errno and the kernel's message.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl Fn() -> String,
    ) -> io::Result<Option<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        header.message_type = msg.message_type();
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        self.send_buf.clear();
        self.send_buf.resize(packet.buffer_len(), 0);
        packet.serialize(&mut self.send_buf);
        self.socket
            .send(&self.send_buf, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: send: {e}", what())))?;

        let mut reply = None;
        loop {
            self.recv_buf.clear();
            // With MSG_TRUNC the length is the datagram's, even when it did not fit.
            let len = self
                .socket
                .recv(&mut self.recv_buf, libc::MSG_TRUNC)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: receive: {e}", what())))?;
            if len > self.recv_buf.len() {
                return Err(io::Error::other(format!(
                    "{}: a reply of {len} bytes did not fit the buffer",
                    what()
                )));
            }
            let mut rest = &self.recv_buf[..];
            while !rest.is_empty() {
                let frame = NetlinkBuffer::new_checked(rest).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: malformed reply: {e}", what()),
                    )
                })?;
                let frame_len = frame.length() as usize;
                if frame.sequence_number() == seq {
                    match frame.message_type() {
                        NLMSG_ERROR => {
                            return match acknowledgement(frame.payload(), frame.flags()) {
                                Ok(()) => Ok(reply),
                                Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", what()))),
                            };
                        }
                        RTM_NEWLINK => reply = Some(frame.payload().to_vec()),
                        _ => {}
                    }
                }
                // Netlink messages are 4-byte aligned within a datagram.
                rest = rest
                    .get(frame_len.next_multiple_of(4)..)
                    .unwrap_or_default();
            }
        }
    }
}

/// Reads an `NLMSG_ERROR` payload: `Ok` for an acknowledgement, else the errno with the
/// kernel's extended-acknowledgement message when it sent one.
fn acknowledgement(payload: &[u8], flags: u16) -> io::Result<()> {
    let err = ErrorBuffer::new_checked(payload).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed acknowledgement: {e}"),
        )
    })?;
    let Some(code) = err.code() else {
        return Ok(());
    };
    let errno = io::Error::from_raw_os_error(-code.get());
    let message = (flags & NLM_F_ACK_TLVS != 0)
        .then(|| {
            // The request's header (or the whole request unless capped), then attributes.
            let echoed = err.payload();
            let skip = if flags & NLM_F_CAPPED != 0 {
                16
            } else {
                let len = echoed.get(..4)?;
                u32::from_ne_bytes(len.try_into().ok()?) as usize
            };
            let tlvs = echoed.get(skip.next_multiple_of(4)..)?;
            NlasIterator::new(tlvs).flatten().find_map(|nla| {
                (nla.kind() == NLMSGERR_ATTR_MSG).then(|| {
                    let text = nla.value().split(|&b| b == 0).next().unwrap_or_default();
                    String::from_utf8_lossy(text).into_owned()
                })
            })
        })
        .flatten()
        .filter(|m| !m.is_empty());
    Err(match message {
        Some(m) => io::Error::new(errno.kind(), format!("{errno} ({m})")),
        None => errno,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `NLMSG_ERROR` payload: the code, the capped request header, then attributes.
    fn error_payload(code: i32, tlvs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = code.to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 16]);
        p[4..8].copy_from_slice(&16u32.to_ne_bytes());
        for (kind, value) in tlvs {
            let len = 4 + value.len();
            p.extend_from_slice(&(len as u16).to_ne_bytes());
            p.extend_from_slice(&kind.to_ne_bytes());
            p.extend_from_slice(value);
            p.resize(p.len().next_multiple_of(4), 0);
        }
        p
    }

    #[test]
    fn acknowledgements_carry_the_errno_and_the_kernels_message() {
        let check = |code: i32, tlvs: &[(u16, &[u8])], flags: u16, expected: Option<&str>| {
            let got = acknowledgement(&error_payload(code, tlvs), flags);
            assert_eq!(got.err().map(|e| e.to_string()).as_deref(), expected);
        };
        let capped = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        check(0, &[], 0, None);
        check(-19, &[], 0, Some("No such device (os error 19)"));
        check(
            -22,
            &[(NLMSGERR_ATTR_MSG, b"Nexthop has invalid gateway\0")],
            capped,
            Some("Invalid argument (os error 22) (Nexthop has invalid gateway)"),
        );
        // Other attributes (the offending attribute's offset) are skipped.
        check(
            -17,
            &[(2, &4u32.to_ne_bytes()), (NLMSGERR_ATTR_MSG, b"in use\0")],
            capped,
            Some("File exists (os error 17) (in use)"),
        );
        // Without NLM_F_ACK_TLVS there are no attributes to read.
        check(
            -22,
            &[(NLMSGERR_ATTR_MSG, b"ignored\0")],
            NLM_F_CAPPED,
            Some("Invalid argument (os error 22)"),
        );
    }

    /// Needs CAP_NET_ADMIN, as every sandbox test; changes nothing on the host.
    #[test]
    fn a_refused_request_names_the_step_and_the_errno() {
        let mut nl = Rtnl::open().expect("open a netlink socket");
        let e = nl.set_up("bk-no-such").unwrap_err();
        assert!(e.to_string().starts_with("set bk-no-such up: "), "{e}");
        assert!(e.to_string().contains("(os error 19)"), "{e}");
        let e = nl.link_index("bk-no-such").unwrap_err();
        assert!(e.to_string().starts_with("look up bk-no-such: "), "{e}");
        // The socket still works after a refusal.
        assert_eq!(nl.link_index("lo").unwrap(), 1);
    }
}
