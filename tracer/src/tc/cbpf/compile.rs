//! The libpcap front end: a pcap-filter(7) expression compiled by libpcap
//! itself (through the `pcap` crate) into classic BPF, with tcpdump's
//! snaplen, and libpcap's own interpreter to run it in userspace.
//!
//! libpcap's code depends on the link type and on the capture: for
//! Ethernet, a live Linux capture gets `vlan` code that also reads the
//! VLAN tag the NIC or veth took out of the frame (skb metadata, the
//! `SKF_AD_VLAN_TAG*` ancillary loads) and `inbound`/`outbound`/`ifindex`
//! code that reads the packet type and interface; a capture file (or a
//! "dead" handle) gets code that only reads the bytes. [`Dialect::Kernel`]
//! asks libpcap for the live Linux code, the way `tcpdump -i IFACE` gets
//! it, by compiling on an activated capture handle of the loopback device
//! (opened and closed at once, nothing read); [`Dialect::File`] is the
//! code `tcpdump -r` runs. For every expression without those keywords
//! both are the same program.

use std::ffi::c_uint;

use pcap::{Capture, Linktype};

use super::insn::{CbpfInsn, c};

/// tcpdump's default snapshot length (`MAXIMUM_SNAPLEN`): what `ret #k`
/// returns on a match.
pub const SNAPLEN: i32 = 262_144;

/// `DLT_RAW` as Linux's libpcap numbers it (12), which is what it reports
/// for tun, wireguard and ipip devices: frames start at the IP header.
const DLT_RAW_LINUX: i32 = 12;

/// Where the frame starts for the programs of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// An Ethernet header (veth, bridge, macvlan, vxlan, loopback).
    Ethernet,
    /// The IP header: devices without a link-layer header (tun, wireguard,
    /// ipip, sit). In TC their `skb->data` starts at the network header.
    RawIp,
}

impl LinkType {
    fn dlt(self) -> Linktype {
        match self {
            LinkType::Ethernet => Linktype::ETHERNET,
            LinkType::RawIp => Linktype(DLT_RAW_LINUX),
        }
    }
}

/// Which of libpcap's code generators to use (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The code a live capture on a Linux interface gets: for the kernel.
    Kernel,
    /// The code a capture file gets: for userspace matching.
    File,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// libpcap refused the expression; its own sentence.
    #[error("{0}")]
    Expression(String),
    #[error("the filter contains a NUL byte")]
    Nul,
    /// libpcap could not give the live Linux code (no CAP_NET_RAW, no `lo`).
    #[error("libpcap needs a capture handle on the loopback device to compile a kernel filter: {0}")]
    Handle(String),
    #[error("libpcap returned an instruction this program cannot read: {0:?}")]
    Instruction(String),
}

/// A compiled filter: libpcap's classic BPF for one expression and link type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    expr: String,
    link: LinkType,
    dialect: Dialect,
    insns: Vec<CbpfInsn>,
}

unsafe extern "C" {
    // libpcap's interpreter (pcap/bpf.h), the one `pcap_offline_filter`
    // and `tcpdump -r` run; libpcap is linked through the pcap crate.
    fn bpf_filter(pc: *const CbpfInsn, pkt: *const u8, wirelen: c_uint, buflen: c_uint) -> c_uint;
}

impl Filter {
    /// Compiles `expr` with libpcap's optimizer, as tcpdump does.
    pub fn compile(expr: &str, link: LinkType, dialect: Dialect) -> Result<Filter, CompileError> {
        if expr.contains('\0') {
            return Err(CompileError::Nul);
        }
        let program = match (dialect, link) {
            // Raw IP has no VLAN or packet-type code that differs live.
            (Dialect::File, _) | (Dialect::Kernel, LinkType::RawIp) => {
                let dead = Capture::dead(link.dlt()).map_err(|e| CompileError::Handle(e.to_string()))?;
                dead.compile(expr, true)
            }
            (Dialect::Kernel, LinkType::Ethernet) => {
                // On Linux the loopback device reports DLT_EN10MB, and any
                // activated Linux handle makes libpcap emit its
                // BPF_SPECIAL_VLAN_HANDLING code. A small ring: nothing is read.
                let live = Capture::from_device("lo")
                    .and_then(|c| c.snaplen(SNAPLEN).buffer_size(1 << 16).open())
                    .map_err(|e| CompileError::Handle(e.to_string()))?;
                live.compile(expr, true)
            }
        };
        let program = program.map_err(|e| match e {
            pcap::Error::PcapError(s) => CompileError::Expression(s),
            other => CompileError::Expression(other.to_string()),
        })?;
        let mut insns = program.get_instructions().iter().map(|i| parse(&i.to_string())).collect::<Result<Vec<_>, _>>()?;
        // The crate's dead handles have snaplen 65535; tcpdump's is SNAPLEN.
        // It only ever appears as the value of `ret #k` on a match.
        for i in insns.iter_mut().filter(|i| i.code == c::RET | c::K && i.k != 0) {
            i.k = SNAPLEN as u32;
        }
        Ok(Filter { expr: expr.to_string(), link, dialect, insns })
    }

