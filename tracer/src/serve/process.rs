//! The tracer's own process metrics and build info, read from `/proc/self`
//! at each scrape: CPU seconds, resident memory, open file descriptors,
//! start time, and `tracer_build_info{version}`.

use std::fs;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

/// What `/proc/self` says about the process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    /// Seconds since the epoch.
    pub start_time: f64,
}

impl ProcessStats {
    /// Reads them; what cannot be read stays 0.
    pub fn read() -> Self {
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let mut s = Self::default();
        if let Ok(stat) = fs::read_to_string("/proc/self/stat")
            && let Some((utime, stime, start)) = parse_stat(&stat)
        {
            s.cpu_seconds = (utime + stime) as f64 / tick;
            s.start_time = boot_time().unwrap_or(0) as f64 + start as f64 / tick;
        }
        if let Ok(statm) = fs::read_to_string("/proc/self/statm") {
            s.resident_bytes = statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * page;
        }
        s.open_fds = fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        s
    }
}

/// utime, stime and starttime (clock ticks) of a `/proc/PID/stat` line.
/// The command name in parentheses may hold spaces and `)`: the fields
/// are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime 14, stime 15, starttime 22.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some((n(14)?, n(15)?, n(22)?))
}

/// The boot time, seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// Encodes [`ProcessStats`] and the build info at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl ProcessCollector {
    pub fn new() -> Self {
        Self
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(enc.encode_descriptor("process_cpu", "CPU time the tracer used, user and system", Some(&Unit::Seconds), cpu.metric_type())?)?;
        let rss = ConstGauge::new(s.resident_bytes as i64);
        rss.encode(enc.encode_descriptor("process_resident_memory", "Resident memory of the tracer", Some(&Unit::Bytes), rss.metric_type())?)?;
        let fds = ConstGauge::new(s.open_fds as i64);
        fds.encode(enc.encode_descriptor("process_open_fds", "File descriptors the tracer holds open", None, fds.metric_type())?)?;
        let start = ConstGauge::new(s.start_time);
        start.encode(enc.encode_descriptor("process_start_time", "When the tracer started, since the epoch", Some(&Unit::Seconds), start.metric_type())?)?;
        let info = ConstGauge::new(1i64);
        let mut m = enc.encode_descriptor("build_info", "The tracer's version (always 1)", None, info.metric_type())?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        info.encode(m.encode_family(&labels)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 200 0 0";
        assert_eq!(parse_stat(line), Some((250, 50, 12345)));
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None, "too few fields");
    }

    #[test]
    fn this_process_reads_as_running() {
        let s = ProcessStats::read();
        assert!(s.resident_bytes > 0 && s.open_fds >= 3, "{s:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
        assert!(s.start_time > 0.0 && s.start_time <= now + 1.0, "{s:?}");
    }
}
