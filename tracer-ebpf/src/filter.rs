//! The flow key of `tracer top`: parses a frame into a [`PacketKey`] with a
//! few bounded reads (Ethernet, one 802.1Q/802.1ad tag, IPv4, IPv6 without
//! extension headers, ARP, the first four bytes of TCP, UDP and SCTP).
//! Packet filtering itself is libpcap's code, tail-called (`packet.rs`).

use aya_ebpf::programs::TcContext;
use tracer_common::packet::{PacketKey, key_flags};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// Where [`parse`] reads a frame from: a TC program's packet, or (for
/// `tracer drops`) an skb in kernel memory.
pub trait Frame {
    /// Length of the frame from its first byte.
    fn len(&self) -> usize;
    /// Reads a `T` at `off`; `None` past the end or when the read fails.
    fn load<T: Copy>(&self, off: usize) -> Option<T>;
}

impl Frame for TcContext {
    #[inline(always)]
    fn len(&self) -> usize {
        // SAFETY: ctx.skb.skb is the program's __sk_buff context.
        unsafe { (*self.skb.skb).len as usize }
    }

    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Option<T> {
        load(self, off)
    }
}

/// Fills `key` as far as the frame allows. A read that fails (a short
/// frame) leaves the later parts unset, so predicates on them are false.
/// Headers are read into aligned words so the copies stay word-sized.
#[inline(never)]
pub fn parse(ctx: &TcContext, key: &mut PacketKey) {
    // SAFETY: ctx.skb.skb is the program's __sk_buff context.
    let (vlan_present, vlan_tci) = unsafe {
        let s = &*ctx.skb.skb;
        (s.vlan_present, s.vlan_tci)
    };
    parse_l2(ctx, vlan_present != 0, vlan_tci, key);
}

/// [`parse`] from the Ethernet header on, for any [`Frame`].
#[inline(always)]
pub fn parse_l2<F: Frame>(ctx: &F, vlan_present: bool, vlan_tci: u32, key: &mut PacketKey) {
    let Some(et) = ctx.load::<u16>(12) else { return };
    let mut et = u16::from_be(et);
    let mut l3 = 14usize;
    if vlan_present {
        // The tag was taken out of the data (VLAN offload); the data's
        // EtherType is already the inner one.
        key.flags |= key_flags::VLAN;
        key.vlan_id = ((vlan_tci & 0x0fff) as u16).to_be_bytes();
    } else if et == ETH_P_8021Q || et == ETH_P_8021AD {
        // TCI then the inner EtherType, both big-endian.
        let Some(tag) = ctx.load::<u32>(14) else { return };
        let tag = u32::from_be(tag);
        key.flags |= key_flags::VLAN;
        key.vlan_id = (((tag >> 16) & 0x0fff) as u16).to_be_bytes();
        et = tag as u16;
        l3 = 18;
    }
    parse_l3(ctx, et, l3, key);
}

/// The rest of [`parse`]: the network header of EtherType `et` at `l3`.
#[inline(always)]
pub fn parse_l3<F: Frame>(ctx: &F, et: u16, l3: usize, key: &mut PacketKey) {
    let len = ctx.len();
    key.ethertype = et.to_be_bytes();
    let l4 = match et {
        ETH_P_IP => {
            let Some(h) = ctx.load::<[u32; 5]>(l3) else { return };
            let [b0, _, _, _] = h[0].to_ne_bytes();
            let [_, _, f0, f1] = h[1].to_ne_bytes();
            let [_, proto, _, _] = h[2].to_ne_bytes();
            let ihl = (b0 & 0x0f) as usize;
            // The whole header, options included, must be there (as
            // etherparse requires in userspace).
            if b0 >> 4 != 4 || ihl < 5 || l3 + ihl * 4 > len {
                return;
            }
            key.flags |= key_flags::IP4;
            key.proto = proto;
            set_word(&mut key.src, h[3]);
            set_word(&mut key.dst, h[4]);
            // Only the first fragment carries the ports.
            if (f0 & 0x1f) != 0 || f1 != 0 {
                return;
            }
            l3 + ihl * 4
        }
        ETH_P_IPV6 => {
            let Some(h) = ctx.load::<[u64; 5]>(l3) else { return };
            let [b0, _, _, _, _, _, next, _] = h[0].to_ne_bytes();
            if b0 >> 4 != 6 {
                return;
            }
            key.flags |= key_flags::IP6;
            key.proto = next;
            set_words(&mut key.src, h[1], h[2]);
            set_words(&mut key.dst, h[3], h[4]);
            l3 + 40
        }
        ETH_P_ARP => {
            // htype, ptype, hlen, plen, op; sender (hw, proto), target (hw, proto).
            let Some(h) = ctx.load::<[u32; 7]>(l3) else { return };
            let [_, _, p0, p1] = h[0].to_ne_bytes();
            let [hlen, plen, _, _] = h[1].to_ne_bytes();
            // Ethernet hardware addresses and IPv4 protocol addresses only.
            if p0 == 0x08 && p1 == 0x00 && hlen == 6 && plen == 4 {
                key.flags |= key_flags::ARP4;
                // The sender address straddles words 3 and 4 (bytes 14..18).
                let [_, _, s0, s1] = h[3].to_ne_bytes();
                let [s2, s3, _, _] = h[4].to_ne_bytes();
                set_word(&mut key.src, u32::from_ne_bytes([s0, s1, s2, s3]));
                set_word(&mut key.dst, h[6]);
            }
            return;
        }
        _ => return,
    };
    if matches!(key.proto, 6 | 17 | 132) {
        // Source and destination port, already in the key's byte order.
        let Some(p) = ctx.load::<u32>(l4) else { return };
        let [a, b, c, d] = p.to_ne_bytes();
        key.sport = [a, b];
        key.dport = [c, d];
        key.flags |= key_flags::PORTS;
    }
}

/// Reads a `T` at `off`: straight from the packet when its linear part
/// holds it (a few instructions), else with `bpf_skb_load_bytes` (a helper
/// call, about 25 ns here), which also reaches paged data.
#[inline(always)]
fn load<T: Copy>(ctx: &TcContext, off: usize) -> Option<T> {
    let (start, end) = (ctx.data(), ctx.data_end());
    // The bound lets the verifier follow the variable offset (headers
    // end before byte 18 + 60 + 4).
    if off < 128 && start + off + size_of::<T>() <= end {
        // SAFETY: checked against the end of the linear data just above.
        return Some(unsafe { core::ptr::read_unaligned((start + off) as *const T) });
    }
    ctx.load::<T>(off).ok()
}

#[inline(always)]
fn set_word(dst: &mut [u8; 16], w: u32) {
    dst[..4].copy_from_slice(&w.to_ne_bytes());
}

#[inline(always)]
fn set_words(dst: &mut [u8; 16], a: u64, b: u64) {
    dst[..8].copy_from_slice(&a.to_ne_bytes());
    dst[8..].copy_from_slice(&b.to_ne_bytes());
}
