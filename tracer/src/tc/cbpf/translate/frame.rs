//! The translation for a frame in memory rather than an skb: `tracer
//! drops`, whose filter is a tracing program on `skb:kfree_skb` (a tracing
//! program can tail-call only programs of its own attach point, never the
//! TC filters). The drop program copied the frame into a per-CPU array
//! value; the filter looks that value up once (kept in r9), and every
//! packet load is a bounds check against the bytes copied then a load at a
//! constant or bounded offset of the value, which the verifier follows.
//! What libpcap's interpreter reads past the bytes it was given fails the
//! filter, as here. Linux ancillary loads (there are none in the code
//! libpcap makes for a file, which is what userspace matched with) are
//! refused. A miss frees the value (`busy` = 0) and returns; a match
//! tail-calls the emitter, which sends the record and frees the value.

use super::{Emitter, Label, TranslateError, e, from_net, size_of_load};
use crate::tc::cbpf::insn::{Insn, R0, R1, R2, R3, R4, R6, R9, R10, Reg};

/// Where the frame lies in the array value, and what to do on a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameOptions {
    /// The per-CPU array (key 0) holding the frame.
    pub frame_map_fd: i32,
    /// Offsets in the value: the busy word (cleared on every exit but a
    /// match), the u32 count of frame bytes present, the u32 length on the
    /// wire, and the first frame byte.
    pub busy_off: i16,
    pub cap_off: i16,
    pub wire_off: i16,
    pub data_off: i16,
    /// Room for frame bytes in the value (no load reaches past it).
    pub data_max: u32,
    /// A match: `bpf_tail_call(ctx, prog_array, emit_index)`.
    pub prog_array_fd: i32,
    pub emit_index: u32,
}

/// The stack word holding the lookup key (below the M words and SCRATCH).
const KEY: i16 = -80;

/// After `r6 = ctx`: r9 = the value, or return 0 when there is none.
pub(super) fn prologue(em: &mut Emitter, fo: &FrameOptions) {
    em.push(Insn::st_mem(e::W, R10, KEY, 0));
    for i in Insn::ld_map_fd(R1, fo.frame_map_fd) {
        em.push(i);
    }
    em.push(Insn::mov64_reg(R2, R10));
    em.push(Insn::alu64_imm(e::ADD, R2, i32::from(KEY)));
    em.push(Insn::call(e::FN_MAP_LOOKUP_ELEM));
    em.push(Insn::new(e::JMP | e::JNE | e::K, R0, 0, 2, 0));
    em.push(Insn::mov64_imm(R0, 0));
    em.push(Insn::exit());
    em.push(Insn::mov64_reg(R9, R0));
}

/// The end of a verdict: a miss frees the value and returns 0; a match
/// tail-calls the emitter (which frees it), or, when that slot is empty,
/// frees it and returns.
pub(super) fn epilogue(em: &mut Emitter, fo: &FrameOptions, matched: bool) -> Result<(), TranslateError> {
    if matched {
        let index = i32::try_from(fo.emit_index).map_err(|_| TranslateError::Index(fo.emit_index))?;
        em.push(Insn::mov64_reg(R1, R6));
        for i in Insn::ld_map_fd(R2, fo.prog_array_fd) {
            em.push(i);
        }
        em.push(Insn::mov64_imm(R3, index));
        em.push(Insn::call(e::FN_TAIL_CALL));
    }
    em.push(Insn::st_mem(e::W, R9, fo.busy_off, 0));
    em.push(Insn::mov64_imm(R0, 0));
    em.push(Insn::exit());
    Ok(())
}

/// `A = len` / `X = len`: the length on the wire.
pub(super) fn load_len(em: &mut Emitter, fo: &FrameOptions, dst: Reg) {
    em.push(Insn::ldx_mem(e::W, dst, R9, fo.wire_off));
}

/// `ld{,h,b} [k]` (and the byte of `ldx 4*([k]&0xf)`) into `dst`.
pub(super) fn load_abs(em: &mut Emitter, fo: &FrameOptions, at: usize, dst: Reg, code: u16, k: u32) -> Result<(), TranslateError> {
    let (size, bytes) = size_of_load(code);
    let end = u64::from(k) + bytes;
    if end > u64::from(fo.data_max) {
        // Past anything copied: libpcap's interpreter fails the filter.
        em.jump(Insn::ja(0), Label::NoMatch);
        return Ok(());
    }
    let off = i16::try_from(i64::from(fo.data_off) + i64::from(k)).map_err(|_| TranslateError::Ancillary { at, k })?;
    em.push(Insn::ldx_mem(e::W, R1, R9, fo.cap_off));
    // if cap < end: no match (32-bit unsigned).
    em.jump(Insn::new(e::JMP32 | JLT | e::K, R1, 0, 0, end as i32), Label::NoMatch);
    em.push(Insn::ldx_mem(size, dst, R9, off));
    from_net(em, dst, bytes);
    Ok(())
}

/// `ld{,h,b} [x + k]` into A, X in `x`. The offset is computed in 64 bits
/// (an X + k that wraps in 32 bits is out of the frame, as libpcap has it)
/// and bounded by the room in the value before it is added to r9.
pub(super) fn load_ind(em: &mut Emitter, fo: &FrameOptions, a: Reg, x: Reg, code: u16, k: u32) {
    let (size, bytes) = size_of_load(code);
    super::x_plus_k(em, x, k);
    let last = i64::from(fo.data_max) - bytes as i64;
    if last < 0 {
        em.jump(Insn::ja(0), Label::NoMatch);
        return;
    }
    em.jump(Insn::new(e::JMP | e::JGT | e::K, R3, 0, 0, last as i32), Label::NoMatch);
    em.push(Insn::ldx_mem(e::W, R1, R9, fo.cap_off));
    em.push(Insn::mov64_reg(R4, R3));
    em.push(Insn::alu64_imm(e::ADD, R4, bytes as i32));
    em.jump(Insn::new(e::JMP | e::JGT | e::X, R4, R1, 0, 0), Label::NoMatch);
    em.push(Insn::mov64_reg(R2, R9));
    em.push(Insn::alu64_reg(e::ADD, R2, R3));
    em.push(Insn::ldx_mem(size, a, R2, fo.data_off));
    from_net(em, a, bytes);
}

/// `<` unsigned (linux/bpf.h `BPF_JLT`).
const JLT: u8 = 0xa0;
