//! Classic BPF (as libpcap compiles a filter) to eBPF that the verifier
//! accepts as a `BPF_PROG_TYPE_SCHED_CLS` program, with the verdicts of
//! libpcap's own interpreter (`bpf_filter`).
//!
//! Read beside the kernel's `bpf_convert_filter` (net/core/filter.c) and
//! cloudflare's cbpfc, the two references; the choices here:
//!
//! - Registers: A in r7 and X in r8, always written through 32-bit
//!   operations so their upper halves stay zero; the context (`__sk_buff`)
//!   in r6; r1-r5 and r0 are scratch that no value outlives one cBPF
//!   instruction, so the verifier can prune states at every cBPF boundary.
//!   M[0..16] are 32-bit words at the top of the stack, zeroed on entry when
//!   read anywhere (the verifier refuses reads of unwritten stack).
//! - Packet loads (`ld [k]`, `ldh [x+k]`, `ldb`, `ldx 4*([k]&0xf)`): a
//!   direct load from `skb->data` after a bounds check against
//!   `skb->data_end` for that very load, re-reading both pointers from the
//!   context each time (so no packet pointer with a range lives across
//!   instructions); when the check fails (the bytes are not in the linear
//!   head, or not in the packet at all) `bpf_skb_load_bytes` is asked, which
//!   reads paged data too and fails past `skb->len`: a failed load ends the
//!   filter with "no match", as in cBPF. Values are converted from network
//!   order as cBPF defines.
//! - Division or modulo by X == 0 ends the filter with "no match"; a shift
//!   by X >= 32 gives A = 0 (libpcap's interpreter; constant shifts >= 32
//!   and divisions by constant 0 are refused, as libpcap refuses them).
//! - Jumps go forward only (the verifier would take backward ones, but cBPF
//!   from libpcap only has them for `protochain`, which the kernel's own
//!   cBPF checker refuses too). Unreachable cBPF is not translated: the
//!   verifier refuses unreachable instructions.
//! - `ret #k` / `ret a`: match when the value is not 0, then the caller's
//!   [`Action`]s: a return value, or a tail call into a program array.
//! - Linux ancillary loads (`ld [SKF_AD_OFF + n]`, which libpcap emits for
//!   live Linux captures: `vlan`, `inbound`, `ifindex`...) read the
//!   matching `__sk_buff` field; the ones with no such field are refused.
//! - [`translate_frame`]: the same code for a frame in a map value rather
//!   than an skb ([`frame`]: `tracer drops`' tracing program).

use std::collections::{HashMap, HashSet};

use super::insn::{CbpfInsn, Insn, R0, R1, R2, R3, R4, R6, R7, R8, R10, Reg, c, e};

mod frame;
pub use frame::FrameOptions;

/// `__sk_buff` field offsets (linux/bpf.h, stable uapi).
mod skb {
    pub const LEN: i16 = 0;
    pub const PKT_TYPE: i16 = 4;
    pub const MARK: i16 = 8;
    pub const QUEUE_MAPPING: i16 = 12;
    pub const PROTOCOL: i16 = 16;
    pub const VLAN_PRESENT: i16 = 20;
    pub const VLAN_TCI: i16 = 24;
    pub const VLAN_PROTO: i16 = 28;
    pub const IFINDEX: i16 = 40;
    pub const HASH: i16 = 68;
    pub const DATA: i16 = 76;
    pub const DATA_END: i16 = 80;
}

/// `PACKET_OUTGOING` (linux/if_packet.h): what a packet socket sees as the
/// type of a frame the host sends, and what libpcap's `outbound` tests.
const PACKET_OUTGOING: i32 = 4;

/// Stack: M[i] at fp - 64 + 4 i; the bytes `bpf_skb_load_bytes` fills at fp - 72.
const MEM_BASE: i16 = -64;
const SCRATCH: i16 = -72;

/// Loads ending at or below this offset try the direct packet access
/// first. The verifier grants packet ranges only up to 0xffff, and a
/// linear head longer than this is rare enough to take the helper.
const FAST_LIMIT: u64 = 0x7fff;

