//! The filter a TC job carries: a pcap-filter(7) expression that libpcap
//! accepted when the command line was read, so that a refusal is a usage
//! error (libpcap's own sentence, exit 2) before anything is loaded. The
//! kernel programs are made from it at start-up (`tc::session`); reading a
//! capture file back applies [`PacketFilter::file_filter`] in userspace.

use std::fmt;

use super::compile::{CompileError, Dialect, Filter, LinkType};

/// A checked expression; empty means every packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketFilter {
    expr: String,
}

impl PacketFilter {
    /// The filter that keeps every packet.
    pub fn match_all() -> Self {
        Self::default()
    }

    /// Checks `text` with libpcap. Checked as a capture file's code first
    /// (no privilege needed); what libpcap refuses only on a file
    /// (`inbound`, `ifindex`) is then checked as the kernel's, where that
    /// can be asked (root).
    pub fn parse(text: &str) -> Result<Self, CompileError> {
        let expr = text.trim();
        if expr.is_empty() {
            return Ok(Self::match_all());
        }
        match Filter::compile(expr, LinkType::Ethernet, Dialect::File) {
            Ok(_) => {}
            // libpcap's words for what only a live capture has (`inbound`,
            // `ifindex`): opening the live handle costs a packet socket, so
            // only then.
            Err(file_err @ CompileError::Expression(_)) if !file_err.to_string().contains("when reading savefiles") => return Err(file_err),
            Err(file_err @ CompileError::Expression(_)) => match Filter::compile(expr, LinkType::Ethernet, Dialect::Kernel) {
                Ok(_) => {}
                Err(CompileError::Handle(_)) => return Err(file_err),
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
        Ok(Self { expr: expr.to_string() })
    }

    pub fn expression(&self) -> &str {
        &self.expr
    }

    pub fn is_match_all(&self) -> bool {
        self.expr.is_empty()
    }

    /// libpcap's userspace code for frames of `link` read from a file
    /// (what `tcpdump -r` runs); `None` for the empty filter.
    pub fn file_filter(&self, link: LinkType) -> Result<Option<Filter>, CompileError> {
        if self.is_match_all() {
            return Ok(None);
        }
        Filter::compile(&self.expr, link, Dialect::File).map(Some)
    }
}

impl fmt::Display for PacketFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_match_all() {
            return f.write_str("every packet");
        }
        write!(f, "\"{}\"", self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpcap_decides_what_is_accepted() {
        for ok in ["", "  ", "tcp[tcpflags] & tcp-syn != 0", "greater 1000", "ether host 02:00:00:00:00:01", "ip[6:2] & 0x1fff != 0", "vlan 10 and udp"] {
            assert!(PacketFilter::parse(ok).is_ok(), "{ok:?} refused");
        }
        assert!(PacketFilter::parse(" ").expect("empty").is_match_all());
        for bad in ["tcp[", "port 99999999", "host", "frobnicate", "ip and and"] {
            match PacketFilter::parse(bad) {
                Err(CompileError::Expression(why)) => assert!(!why.is_empty() && !why.contains('\n'), "{bad:?}: {why:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
