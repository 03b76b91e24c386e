//! Decoding captured frames with etherparse into the fields the JSON
//! contract names, a `tcpdump -n`-style summary, and a key that identifies
//! one packet across the hops it takes (see [`Decoded::hop_key`]).
//!
//! Captures are usually truncated (`--snaplen`), so lengths come from the
//! headers, never from the number of bytes captured.

use std::{
    fmt::Write as _,
    hash::{Hash, Hasher},
    net::IpAddr,
};

use etherparse::{
    LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice, err::Layer,
};

use crate::tc::flowkey::proto_name;

/// Ethernet types tcpdump names.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// Whether `frame` starts with an Ethernet header. TC programs on L3
/// devices (tun, wireguard, ipip) see the IP header first; `protocol` is
/// `skb->protocol`, which an Ethernet frame repeats at bytes 12..14.
pub fn starts_with_ethernet(frame: &[u8], protocol: u16) -> bool {
    if frame.len() < 14 {
        return !matches!(frame.first().map(|b| b >> 4), Some(4 | 6));
    }
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    if et == protocol || et == ETH_P_8021Q || et == ETH_P_8021AD {
        return true;
    }
    let version = frame[0] >> 4;
    !((version == 4 && protocol == ETH_P_IP) || (version == 6 && protocol == ETH_P_IPV6))
}

/// Puts an offloaded VLAN tag back after the MAC addresses, as libpcap does
/// from the packet socket's auxdata, so decoders and pcapng readers see it.
pub fn reinsert_vlan(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(frame.len() + 4);
    let split = frame.len().min(12);
    v.extend_from_slice(&frame[..split]);
    v.extend_from_slice(&tpid.to_be_bytes());
    v.extend_from_slice(&tci.to_be_bytes());
    v.extend_from_slice(&frame[split..]);
    v
}

/// Gives a raw IP packet a zeroed Ethernet header, so that every interface
/// of a pcapng file has the same link type (libpcap insists on it).
pub fn fake_ethernet(packet: &[u8]) -> Vec<u8> {
    let et = if packet.first().map(|b| b >> 4) == Some(6) { ETH_P_IPV6 } else { ETH_P_IP };
    let mut v = Vec::with_capacity(packet.len() + 14);
    v.extend_from_slice(&[0; 12]);
    v.extend_from_slice(&et.to_be_bytes());
    v.extend_from_slice(packet);
    v
}

/// TCP flag bits, as in the header's 13th byte (plus NS is left out).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
    pub const NAMES: [(u8, &str); 8] =
        [(FIN, "fin"), (SYN, "syn"), (RST, "rst"), (PSH, "psh"), (ACK, "ack"), (URG, "urg"), (ECE, "ece"), (CWR, "cwr")];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub ty: u8,
    pub code: u8,
    /// Identifier and sequence number of echo requests and replies.
    pub echo: Option<(u16, u16)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub target_mac: [u8; 6],
}

/// What one frame says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub eth_src: Option<[u8; 6]>,
    pub eth_dst: Option<[u8; 6]>,
    /// EtherType after the VLAN tags.
    pub ethertype: Option<u16>,
    pub vlan: Option<u16>,
    /// For IP packets the IP addresses; for ARP the sender and target
    /// protocol addresses.
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IPv4 protocol or IPv6 next header (after extension headers).
    pub proto: Option<u8>,
    pub ttl: Option<u8>,
    pub ip_id: Option<u16>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp: Option<Tcp>,
    pub icmp: Option<Icmp>,
    pub arp: Option<Arp>,
    /// Length of the IP payload (from the IP header).
    pub ip_payload_len: Option<u32>,
    /// Length of the transport payload (from the headers).
    pub payload_len: Option<u32>,
    /// A hash of what stays the same while one packet crosses veths and
    /// bridges (see [`decode`]); 0 when nothing was decoded.
    pub hop_key: u64,
}

impl Decoded {
    /// `"ipv4"`, `"ipv6"`, `"arp"`, or the EtherType in hex.
    pub fn l3(&self) -> Option<String> {
        Some(match self.ethertype? {
            ETH_P_IP => "ipv4".into(),
            ETH_P_IPV6 => "ipv6".into(),
            0x0806 => "arp".into(),
            et => format!("0x{et:04x}"),
        })
    }

