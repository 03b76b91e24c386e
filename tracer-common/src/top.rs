//! Keys and values of the in-kernel counters behind `tracer top`.
//!
//! The `top_ingress`/`top_egress` programs count every packet twice: once
//! per interface and direction in [`crate::maps::TOP_IFACES`] (a per-CPU
//! hash, exact: a packet it cannot count is a lost event), and once per flow
//! in [`crate::maps::TOP_FLOWS`] (a per-CPU LRU hash, so a flood of new
//! flows evicts idle ones instead of stopping the count). Nothing goes
//! through the ring buffer; userspace reads both maps every interval.

use crate::packet::PacketKey;

/// Entries of [`crate::maps::TOP_IFACES`]: interface and direction pairs.
pub const TOP_IFACES_MAX: u32 = 8192;
/// Entries of [`crate::maps::TOP_FLOWS`] (preallocated, per CPU, so kept modest).
pub const TOP_FLOWS_MAX: u32 = 16384;

/// One interface in one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceKey {
    /// Inode of the device's namespace.
    pub netns_ino: u32,
    /// Index of the device within its namespace.
    pub ifindex: u32,
    /// [`crate::packet::DIR_INGRESS`] or [`crate::packet::DIR_EGRESS`].
    pub direction: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<IfaceKey>() == 16);

/// One flow on one interface in one direction: the filter's [`PacketKey`]
/// (direction, EtherType, VLAN, protocol, addresses, ports) plus where it
/// was seen. Frames that are not IP keep only what was parsed (an ARP
/// packet its addresses, anything else its EtherType).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub netns_ino: u32,
    pub ifindex: u32,
    pub pkt: PacketKey,
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 56);

/// `tracer top --by process`: a flow on one interface and the socket that
/// sent its packets there (`skb->sk`'s cookie, 0 when none). Counted only
/// by the `top_proc_*` programs, so plain `top` pays nothing for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProcFlowKey {
    pub flow: FlowKey,
    pub sock_cookie: u64,
}
const _: () = assert!(core::mem::size_of::<ProcFlowKey>() == 64);

/// What one CPU counted for a key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    /// Frame lengths (`skb->len`, plus 4 for a VLAN tag the kernel took
    /// out), as tcpdump's `length` counts them. A GSO packet counts once.
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` when the entry was created, on the CPU that
    /// created it (0 on the others): an entry evicted and created again
    /// under the same key starts over, and this tells the two apart.
    pub created_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 24);
