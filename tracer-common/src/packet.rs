//! Records of the TC packet program and its in-kernel filter.

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

// The in-kernel packet filter.
//
// Userspace (`tracer::packets::filter`) compiles a tcpdump-style expression
// into at most FILTER_MAX_INSNS predicates over a [`PacketKey`] and a
// disjunctive normal form of at most FILTER_MAX_CLAUSES clauses over the
// predicates' bits. The kernel parses each frame into a `PacketKey` and runs
// [`FilterTable::matches`]: the same code userspace runs, so the two can only
// disagree on how a frame is parsed, which the integration tests check.

/// Most predicates of one filter (bits of a `u32` mask, kept small so the
/// verifier walks a short loop).
pub const FILTER_MAX_INSNS: usize = 16;
/// Most clauses of one filter.
pub const FILTER_MAX_CLAUSES: usize = 32;

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

/// What the filter knows about one frame. Multi-byte fields are in network
/// byte order; IPv4 addresses fill the first 4 bytes of `src`/`dst`.
/// The three 16-byte windows (meta, `src`, `dst`) are what
/// [`FILTER_OP_EQ`] predicates compare.
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

/// Byte offsets of the meta fields inside the first window.
pub mod key_offsets {
    pub const DIRECTION: usize = 1;
    pub const ETHERTYPE: usize = 2;
    pub const VLAN_ID: usize = 4;
    pub const PROTO: usize = 6;
}

impl PacketKey {
    /// The key as six words: meta, `src`, `dst`, two words each.
    #[inline(always)]
    pub fn words(&self) -> [u64; 6] {
        // SAFETY: PacketKey is repr(C), 48 bytes, 8-aligned, without padding
        // the compiler could leave uninitialised (all padding is explicit).
        unsafe { core::mem::transmute_copy(self) }
    }
}

/// `FilterInsn::op`: `(window & mask) == value` for any window in `sel`.
pub const FILTER_OP_EQ: u8 = 1;
/// `FilterInsn::op`: `value[0] <= port <= value[1]` for any port in `sel`.
pub const FILTER_OP_RANGE: u8 = 2;

/// `FilterInsn::sel` bits for [`FILTER_OP_EQ`].
pub const SEL_META: u8 = 1;
pub const SEL_SRC: u8 = 2;
pub const SEL_DST: u8 = 4;
/// `FilterInsn::sel` bits for [`FILTER_OP_RANGE`].
pub const SEL_SPORT: u8 = 1;
pub const SEL_DPORT: u8 = 2;

/// One predicate of the in-kernel packet filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterInsn {
    /// [`FILTER_OP_EQ`] or [`FILTER_OP_RANGE`]; anything else never matches.
    pub op: u8,
    /// The predicate is false unless the key has one of these [`key_flags`]
    /// (0: no condition).
    pub need: u8,
    /// Which windows or ports to test; the predicate holds if any matches.
    pub sel: u8,
    pub _pad: [u8; 5],
    /// EQ: the expected window, as two native-endian words of its bytes.
    /// RANGE: low and high port, inclusive.
    pub value: [u64; 2],
    /// EQ: which bits of the window count, as two native-endian words.
    pub mask: [u64; 2],
}
const _: () = assert!(core::mem::size_of::<FilterInsn>() == 40);

/// One conjunction: every `required` predicate holds and no `forbidden` one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterClause {
    pub required: u32,
    pub forbidden: u32,
}
const _: () = assert!(core::mem::size_of::<FilterClause>() == 8);

/// The whole filter, the single value of the [`crate::maps::PKT_FILTER`] array.
/// An all-zero table (`enabled == 0`, what the kernel has before userspace
/// writes one) matches every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FilterTable {
    pub enabled: u32,
    pub n_insns: u32,
    pub n_clauses: u32,
    pub _pad: u32,
    pub insns: [FilterInsn; FILTER_MAX_INSNS],
    pub clauses: [FilterClause; FILTER_MAX_CLAUSES],
}
const _: () = assert!(core::mem::size_of::<FilterTable>() == 16 + 40 * FILTER_MAX_INSNS + 8 * FILTER_MAX_CLAUSES);

impl Default for FilterTable {
    fn default() -> Self {
        Self {
            enabled: 0,
            n_insns: 0,
            n_clauses: 0,
            _pad: 0,
            insns: [FilterInsn::default(); FILTER_MAX_INSNS],
            clauses: [FilterClause::default(); FILTER_MAX_CLAUSES],
        }
    }
}

impl FilterInsn {
    #[inline(always)]
    fn eq2(&self, a: u64, b: u64) -> bool {
        (a & self.mask[0]) == self.value[0] && (b & self.mask[1]) == self.value[1]
    }

    /// Evaluates the predicate on a key (given as [`PacketKey::words`]).
    #[inline(always)]
    pub fn eval(&self, key: &PacketKey, w: &[u64; 6]) -> bool {
        if self.need != 0 && key.flags & self.need == 0 {
            return false;
        }
        match self.op {
            FILTER_OP_EQ => {
                (self.sel & SEL_META != 0 && self.eq2(w[0], w[1]))
                    || (self.sel & SEL_SRC != 0 && self.eq2(w[2], w[3]))
                    || (self.sel & SEL_DST != 0 && self.eq2(w[4], w[5]))
            }
            FILTER_OP_RANGE => {
                let sport = u16::from_be_bytes(key.sport) as u64;
                let dport = u16::from_be_bytes(key.dport) as u64;
                let (lo, hi) = (self.value[0], self.value[1]);
                (self.sel & SEL_SPORT != 0 && lo <= sport && sport <= hi)
                    || (self.sel & SEL_DPORT != 0 && lo <= dport && dport <= hi)
            }
            _ => false,
        }
    }
}

impl FilterTable {
    /// One bit per predicate, set where it holds.
    #[inline(always)]
    pub fn eval_insns(&self, key: &PacketKey) -> u32 {
        let w = key.words();
        let mut bits = 0u32;
        let mut i = 0;
        // A constant bound the verifier can see; `n_insns` only cuts it short.
        while i < FILTER_MAX_INSNS {
            if i as u32 >= self.n_insns {
                break;
            }
            if self.insns[i].eval(key, &w) {
                bits |= 1 << i;
            }
            i += 1;
        }
        bits
    }

    /// Whether any clause holds for the predicate bits.
    #[inline(always)]
    pub fn eval_clauses(&self, bits: u32) -> bool {
        let mut i = 0;
        while i < FILTER_MAX_CLAUSES {
            if i as u32 >= self.n_clauses {
                break;
            }
            let c = &self.clauses[i];
            if bits & c.required == c.required && bits & c.forbidden == 0 {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Whether a packet with this key passes the filter.
    #[inline(always)]
    pub fn matches(&self, key: &PacketKey) -> bool {
        if self.enabled == 0 {
            return true;
        }
        self.eval_clauses(self.eval_insns(key))
    }
}
