//! What every program shares: the ring buffer, lost-event counters, the
//! scratch buffers, the settings and kernel offsets userspace sets at load
//! time, and small helpers to read kernel memory.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_kernel,
    },
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tracer_common::{
    Config, EventHeader, LostSource, netlink::NL_DATA_MAX, offsets::KernelOffsets,
};

/// Room for a header, a payload struct and the largest netlink data part.
pub const SCRATCH_SIZE: usize = 128 + NL_DATA_MAX;
pub const HDR: usize = core::mem::size_of::<EventHeader>();

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map(name = "LOST")]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(LostSource::COUNT, 0);

/// Where a record is assembled before it is copied to the ring buffer
/// (a record of a few KiB does not fit on the 512-byte BPF stack).
#[repr(C)]
pub struct Scratch<const N: usize> {
    pub buf: [u8; N],
}

/// Tracepoint programs' buffer. They never run nested on a CPU (the kernel
/// skips a tracing program that fires inside another), so one is enough
/// for all of them.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch<SCRATCH_SIZE>> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static CONFIG: Config = Config { self_tgid: 0, snaplen: 0, nl_netns: 0, pkt_filter: 0, pkt_hash: 0, ring_eighth: 0 };

#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets::missing();

#[inline(always)]
pub fn config() -> Config {
    // SAFETY: a read of a global; volatile so the compiler does not fold the
    // placeholder value, since userspace rewrites it before loading.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// An eighth of the ring's size (see `Config::ring_eighth`), asked of
/// the ring only when the loader did not say.
#[inline(always)]
pub fn ring_eighth() -> u64 {
    // SAFETY: as for `config`, one field.
    let e = unsafe { core::ptr::read_volatile(&raw const CONFIG.ring_eighth) } as u64;
    if e != 0 { e } else { EVENTS.query(aya_ebpf::bindings::BPF_RB_RING_SIZE as u64) / 8 }
}

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: as for `config`.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// One field of [`offsets`], read alone: `offsets()` copies the whole
/// struct (a volatile read of every field) wherever it is called, which
/// the per-packet TC path does not need.
macro_rules! offset {
    ($field:ident) => {
        // SAFETY: a read of one field of a global userspace rewrites
        // before loading; volatile so the placeholder is not folded.
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::OFFSETS.$field) }
    };
}
pub(crate) use offset;

/// Reads a `T` at `base + off` in kernel memory; `None` when the offset is
/// unknown on this kernel or the read faults.
#[inline(always)]
pub fn kread<T>(base: *const u8, off: u32) -> Option<T> {
    if off == KernelOffsets::MISSING || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel validates the address itself.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T).ok() }
}

/// Like [`kread`], but zero when the read fails, and without a branch: the
/// helper zeroes its destination itself. A read that may fail otherwise
/// splits the verifier's walk into a path with 0 and one with an unknown
/// value, which 6.1 cannot merge later (the two spill differently to the
/// stack), doubling the states of everything after it.
#[inline(always)]
pub fn kread_or_zero<T>(base: *const u8, off: u32) -> T {
    let mut v = core::mem::MaybeUninit::<T>::zeroed();
    if off != KernelOffsets::MISSING {
        // SAFETY: the helper validates the address and zeroes `v` on failure.
        unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                v.as_mut_ptr() as *mut _,
                core::mem::size_of::<T>() as u32,
                base.wrapping_add(off as usize) as *const _,
            )
        };
    }
    // SAFETY: zeroed, then possibly overwritten by the helper; callers use
    // plain integer types, for which every bit pattern is valid.
    unsafe { v.assume_init() }
}

/// Zeroes `slot` in place with word-sized stores and hands it back as a
/// `T`. Zeroing a struct the usual way (`Default`, `[0; N]` padding) makes
/// LLVM call its BPF `memset`, a subprogram that stores one byte per
/// iteration: the 46 bytes of a flow key took ~230 instructions per
/// packet. Volatile stores cannot be merged back into that call, and
/// working in place leaves no copy for LLVM to turn into one either.
#[inline(always)]
pub fn zero<T>(slot: &mut core::mem::MaybeUninit<T>) -> &mut T {
    if core::mem::align_of::<T>() >= 8 && core::mem::size_of::<T>() % 8 == 0 {
        let p = slot.as_mut_ptr() as *mut u64;
        for i in 0..core::mem::size_of::<T>() / 8 {
            // SAFETY: inside `slot`, aligned for a u64 (checked just above).
            unsafe { core::ptr::write_volatile(p.add(i), 0) };
        }
    } else {
        const { assert!(core::mem::align_of::<T>() >= 4 && core::mem::size_of::<T>() % 4 == 0) };
        let p = slot.as_mut_ptr() as *mut u32;
        for i in 0..core::mem::size_of::<T>() / 4 {
            // SAFETY: inside `slot`, aligned for a u32 (asserted at compile time).
            unsafe { core::ptr::write_volatile(p.add(i), 0) };
        }
    }
    // SAFETY: every byte was written; callers use plain-data structs, for
    // which all-zero is a valid value.
    unsafe { slot.assume_init_mut() }
}

