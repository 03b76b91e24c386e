//! The flow key of `tracer top` as userspace reads it: [`frame_key`] parses
//! a raw Ethernet frame into the [`tracer_common::packet::PacketKey`] the
//! kernel builds (tracer-ebpf's filter.rs), step by step, so that the two
//! agree on every frame (the fuzz target `packet` runs it on hostile
//! frames); and [`proto_name`], how output names an IP protocol.
//!
//! Packet filtering is not here: the whole pcap-filter language is
//! libpcap's code in the kernel ([`super::cbpf`]). The hand-written subset
//! that used to be evaluated over this key is gone.

mod frame;

use etherparse::IpNumber;

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

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;
    use tracer_common::packet::{DIR_EGRESS, key_flags};

    use super::*;

    #[test]
    fn keys_as_the_kernel_builds_them() {
        let f = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(40000, 53);
        let mut frame = Vec::new();
        f.write(&mut frame, b"q").expect("frame");
        let k = frame_key(&frame, DIR_EGRESS, None);
        assert_eq!(k.flags, key_flags::IP4 | key_flags::PORTS);
        assert_eq!((k.proto, k.sport, k.dport, &k.src[..4]), (17, 40000u16.to_be_bytes(), 53u16.to_be_bytes(), &[10, 0, 0, 1][..]));
        // An offloaded tag counts as a tag.
        let k = frame_key(&frame, DIR_EGRESS, Some(0x2000 | 42));
        assert!(k.flags & key_flags::VLAN != 0 && k.vlan_id == 42u16.to_be_bytes());
        // A later fragment has no ports; a cut frame stops where it ends.
        frame[14 + 7] = 8;
        assert_eq!(frame_key(&frame, DIR_EGRESS, None).flags, key_flags::IP4);
        assert_eq!(frame_key(&frame[..20], DIR_EGRESS, None).flags, 0);
        assert_eq!((proto_name(6), proto_name(58), proto_name(253)), ("tcp".into(), "icmp6".into(), "253".into()));
    }
}
