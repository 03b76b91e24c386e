//! Facts about processes read from /proc: when a process started (which,
//! with its pid, names one process whatever pids are reused afterwards).

use std::fs;

/// Field 22 (`starttime`) of a `/proc/PID/stat` line, and whether field 3
/// (the state) says the process is dead (a zombie waiting for its parent,
/// its files closed). The command name (field 2) is in parentheses and may
/// itself hold spaces and `)`, so the fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(u64, bool)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_ascii_whitespace();
    let dead = matches!(f.next()?, "Z" | "X" | "x");
    // Fields 4.. follow the state: starttime is the 19th of them.
    Some((f.nth(18)?.parse().ok()?, dead))
}

/// When process `pid` started (clock ticks after boot), zombie or not.
pub fn start_time(pid: u32) -> Option<u64> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(start, _)| start)
}

/// When process `pid` started, if it is alive: `None` when there is no
/// such process or it is a zombie.
pub fn live_start_time(pid: u32) -> Option<u64> {
    match parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)? {
        (_, true) => None,
        (start, false) => Some(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        let line = "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 2215936 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some((987654, false)));
        assert_eq!(parse_stat(&line.replace(") S ", ") Z ")), Some((987654, true)));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        let own = start_time(std::process::id()).expect("own start time");
        assert_eq!(live_start_time(std::process::id()), Some(own));
    }

    #[test]
    fn a_killed_process_is_dead_before_it_is_reaped() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        assert!(live_start_time(pid).is_some());
        // SAFETY: killing our own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let zombie = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            live_start_time(pid).is_none()
        });
        let _ = child.wait();
        assert!(zombie, "a zombie still counted as alive");
    }
}
