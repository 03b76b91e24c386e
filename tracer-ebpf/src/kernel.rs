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
    Config, EventHeader, LostSource, netlink::NL_DATA_MAX, offsets::KernelOffsets, packet::PKT_DATA_MAX,
};

/// Room for a header, a payload struct and the largest netlink data part.
pub const SCRATCH_SIZE: usize = 128 + NL_DATA_MAX;
/// The same for a packet record.
pub const SCRATCH_TC_SIZE: usize = 128 + PKT_DATA_MAX;
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

/// TC programs' buffer. A softirq can run a TC program on the CPU where a
/// tracepoint program was interrupted, in the middle of its record: with a
/// shared buffer it would overwrite that record.
#[map(name = "SCRATCH_TC")]
pub static SCRATCH_TC: PerCpuArray<Scratch<SCRATCH_TC_SIZE>> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
static CONFIG: Config = Config { self_tgid: 0, snaplen: 0, nl_netns: 0, pkt_filter: 0 };

#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::missing();

#[inline(always)]
pub fn config() -> Config {
    // SAFETY: a read of a global; volatile so the compiler does not fold the
    // placeholder value, since userspace rewrites it before loading.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: as for `config`.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

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
