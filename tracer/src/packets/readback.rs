//! `tracer packets -r FILE [EXPR]`: a capture read back (pcapng, ours or
//! tcpdump's, or classic pcap), filtered in userspace by libpcap's own
//! interpreter with the code `tcpdump -r` runs ([`PacketFilter::file_filter`]),
//! and printed as text or JSON lines, or written again as pcapng with `-w`.
//! Namespace, container and interface come from the comments and interface
//! names our own pcapng writer puts in ([`super::pcapng`]); other files
//! name the interface only.
//!
//! The file is outside input: pcap-file parses it, a block it cannot parse
//! ends the reading with one sentence, and every field shown goes through
//! the same escaping as live events.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    path::Path,
};

use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{
        Block, PcapNgReader,
        blocks::{enhanced_packet::EnhancedPacketOption, interface_description::InterfaceDescriptionOption},
    },
};
use tracer_common::packet::{DIR_EGRESS, DIR_INGRESS};

use super::{PacketEvent, decode, pcapng::PcapngOut};
use crate::{
    ns::{Container, NetnsId},
    output::Sink,
    sys::contain::contain,
    tc::cbpf::{Filter, LinkType, PacketFilter},
};

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {why}")]
    Open { path: String, why: String },
    #[error("{path} is not a capture file this tracer reads: {why}")]
    Format { path: String, why: String },
    #[error("the filter cannot run on {path}: {why}")]
    Filter { path: String, why: String },
    #[error("cannot write: {0}")]
    Write(String),
}

/// Where the packets kept go.
pub enum ReadOut {
    Lines(Sink),
    Pcapng(Box<PcapngOut>),
}

/// One interface of the file: its link type and what our writer said.
#[derive(Clone)]
struct Iface {
    link: Option<LinkType>,
    name: String,
    /// `if_tsresol`: the unit of its timestamps (default 6, microseconds).
    ts_resol: u8,
}

/// Reads `path` to the end (or `count` packets kept); returns how many were kept.
pub fn read(path: &Path, filter: &PacketFilter, out: &mut ReadOut, count: Option<u64>) -> Result<u64, ReadError> {
    let shown = path.display().to_string();
    let open_err = |e: std::io::Error| ReadError::Open { path: shown.clone(), why: e.to_string() };
    let mut file = File::open(path).map_err(open_err)?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(open_err)?;
    file.seek(SeekFrom::Start(0)).map_err(open_err)?;
    let mut run = Run { filter, out, count, kept: 0, filters: HashMap::new(), path: shown.clone() };
    let fmt = |e: pcap_file::PcapError| ReadError::Format { path: shown.clone(), why: e.to_string() };
    if magic == PCAPNG_MAGIC {
        let mut r = PcapNgReader::new(BufReader::new(file)).map_err(fmt)?;
        let mut ifaces: Vec<Iface> = Vec::new();
        while let Some(block) = r.next_block() {
            match block.map_err(fmt)? {
                Block::SectionHeader(_) => ifaces.clear(),
                Block::InterfaceDescription(idb) => {
                    let (mut name, mut ts_resol) = (String::new(), 6);
                    for o in &idb.options {
                        match o {
                            InterfaceDescriptionOption::IfName(n) => name = n.to_string(),
                            InterfaceDescriptionOption::IfTsResol(r) => ts_resol = *r,
                            _ => {}
                        }
                    }
                    ifaces.push(Iface { link: link_of(idb.linktype), name, ts_resol });
                }
                Block::EnhancedPacket(epb) => {
                    let Some(iface) = ifaces.get(epb.interface_id as usize).cloned() else {
                        return Err(ReadError::Format { path: shown, why: format!("a packet names interface {} before it is described", epb.interface_id) });
                    };
                    let (mut flags, mut comment) = (0u32, None);
                    for o in &epb.options {
                        match o {
                            EnhancedPacketOption::Flags(f) => flags = *f,
                            EnhancedPacketOption::Comment(c) => comment = Some(c.to_string()),
                            _ => {}
                        }
                    }
                    // pcap-file hands the raw count over as nanoseconds.
                    let ts = to_ns(epb.timestamp.as_nanos(), iface.ts_resol);
                    if run.packet(&iface, ts, &epb.data, epb.original_len, flags, comment.as_deref())? {
                        break;
                    }
                }
                Block::SimplePacket(spb) => {
                    let Some(iface) = ifaces.first().cloned() else { continue };
                    if run.packet(&iface, 0, &spb.data, spb.original_len, 0, None)? {
                        break;
                    }
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(BufReader::new(file)).map_err(fmt)?;
        let iface = Iface { link: link_of(r.header().datalink), name: String::new(), ts_resol: 9 };
        while let Some(p) = r.next_packet() {
            let p = p.map_err(fmt)?;
            let ts = u64::try_from(p.timestamp.as_nanos()).unwrap_or(u64::MAX);
            if run.packet(&iface, ts, &p.data, p.orig_len, 0, None)? {
                break;
            }
        }
    }
    match run.out {
        ReadOut::Lines(s) => s.flush().map_err(|e| ReadError::Write(e.to_string()))?,
        ReadOut::Pcapng(w) => w.flush().map_err(|e| ReadError::Write(e.to_string()))?,
    }
    Ok(run.kept)
}

/// A pcapng timestamp of `raw` units of `if_tsresol` `resol` (10^-n
/// seconds, or 2^-n with the high bit set), in nanoseconds.
fn to_ns(raw: u128, resol: u8) -> u64 {
    let n = u32::from(resol & 0x7f);
    let ns = if resol & 0x80 != 0 {
        (raw.saturating_mul(1_000_000_000)).checked_shr(n).unwrap_or(0)
    } else if n <= 9 {
        raw.saturating_mul(10u128.pow(9 - n))
    } else {
        raw / 10u128.checked_pow(n - 9).unwrap_or(u128::MAX)
    };
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn link_of(dl: DataLink) -> Option<LinkType> {
    match dl {
        DataLink::ETHERNET => Some(LinkType::Ethernet),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(LinkType::RawIp),
        _ => None,
    }
}

struct Run<'a> {
    filter: &'a PacketFilter,
    out: &'a mut ReadOut,
    count: Option<u64>,
    kept: u64,
    /// libpcap's program per link type, compiled once.
    filters: HashMap<LinkType, Option<Filter>>,
    path: String,
}

impl Run<'_> {
    /// Filters and shows one packet; true when `count` is reached.
    fn packet(&mut self, iface: &Iface, ts_ns: u64, data: &[u8], orig_len: u32, flags: u32, comment: Option<&str>) -> Result<bool, ReadError> {
        // A link type we do not decode is skipped, as libpcap's filter
        // could not have been compiled for it the same way.
        let Some(link) = iface.link else { return Ok(false) };
        if !self.filter.is_match_all() {
            if !self.filters.contains_key(&link) {
                let f = self.filter.file_filter(link).map_err(|e| ReadError::Filter { path: self.path.clone(), why: e.to_string() })?;
                self.filters.insert(link, f);
            }
            if let Some(Some(f)) = self.filters.get(&link)
                && !f.matches(data, orig_len)
            {
                return Ok(false);
            }
        }
        let ev = event(iface, link, ts_ns, data, orig_len, flags, comment);
        match self.out {
            ReadOut::Lines(s) => s.defer(&ev),
            ReadOut::Pcapng(w) => w.write(&ev.frame()).map_err(|e| ReadError::Write(e.to_string()))?,
        }
        self.kept += 1;
        Ok(self.count.is_some_and(|c| self.kept >= c))
    }
}

/// `key=value` of our comment (`netns=... inode=... container=... ifname=... direction=...`).
fn field<'a>(comment: Option<&'a str>, key: &str) -> Option<&'a str> {
    comment?.split(' ').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')).filter(|v| !v.is_empty() && *v != "-")
}

