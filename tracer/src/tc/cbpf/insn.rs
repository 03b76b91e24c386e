//! The two instruction sets this module speaks: classic BPF as libpcap
//! emits it (`struct bpf_insn` of pcap/bpf.h, `struct sock_filter` of
//! linux/filter.h) and eBPF as `bpf(BPF_PROG_LOAD)` takes it
//! (`struct bpf_insn` of linux/bpf.h), with the opcode numbers of both.
//!
//! Only what the translator emits is here: eBPF instructions are built by
//! small constructors named after the kernel's own macros (`BPF_MOV32_IMM`
//! becomes [`Insn::mov32_imm`]) so the translator reads like the kernel's.

/// One classic BPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CbpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Classic BPF opcode fields (pcap/bpf.h).
pub mod c {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;

    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;

    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;

    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    /// `ret a` (BPF_RVAL = BPF_A).
    pub const A: u16 = 0x10;

    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;

    /// Scratch memory words M[0..16].
    pub const MEMWORDS: u32 = 16;

    /// Ancillary data offsets (linux/filter.h): `ld [SKF_AD_OFF + n]`.
    pub const SKF_AD_OFF: u32 = 0xffff_f000;
    pub const SKF_AD_PROTOCOL: u32 = 0;
    pub const SKF_AD_PKTTYPE: u32 = 4;
    pub const SKF_AD_IFINDEX: u32 = 8;
    pub const SKF_AD_MARK: u32 = 20;
    pub const SKF_AD_QUEUE: u32 = 24;
    pub const SKF_AD_RXHASH: u32 = 32;
    pub const SKF_AD_ALU_XOR_X: u32 = 40;
    pub const SKF_AD_VLAN_TAG: u32 = 44;
    pub const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;
    pub const SKF_AD_VLAN_TPID: u32 = 60;
}

/// eBPF opcode fields (linux/bpf.h, linux/bpf_common.h).
pub mod e {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;

    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;

    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;

    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;

    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const END: u8 = 0xd0;
    /// With END: convert to big-endian (a byte swap on little-endian hosts).
    pub const TO_BE: u8 = 0x08;

    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;

    /// `ld_imm64` source register value saying imm is a map fd.
    pub const PSEUDO_MAP_FD: u8 = 1;

    pub const FN_MAP_LOOKUP_ELEM: i32 = 1;
    pub const FN_TAIL_CALL: i32 = 12;
    pub const FN_SKB_LOAD_BYTES: i32 = 26;
}

/// eBPF registers by number; R10 is the read-only frame pointer.
pub type Reg = u8;
pub const R0: Reg = 0;
pub const R1: Reg = 1;
pub const R2: Reg = 2;
pub const R3: Reg = 3;
pub const R4: Reg = 4;
pub const R6: Reg = 6;
pub const R7: Reg = 7;
pub const R8: Reg = 8;
pub const R9: Reg = 9;
pub const R10: Reg = 10;

/// One eBPF instruction, laid out as the kernel reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble and src_reg in the high one: the C
    /// bitfield order on little-endian machines, the only ones built for.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const _: () = assert!(size_of::<Insn>() == 8);
const _: () = assert!(size_of::<CbpfInsn>() == 8);
#[cfg(target_endian = "big")]
compile_error!("the eBPF register nibbles are laid out for little-endian hosts");

impl Insn {
    pub const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Self {
        Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
    }
    pub fn dst(&self) -> Reg {
        self.regs & 0x0f
    }
    pub fn src(&self) -> Reg {
        self.regs >> 4
    }
    pub const fn mov64_reg(dst: Reg, src: Reg) -> Self {
        Self::new(e::ALU64 | e::MOV | e::X, dst, src, 0, 0)
    }
    pub const fn mov64_imm(dst: Reg, imm: i32) -> Self {
        Self::new(e::ALU64 | e::MOV | e::K, dst, 0, 0, imm)
    }
    /// 32-bit move: the upper half of `dst` is zeroed.
    pub const fn mov32_reg(dst: Reg, src: Reg) -> Self {
        Self::new(e::ALU | e::MOV | e::X, dst, src, 0, 0)
    }
    pub const fn mov32_imm(dst: Reg, imm: i32) -> Self {
        Self::new(e::ALU | e::MOV | e::K, dst, 0, 0, imm)
    }
    pub const fn alu64_imm(op: u8, dst: Reg, imm: i32) -> Self {
        Self::new(e::ALU64 | op | e::K, dst, 0, 0, imm)
    }
    pub const fn alu64_reg(op: u8, dst: Reg, src: Reg) -> Self {
        Self::new(e::ALU64 | op | e::X, dst, src, 0, 0)
    }
    pub const fn alu32_imm(op: u8, dst: Reg, imm: i32) -> Self {
        Self::new(e::ALU | op | e::K, dst, 0, 0, imm)
    }
    pub const fn alu32_reg(op: u8, dst: Reg, src: Reg) -> Self {
        Self::new(e::ALU | op | e::X, dst, src, 0, 0)
    }
    /// Network to host order of the low `bits` (16 or 32) bits.
    pub const fn to_be(dst: Reg, bits: i32) -> Self {
        Self::new(e::ALU | e::END | e::TO_BE, dst, 0, 0, bits)
    }
    /// `dst = *(size *)(src + off)`, zero-extended.
    pub const fn ldx_mem(size: u8, dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(e::LDX | e::MEM | size, dst, src, off, 0)
    }
    pub const fn stx_mem(size: u8, dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(e::STX | e::MEM | size, dst, src, off, 0)
    }
    pub const fn st_mem(size: u8, dst: Reg, off: i16, imm: i32) -> Self {
        Self::new(e::ST | e::MEM | size, dst, 0, off, imm)
    }
    /// The two halves of `dst = map fd`, resolved by the kernel at load.
    pub const fn ld_map_fd(dst: Reg, fd: i32) -> [Self; 2] {
        [Self::new(e::LD | e::DW | e::IMM, dst, e::PSEUDO_MAP_FD, 0, fd), Self::new(0, 0, 0, 0, 0)]
    }
    pub const fn call(helper: i32) -> Self {
        Self::new(e::JMP | e::CALL, 0, 0, 0, helper)
    }
    pub const fn exit() -> Self {
        Self::new(e::JMP | e::EXIT, 0, 0, 0, 0)
    }
    pub const fn ja(off: i16) -> Self {
        Self::new(e::JMP | e::JA, 0, 0, off, 0)
    }
    /// Class (JMP or JMP32) of a jump instruction, `None` for others.
    pub fn is_jump(&self) -> bool {
        let class = self.code & 0x07;
        let op = self.code & 0xf0;
        (class == e::JMP || class == e::JMP32) && op != e::CALL && op != e::EXIT
    }
}

impl std::fmt::Debug for Insn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x} r{} r{} {:+} {:#x}", self.code, self.dst(), self.src(), self.off, self.imm)
    }
}
