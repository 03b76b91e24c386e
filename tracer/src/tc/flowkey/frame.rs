//! The [`PacketKey`] of a raw Ethernet frame, read with etherparse. It
//! follows the kernel parser (`tracer-ebpf/src/filter.rs`) step by step,
//! including where each stops on a short or odd frame, so the userspace
//! evaluator and the kernel agree on every frame.

use etherparse::{ArpPacketSlice, Ethernet2Slice, Ipv4HeaderSlice, Ipv6HeaderSlice, SingleVlanSlice};
use tracer_common::packet::{PacketKey, key_flags};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// The key of `frame` seen in `direction`. `offloaded_vlan` is the TCI of a
/// tag the kernel took out of the frame (`skb->vlan_tci`), if any.
pub fn frame_key(frame: &[u8], direction: u8, offloaded_vlan: Option<u16>) -> PacketKey {
    let mut key = PacketKey { direction, ..PacketKey::default() };
    fill(frame, &mut key, offloaded_vlan);
    key
}

fn fill(frame: &[u8], key: &mut PacketKey, offloaded_vlan: Option<u16>) -> Option<()> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).ok()?;
    let mut et = eth.ether_type().0;
    let mut rest = eth.payload_slice();
    if let Some(tci) = offloaded_vlan {
        key.flags |= key_flags::VLAN;
        key.vlan_id = (tci & 0x0fff).to_be_bytes();
    } else if et == ETH_P_8021Q || et == ETH_P_8021AD {
        let tag = SingleVlanSlice::from_slice(rest).ok()?;
        key.flags |= key_flags::VLAN;
        key.vlan_id = tag.vlan_identifier().value().to_be_bytes();
        et = tag.ether_type().0;
        rest = tag.payload_slice();
    }
    key.ethertype = et.to_be_bytes();
    let l4 = match et {
        ETH_P_IP => {
            let h = Ipv4HeaderSlice::from_slice(rest).ok()?;
            key.flags |= key_flags::IP4;
            key.proto = h.protocol().0;
            key.src[..4].copy_from_slice(&h.source());
            key.dst[..4].copy_from_slice(&h.destination());
            if h.fragments_offset().value() != 0 {
                return None;
            }
            rest.get(h.slice().len()..)?
        }
        ETH_P_IPV6 => {
            let h = Ipv6HeaderSlice::from_slice(rest).ok()?;
            key.flags |= key_flags::IP6;
            // The next header as it stands: extension headers are not followed.
            key.proto = h.next_header().0;
            key.src = h.source();
            key.dst = h.destination();
            rest.get(h.slice().len()..)?
        }
        ETH_P_ARP => {
            let a = ArpPacketSlice::from_slice(rest).ok()?;
            if a.proto_addr_type().0 == ETH_P_IP && a.hw_addr_size() == 6 && a.proto_addr_size() == 4 {
                key.flags |= key_flags::ARP4;
                key.src[..4].copy_from_slice(a.sender_protocol_addr());
                key.dst[..4].copy_from_slice(a.target_protocol_addr());
            }
            return None;
        }
        _ => return None,
    };
    if matches!(key.proto, 6 | 17 | 132) {
        let p = l4.get(..4)?;
        key.sport = [p[0], p[1]];
        key.dport = [p[2], p[3]];
        key.flags |= key_flags::PORTS;
    }
    Some(())
}