    /// The IP protocol in lower case (`"tcp"`, `"udp"`, `"icmp"`, `"icmp6"`...).
    pub fn proto_name(&self) -> Option<String> {
        self.proto.map(proto_name)
    }

    pub fn tcp_flag_names(&self) -> Option<Vec<&'static str>> {
        let t = self.tcp?;
        Some(tcp_flags::NAMES.iter().filter(|(b, _)| t.flags & b != 0).map(|(_, n)| *n).collect())
    }
}

/// Decodes a frame (`ethernet`: it starts with an Ethernet header, else with IP).
pub fn decode(frame: &[u8], ethernet: bool) -> Decoded {
    let mut d = Decoded::default();
    let parsed = if ethernet {
        match LaxSlicedPacket::from_ethernet(frame) {
            Ok(p) => p,
            Err(_) => return d,
        }
    } else {
        match LaxSlicedPacket::from_ip(frame) {
            Ok(p) => p,
            Err(_) => return d,
        }
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Some(LinkSlice::Ethernet2(e)) = &parsed.link {
        d.eth_src = Some(e.source());
        d.eth_dst = Some(e.destination());
        d.ethertype = Some(e.ether_type().0);
    }
    if let Some(v) = parsed.vlan_ids().first() {
        d.vlan = Some(v.value());
    }
    // After the tags, the EtherType is the one of the innermost header.
    for ext in &parsed.link_exts {
        if let etherparse::LaxLinkExtSlice::Vlan(v) = ext {
            d.ethertype = Some(v.ether_type().0);
        }
    }
    let mut l4: Option<&[u8]> = None;
    match &parsed.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            d.ethertype.get_or_insert(ETH_P_IP);
            d.src = Some(IpAddr::from(h.source_addr()));
            d.dst = Some(IpAddr::from(h.destination_addr()));
            d.proto = Some(ip.payload_ip_number().0);
            d.ttl = Some(h.ttl());
            d.ip_id = Some(h.identification());
            d.ip_payload_len = Some(u32::from(h.total_len()).saturating_sub(u32::from(h.ihl()) * 4));
            // TTL and checksum change when routed; the rest does not.
            (4u8, h.source(), h.destination(), h.protocol().0, h.identification(), h.total_len()).hash(&mut hasher);
            (h.fragments_offset().value(), h.more_fragments()).hash(&mut hasher);
            l4 = Some(ip.payload().payload);
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            d.ethertype.get_or_insert(ETH_P_IPV6);
            d.src = Some(IpAddr::from(h.source_addr()));
            d.dst = Some(IpAddr::from(h.destination_addr()));
            let payload = ip.payload();
            d.proto = Some(payload.ip_number.0);
            d.ttl = Some(h.hop_limit());
            // Extension headers count as payload in the IPv6 header.
            let ext_len = (h.payload_length() as usize).saturating_sub(payload.payload.len());
            let ext_len = if payload.incomplete { ip.extensions().slice().len() } else { ext_len };
            d.ip_payload_len = Some(u32::from(h.payload_length()).saturating_sub(ext_len as u32));
            (6u8, h.source(), h.destination(), payload.ip_number.0, h.payload_length(), h.flow_label().value()).hash(&mut hasher);
            l4 = Some(payload.payload);
        }
        Some(LaxNetSlice::Arp(a)) => {
            d.ethertype.get_or_insert(0x0806);
            let p = a.to_packet();
            if let Ok(e) = p.try_eth_ipv4() {
                d.src = Some(IpAddr::from(e.sender_ipv4_addr()));
                d.dst = Some(IpAddr::from(e.target_ipv4_addr()));
                d.arp = Some(Arp { op: e.operation.0, sender_mac: e.sender_mac, target_mac: e.target_mac });
            }
            a.slice().hash(&mut hasher);
        }
        None => {
            // Something else entirely: the frame after the link header is all we have.
            if let Some(LinkSlice::Ethernet2(e)) = &parsed.link {
                e.payload_slice().hash(&mut hasher);
            }
        }
    }
    match &parsed.transport {
        Some(TransportSlice::Tcp(t)) => {
            d.sport = Some(t.source_port());
            d.dport = Some(t.destination_port());
            let flags = t.header_slice()[13];
            d.tcp = Some(Tcp { flags, seq: t.sequence_number(), ack: t.acknowledgment_number(), win: t.window_size() });
            d.payload_len = d.ip_payload_len.map(|n| n.saturating_sub(t.header_slice().len() as u32));
            (t.source_port(), t.destination_port(), t.sequence_number(), t.acknowledgment_number(), flags).hash(&mut hasher);
            t.payload()[..t.payload().len().min(32)].hash(&mut hasher);
        }
        Some(TransportSlice::Udp(u)) => {
            d.sport = Some(u.source_port());
            d.dport = Some(u.destination_port());
            d.payload_len = Some(u32::from(u.length()).saturating_sub(8));
            (u.source_port(), u.destination_port(), u.length()).hash(&mut hasher);
            // The checksum is only partial on veths (offload), so the
            // payload tells packets of one flow apart.
            u.payload()[..u.payload().len().min(32)].hash(&mut hasher);
        }
        Some(TransportSlice::Icmpv4(i)) => {
            d.icmp = Some(icmp(i.type_u8(), i.code_u8(), i.bytes5to8(), matches!(i.type_u8(), 0 | 8)));
            i.slice()[..i.slice().len().min(40)].hash(&mut hasher);
        }
        Some(TransportSlice::Icmpv6(i)) => {
            d.icmp = Some(icmp(i.type_u8(), i.code_u8(), i.bytes5to8(), matches!(i.type_u8(), 128 | 129)));
            i.slice()[..i.slice().len().min(40)].hash(&mut hasher);
        }
        Some(TransportSlice::Igmp(_)) | None => {
            if let Some(p) = l4 {
                p[..p.len().min(40)].hash(&mut hasher);
            }
        }
    }
    // A truncated header stops the parse; keep what came before it.
    if let Some((_, Layer::TcpHeader | Layer::UdpHeader)) = &parsed.stop_err
        && let Some(p) = l4
    {
        p.hash(&mut hasher);
    }
    if d.ethertype.is_some() {
        d.hop_key = hasher.finish().max(1);
    }
    d
}

