//! Converts the kernel's `bpf_ktime_get_ns` (CLOCK_MONOTONIC) to wall-clock
//! time, and formats times as DESIGN.md's contract says (RFC 3339, ns, UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The offset between CLOCK_REALTIME and CLOCK_MONOTONIC, sampled once.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    pub fn new() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self { offset_ns: real - mono }
    }

    /// Nanoseconds since the Unix epoch for a kernel monotonic timestamp.
    pub fn wall_ns(&self, ktime_ns: u64) -> u64 {
        (ktime_ns as i128 + self.offset_ns).max(0) as u64
    }

    pub fn now_mono_ns() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// `2026-11-29T04:15:50.123456789Z`
pub fn rfc3339(wall_ns: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(wall_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// `04:15:50.123456`, as tcpdump and `ip monitor -t` print it.
pub fn hms_micros(wall_ns: u64) -> String {
    let secs = wall_ns / 1_000_000_000;
    let micros = (wall_ns % 1_000_000_000) / 1000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{:06}", day / 3600, (day / 60) % 60, day % 60, micros)
}

pub fn now_wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(hms_micros(1_700_000_000_123_456_789), "22:13:20.123456");
    }

    #[test]
    fn monotonic_maps_near_now() {
        let c = Clock::new();
        let wall = c.wall_ns(Clock::now_mono_ns());
        let now = now_wall_ns();
        assert!(wall.abs_diff(now) < 1_000_000_000);
    }
}
