//! The packet filter: tcpdump's expression language for its common subset,
//! compiled to a table the kernel evaluates, so unwanted packets never
//! reach userspace.
//!
//! # Language
//!
//! Primitives:
//!
//! | primitive | matches |
//! | --- | --- |
//! | `ip`, `ip6`, `arp` | the EtherType (after at most one VLAN tag) |
//! | `tcp`, `udp`, `sctp` | that IPv4 protocol or IPv6 next header |
//! | `icmp`, `icmp6` | ICMP in IPv4, ICMPv6 in IPv6 |
//! | `vlan`, `vlan ID` | a frame with an 802.1Q/802.1ad tag (with that id) |
//! | `[src\|dst] host ADDR` | IPv4 or IPv6 source and/or destination; an IPv4 `host` also matches ARP's sender/target address, as in tcpdump |
//! | `[src\|dst] net CIDR` | the same for a network: `10.1.0.0/16`, `10.1` (tcpdump's short form), `10.0.0.0 mask 255.0.0.0`, `fd00::/8` |
//! | `[src\|dst] port N`, `portrange A-B` | TCP, UDP or SCTP ports (numbers or common service names: `domain`, `http`...) |
//! | `[ip\|ip6] proto N` | the protocol number or name |
//! | `inbound`, `outbound` (also `ingress`, `egress`) | received or sent by the interface |
//!
//! Qualifiers combine as in tcpdump: `tcp port 80`, `udp dst port 53`,
//! `ip src host 10.0.0.1`, `arp host 10.0.0.1`, `ip6 net fd00::/8`,
//! `src or dst port 53`, `src and dst net 10.0.0.0/8`. A bare value repeats
//! the previous qualifiers (`port 80 or 443`, `host 10.0.0.1 or 10.0.0.2`);
//! a bare address alone is a `host`.
//!
//! Operators: `not`/`!`, `and`/`&&`, `or`/`||` and parentheses, with
//! tcpdump's precedence: `not` binds tightest, and `and` and `or` are
//! *equal* and group from the left, so `tcp or udp and port 53` means
//! `(tcp or udp) and port 53`. Use parentheses when in doubt.
//!
//! Anything else of tcpdump's language (`ether`, `greater`, `tcp[13] & 2`,
//! host names...) is refused with an error quoting the part not understood.
//!
//! # Differences from tcpdump
//!
//! - Primitives look through one VLAN tag whether or not `vlan` was
//!   written (tcpdump's classic filters need `vlan and ...`); tags the
//!   kernel took out of the frame (offload) count as tags.
//! - IPv6 extension headers are not followed: `tcp` and ports match when
//!   the IPv6 header's next header is TCP (tcpdump also looks past a
//!   fragment header).
//!
//! # Kernel form
//!
//! Each distinct primitive becomes one predicate over the frame's
//! [`PacketKey`] (at most [`FILTER_MAX_INSNS`]); the expression becomes a
//! disjunction of at most [`FILTER_MAX_CLAUSES`] clauses over the
//! predicates' bits. Both the kernel and [`matches`] evaluate the table with
//! [`FilterTable::matches`]; larger expressions are refused with
//! [`FilterError::TooComplex`].

mod compile;
mod frame;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

use aya::maps::{Array, MapError};
use etherparse::IpNumber;
use tracer_common::{
    maps,
    packet::{FILTER_MAX_CLAUSES, FILTER_MAX_INSNS, FilterClause, FilterInsn, FilterTable, PacketKey},
};

pub use frame::frame_key;

/// An IP protocol number as text output names it: `tcp`, `udp`, `icmp`,
/// `icmp6`, ..., else the number.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        58 => "icmp6".into(),
        p => match IpNumber(p).keyword_str() {
            Some(k) => k.to_ascii_lowercase(),
            None => p.to_string(),
        },
    }
}