/// The TC hook a program runs at. Only `SKF_AD_PKTTYPE` (libpcap's
/// `inbound`/`outbound`) depends on it: at TC egress the skb does not yet
/// carry the `PACKET_OUTGOING` type that a packet socket reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// What the program does with a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return this value (e.g. `TC_ACT_UNSPEC` = -1 to let the packet go on).
    Return(i32),
    /// `bpf_tail_call(skb, prog_array, index)`; when the slot is empty,
    /// return `fallback`.
    TailCall { prog_array_fd: i32, index: u32, fallback: i32 },
}

/// How to translate: the hook, and what a match and a miss do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `None` reads `skb->pkt_type` as it is (tests, or unknown hook).
    pub direction: Option<Direction>,
    pub on_match: Action,
    pub on_no_match: Action,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranslateError {
    #[error("the filter program is empty")]
    Empty,
    #[error("instruction {at}: opcode {code:#06x} is not classic BPF this translator knows")]
    Opcode { at: usize, code: u16 },
    #[error("instruction {at}: scratch memory word {k} does not exist (16 words)")]
    Memory { at: usize, k: u32 },
    #[error("instruction {at}: a jump leaves the program or goes backwards (libpcap's `protochain` needs loops, which the kernel's packet filters do not run)")]
    Jump { at: usize },
    #[error("instruction {at}: the program runs past its last instruction without returning")]
    FallsOff { at: usize },
    #[error("instruction {at}: division or modulo by the constant 0")]
    DivByZero { at: usize },
    #[error("instruction {at}: shift by {k} bits (at most 31)")]
    Shift { at: usize, k: u32 },
    #[error("instruction {at}: load at offset {k:#x}: Linux-specific ancillary data this translator cannot read in a TC program")]
    Ancillary { at: usize, k: u32 },
    #[error("the translated program is too long for eBPF jump offsets ({0} instructions)")]
    TooLong(usize),
    #[error("tail-call index {0} is out of range")]
    Index(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Label {
    Cbpf(usize),
    Match,
    NoMatch,
    Local(u32),
}

/// eBPF code with symbolic jump targets, resolved at the end.
#[derive(Default)]
struct Emitter {
    insns: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    bound: HashMap<Label, usize>,
    locals: u32,
}

impl Emitter {
    fn push(&mut self, i: Insn) {
        self.insns.push(i);
    }
    fn jump(&mut self, i: Insn, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.insns.push(i);
    }
    fn local(&mut self) -> Label {
        self.locals += 1;
        Label::Local(self.locals)
    }
    fn bind(&mut self, l: Label) {
        self.bound.insert(l, self.insns.len());
    }
    fn referenced(&self, l: Label) -> bool {
        self.fixups.iter().any(|(_, t)| *t == l)
    }
    fn finish(mut self) -> Result<Vec<Insn>, TranslateError> {
        let n = self.insns.len();
        for (at, label) in &self.fixups {
            // Every label is bound before finish() by construction; an
            // unbound one would be a translator bug, reported as too long
            // rather than a panic.
            let target = *self.bound.get(label).ok_or(TranslateError::TooLong(n))?;
            let off = target as i64 - (*at as i64 + 1);
            self.insns[*at].off = i16::try_from(off).map_err(|_| TranslateError::TooLong(n))?;
        }
        Ok(self.insns)
    }
}

fn size_of_load(code: u16) -> (u8, u64) {
    match code & 0x18 {
        c::H => (e::H, 2),
        c::B => (e::B, 1),
        _ => (e::W, 4),
    }
}

/// The instructions reachable from the first one, checking every jump.
fn reachable(prog: &[CbpfInsn]) -> Result<Vec<bool>, TranslateError> {
    let n = prog.len();
    let mut seen = vec![false; n];
    seen[0] = true;
    // Jumps only go forward, so one pass in order visits every successor.
    for i in 0..n {
        if !seen[i] {
            continue;
        }
        let ins = prog[i];
        let next = |off: u64| -> Result<usize, TranslateError> {
            let t = i as u64 + 1 + off;
            if t >= n as u64 { Err(TranslateError::Jump { at: i }) } else { Ok(t as usize) }
        };
        match ins.code & 0x07 {
            c::RET => {}
            c::JMP if ins.code & 0xf0 == 0 => seen[next(u64::from(ins.k))?] = true,
            c::JMP => {
                seen[next(u64::from(ins.jt))?] = true;
                seen[next(u64::from(ins.jf))?] = true;
            }
            _ => {
                if i + 1 >= n {
                    return Err(TranslateError::FallsOff { at: i });
                }
                seen[i + 1] = true;
            }
        }
    }
    Ok(seen)
}

/// Translates a libpcap filter program into an eBPF program.
pub fn translate(prog: &[CbpfInsn], opts: &Options) -> Result<Vec<Insn>, TranslateError> {
    translate_from(prog, opts, None)
}

/// Translates a libpcap filter program into a program that reads the frame
/// from a map value ([`frame`]); any program type whose context is passed
/// on by tail calls (`tracer drops`: `BPF_PROG_TYPE_TRACING`).
pub fn translate_frame(prog: &[CbpfInsn], fo: &FrameOptions) -> Result<Vec<Insn>, TranslateError> {
    let opts = Options { direction: None, on_match: Action::Return(0), on_no_match: Action::Return(0) };
    translate_from(prog, &opts, Some(fo))
}

fn translate_from(prog: &[CbpfInsn], opts: &Options, fo: Option<&FrameOptions>) -> Result<Vec<Insn>, TranslateError> {
    if prog.is_empty() {
        return Err(TranslateError::Empty);
    }
    let live = reachable(prog)?;
    let mut em = Emitter::default();

    // Prologue: ctx kept in r6, A = X = 0 as cBPF starts, M words zeroed.
    em.push(Insn::mov64_reg(R6, R1));
    if let Some(fo) = fo {
        frame::prologue(&mut em, fo);
    }
    em.push(Insn::mov32_imm(R7, 0));
    em.push(Insn::mov32_imm(R8, 0));
    let mut read_words = HashSet::new();
    for (at, ins) in prog.iter().enumerate() {
        let class = ins.code & 0x07;
        let is_mem_load = (class == c::LD || class == c::LDX) && ins.code & 0xe0 == c::MEM;
        if is_mem_load || class == c::ST || class == c::STX {
            if ins.k >= c::MEMWORDS {
                return Err(TranslateError::Memory { at, k: ins.k });
            }
            if is_mem_load && live[at] {
                read_words.insert(ins.k);
            }
        }
    }
    let mut words: Vec<u32> = read_words.into_iter().collect();
    words.sort_unstable();
    for k in words {
        em.push(Insn::st_mem(e::W, R10, mem_off(k), 0));
    }

    for (at, ins) in prog.iter().copied().enumerate() {
        if !live[at] {
            continue;
        }
        em.bind(Label::Cbpf(at));
        one(&mut em, at, ins, opts, fo)?;
    }

    for (label, action) in [(Label::Match, opts.on_match), (Label::NoMatch, opts.on_no_match)] {
        // An epilogue no instruction reaches would be refused as unreachable.
        if em.referenced(label) {
            em.bind(label);
            match fo {
                Some(fo) => frame::epilogue(&mut em, fo, label == Label::Match)?,
                None => epilogue(&mut em, action)?,
            }
        }
    }
    em.finish()
}

fn mem_off(k: u32) -> i16 {
    MEM_BASE + 4 * k as i16
}

fn epilogue(em: &mut Emitter, action: Action) -> Result<(), TranslateError> {
    match action {
        Action::Return(v) => em.push(Insn::mov64_imm(R0, v)),
        Action::TailCall { prog_array_fd, index, fallback } => {
            let index = i32::try_from(index).map_err(|_| TranslateError::Index(index))?;
            em.push(Insn::mov64_reg(R1, R6));
            for i in Insn::ld_map_fd(R2, prog_array_fd) {
                em.push(i);
            }
            em.push(Insn::mov64_imm(R3, index));
            em.push(Insn::call(e::FN_TAIL_CALL));
            em.push(Insn::mov64_imm(R0, fallback));
        }
    }
    em.push(Insn::exit());
    Ok(())
}

/// One cBPF instruction.
fn one(em: &mut Emitter, at: usize, ins: CbpfInsn, opts: &Options, fo: Option<&FrameOptions>) -> Result<(), TranslateError> {
    let code = ins.code;
    let k = ins.k;
    let bad = || TranslateError::Opcode { at, code };
    let len = |em: &mut Emitter, dst: Reg| match fo {
        Some(fo) => frame::load_len(em, fo, dst),
        None => em.push(Insn::ldx_mem(e::W, dst, R6, skb::LEN)),
    };
    let abs = |em: &mut Emitter, dst: Reg, code: u16| match fo {
        // Negative offsets are Linux addressing libpcap does not emit.
        Some(_) if k >= 0x8000_0000 => Err(TranslateError::Ancillary { at, k }),
        Some(fo) => frame::load_abs(em, fo, at, dst, code, k),
        None => load_abs(em, at, dst, code, k),
    };
    match code & 0x07 {
        c::LD => match code & 0xe0 {
            c::IMM => em.push(Insn::mov32_imm(R7, k as i32)),
            c::MEM => em.push(Insn::ldx_mem(e::W, R7, R10, mem_off(k))),
            c::LEN => len(em, R7),
            c::ABS if k >= c::SKF_AD_OFF && fo.is_some() => return Err(TranslateError::Ancillary { at, k }),
            c::ABS if k >= c::SKF_AD_OFF => ancillary(em, at, k, opts)?,
            c::ABS => abs(em, R7, code)?,
            c::IND => match fo {
                Some(fo) => frame::load_ind(em, fo, R7, R8, code, k),
                None => load_ind(em, code, k),
            },
            _ => return Err(bad()),
        },
        c::LDX => match code & 0xe0 {
            c::IMM => em.push(Insn::mov32_imm(R8, k as i32)),
            c::MEM => em.push(Insn::ldx_mem(e::W, R8, R10, mem_off(k))),
            c::LEN => len(em, R8),
            c::MSH if code & 0x18 == c::B => {
                abs(em, R8, c::B)?;
                em.push(Insn::alu32_imm(e::AND, R8, 0xf));
                em.push(Insn::alu32_imm(e::LSH, R8, 2));
            }
            _ => return Err(bad()),
        },
        c::ST => em.push(Insn::stx_mem(e::W, R10, R7, mem_off(k))),
        c::STX => em.push(Insn::stx_mem(e::W, R10, R8, mem_off(k))),
        c::ALU => alu(em, at, code, k)?,
        c::JMP => jmp(em, at, ins)?,
        c::RET => match code & 0x18 {
            c::K => em.jump(Insn::ja(0), if k != 0 { Label::Match } else { Label::NoMatch }),
            c::A => {
                em.jump(Insn::new(e::JMP32 | e::JEQ | e::K, R7, 0, 0, 0), Label::NoMatch);
                em.jump(Insn::ja(0), Label::Match);
            }
            _ => return Err(bad()),
        },
        c::MISC => match code & 0xf8 {
            c::TAX => em.push(Insn::mov32_reg(R8, R7)),
            c::TXA => em.push(Insn::mov32_reg(R7, R8)),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    }
    Ok(())
}

fn alu(em: &mut Emitter, at: usize, code: u16, k: u32) -> Result<(), TranslateError> {
    let op = match code & 0xf0 {
        0x00 => e::ADD,
        0x10 => e::SUB,
        0x20 => e::MUL,
        0x30 => e::DIV,
        0x40 => e::OR,
        0x50 => e::AND,
        0x60 => e::LSH,
        0x70 => e::RSH,
        0x80 => {
            em.push(Insn::new(e::ALU | e::NEG, R7, 0, 0, 0));
            return Ok(());
        }
        0x90 => e::MOD,
        0xa0 => e::XOR,
        _ => return Err(TranslateError::Opcode { at, code }),
    };
    if code & 0x08 == c::K {
        if (op == e::DIV || op == e::MOD) && k == 0 {
            return Err(TranslateError::DivByZero { at });
        }
        if (op == e::LSH || op == e::RSH) && k >= 32 {
            return Err(TranslateError::Shift { at, k });
        }
        em.push(Insn::alu32_imm(op, R7, k as i32));
        return Ok(());
    }
    match op {
        e::DIV | e::MOD => {
            // cBPF: the filter returns 0 (eBPF would go on with 0 or A).
            em.jump(Insn::new(e::JMP32 | e::JEQ | e::K, R8, 0, 0, 0), Label::NoMatch);
            em.push(Insn::alu32_reg(op, R7, R8));
        }
        e::LSH | e::RSH => {
            // libpcap's interpreter gives 0; a JIT would mask the count.
            let shift = em.local();
            let done = em.local();
            em.jump(Insn::new(e::JMP32 | e::JGT | e::K, R8, 0, 0, 31), shift);
            em.push(Insn::alu32_reg(op, R7, R8));
            em.jump(Insn::ja(0), done);
            em.bind(shift);
            em.push(Insn::mov32_imm(R7, 0));
            em.bind(done);
        }
        _ => em.push(Insn::alu32_reg(op, R7, R8)),
    }
    Ok(())
}

fn jmp(em: &mut Emitter, at: usize, ins: CbpfInsn) -> Result<(), TranslateError> {
    let next = at + 1;
    let op = ins.code & 0xf0;
    if op == 0x00 {
        let target = next + ins.k as usize;
        if target != next {
            em.jump(Insn::ja(0), Label::Cbpf(target));
        }
        return Ok(());
    }
    let (t, f) = (next + usize::from(ins.jt), next + usize::from(ins.jf));
    let eop = match op {
        0x10 => e::JEQ,
        0x20 => e::JGT,
        0x30 => e::JGE,
        0x40 => e::JSET,
        _ => return Err(TranslateError::Opcode { at, code: ins.code }),
    };
    if t == f {
        if t != next {
            em.jump(Insn::ja(0), Label::Cbpf(t));
        }
        return Ok(());
    }
    // 32-bit unsigned comparisons, as cBPF compares A (and X, and k).
    let cond = |op: u8| {
        if ins.code & 0x08 == c::X {
            Insn::new(e::JMP32 | op | e::X, R7, R8, 0, 0)
        } else {
            Insn::new(e::JMP32 | op | e::K, R7, 0, 0, ins.k as i32)
        }
    };
    // The inverse test saves a jump when the true branch falls through.
    let inverse = match eop {
        e::JEQ => Some(e::JNE),
        e::JGT => Some(0xb0), // JLE
        e::JGE => Some(0xa0), // JLT
        _ => None,
    };
    match inverse {
        Some(inv) if t == next => em.jump(cond(inv), Label::Cbpf(f)),
        _ => {
            em.jump(cond(eop), Label::Cbpf(t));
            if f != next {
                em.jump(Insn::ja(0), Label::Cbpf(f));
            }
        }
    }
    Ok(())
}

fn ancillary(em: &mut Emitter, at: usize, k: u32, opts: &Options) -> Result<(), TranslateError> {
    let field = |em: &mut Emitter, off: i16| em.push(Insn::ldx_mem(e::W, R7, R6, off));
    match k - c::SKF_AD_OFF {
        c::SKF_AD_PROTOCOL => {
            field(em, skb::PROTOCOL);
            em.push(Insn::to_be(R7, 16));
        }
        c::SKF_AD_PKTTYPE => match opts.direction {
            Some(Direction::Egress) => em.push(Insn::mov32_imm(R7, PACKET_OUTGOING)),
            _ => field(em, skb::PKT_TYPE),
        },
        c::SKF_AD_IFINDEX => field(em, skb::IFINDEX),
        c::SKF_AD_MARK => field(em, skb::MARK),
        c::SKF_AD_QUEUE => field(em, skb::QUEUE_MAPPING),
        c::SKF_AD_RXHASH => field(em, skb::HASH),
        c::SKF_AD_ALU_XOR_X => em.push(Insn::alu32_reg(e::XOR, R7, R8)),
        c::SKF_AD_VLAN_TAG => field(em, skb::VLAN_TCI),
        c::SKF_AD_VLAN_TAG_PRESENT => field(em, skb::VLAN_PRESENT),
        c::SKF_AD_VLAN_TPID => {
            field(em, skb::VLAN_PROTO);
            em.push(Insn::to_be(R7, 16));
        }
        _ => return Err(TranslateError::Ancillary { at, k }),
    }
    Ok(())
}

/// Converts a freshly loaded value from network order, as cBPF loads are.
fn from_net(em: &mut Emitter, dst: Reg, bytes: u64) {
    match bytes {
        4 => em.push(Insn::to_be(dst, 32)),
        2 => em.push(Insn::to_be(dst, 16)),
        _ => {}
    }
}

/// The helper path: `bpf_skb_load_bytes(skb, r2, fp + SCRATCH, len)`,
/// with the offset already in r2; a failure ends the filter with no match.
fn load_slow(em: &mut Emitter, dst: Reg, size: u8, bytes: u64) {
    em.push(Insn::mov64_reg(R1, R6));
    em.push(Insn::mov64_reg(R3, R10));
    em.push(Insn::alu64_imm(e::ADD, R3, i32::from(SCRATCH)));
    em.push(Insn::mov64_imm(R4, bytes as i32));
    em.push(Insn::call(e::FN_SKB_LOAD_BYTES));
    em.jump(Insn::new(e::JMP | e::JNE | e::K, R0, 0, 0, 0), Label::NoMatch);
    em.push(Insn::ldx_mem(size, dst, R10, SCRATCH));
    from_net(em, dst, bytes);
}

/// `ld{,h,b} [k]` (and the byte of `ldx 4*([k]&0xf)`) into `dst`.
fn load_abs(em: &mut Emitter, at: usize, dst: Reg, code: u16, k: u32) -> Result<(), TranslateError> {
    // Negative offsets (SKF_NET_OFF, SKF_LL_OFF) are Linux socket-filter
    // addressing that libpcap does not emit.
    if k >= 0x8000_0000 {
        return Err(TranslateError::Ancillary { at, k });
    }
    let (size, bytes) = size_of_load(code);
    let end = u64::from(k) + bytes;
    let done = em.local();
    if end <= FAST_LIMIT {
        let slow = em.local();
        em.push(Insn::ldx_mem(e::W, R1, R6, skb::DATA));
        em.push(Insn::ldx_mem(e::W, R2, R6, skb::DATA_END));
        em.push(Insn::mov64_reg(R3, R1));
        em.push(Insn::alu64_imm(e::ADD, R3, end as i32));
        em.jump(Insn::new(e::JMP | e::JGT | e::X, R3, R2, 0, 0), slow);
        em.push(Insn::ldx_mem(size, dst, R1, k as i16));
        from_net(em, dst, bytes);
        em.jump(Insn::ja(0), done);
        em.bind(slow);
    }
    em.push(Insn::mov64_imm(R2, k as i32));
    load_slow(em, dst, size, bytes);
    em.bind(done);
    Ok(())
}

/// R3 = `x` (32 bits) + `k` in 64 bits, for an indexed load's offset: an
/// X + k that wraps in 32 bits lands past any frame, as libpcap has it
/// (R4 is clobbered for a `k` that does not fit an immediate).
fn x_plus_k(em: &mut Emitter, x: Reg, k: u32) {
    em.push(Insn::mov32_reg(R3, x));
    if k < 0x8000_0000 {
        em.push(Insn::alu64_imm(e::ADD, R3, k as i32));
    } else {
        em.push(Insn::mov32_imm(R4, k as i32));
        em.push(Insn::alu64_reg(e::ADD, R3, R4));
    }
}

/// `ld{,h,b} [x + k]` into A. The offset is computed in 64 bits, so an
/// X + k that wraps in 32 bits is out of the packet, as libpcap has it.
fn load_ind(em: &mut Emitter, code: u16, k: u32) {
    let (size, bytes) = size_of_load(code);
    let slow = em.local();
    let done = em.local();
    x_plus_k(em, R8, k);
    // Fast path: a bounded offset (so the verifier can track the pointer),
    // then the bounds check of this load.
    em.jump(Insn::new(e::JMP | e::JGT | e::K, R3, 0, 0, (FAST_LIMIT - bytes) as i32), slow);
    em.push(Insn::ldx_mem(e::W, R1, R6, skb::DATA));
    em.push(Insn::ldx_mem(e::W, R2, R6, skb::DATA_END));
    em.push(Insn::alu64_reg(e::ADD, R1, R3));
    em.push(Insn::mov64_reg(R4, R1));
    em.push(Insn::alu64_imm(e::ADD, R4, bytes as i32));
    em.jump(Insn::new(e::JMP | e::JGT | e::X, R4, R2, 0, 0), slow);
    em.push(Insn::ldx_mem(size, R7, R1, 0));
    from_net(em, R7, bytes);
    em.jump(Insn::ja(0), done);
    em.bind(slow);
    // The helper takes a 32-bit offset; packets are far shorter than 2 GiB.
    em.jump(Insn::new(e::JMP | e::JGT | e::K, R3, 0, 0, 0x7fff_ffff), Label::NoMatch);
    em.push(Insn::mov64_reg(R2, R3));
    load_slow(em, R7, size, bytes);
    em.bind(done);
}

#[cfg(test)]
mod tests;
