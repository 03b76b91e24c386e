//! Records of the TC packet program, and the flow key of `tracer top`.

/// Most packet bytes copied into an event (a power of two): a whole frame
/// of a 1500-byte MTU. `Config::snaplen` lowers it at load time.
pub const PKT_DATA_MAX: usize = 2048;

pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

/// Payload of [`crate::EventKind::Packet`]; `cap_len` bytes of the frame follow.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta {
    /// Index of the device, within the device's own namespace.
    pub ifindex: u32,
    /// Length of the whole frame.
    pub len: u32,
    /// Bytes of the frame copied after this struct.
    pub cap_len: u32,
    /// `skb->hash` (after `bpf_get_hash_recalc`): a flow hash, not a packet id.
    pub hash: u32,
    /// `skb->protocol`, network byte order.
    pub protocol: u16,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    /// Nonzero when the VLAN tag was taken out of the frame (offload) and
    /// travels in `vlan_tci`/`vlan_proto` instead; userspace puts it back.
    pub vlan_present: u8,
    pub mark: u32,
    pub vlan_tci: u16,
    /// TPID of the offloaded tag, network byte order.
    pub vlan_proto: u16,
    pub _pad: u32,
    /// `bpf_get_socket_cookie(skb)`: the socket that sent the packet
    /// (`skb->sk`, kept across veths), 0 when none or when process
    /// attribution is off (see [`crate::sock`]).
    pub sock_cookie: u64,
}
const _: () = assert!(core::mem::size_of::<PacketMeta>() == 40);

/// `PacketKey::flags`: which parts of the key hold parsed values.
pub mod key_flags {
    /// A whole IPv4 header was read: `proto`, `src`, `dst` are set.
    pub const IP4: u8 = 1;
    /// A whole IPv6 header was read: `proto` (its next header), `src`, `dst` are set.
    pub const IP6: u8 = 2;
    /// An Ethernet/IPv4 ARP packet: `src`/`dst` hold the sender/target protocol addresses.
    pub const ARP4: u8 = 4;
    /// `sport` and `dport` were read (TCP, UDP or SCTP, not a later IPv4 fragment).
    pub const PORTS: u8 = 8;
    /// The frame carries an 802.1Q/802.1ad tag (in the data or offloaded).
    pub const VLAN: u8 = 16;
}

/// What `tracer top` keys a flow by: the kernel parses each frame into one
/// (tracer-ebpf's filter.rs; tracer's `tc::flowkey` is its userspace twin).
/// Multi-byte fields are in network byte order; IPv4 addresses fill the
/// first 4 bytes of `src`/`dst`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PacketKey {
    /// [`key_flags`] bits.
    pub flags: u8,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    /// EtherType after at most one VLAN tag.
    pub ethertype: [u8; 2],
    /// The 12-bit VLAN id when `flags` has `VLAN`.
    pub vlan_id: [u8; 2],
    /// IPv4 protocol or IPv6 next header.
    pub proto: u8,
    pub _pad0: u8,
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub _pad1: [u8; 4],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<PacketKey>() == 48);
