//! Records of the TC packet program and its in-kernel filter.

/// Most packet bytes copied into an event (a power of two).
pub const PKT_DATA_MAX: usize = 256;

pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

/// Payload of [`crate::EventKind::Packet`]; `cap_len` bytes of the frame follow.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta {
    pub ifindex: u32,
    /// Length of the whole frame.
    pub len: u32,
    /// Bytes of the frame copied after this struct.
    pub cap_len: u32,
    /// `skb->hash` (after `bpf_get_hash_recalc`), to follow one packet across hops.
    pub hash: u32,
    /// `skb->protocol`, network byte order.
    pub protocol: u16,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    pub _pad: u8,
    pub mark: u32,
}
const _: () = assert!(core::mem::size_of::<PacketMeta>() == 24);

/// One predicate of the in-kernel packet filter (see the `filter` module in userspace).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterInsn {
    pub op: u32,
    pub arg: u32,
    pub value: [u8; 16],
    pub mask: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<FilterInsn>() == 40);
