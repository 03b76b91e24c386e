//! What the benchmarks of issue #10 share: their command line, loads made
//! by threads of the benchmark itself inside lab namespaces (a TCP stream,
//! a 64-byte UDP flood, a netlink change loop), a watched tool per round
//! (time to ready, CPU, RSS, its stderr summary), the kernel's BPF run-time
//! statistics, a lab of many namespaces, and markdown tables.
//!
//! Benchmarks print figures; they assert nothing. Every figure in the
//! README's performance section comes from them (`cargo xtask bench`).

pub mod bpf;
pub mod load;
pub mod opts;
pub mod profile;
pub mod progrun;
pub mod round;
pub mod scale;
pub mod table;
pub mod tool;

use std::time::Duration;

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// (busy, total) ticks of all CPUs, from /proc/stat.
pub fn system_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

pub fn num_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).max(1) as usize
}

/// The 1-minute load average, to judge how busy the shared machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Today's date (UTC), for the tables' headings.
pub fn today() -> String {
    crate::sh("date -u +%Y-%m-%d").trim().to_string()
}

/// CPU % of one process over a window: ticks before, then after.
pub struct CpuWindow {
    pid: u32,
    ticks: u64,
    start: std::time::Instant,
}

impl CpuWindow {
    pub fn start(pid: u32) -> CpuWindow {
        CpuWindow { pid, ticks: cpu_ticks(pid), start: std::time::Instant::now() }
    }

    /// Percent of one CPU used since `start`.
    pub fn percent(&self) -> f64 {
        let used = cpu_ticks(self.pid).saturating_sub(self.ticks) as f64 / ticks_per_sec();
        used / self.start.elapsed().as_secs_f64().max(1e-9) * 100.0
    }

    /// CPU seconds used since `start`.
    pub fn seconds(&self) -> f64 {
        cpu_ticks(self.pid).saturating_sub(self.ticks) as f64 / ticks_per_sec()
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Nice value the benchmarks run at, and every thread and process they
/// start after [`prioritize`] (the loads, the tracer, tcpdump): the machine
/// is shared with builds at nice 0, which would otherwise take CPU from
/// one round and not the next.
pub const NICE: i32 = -10;

/// Puts this thread (call it first in `main`: later threads and children
/// inherit it) at [`NICE`]; returns the nice value it runs at.
pub fn prioritize() -> i32 {
    // SAFETY: setpriority/getpriority on this thread; no memory involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

/// IRQ work interrupts on all CPUs so far (`IWI` in /proc/interrupts):
/// how a BPF ring buffer's wakeups reach the reader, one per wakeup that
/// was not already pending.
pub fn irq_work_interrupts() -> u64 {
    let s = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    s.lines()
        .find_map(|l| l.trim_start().strip_prefix("IWI:"))
        .map(|rest| rest.split_whitespace().map_while(|x| x.parse::<u64>().ok()).sum())
        .unwrap_or(0)
}

/// Whether `cmd` is on PATH.
pub fn which(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
