//! Records and counters of `tracer drops`: the `skb:kfree_skb` program
//! sends a [`DropMeta`] and the first bytes of the dropped packet, or, for
//! `tracer top`, counts per namespace, interface and reason
//! ([`DropKey`]) and per flow.

/// Most bytes of a dropped packet copied (a power of two): the headers,
/// which is what a drop is read for, and what pcapng gets.
pub const DROP_DATA_MAX: usize = 256;

/// [`DropMeta::reason`] on kernels whose `kfree_skb` has no reason (< 5.17).
pub const REASON_NONE: u32 = u32::MAX;

/// [`DropMeta::attrib`]: where the namespace of a drop came from.
pub mod attrib {
    /// Neither the skb's device nor a socket: `EventHeader::netns_ino` is 0.
    pub const UNKNOWN: u8 = 0;
    /// `skb->dev`'s namespace; `ifindex` is the device's.
    pub const DEVICE: u8 = 1;
    /// The socket's (`rx_sk`, else `skb->sk`); no interface.
    pub const SOCKET: u8 = 2;
}

/// [`DropMeta::layer`]: what the copied bytes start with.
pub mod layer {
    /// Nothing was copied.
    pub const NONE: u8 = 0;
    /// The MAC header (Ethernet).
    pub const L2: u8 = 1;
    /// The network header; `protocol` says which.
    pub const L3: u8 = 2;
}

/// Payload of [`crate::EventKind::Drop`]; `cap_len` bytes follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropMeta {
    /// The kernel address the skb was freed from (`location`).
    pub location: u64,
    /// An `enum skb_drop_reason` value, or [`REASON_NONE`].
    pub reason: u32,
    /// The device's index in its namespace, 0 without a device.
    pub ifindex: u32,
    /// The frame's length from its first byte copied (`skb->len`, which
    /// counts from `skb->data`, moved to there); `skb->len` when nothing was copied.
    pub len: u32,
    /// Bytes copied after this struct.
    pub cap_len: u32,
    /// `skb->protocol`, network byte order.
    pub protocol: u16,
    /// An [`attrib`] value.
    pub attrib: u8,
    /// A [`layer`] value.
    pub layer: u8,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<DropMeta>() == 32);

/// `tracer top`: drops per namespace, interface (0: none) and reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    pub netns_ino: u32,
    pub ifindex: u32,
    pub reason: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<DropKey>() == 16);

/// Entries of [`crate::maps::DROP_COUNTS`].
pub const DROP_COUNTS_MAX: u32 = 8192;
/// Entries of [`crate::maps::DROP_FLOWS`] (LRU; the flow key is
/// [`crate::top::FlowKey`] with the direction always ingress).
pub const DROP_FLOWS_MAX: u32 = 8192;

/// Slots of [`crate::maps::DROP_PROGS`], the program array of `tracer
/// drops` with a packet filter: the drop program copies the frame into
/// [`crate::maps::DROP_FRAME`] and tail-calls the filter (translated from
/// libpcap's code by userspace), which on a match tail-calls the emitter.
pub mod drop_slots {
    pub const FILTER: u32 = 0;
    pub const EMIT: u32 = 1;
    pub const SLOTS: u32 = 2;
}

/// Ethernet header length: the frame of a drop copied from its network
/// header gets a made-up one (as userspace decodes it).
pub const ETH_HLEN: usize = 14;

/// The frame the filter reads: at most [`DROP_DATA_MAX`] bytes copied plus
/// a made-up Ethernet header.
pub const DROP_FRAME_MAX: usize = DROP_DATA_MAX + ETH_HLEN;

/// One CPU's drop being filtered (the value of [`crate::maps::DROP_FRAME`]):
/// what the record will carry, and the frame as libpcap's code reads it
/// (Ethernet; for a drop copied from the network header, 12 zero bytes and
/// the EtherType before the copy, exactly as userspace builds it).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropFrame {
    /// Nonzero while a drop owns this CPU's frame: from the copy to the
    /// filter's "no" or the emitter. A drop program that interrupts
    /// another (Linux < 6.1 does not stop a BTF tracepoint program from
    /// running inside itself) finds it set and sends its record unfiltered,
    /// for userspace to filter.
    pub busy: u32,
    /// Bytes of `data` the filter may read (the frame).
    pub cap: u32,
    /// The frame's length on the wire (`skb->len`, plus the made-up
    /// Ethernet header): what `len`, `less` and `greater` test.
    pub wire: u32,
    /// Where the copied bytes start in `data` (0, or [`ETH_HLEN`]).
    pub start: u32,
    /// The record's namespace.
    pub netns: u32,
    pub _pad: u32,
    pub meta: DropMeta,
    pub data: [u8; DROP_FRAME_MAX],
    pub _tail: [u8; 2],
}

/// Offsets of [`DropFrame`]'s fields, for the translated filter.
pub mod drop_frame {
    use super::DropFrame;
    pub const BUSY: usize = core::mem::offset_of!(DropFrame, busy);
    pub const CAP: usize = core::mem::offset_of!(DropFrame, cap);
    pub const WIRE: usize = core::mem::offset_of!(DropFrame, wire);
    pub const DATA: usize = core::mem::offset_of!(DropFrame, data);
}
const _: () = assert!(core::mem::size_of::<DropFrame>().is_multiple_of(8));
