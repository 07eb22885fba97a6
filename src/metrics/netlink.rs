//! Netlink dumps the collector reads instead of walking files: one request returns every
//! existing socket (`sock_diag`) or every interface (`RTM_GETLINK`), where `/proc/net/tcp*`
//! walks the kernel's whole socket hash and `/sys/class/net` costs an open and a read per
//! attribute per interface.
//!
//! The parsing ([`messages`], [`attrs`], [`parse_link`]) is pure and tested on bytes; [`dump`]
//! is the only I/O. The kernel is the only peer (a netlink socket with port id 0), and every
//! read is still bounded: a receive timeout, a buffer that a truncated message is refused
//! rather than misread from, and a cap on the number of reads.

use nix::sys::socket::SockProtocol;

/// `NLM_F_REQUEST | NLM_F_DUMP`.
const REQUEST_DUMP: u16 = 0x1 | 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;
/// One read's buffer: the kernel fills dump replies to at most 32 KiB.
const BUF: usize = 64 * 1024;
/// Reads per dump at most (each up to [`BUF`]): far beyond any real host.
const MAX_READS: usize = 20_000;

/// One netlink message: its type and what follows the 16-byte header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Message<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

/// Splits one datagram into messages; None when a length field does not fit the datagram.
pub fn messages(buf: &[u8]) -> Option<Vec<Message<'_>>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + HEADER <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
        if len < HEADER || off + len > buf.len() {
            return None;
        }
        out.push(Message {
            kind,
            payload: &buf[off + HEADER..off + len],
        });
        off += (len + 3) & !3;
    }
    Some(out)
}

/// The route attributes (`rtattr`: u16 length, u16 type, value, padded to 4) in `buf`, as
/// (type without the nested/byte-order bits, value). Stops at the first malformed one.
pub fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & 0x3fff;
        if len < 4 || off + len > buf.len() {
            break;
        }
        out.push((kind, &buf[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// Why a dump gave no answer.
#[derive(Debug, PartialEq)]
pub enum DumpError {
    /// The socket could not be opened, written or read (or timed out).
    Io,
    /// The kernel answered with this errno (e.g. no IPv6 on the host).
    Kernel(i32),
    /// A reply did not parse, or did not end within the read bound.
    Malformed,
}

/// Sends one dump request (`kind`, `body` after the header) on a new `protocol` socket and
/// calls `each` with every reply message's type and payload until the kernel says done.
pub fn dump(
    protocol: SockProtocol,
    kind: u16,
    body: &[u8],
    mut each: impl FnMut(u16, &[u8]),
) -> Result<(), DumpError> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockType, recv, sendto, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        protocol,
    )
    .map_err(|_| DumpError::Io)?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(1, 0),
    )
    .map_err(|_| DumpError::Io)?;
    let len = u32::try_from(HEADER + body.len()).map_err(|_| DumpError::Malformed)?;
    let mut req = Vec::with_capacity(HEADER + body.len());
    req.extend(len.to_ne_bytes());
    req.extend(kind.to_ne_bytes());
    req.extend(REQUEST_DUMP.to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // sequence
    req.extend(0u32.to_ne_bytes()); // port id: the kernel assigns it
    req.extend(body);
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|_| DumpError::Io)?;
    let mut buf = vec![0u8; BUF];
    for _ in 0..MAX_READS {
        // MSG_TRUNC: the length of the datagram even when it did not fit, so a truncated
        // reply is refused instead of parsed short.
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC).map_err(|_| DumpError::Io)?;
        if n > buf.len() {
            return Err(DumpError::Malformed);
        }
        for m in messages(&buf[..n]).ok_or(DumpError::Malformed)? {
            match m.kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = m
                        .payload
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map(i32::from_ne_bytes)
                        .unwrap_or(0);
                    return Err(DumpError::Kernel(-errno));
                }
                k => each(k, m.payload),
            }
        }
    }
    Err(DumpError::Malformed)
}

/// What `RTM_NEWLINK` says about one interface (the figures node_exporter's netclass collector
/// reads from sysfs, under the same meanings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    pub index: i32,
    pub name: String,
    /// `ifi_flags` as netlink reports them (dev_get_flags: with IFF_RUNNING and
    /// IFF_LOWER_UP, which sysfs `flags` does not show).
    pub flags: u32,
    pub mtu: Option<u32>,
    /// IF_OPER_* (sysfs `operstate`'s index).
    pub operstate: u8,
    pub carrier: Option<u8>,
    pub carrier_changes: Option<u32>,
    /// `aa:bb:..` as sysfs prints them; "" when the device has no hardware address.
    pub address: String,
    pub broadcast: String,
    pub ifalias: String,
    pub rx_nohandler: Option<u64>,
}

/// sysfs `operstate` names, indexed by IF_OPER_*.
pub fn operstate_name(state: u8) -> &'static str {
    [
        "unknown",
        "notpresent",
        "down",
        "lowerlayerdown",
        "testing",
        "dormant",
        "up",
    ]
    .get(usize::from(state))
    .copied()
    .unwrap_or("unknown")
}

