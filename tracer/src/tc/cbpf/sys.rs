//! The few `bpf(2)` commands the filter programs need and aya does not
//! offer for instructions made at run time: load a `SCHED_CLS` program (or
//! a tracing program for a BTF tracepoint, `tracer drops`' filter)
//! from an instruction array (with the verifier's log when it refuses),
//! put a program into a program array, create a program array, and run a
//! program once on a frame (`BPF_PROG_TEST_RUN`, for tests and checks).
//!
//! Each command has its own `#[repr(C)]` prefix of `union bpf_attr`
//! (linux/bpf.h); the kernel reads only the size passed and requires
//! nothing past it, so the prefixes stay valid on every kernel since 5.10.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use super::insn::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_TRACING: u32 = 26;
/// `expected_attach_type` of a BTF tracepoint (`tp_btf`) program.
const BPF_TRACE_RAW_TP: u32 = 23;

/// Verifier log levels: 1 = the walk (for refusals), 4 = statistics only.
const LOG_WALK: u32 = 1;
const LOG_STATS: u32 = 4;
/// The walk of a refused program can be long; the kernel caps it too.
const LOG_SIZE_REFUSED: usize = 4 << 20;
const LOG_SIZE_STATS: usize = 4096;

/// Not GPL-only helpers are used, but the kernel wants a license string.
const LICENSE: &[u8] = b"Dual MIT/GPL\0";

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("the verifier refused the filter program ({errno}); its log ends with:\n{log}")]
    Refused { errno: io::Error, log: String },
    #[error("{what}: {source}")]
    Call { what: &'static str, source: io::Error },
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    /// The BTF type id (in vmlinux) of the attach point: for a BTF
    /// tracepoint, its `btf_trace_<name>` typedef.
    attach_btf_id: u32,
    attach_prog_fd: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
}

/// # Safety
/// `attr` must be the attribute layout the kernel expects for `cmd`, and
/// every pointer inside it valid for what `cmd` reads or writes.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for the layout and the pointers; the size
    // passed is exactly the struct's.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    // The kernel takes [A-Za-z0-9_.] and 15 bytes; anything else becomes '_'.
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = if b.is_ascii_alphanumeric() || b == b'.' { b } else { b'_' };
    }
    out
}

/// A loaded program and what the verifier said about it.
#[derive(Debug)]
pub struct LoadedProgram {
    pub fd: OwnedFd,
    /// The verifier's statistics line(s), e.g. "processed 57 insns ...".
    pub verifier_stats: String,
}

fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}

/// Loads `insns` as a `BPF_PROG_TYPE_SCHED_CLS` program named `name`.
pub fn load_sched_cls(name: &str, insns: &[Insn]) -> Result<LoadedProgram, BpfError> {
    load(name, insns, BPF_PROG_TYPE_SCHED_CLS, 0, 0)
}

/// Loads `insns` as a BTF tracepoint program (`BPF_PROG_TYPE_TRACING`,
/// `BPF_TRACE_RAW_TP`) for the tracepoint whose `btf_trace_<name>`
/// typedef has the vmlinux BTF id `attach_btf_id`; such a program may sit
/// in a program array with the programs of that same tracepoint.
pub fn load_btf_tracepoint(name: &str, insns: &[Insn], attach_btf_id: u32) -> Result<LoadedProgram, BpfError> {
    load(name, insns, BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, attach_btf_id)
}

fn load(name: &str, insns: &[Insn], prog_type: u32, expected_attach_type: u32, attach_btf_id: u32) -> Result<LoadedProgram, BpfError> {
    let try_load = |level: u32, log: &mut Vec<u8>| {
        let mut attr = ProgLoadAttr {
            prog_type,
            expected_attach_type,
            attach_btf_id,
            insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level: level,
            log_size: u32::try_from(log.len()).unwrap_or(u32::MAX),
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name16(name),
            ..Default::default()
        };
        // SAFETY: ProgLoadAttr is the BPF_PROG_LOAD prefix of bpf_attr; the
        // instruction array (insn_cnt entries of the kernel's 8-byte
        // layout), the NUL-terminated license and the log buffer (log_size
        // bytes, written by the kernel) outlive the call.
        unsafe { bpf(BPF_PROG_LOAD, &mut attr) }
    };
    let mut log = vec![0u8; LOG_SIZE_STATS];
    match try_load(LOG_STATS, &mut log) {
        // SAFETY: BPF_PROG_LOAD returns a new file descriptor we now own.
        Ok(fd) => Ok(LoadedProgram { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) }, verifier_stats: log_text(&log) }),
        Err(_) => {
            // Again with the whole walk, to say why.
            let mut log = vec![0u8; LOG_SIZE_REFUSED];
            match try_load(LOG_WALK, &mut log) {
                // SAFETY: as above.
                Ok(fd) => Ok(LoadedProgram { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) }, verifier_stats: String::new() }),
                Err(errno) => {
                    let text = log_text(&log);
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                    Err(BpfError::Refused { errno, log })
                }
            }
        }
    }
}

/// A new `BPF_MAP_TYPE_PROG_ARRAY` of `max_entries` slots.
pub fn create_prog_array(name: &str, max_entries: u32) -> Result<OwnedFd, BpfError> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_PROG_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    // SAFETY: MapCreateAttr is the BPF_MAP_CREATE prefix of bpf_attr, with no pointers.
    let fd = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|source| BpfError::Call { what: "creating a program array", source })?;
    // SAFETY: BPF_MAP_CREATE returns a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `prog_array[index] = prog`.
pub fn prog_array_set(prog_array: BorrowedFd<'_>, index: u32, prog: BorrowedFd<'_>) -> Result<(), BpfError> {
    let key = index;
    let value = prog.as_raw_fd() as u32;
    let mut attr = MapElemAttr {
        map_fd: prog_array.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    // SAFETY: MapElemAttr is the BPF_MAP_*_ELEM prefix of bpf_attr; key and
    // value point to 4-byte integers (the program array's sizes) that
    // outlive the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }
        .map(|_| ())
        .map_err(|source| BpfError::Call { what: "putting the filter program into the program array", source })
}

/// Runs a TC program once on `frame` (from its Ethernet header, at least
/// 14 bytes) and returns its return value. Needs CAP_BPF (or root); no
/// device, namespace or attachment is involved.
pub fn test_run(prog: BorrowedFd<'_>, frame: &[u8]) -> Result<u32, BpfError> {
    test_run_repeat(prog, frame, 1).map(|(ret, _)| ret)
}

/// Runs it `repeat` times; returns the return value and the kernel's
/// average time per run in nanoseconds.
pub fn test_run_repeat(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> Result<(u32, u32), BpfError> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: u32::try_from(frame.len()).unwrap_or(u32::MAX),
        data_in: frame.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: TestRunAttr is the BPF_PROG_TEST_RUN prefix of bpf_attr;
    // data_in is valid for data_size_in bytes; no output buffer is given
    // (data_out = 0, data_size_out = 0), so the kernel writes only attr.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }.map_err(|source| BpfError::Call { what: "running the program on a test frame", source })?;
    Ok((attr.retval, attr.duration))
}