fn icmp(ty: u8, code: u8, rest: [u8; 4], echo: bool) -> Icmp {
    let echo = echo.then(|| (u16::from_be_bytes([rest[0], rest[1]]), u16::from_be_bytes([rest[2], rest[3]])));
    Icmp { ty, code, echo }
}

fn mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub fn mac_string(m: &[u8; 6]) -> String {
    mac(m)
}

fn icmp4_name(ty: u8, code: u8) -> String {
    match (ty, code) {
        (0, _) => "echo reply".into(),
        (3, 0) => "net unreachable".into(),
        (3, 1) => "host unreachable".into(),
        (3, 2) => "protocol unreachable".into(),
        (3, 3) => "port unreachable".into(),
        (3, 4) => "need to frag".into(),
        (3, c) => format!("unreachable code {c}"),
        (5, _) => "redirect".into(),
        (8, _) => "echo request".into(),
        (11, 0) => "time exceeded in-transit".into(),
        (11, _) => "time exceeded".into(),
        (12, _) => "parameter problem".into(),
        (t, c) => format!("type {t}, code {c}"),
    }
}

fn icmp6_name(ty: u8, code: u8) -> String {
    match (ty, code) {
        (1, _) => "destination unreachable".into(),
        (2, _) => "packet too big".into(),
        (3, _) => "time exceeded in-transit".into(),
        (4, _) => "parameter problem".into(),
        (128, _) => "echo request".into(),
        (129, _) => "echo reply".into(),
        (133, _) => "router solicitation".into(),
        (134, _) => "router advertisement".into(),
        (135, _) => "neighbor solicitation".into(),
        (136, _) => "neighbor advertisement".into(),
        (143, _) => "multicast listener report v2".into(),
        (t, c) => format!("type {t}, code {c}"),
    }
}