/// What the subset covers, for error messages.
pub const SUPPORTED: &str = "tcp, udp, sctp, icmp, icmp6, arp, ip, ip6, vlan [ID], \
[ip|ip6|arp] [src|dst] host ADDR, [src|dst] net CIDR, [tcp|udp|sctp] [src|dst] port N, \
portrange A-B, [ip|ip6] proto N, inbound, outbound; joined by and/&&, or/||, not/! and parentheses";

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("unsupported filter: \"{part}\"{why} (supported: {SUPPORTED})")]
    Unsupported { part: String, why: String },
    #[error("invalid filter: {0}")]
    Syntax(String),
    #[error("filter too complex: {0}")]
    TooComplex(String),
    #[error("cannot install the packet filter: the eBPF object has no map {0}")]
    NoMap(&'static str),
    #[error("cannot install the packet filter: {0}")]
    Map(#[from] MapError),
}

/// A compiled filter, ready for [`install`] or [`matches`].
#[derive(Clone)]
pub struct FilterProgram {
    expr: String,
    table: FilterTable,
}

impl FilterProgram {
    /// The filter that matches every packet (what an empty expression compiles to).
    pub fn match_all() -> Self {
        Self { expr: String::new(), table: FilterTable::default() }
    }

    /// The expression this was compiled from, trimmed.
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// True when the filter lets every packet through.
    pub fn is_match_all(&self) -> bool {
        self.table.enabled == 0
    }

    /// The table the kernel evaluates.
    pub fn table(&self) -> &FilterTable {
        &self.table
    }

    pub fn predicates(&self) -> &[FilterInsn] {
        &self.table.insns[..self.table.n_insns as usize]
    }

    pub fn clauses(&self) -> &[FilterClause] {
        &self.table.clauses[..self.table.n_clauses as usize]
    }

    /// Whether a packet with this key passes.
    pub fn matches_key(&self, key: &PacketKey) -> bool {
        self.table.matches(key)
    }
}

impl fmt::Debug for FilterProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterProgram")
            .field("expr", &self.expr)
            .field("predicates", &self.predicates())
            .field("clauses", &self.clauses())
            .finish()
    }
}

impl fmt::Display for FilterProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_match_all() {
            return f.write_str("every packet");
        }
        write!(f, "\"{}\" ({} tests, {} clauses)", self.expr, self.table.n_insns, self.table.n_clauses)
    }
}

/// Compiles a tcpdump-style expression; an empty one matches everything.
pub fn compile(expr: &str) -> Result<FilterProgram, FilterError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Ok(FilterProgram::match_all());
    }
    let tree = parse::parse(expr)?;
    let c = compile::compile(&tree)?;
    let mut table = FilterTable { enabled: 1, n_insns: c.insns.len() as u32, n_clauses: c.clauses.len() as u32, ..FilterTable::default() };
    // compile() has checked both lengths against the table's capacity.
    for (slot, insn) in table.insns.iter_mut().zip(&c.insns) {
        *slot = *insn;
    }
    for (slot, clause) in table.clauses.iter_mut().zip(&c.clauses) {
        *slot = *clause;
    }
    debug_assert!(c.insns.len() <= FILTER_MAX_INSNS && c.clauses.len() <= FILTER_MAX_CLAUSES);
    Ok(FilterProgram { expr: expr.to_string(), table })
}

/// Compiles `expr` restricted to one direction, for a command-line option
/// such as tcpdump's `-Q in|out`: the same as `(EXPR) and inbound`.
pub fn compile_with_direction(expr: &str, direction: Option<u8>) -> Result<FilterProgram, FilterError> {
    let Some(dir) = direction else { return compile(expr) };
    let word = if dir == tracer_common::packet::DIR_INGRESS { "inbound" } else { "outbound" };
    if expr.trim().is_empty() {
        return compile(word);
    }
    let mut prog = compile(&format!("({}) and {word}", expr.trim()))?;
    prog.expr = format!("{} (only {word})", expr.trim());
    Ok(prog)
}

/// Writes the filter into the kernel map. Do it before attaching the TC
/// programs: a table replaced while packets flow may be read half-written
/// by a packet or two.
pub fn install(ebpf: &mut aya::Ebpf, prog: &FilterProgram) -> Result<(), FilterError> {
    let map = ebpf.map_mut(maps::PKT_FILTER).ok_or(FilterError::NoMap(maps::PKT_FILTER))?;
    let mut array: Array<_, FilterTable> = Array::try_from(map)?;
    array.set(0, prog.table, 0)?;
    Ok(())
}

/// Whether an Ethernet frame seen in `direction` ([`tracer_common::packet::DIR_INGRESS`]
/// or `DIR_EGRESS`) passes the filter, exactly as the kernel decides. A
/// VLAN tag the kernel took out of the frame must have been put back.
pub fn matches(prog: &FilterProgram, frame: &[u8], direction: u8) -> bool {
    prog.table.matches(&frame_key(frame, direction, None))
}
