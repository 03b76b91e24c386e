//! Namespaces with names: the bind mounts in `/run/netns` (what `ip netns`
//! makes) and Docker's sandboxes in `/run/docker/netns`, read by one
//! scanner ([`mounts`]) for discovery, `--netns NAME` and the netlink
//! audit's names alike.

use std::{collections::HashMap, fs, path::PathBuf};

use super::host_netns;
use crate::sys::{netns::is_nsfs, ns_inode};

/// Directories whose entries are bind mounts of namespace files with names.
pub const NAMED_NS_DIRS: &[&str] = &["/run/netns", "/var/run/netns", "/run/docker/netns"];
/// Of those, the ones whose entry names mean something to a user (`ip netns`);
/// Docker's are sandbox ids, which nobody types.
pub const USER_NS_DIRS: &[&str] = &["/run/netns", "/var/run/netns"];

/// One namespace bind mount in a named directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedMount {
    pub inode: u64,
    pub path: PathBuf,
    /// Which of [`NAMED_NS_DIRS`] it is in.
    pub dir: &'static str,
    /// Its file name, invalid UTF-8 as U+FFFD.
    pub name: String,
}

impl NamedMount {
    /// Whether its name is one a user gave (`ip netns add NAME`).
    pub fn user_named(&self) -> bool {
        USER_NS_DIRS.contains(&self.dir)
    }
}

/// Every namespace bind mount in [`NAMED_NS_DIRS`], at most `max`; each
/// directory once (`/var/run` is usually a link to `/run`), and only
/// namespace files (an empty file left by a failed `ip netns add` is none).
pub fn mounts(max: usize) -> Vec<NamedMount> {
    let mut out = Vec::new();
    let mut seen_dirs = Vec::new();
    for dir in NAMED_NS_DIRS {
        let Ok(real) = fs::canonicalize(dir) else { continue };
        if seen_dirs.contains(&real) {
            continue;
        }
        seen_dirs.push(real.clone());
        let Ok(entries) = fs::read_dir(&real) else { continue };
        for e in entries.flatten() {
            if out.len() >= max {
                return out;
            }
            let path = e.path();
            let Ok(inode) = ns_inode(&path) else { continue };
            if is_nsfs(&path) {
                out.push(NamedMount { inode, path, dir, name: e.file_name().to_string_lossy().into_owned() });
            }
        }
    }
    out
}

/// Whether the entry of `dir` (one of [`NAMED_NS_DIRS`]) for namespace
/// `inode` is a name of it. Docker keeps a sandbox of its host network,
/// `/run/docker/netns/default`, which is the host's namespace and no name
/// of it: the host stays the host whatever containers share it.
pub fn names_namespace(dir: &str, inode: u64, host: Option<u64>) -> bool {
    USER_NS_DIRS.contains(&dir) || Some(inode) != host
}

/// inode -> name, from the bind mounts in [`NAMED_NS_DIRS`] (the first
/// name of each).
pub fn named_namespaces(mounts: &[NamedMount]) -> HashMap<u64, String> {
    let host = host_netns();
    let mut map = HashMap::new();
    for m in mounts.iter().filter(|m| names_namespace(m.dir, m.inode, host)) {
        map.entry(m.inode).or_insert_with(|| m.name.clone());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_sandbox_of_the_host_names_nothing() {
        let m = |dir: &'static str, inode| NamedMount { inode, path: PathBuf::from(format!("{dir}/x{inode}")), dir, name: format!("n{inode}") };
        assert!(m("/run/netns", 1).user_named() && !m("/run/docker/netns", 1).user_named());
        let host = host_netns();
        let all = [m("/run/docker/netns", host.unwrap_or(1)), m("/run/docker/netns", 2), m("/run/netns", 2), m("/run/netns", 3)];
        let names = named_namespaces(&all);
        assert_eq!(names.get(&host.unwrap_or(1)), None, "the host's sandbox is no name");
        assert_eq!(names.get(&2).map(String::as_str), Some("n2"), "the first name of a namespace");
        assert_eq!(names.get(&3).map(String::as_str), Some("n3"));
        assert!(mounts(0).is_empty());
        assert!(!names_namespace("/run/docker/netns", 1, Some(1)));
        assert!(names_namespace("/run/docker/netns", 2, Some(1)));
        assert!(names_namespace("/run/netns", 1, Some(1)));
    }
}