fn tcp_flag_string(f: u8) -> String {
    use tcp_flags::*;
    let mut s = String::new();
    for (bit, c) in [(SYN, 'S'), (FIN, 'F'), (PSH, 'P'), (RST, 'R'), (URG, 'U'), (ECE, 'E'), (CWR, 'W')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & ACK != 0 {
        s.push('.');
    }
    if s.is_empty() { "none".into() } else { s }
}

/// The part of a `tcpdump -n` line after the interface: `IP 10.0.0.1.5000 >
/// 10.0.0.2.53: UDP, length 12`. `len` is the frame length, for frames
/// nothing was decoded of.
pub fn summary(d: &Decoded, len: u32) -> String {
    let mut s = String::new();
    if let Some(v) = d.vlan {
        let _ = write!(s, "vlan {v}, ");
    }
    let Some(et) = d.ethertype else {
        let _ = write!(s, "unknown frame, length {len}");
        return s;
    };
    let endpoint = |a: Option<IpAddr>, p: Option<u16>| match (a, p) {
        (Some(a), Some(p)) => format!("{a}.{p}"),
        (Some(a), None) => a.to_string(),
        _ => "?".into(),
    };
    match et {
        0x0806 => {
            s.push_str("ARP, ");
            match (d.arp, d.src, d.dst) {
                (Some(a), Some(src), Some(dst)) if a.op == 1 => {
                    let _ = write!(s, "Request who-has {dst} tell {src}, length 28");
                }
                (Some(a), Some(src), Some(_)) if a.op == 2 => {
                    let _ = write!(s, "Reply {src} is-at {}, length 28", mac(&a.sender_mac));
                }
                (Some(a), _, _) => {
                    let _ = write!(s, "op {}, length 28", a.op);
                }
                _ => s.push_str("truncated"),
            }
        }
        ETH_P_IP | ETH_P_IPV6 => {
            s.push_str(if et == ETH_P_IP { "IP " } else { "IP6 " });
            let proto = d.proto.unwrap_or(0);
            let pl = d.payload_len.unwrap_or(0);
            match (proto, d.tcp, d.icmp) {
                (6, Some(t), _) => {
                    let _ = write!(s, "{} > {}: Flags [{}]", endpoint(d.src, d.sport), endpoint(d.dst, d.dport), tcp_flag_string(t.flags));
                    if pl > 0 || t.flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0 {
                        if pl > 0 {
                            let _ = write!(s, ", seq {}:{}", t.seq, t.seq.wrapping_add(pl));
                        } else {
                            let _ = write!(s, ", seq {}", t.seq);
                        }
                    }
                    if t.flags & tcp_flags::ACK != 0 {
                        let _ = write!(s, ", ack {}", t.ack);
                    }
                    let _ = write!(s, ", win {}, length {pl}", t.win);
                }
                (17, _, _) if d.sport.is_some() => {
                    let _ = write!(s, "{} > {}: UDP, length {pl}", endpoint(d.src, d.sport), endpoint(d.dst, d.dport));
                }
                (1 | 58, _, Some(i)) => {
                    let name = if proto == 1 { icmp4_name(i.ty, i.code) } else { icmp6_name(i.ty, i.code) };
                    let tag = if proto == 1 { "ICMP" } else { "ICMP6" };
                    let _ = write!(s, "{} > {}: {tag} {name}", endpoint(d.src, None), endpoint(d.dst, None));
                    if let Some((id, seq)) = i.echo {
                        let _ = write!(s, ", id {id}, seq {seq}");
                    }
                    let _ = write!(s, ", length {}", d.ip_payload_len.unwrap_or(0));
                }
                _ => {
                    let _ = write!(
                        s,
                        "{} > {}: {} length {}",
                        endpoint(d.src, None),
                        endpoint(d.dst, None),
                        proto_name(proto),
                        d.ip_payload_len.unwrap_or(0)
                    );
                }
            }
        }
        other => {
            let _ = write!(s, "ethertype 0x{other:04x}, length {len}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const A: [u8; 4] = [10, 1, 2, 1];
    const B: [u8; 4] = [10, 1, 2, 2];
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn udp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(A, B, 64).udp(40000, 5000);
        let mut v = Vec::new();
        b.write(&mut v, payload).expect("build");
        v
    }

    #[test]
    fn udp_fields_and_summary() {
        let f = udp(b"hello");
        let d = decode(&f, true);
        assert_eq!(d.l3().as_deref(), Some("ipv4"));
        assert_eq!(d.proto_name().as_deref(), Some("udp"));
        assert_eq!(d.src, Some(IpAddr::from(A)));
        assert_eq!(d.dst, Some(IpAddr::from(B)));
        assert_eq!((d.sport, d.dport, d.payload_len), (Some(40000), Some(5000), Some(5)));
        assert_eq!(d.eth_src, Some(MAC_A));
        assert_eq!(summary(&d, f.len() as u32), "IP 10.1.2.1.40000 > 10.1.2.2.5000: UDP, length 5");
    }

    #[test]
    fn truncated_capture_keeps_lengths_from_headers() {
        let f = udp(&[7u8; 1000]);
        let d = decode(&f[..60], true);
        assert_eq!(d.payload_len, Some(1000));
        assert_eq!(d.dport, Some(5000));
        // The same packet cut at another length is still the same packet
        // as long as the first bytes of payload were seen.
        assert_eq!(decode(&f[..128], true).hop_key, decode(&f[..200], true).hop_key);
    }

    #[test]
    fn tcp_flags_seq_and_names() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(A, B, 64).tcp(40000, 80, 1000, 64240).syn();
        let mut f = Vec::new();
        b.write(&mut f, &[]).expect("build");
        let d = decode(&f, true);
        assert_eq!(d.tcp_flag_names(), Some(vec!["syn"]));
        assert_eq!(summary(&d, 0), "IP 10.1.2.1.40000 > 10.1.2.2.80: Flags [S], seq 1000, win 64240, length 0");
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(A, B, 64).tcp(40000, 80, 1000, 502).ack(77).psh();
        let mut f = Vec::new();
        b.write(&mut f, b"GET /").expect("build");
        let d = decode(&f, true);
        assert_eq!(d.tcp_flag_names(), Some(vec!["psh", "ack"]));
        assert_eq!(summary(&d, 0), "IP 10.1.2.1.40000 > 10.1.2.2.80: Flags [P.], seq 1000:1005, ack 77, win 502, length 5");
    }

    #[test]
    fn icmp_echo_and_ipv6() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(A, B, 64).icmpv4_echo_request(7, 3);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 56]).expect("build");
        let d = decode(&f, true);
        assert_eq!(d.icmp.map(|i| (i.ty, i.code, i.echo)), Some((8, 0, Some((7, 3)))));
        assert_eq!(summary(&d, 0), "IP 10.1.2.1 > 10.1.2.2: ICMP echo request, id 7, seq 3, length 64");
        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(src, dst, 64).udp(1, 2);
        let mut f = Vec::new();
        b.write(&mut f, b"xy").expect("build");
        let d = decode(&f, true);
        assert_eq!(d.l3().as_deref(), Some("ipv6"));
        assert_eq!(summary(&d, 0), "IP6 fd00::1.1 > fd00::2.2: UDP, length 2");
    }

    #[test]
    fn arp_request() {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&MAC_A);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&MAC_A);
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&B);
        let d = decode(&f, true);
        assert_eq!(d.l3().as_deref(), Some("arp"));
        assert_eq!(d.proto, None);
        assert_eq!(summary(&d, 42), "ARP, Request who-has 10.1.2.2 tell 10.1.2.1, length 28");
    }

    #[test]
    fn vlan_tag_put_back() {
        let f = udp(b"v");
        let tagged = reinsert_vlan(&f, 0x8100, 42);
        let d = decode(&tagged, true);
        assert_eq!(d.vlan, Some(42));
        assert_eq!(d.l3().as_deref(), Some("ipv4"));
        assert_eq!(d.dport, Some(5000));
        assert!(summary(&d, 0).starts_with("vlan 42, IP 10.1.2.1.40000"));
    }

    #[test]
    fn raw_ip_frames() {
        let f = udp(b"raw");
        let ip = &f[14..];
        assert!(starts_with_ethernet(&f, ETH_P_IP));
        assert!(!starts_with_ethernet(ip, ETH_P_IP));
        let d = decode(ip, false);
        assert_eq!((d.l3().as_deref(), d.dport), (Some("ipv4"), Some(5000)));
        assert_eq!(fake_ethernet(ip)[12..14], [0x08, 0x00]);
        assert_eq!(decode(&fake_ethernet(ip), true).hop_key, d.hop_key);
    }

    #[test]
    fn hop_key_ignores_ttl_and_mac_but_not_payload() {
        let mut f = udp(b"same");
        let k = decode(&f, true).hop_key;
        f[14 + 8] -= 1; // TTL, as a router would
        f[0] ^= 0xff; // another MAC on the next hop
        assert_eq!(decode(&f, true).hop_key, k);
        assert_ne!(decode(&udp(b"diff"), true).hop_key, k);
        assert_eq!(decode(&[0u8; 3], true).hop_key, 0);
    }
}