fn event(iface: &Iface, link: LinkType, ts_ns: u64, data: &[u8], orig_len: u32, flags: u32, comment: Option<&str>) -> PacketEvent {
    let ethernet = link == LinkType::Ethernet;
    // EPB flags: bits 0-1 are the direction (1 inbound, 2 outbound).
    let direction = match (flags & 3, field(comment, "direction")) {
        (2, _) | (_, Some("egress")) => DIR_EGRESS,
        _ => DIR_INGRESS,
    };
    let netns_name = field(comment, "netns");
    let container = field(comment, "container").map(|c| Container { runtime: String::new(), id: c.to_string(), name: Some(c.to_string()), pod: None });
    let netns = NetnsId {
        inode: field(comment, "inode").and_then(|i| i.parse().ok()).unwrap_or(0),
        name: netns_name.filter(|n| *n != "host").map(str::to_string),
        owner: container,
        host: netns_name == Some("host"),
    };
    // Our interface names are `netns/ifname`; the comment has the plain one.
    let ifname = field(comment, "ifname")
        .map(str::to_string)
        .unwrap_or_else(|| iface.name.rsplit('/').next().unwrap_or_default().to_string());
    let decoded = contain(|| decode::decode(data, ethernet)).unwrap_or_default();
    PacketEvent {
        wall_ns: ts_ns,
        netns,
        ifindex: 0,
        ifname,
        direction,
        len: orig_len,
        hash: 0,
        mark: 0,
        ethernet,
        frame: data.to_vec(),
        decoded,
        // A file keeps the processes only as comment text: none read back.
        procs: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_resolution() {
        assert_eq!(to_ns(1_500_000, 6), 1_500_000_000);
        assert_eq!(to_ns(7, 9), 7);
        assert_eq!(to_ns(3, 0), 3_000_000_000);
        assert_eq!(to_ns(1 << 20, 0x80 | 20), 1_000_000_000);
        assert_eq!(to_ns(u128::MAX, 6), u64::MAX);
        assert_eq!(to_ns(5_000, 12), 5);
        assert_eq!(to_ns(1, 127), 0);
    }

    #[test]
    fn our_comments_name_namespace_container_and_direction() {
        let iface = Iface { link: Some(LinkType::Ethernet), name: "web/eth0".into(), ts_resol: 9 };
        let c = "netns=web inode=4026532000 container=web ifname=eth0 direction=egress";
        let e = event(&iface, LinkType::Ethernet, 5, &[0u8; 60], 60, 0, Some(c));
        assert_eq!((e.netns.inode, e.netns.name.as_deref(), e.ifname.as_str(), e.direction), (4026532000, Some("web"), "eth0", DIR_EGRESS));
        assert_eq!(e.container().map(|c| c.label()), Some("web"));
        let e = event(&iface, LinkType::Ethernet, 5, &[0u8; 60], 60, 1, Some("netns=host inode=1 container=- ifname=lo direction=ingress"));
        assert!(e.netns.host && e.container().is_none() && e.direction == DIR_INGRESS);
        // A foreign file: the interface name only.
        let e = event(&iface, LinkType::Ethernet, 5, &[0u8; 60], 60, 2, None);
        assert_eq!((e.ifname.as_str(), e.direction), ("eth0", DIR_EGRESS));
    }
}
