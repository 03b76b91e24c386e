//! The kernel's view of a tool's BPF objects: run-time statistics of its
//! programs (`BPF_ENABLE_STATS`, then `run_time_ns` / `run_cnt` per
//! program, i.e. ns per packet for a TC program), and the fill of its maps
//! (a key walk by map id). Programs and maps are found through the tool's
//! open fds (`/proc/PID/fdinfo`), named with `BPF_OBJ_GET_INFO_BY_FD`.
//!
//! Raw `bpf(2)` calls: the attribute layouts are those of `union bpf_attr`
//! and `struct bpf_prog_info` / `bpf_map_info` in linux/bpf.h (stable ABI).

use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_ENABLE_STATS: libc::c_long = 32;

/// `bpf(2)` with a zeroed 128-byte attr whose first u64s are `words`.
/// Returns the raw result (an fd, 0, or -1 with errno).
fn bpf(cmd: libc::c_long, words: &[u64]) -> i64 {
    let mut attr = [0u64; 16];
    attr[..words.len()].copy_from_slice(words);
    bpf_attr(cmd, &mut attr)
}

/// [`bpf`] on an attr the kernel may write back into.
fn bpf_attr(cmd: libc::c_long, attr: &mut [u64; 16]) -> i64 {
    // SAFETY: a 128-byte attr; any pointer in it was put there by a caller
    // of this module and points at a live buffer of the size the command needs.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128) }
}

fn owned(fd: i64) -> Option<OwnedFd> {
    // SAFETY: a new fd the kernel just returned, owned from here on.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The kernel's BPF run-time statistics, on while this lives (the kernel
/// turns them off when its fd closes, even if the benchmark dies). They
/// cost every program run two clock reads: rounds that measure
/// throughput run without them.
pub struct StatsOn {
    _fd: OwnedFd,
}

impl StatsOn {
    pub fn enable() -> Option<StatsOn> {
        // BPF_STATS_RUN_TIME is 0: the zeroed attr asks for it.
        owned(bpf(BPF_ENABLE_STATS, &[])).map(|fd| StatsOn { _fd: fd })
    }
}

/// One program as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prog {
    pub id: u32,
    pub prog_type: u32,
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// `BPF_OBJ_GET_INFO_BY_FD` into a buffer of `N` u64s.
fn info<const N: usize>(fd: &OwnedFd) -> Option<[u64; N]> {
    let mut buf = [0u64; N];
    let rc = bpf(BPF_OBJ_GET_INFO_BY_FD, &[fd.as_raw_fd() as u64 | ((N as u64 * 8) << 32), buf.as_mut_ptr() as u64]);
    (rc == 0).then_some(buf)
}

fn name_at(buf: &[u64], byte_off: usize) -> String {
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).skip(byte_off).take(16).take_while(|b| *b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn prog_by_id(id: u32) -> Option<Prog> {
    let fd = owned(bpf(BPF_PROG_GET_FD_BY_ID, &[id as u64]))?;
    // struct bpf_prog_info: type @0, id @4, name @64, run_time_ns @192, run_cnt @200.
    let b = info::<32>(&fd)?;
    Some(Prog { id, prog_type: b[0] as u32, name: name_at(&b, 64), run_time_ns: b[24], run_cnt: b[25] })
}

/// `key: value` lines of every fdinfo of `pid` that has `marker`.
fn fdinfos(pid: u32, marker: &str) -> Vec<BTreeMap<String, String>> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|s| s.contains(marker))
        .map(|s| s.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect())
        .collect()
}

