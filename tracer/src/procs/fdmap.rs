//! Which process holds a socket inode: a walk of `/proc/*/fd` (each fd a
//! symbolic link `socket:[INODE]`), and what `/proc/PID` says of a process
//! (comm, uid, start time, command line). Used once at start for the
//! sockets that existed before the tracer, on the start-up thread, bounded
//! by [`FDS_MAX`] links and [`WALK_BUDGET`]; and for command lines on the
//! enrichment thread, cut to [`CMDLINE_MAX`] bytes.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::Read as _,
    time::{Duration, Instant},
};

use super::table::Process;

/// File descriptors looked at, at most, in one walk.
pub const FDS_MAX: usize = 1_000_000;
/// How long one walk may take.
pub const WALK_BUDGET: Duration = Duration::from_secs(3);
/// Bytes of a command line kept.
pub const CMDLINE_MAX: usize = 4096;

/// What a walk found, and what it left out.
#[derive(Debug, Default)]
pub struct Walk {
    /// Socket inode -> the lowest pid holding it (a forked server's
    /// children share their parent's listener; the parent is reported).
    pub holders: HashMap<u64, u32>,
    pub fds_seen: usize,
    /// The walk stopped at [`FDS_MAX`] or [`WALK_BUDGET`].
    pub cut_short: bool,
}

/// `socket:[12345]` -> 12345.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Finds the holders of the inodes in `wanted`.
pub fn walk(wanted: &HashSet<u64>) -> Walk {
    let mut w = Walk::default();
    if wanted.is_empty() {
        return w;
    }
    let start = Instant::now();
    let Ok(procs) = fs::read_dir("/proc") else { return w };
    let mut pids: Vec<u32> = procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    'outer: for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            w.fds_seen += 1;
            if w.fds_seen > FDS_MAX || (w.fds_seen % 1024 == 0 && start.elapsed() > WALK_BUDGET) {
                w.cut_short = true;
                break 'outer;
            }
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            let Some(ino) = target.to_str().and_then(socket_inode) else { continue };
            if wanted.contains(&ino) {
                w.holders.entry(ino).or_insert(pid);
            }
        }
    }
    w
}

/// Reads at most `max` bytes of a file.
fn read_capped(path: &str, max: usize) -> Option<Vec<u8>> {
    let f = fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The real uid from a `/proc/PID/status` text.
pub fn uid_from_status(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// A process as `/proc/PID` describes it now (`None` once it is gone).
pub fn process(pid: u32, netns_ino: u64) -> Option<Process> {
    let stat = String::from_utf8(read_capped(&format!("/proc/{pid}/stat"), 4096)?).ok()?;
    let start_ticks = crate::sys::proc::parse_stat(&stat)?.0;
    let comm = String::from_utf8_lossy(&read_capped(&format!("/proc/{pid}/comm"), 64)?).trim_end_matches('\n').to_string();
    let status = String::from_utf8_lossy(&read_capped(&format!("/proc/{pid}/status"), 16 * 1024)?).into_owned();
    Some(Process {
        pid,
        tid: pid,
        uid: uid_from_status(&status).unwrap_or(u32::MAX),
        comm: crate::sys::bounded::cut(&comm, super::COMM_MAX).to_string(),
        start_ticks,
        cgroup_id: 0,
        netns_ino,
        cmdline: None,
        container: None,
    })
}

/// The command line of `pid`, arguments joined by spaces, if the process
/// is still the one that started at `start_ticks`.
pub fn cmdline(pid: u32, start_ticks: u64) -> Option<String> {
    let raw = read_capped(&format!("/proc/{pid}/cmdline"), CMDLINE_MAX)?;
    // Read the start time after the command line: if it still matches, the
    // command line was this process's, not a successor's with its pid.
    let stat = String::from_utf8(read_capped(&format!("/proc/{pid}/stat"), 4096)?).ok()?;
    if start_ticks != 0 && crate::sys::proc::parse_stat(&stat)?.0 != start_ticks {
        return None;
    }
    let parts: Vec<String> = raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;

    #[test]
    fn socket_links_parse() {
        assert_eq!(socket_inode("socket:[4026]"), Some(4026));
        assert_eq!(socket_inode("pipe:[4026]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
        assert_eq!(uid_from_status("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"), Some(1000));
    }

    #[test]
    fn own_socket_is_found_and_described() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let link = fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).expect("link");
        let ino = socket_inode(link.to_str().expect("utf-8")).expect("a socket");
        let w = walk(&HashSet::from([ino]));
        let me = std::process::id();
        assert_eq!(w.holders.get(&ino), Some(&me));
        let p = process(me, 0).expect("this process");
        assert_eq!(p.pid, me);
        assert!(p.start_ticks > 0);
        let cl = cmdline(me, p.start_ticks).expect("cmdline");
        assert!(!cl.is_empty());
        assert_eq!(cmdline(me, p.start_ticks + 1), None, "another start time is another process");
    }
}