fn hex_colon(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn text(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// `RTM_NEWLINK`'s type.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK`'s type.
pub const RTM_GETLINK: u16 = 18;

/// One `RTM_NEWLINK` payload (ifinfomsg, then attributes); None when it is too short or has
/// no name.
pub fn parse_link(payload: &[u8]) -> Option<Link> {
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_BROADCAST: u16 = 2;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_MTU: u16 = 4;
    const IFLA_OPERSTATE: u16 = 16;
    const IFLA_IFALIAS: u16 = 20;
    const IFLA_STATS64: u16 = 23;
    const IFLA_CARRIER: u16 = 33;
    const IFLA_CARRIER_CHANGES: u16 = 35;
    // ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32.
    let head = payload.get(..16)?;
    let mut link = Link {
        index: i32::from_ne_bytes(head[4..8].try_into().ok()?),
        flags: u32::from_ne_bytes(head[8..12].try_into().ok()?),
        ..Link::default()
    };
    let u32_of = |v: &[u8]| {
        v.get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    for (kind, v) in attrs(&payload[16..]) {
        match kind {
            IFLA_IFNAME => link.name = text(v),
            IFLA_ADDRESS => link.address = hex_colon(v),
            IFLA_BROADCAST => link.broadcast = hex_colon(v),
            IFLA_MTU => link.mtu = u32_of(v),
            IFLA_OPERSTATE => link.operstate = v.first().copied().unwrap_or(0),
            IFLA_IFALIAS => link.ifalias = text(v),
            IFLA_CARRIER => link.carrier = v.first().copied(),
            IFLA_CARRIER_CHANGES => link.carrier_changes = u32_of(v),
            // rtnl_link_stats64: rx_nohandler is its 24th u64.
            IFLA_STATS64 => {
                link.rx_nohandler = v
                    .get(23 * 8..24 * 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_ne_bytes)
            }
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

/// Every interface of this network namespace, from one `RTM_GETLINK` dump.
pub fn links() -> Result<Vec<Link>, DumpError> {
    // ifinfomsg for AF_UNSPEC: every interface.
    let mut out = Vec::new();
    dump(
        SockProtocol::NetlinkRoute,
        RTM_GETLINK,
        &[0u8; 16],
        |kind, p| {
            if kind == RTM_NEWLINK
                && let Some(l) = parse_link(p)
            {
                out.push(l);
            }
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, v: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend(((4 + v.len()) as u16).to_ne_bytes());
        a.extend(kind.to_ne_bytes());
        a.extend(v);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn msg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(((16 + payload.len()) as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn messages_and_attributes_split_and_refuse_lengths_that_do_not_fit() {
        let mut buf = msg(16, &[1, 2, 3]);
        buf.extend(msg(NLMSG_DONE, &[0; 4]));
        let ms = messages(&buf).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].kind, 16);
        assert_eq!(ms[0].payload, &[1, 2, 3]);
        assert_eq!(ms[1].kind, NLMSG_DONE);
        // A length beyond the datagram, and one shorter than a header.
        let mut long = msg(16, &[0; 8]);
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(messages(&long), None);
        let mut short = msg(16, &[0; 8]);
        short[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(messages(&short), None);
        // Attributes: a nested bit is masked; a bad length ends the list.
        let mut a = attr(3 | 0x8000, b"eth0\0");
        a.extend(attr(4, &1500u32.to_ne_bytes()));
        a.extend([200, 0, 1, 0]);
        let got = attrs(&a);
        assert_eq!(
            got,
            vec![(3, &b"eth0\0"[..]), (4, &1500u32.to_ne_bytes()[..])]
        );
    }

    #[test]
    fn a_link_reads_as_sysfs_prints_it() {
        let mut p = Vec::new();
        p.extend([0u8, 0]);
        p.extend(1u16.to_ne_bytes());
        p.extend(7i32.to_ne_bytes());
        p.extend(0x11043u32.to_ne_bytes());
        p.extend(0u32.to_ne_bytes());
        p.extend(attr(3, b"veth1a2b\0"));
        p.extend(attr(1, &[0x02, 0x42, 0xac, 0x11, 0x00, 0x02]));
        p.extend(attr(2, &[0xff; 6]));
        p.extend(attr(4, &1500u32.to_ne_bytes()));
        p.extend(attr(16, &[6]));
        p.extend(attr(33, &[1]));
        p.extend(attr(35, &2u32.to_ne_bytes()));
        let mut stats = vec![0u8; 24 * 8];
        stats[23 * 8..].copy_from_slice(&9u64.to_ne_bytes());
        p.extend(attr(23, &stats));
        let l = parse_link(&p).unwrap();
        assert_eq!(
            l,
            Link {
                index: 7,
                name: "veth1a2b".into(),
                flags: 0x11043,
                mtu: Some(1500),
                operstate: 6,
                carrier: Some(1),
                carrier_changes: Some(2),
                address: "02:42:ac:11:00:02".into(),
                broadcast: "ff:ff:ff:ff:ff:ff".into(),
                ifalias: String::new(),
                rx_nohandler: Some(9),
            }
        );
        assert_eq!(operstate_name(l.operstate), "up");
        assert_eq!(operstate_name(200), "unknown");
        // Too short for an ifinfomsg, or nameless: nothing.
        assert_eq!(parse_link(&p[..10]), None);
        assert_eq!(parse_link(&p[..16]), None);
    }

    #[test]
    fn this_hosts_links_match_sysfs() {
        let links = links().expect("RTM_GETLINK dump");
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
        for l in &links {
            let sys = |f: &str| {
                std::fs::read_to_string(format!("/sys/class/net/{}/{f}", l.name))
                    .map(|s| s.trim().to_string())
            };
            let Ok(mtu) = sys("mtu") else { continue }; // gone since the dump
            assert_eq!(l.mtu.map(|m| m.to_string()), Some(mtu), "{}", l.name);
            assert_eq!(sys("address").unwrap_or_default(), l.address, "{}", l.name);
            assert_eq!(
                sys("operstate").unwrap_or_default(),
                operstate_name(l.operstate)
            );
            assert_eq!(sys("ifindex").unwrap_or_default(), l.index.to_string());
        }
    }
}