/// The BPF programs `pid` holds open, each once.
pub fn programs(pid: u32) -> Vec<Prog> {
    let mut ids: Vec<u32> = fdinfos(pid, "prog_id:").iter().filter_map(|m| m.get("prog_id")?.parse().ok()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().filter_map(prog_by_id).collect()
}

/// The programs behind the BPF links `pid` holds (TCX attachments among
/// them): what it attached, not what it merely loaded.
pub fn linked_programs(pid: u32) -> Vec<Prog> {
    let mut ids: Vec<u32> = fdinfos(pid, "link_type:").iter().filter_map(|m| m.get("prog_id")?.parse().ok()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().filter_map(prog_by_id).collect()
}

/// SCHED_CLS, the type of TC programs.
pub const PROG_TYPE_TC: u32 = 3;

/// What `BPF_PROG_TEST_RUN` measured: the kernel's mean time per run of
/// its loop (no run-time statistics in it unless they are on) and the
/// program's return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRun {
    pub ns_per_run: u32,
    pub retval: u32,
}

/// Runs TC program `fd` `repeat` times on `frame` in the kernel's test
/// harness (a fresh skb on the loopback device of the caller's namespace).
pub fn test_run_fd(fd: &OwnedFd, frame: &[u8], repeat: u32) -> Result<TestRun, String> {
    // union bpf_attr, test: prog_fd @0, retval @4, data_size_in @8,
    // data_size_out @12, data_in @16, data_out @24, repeat @32, duration @36.
    let mut attr = [0u64; 16];
    attr[0] = fd.as_raw_fd() as u64;
    attr[1] = frame.len() as u64;
    attr[2] = frame.as_ptr() as u64;
    attr[4] = repeat as u64;
    if bpf_attr(BPF_PROG_TEST_RUN, &mut attr) != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(TestRun { ns_per_run: (attr[4] >> 32) as u32, retval: (attr[0] >> 32) as u32 })
}

/// An fd of the program with this id.
pub fn prog_fd(id: u32) -> Option<OwnedFd> {
    owned(bpf(BPF_PROG_GET_FD_BY_ID, &[id as u64]))
}

/// A TC program that does nothing (`r0 = -1; exit`, "continue"): what
/// any program costs before its first instruction, the floor of the
/// figures of [`test_run_fd`] and of the run-time statistics.
pub fn empty_tc_program() -> Result<OwnedFd, String> {
    // mov64 r0, -1 (0xb7, imm -1); exit (0x95).
    let insns: [u64; 2] = [0xffff_ffff_0000_00b7, 0x95];
    let license = b"GPL\0";
    // union bpf_attr, load: prog_type @0, insn_cnt @4, insns @8, license @16.
    let rc = bpf(BPF_PROG_LOAD, &[PROG_TYPE_TC as u64 | (2 << 32), insns.as_ptr() as u64, license.as_ptr() as u64]);
    owned(rc).ok_or_else(|| std::io::Error::last_os_error().to_string())
}

/// The run-time statistics of the program behind `fd`: (runs, ns).
pub fn stats_of(fd: &OwnedFd) -> Option<(u64, u64)> {
    let b = info::<32>(fd)?;
    Some((b[25], b[24]))
}

/// Runs and ns per program name between two snapshots of [`programs`].
pub fn cost(before: &[Prog], after: &[Prog]) -> BTreeMap<String, Cost> {
    let mut out: BTreeMap<String, Cost> = BTreeMap::new();
    for a in after {
        let b = before.iter().find(|b| b.id == a.id);
        let c = out.entry(a.name.clone()).or_default();
        c.runs += a.run_cnt - b.map_or(0, |b| b.run_cnt.min(a.run_cnt));
        c.ns += a.run_time_ns - b.map_or(0, |b| b.run_time_ns.min(a.run_time_ns));
    }
    out
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub runs: u64,
    pub ns: u64,
}

impl Cost {
    pub fn per_run(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.ns as f64 / self.runs as f64)
    }

    pub fn add(&mut self, o: Cost) {
        self.runs += o.runs;
        self.ns += o.ns;
    }
}

/// The sum over programs whose name starts with `prefix`.
pub fn cost_of(costs: &BTreeMap<String, Cost>, prefix: &str) -> Cost {
    let mut c = Cost::default();
    for (_, v) in costs.iter().filter(|(k, _)| k.starts_with(prefix)) {
        c.add(*v);
    }
    c
}

/// One map as the kernel reports it.
#[derive(Debug, Clone)]
pub struct MapInfo {
    pub id: u32,
    pub map_type: u32,
    pub name: String,
    pub key_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// The maps `pid` holds open, each once.
pub fn maps(pid: u32) -> Vec<MapInfo> {
    let mut ids: Vec<u32> = fdinfos(pid, "map_id:").iter().filter_map(|m| m.get("map_id")?.parse().ok()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let fd = owned(bpf(BPF_MAP_GET_FD_BY_ID, &[id as u64]))?;
            // struct bpf_map_info: type @0, id @4, key_size @8, value_size @12,
            // max_entries @16, map_flags @20, name @24.
            let b = info::<12>(&fd)?;
            Some(MapInfo {
                id,
                map_type: b[0] as u32,
                key_size: b[1] as u32,
                max_entries: b[2] as u32,
                flags: (b[2] >> 32) as u32,
                name: name_at(&b, 24),
            })
        })
        .collect()
}

/// How many keys map `m` holds now (a `GET_NEXT_KEY` walk; one that
/// restarts under evictions counts some keys twice, so it is bounded).
pub fn entries(m: &MapInfo) -> Option<u64> {
    let fd = owned(bpf(BPF_MAP_GET_FD_BY_ID, &[m.id as u64]))?;
    let mut key = vec![0u8; m.key_size as usize];
    let mut next = vec![0u8; m.key_size as usize];
    let mut n = 0u64;
    let mut first = true;
    while n <= 2 * m.max_entries as u64 {
        let k = if first { 0 } else { key.as_ptr() as u64 };
        if bpf(BPF_MAP_GET_NEXT_KEY, &[fd.as_raw_fd() as u64, k, next.as_mut_ptr() as u64]) != 0 {
            break;
        }
        first = false;
        key.copy_from_slice(&next);
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u32, name: &str, runs: u64, ns: u64) -> Prog {
        Prog { id, prog_type: PROG_TYPE_TC, name: name.into(), run_cnt: runs, run_time_ns: ns }
    }

    #[test]
    fn costs_between_snapshots() {
        let before = [p(1, "top_ingress", 10, 1000), p(2, "top_egress", 0, 0)];
        let after = [p(1, "top_ingress", 110, 31000), p(2, "top_egress", 50, 10000), p(3, "pkt_ingress", 5, 500)];
        let c = cost(&before, &after);
        assert_eq!(c["top_ingress"], Cost { runs: 100, ns: 30000 });
        assert_eq!(c["pkt_ingress"].per_run(), Some(100.0));
        let top = cost_of(&c, "top_");
        assert_eq!((top.runs, top.per_run()), (150, Some(40000.0 / 150.0)));
        assert_eq!(Cost::default().per_run(), None);
    }

    #[test]
    fn names_are_cut_at_nul() {
        let mut b = [0u64; 12];
        b[3] = u64::from_ne_bytes(*b"TOP_FLOW");
        b[4] = u64::from_ne_bytes(*b"S\0\0\0\0\0\0\0");
        assert_eq!(name_at(&b, 24), "TOP_FLOWS");
    }
}