    pub fn expression(&self) -> &str {
        &self.expr
    }
    pub fn link(&self) -> LinkType {
        self.link
    }
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
    pub fn instructions(&self) -> &[CbpfInsn] {
        &self.insns
    }

    /// libpcap's verdict on one frame: `frame` is what was captured,
    /// `wire_len` the length on the wire (`len`, `less`, `greater` read it).
    /// A filter with Linux ancillary loads never matches here, as in
    /// libpcap: compile with [`Dialect::File`] for userspace.
    pub fn matches(&self, frame: &[u8], wire_len: u32) -> bool {
        let caplen = c_uint::try_from(frame.len()).unwrap_or(c_uint::MAX);
        // SAFETY: `insns` is a complete program as pcap_compile produced it
        // (never empty, jumps checked by libpcap's own validator), laid out
        // as libpcap's `struct bpf_insn` (CbpfInsn is repr(C) with the same
        // fields); `frame` is valid for `caplen` bytes and bpf_filter reads
        // no byte at or past `caplen`.
        unsafe { bpf_filter(self.insns.as_ptr(), frame.as_ptr(), wire_len, caplen) != 0 }
    }
}

/// libpcap's verdict for a captured Ethernet frame, as `tcpdump -r` would
/// give it: for reading captures back in userspace.
pub fn matches(expr: &str, frame: &[u8], wire_len: u32) -> Result<bool, CompileError> {
    Ok(Filter::compile(expr, LinkType::Ethernet, Dialect::File)?.matches(frame, wire_len))
}

/// The `pcap` crate shows an instruction only as "code jt jf k".
fn parse(s: &str) -> Result<CbpfInsn, CompileError> {
    let bad = || CompileError::Instruction(s.to_string());
    let mut it = s.split(' ');
    let mut next = || it.next().ok_or_else(bad);
    let code = next()?.parse().map_err(|_| bad())?;
    let jt = next()?.parse().map_err(|_| bad())?;
    let jf = next()?.parse().map_err(|_| bad())?;
    let k = next()?.parse().map_err(|_| bad())?;
    Ok(CbpfInsn { code, jt, jf, k })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpcap_refusals_come_back_as_its_own_sentence() {
        let e = Filter::compile("tcp port", LinkType::Ethernet, Dialect::File).expect_err("incomplete");
        assert!(matches!(e, CompileError::Expression(_)));
        assert!(e.to_string().contains("syntax error"), "{e}");
        let e = Filter::compile("port 99999", LinkType::Ethernet, Dialect::File).expect_err("out of range");
        assert!(e.to_string().contains("99999"), "{e}");
        assert!(matches!(Filter::compile("tcp\0", LinkType::Ethernet, Dialect::File), Err(CompileError::Nul)));
        // Raw IP has no link-layer header to test.
        let e = Filter::compile("ether broadcast", LinkType::RawIp, Dialect::File).expect_err("no ethernet");
        assert!(matches!(e, CompileError::Expression(_)), "{e}");
    }

    #[test]
    fn tcpdump_snaplen_and_userspace_verdicts() {
        let f = Filter::compile("udp", LinkType::Ethernet, Dialect::File).expect("compiles");
        let rets: Vec<u32> = f.instructions().iter().filter(|i| i.code == c::RET | c::K).map(|i| i.k).collect();
        assert!(rets.contains(&(SNAPLEN as u32)) && rets.contains(&0), "{rets:?}");
        let mut udp = vec![0u8; 42];
        udp[12..14].copy_from_slice(&[0x08, 0x00]);
        udp[14] = 0x45;
        udp[23] = 17;
        assert!(f.matches(&udp, 42));
        udp[23] = 6;
        assert!(!f.matches(&udp, 42));
        // `greater` reads the length on the wire, not the captured one.
        assert!(matches("greater 1000", &udp, 1500).expect("compiles"));
        assert!(!matches("greater 1000", &udp, 42).expect("compiles"));
        // Raw IP: the frame starts at the IP header.
        let raw = Filter::compile("ip proto 6", LinkType::RawIp, Dialect::File).expect("compiles");
        assert!(raw.matches(&udp[14..], 28));
    }
}
