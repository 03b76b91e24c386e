//! Where the cgroup v2 hierarchy is mounted: its root is where the socket
//! programs attach, so that every process on the host is under them. On a
//! unified host that is `/sys/fs/cgroup`; on a hybrid one (v1 controllers
//! in `/sys/fs/cgroup/*`) it is elsewhere, often `/sys/fs/cgroup/unified`.
//! Found in `/proc/self/mountinfo` by its file system type, never assumed.

use std::path::PathBuf;

/// A `mountinfo` field with its octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount point of the cgroup v2 hierarchy's root in a `mountinfo`
/// text: a `cgroup2` mount of `/` (a mount of a subtree, as inside a
/// container with its own cgroup namespace, covers only that subtree and
/// is taken only when there is no other).
pub fn find(mountinfo: &str) -> Option<PathBuf> {
    let mut subtree = None;
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        if post.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let f: Vec<&str> = pre.split_whitespace().collect();
        let (Some(root), Some(point)) = (f.get(3), f.get(4)) else { continue };
        let point = PathBuf::from(unescape(point));
        if *root == "/" {
            return Some(point);
        }
        subtree.get_or_insert(point);
    }
    subtree
}

/// The root of this host's cgroup v2 hierarchy, if it is mounted.
pub fn root() -> Option<PathBuf> {
    find(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_and_unified_hosts() {
        let hybrid = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(find(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(find(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(find("36 35 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), None, "v1 only");
        assert_eq!(find(""), None);
        // A container's own subtree only when nothing better exists; the root wins.
        let nested = "\
50 40 0:38 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw
51 40 0:38 / /mnt/cg\\040root rw - cgroup2 cgroup2 rw
";
        assert_eq!(find(nested), Some(PathBuf::from("/mnt/cg root")));
        assert_eq!(find(nested.lines().next().unwrap_or_default()), Some(PathBuf::from("/sys/fs/cgroup")));
        // Hostile or broken lines are skipped, never a panic.
        assert_eq!(find("- cgroup2\n1 2 - cgroup2\n\\\\\\ - cgroup2 x\n"), None);
        assert_eq!(unescape("a\\04"), "a\\04");
    }

    #[test]
    fn this_host_has_one() {
        // Every machine the tests run on has cgroup v2 mounted (DESIGN.md).
        let r = root().expect("a cgroup2 mount");
        assert!(r.join("cgroup.procs").exists(), "{r:?}");
    }
}