/// Copies `src` to `dst` a word at a time (the words volatile, for the
/// reason given at [`zero`]: a plain copy of a struct that is partly zero
/// becomes a byte-wise `memset` call). `T`'s size and alignment are
/// multiples of 8.
///
/// # Safety
/// `dst` is valid for a write of a `T` and aligned for it.
#[inline(always)]
pub unsafe fn copy_words<T>(dst: *mut T, src: &T) {
    const { assert!(core::mem::align_of::<T>() >= 8 && core::mem::size_of::<T>() % 8 == 0) };
    let (d, s) = (dst as *mut u64, src as *const T as *const u64);
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: both inside their `T`, aligned (asserted above; `dst` by the caller).
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
    }
}

/// True when the current task is the tracer itself.
#[inline(always)]
pub fn is_self() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    tgid == config().self_tgid
}

/// Counts one lost event of `source` on this CPU.
#[inline(always)]
pub fn count_lost(source: LostSource) {
    count_lost_n(source, 1);
}

/// Counts `n` lost events of `source` on this CPU, atomically: a TC
/// program run by a softirq can interrupt a tracepoint program between the
/// load and the store of a plain `+=` on the same per-CPU slot, and one of
/// the two counts would vanish.
#[inline(always)]
pub fn count_lost_n(source: LostSource, n: u64) {
    if let Some(p) = LOST.get_ptr_mut(source as u32) {
        atomic_add(p, n);
    }
}

/// `*p += n` as one instruction, BPF's atomic add without fetch (`BPF_XADD`,
/// every kernel with eBPF). Written in assembly: the BPF target declares no
/// compare-and-swap, so core's atomics have no `fetch_add` there, and
/// LLVM's BPF backend is free to lower an atomic of its "single-thread"
/// model to a plain load and store.
#[inline(always)]
pub fn atomic_add(p: *mut u64, n: u64) {
    // SAFETY: `p` points at an 8-aligned u64 inside a map value, valid for
    // the whole program run; the instruction writes nothing else.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({p} + 0) += {n}",
            p = in(reg) p,
            n = in(reg) n,
            options(nostack),
        );
    }
}

/// Fills a header for an event in the current task's context.
#[inline(always)]
pub fn task_header(kind: u32, netns_ino: u32, payload_len: u32) -> EventHeader {
    EventHeader {
        kind,
        // SAFETY: plain helper calls.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid: bpf_get_current_pid_tgid(),
        uid_gid: bpf_get_current_uid_gid(),
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        netns_ino,
        payload_len,
        comm: current_comm(),
    }
}

/// The task's comm; zeroed by the helper itself if it fails, without the
/// branch (and the doubled verifier states) of `unwrap_or`.
#[inline(always)]
fn current_comm() -> [u8; 16] {
    let mut comm = [0u8; 16];
    // SAFETY: the helper writes at most 16 bytes into `comm`.
    unsafe { aya_ebpf::helpers::generated::bpf_get_current_comm(comm.as_mut_ptr() as *mut _, 16) };
    comm
}

/// Whether the current task may add a netlink record to the ring: root's
/// always may, another user's only while the ring is at most half full.
/// A user the kernel refuses (any local user can send rtnetlink requests,
/// refused after the tracepoint copied them) could otherwise keep the ring
/// full and hide the requests of those who may change the network; the
/// upper half stays for root's requests and answers, packets, drops and
/// everything else. A record turned away is a `netlink_unprivileged` loss.
#[inline(always)]
pub fn ring_admits_sender() -> bool {
    if bpf_get_current_uid_gid() as u32 == 0 {
        return true;
    }
    let held = EVENTS.query(aya_ebpf::bindings::BPF_RB_AVAIL_DATA as u64);
    if held <= ring_eighth() * 4 {
        return true;
    }
    count_lost(LostSource::NetlinkUnprivileged);
    false
}

/// Sends the first `len` bytes of a tracepoint scratch buffer as one
/// record; a record the ring cannot take is a loss of `source`. Whether it
/// was sent.
#[inline(always)]
pub fn output(scratch: *mut Scratch<SCRATCH_SIZE>, len: usize, source: LostSource) -> bool {
    if len > SCRATCH_SIZE {
        return false;
    }
    // SAFETY: `len` is bounded by the scratch size just above.
    let bytes = unsafe { core::slice::from_raw_parts((*scratch).buf.as_ptr(), len) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        count_lost(source);
        return false;
    }
    true
}
