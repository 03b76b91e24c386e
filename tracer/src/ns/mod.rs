//! Network namespaces: naming them and resolving the selectors users give
//! (`--netns NAME|PATH|INODE`, `--pid PID`).

use std::{collections::HashMap, fs, path::Path};

use crate::sys::ns_inode;

/// Directories whose entries are bind mounts of namespace files with names.
pub const NAMED_NS_DIRS: &[&str] = &["/run/netns", "/var/run/netns", "/run/docker/netns"];

/// inode -> name, from the bind mounts in [`NAMED_NS_DIRS`].
pub fn named_namespaces() -> HashMap<u64, String> {
    let mut map = HashMap::new();
    for dir in NAMED_NS_DIRS {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            if let Ok(ino) = ns_inode(&e.path()) {
                map.entry(ino).or_insert_with(|| e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    map
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("no network namespace {0:?}: not a name in /run/netns, a namespace file, or a known inode{1}")]
    UnknownNetns(String, String),
    #[error("no process {0}: /proc/{0}/ns/net does not exist")]
    UnknownPid(u32),
}

/// Resolves `--netns NAME|PATH|INODE` to an inode.
pub fn resolve_netns(arg: &str) -> Result<u64, SelectError> {
    if let Ok(ino) = arg.parse::<u64>() {
        return Ok(ino);
    }
    if arg.contains('/') {
        return ns_inode(Path::new(arg)).map_err(|_| SelectError::UnknownNetns(arg.into(), String::new()));
    }
    let names = named_namespaces();
    if let Some((ino, _)) = names.iter().find(|(_, n)| *n == arg) {
        return Ok(*ino);
    }
    let mut close: Vec<&str> = names.values().map(String::as_str).filter(|n| similar(n, arg)).collect();
    close.sort();
    let hint = if close.is_empty() { String::new() } else { format!("; did you mean {}?", close.join(", ")) };
    Err(SelectError::UnknownNetns(arg.into(), hint))
}

/// Resolves `--pid PID` to the inode of its network namespace.
pub fn resolve_pid(pid: u32) -> Result<u64, SelectError> {
    ns_inode(Path::new(&format!("/proc/{pid}/ns/net"))).map_err(|_| SelectError::UnknownPid(pid))
}

/// Loose match for "did you mean": shared prefix or containment.
pub fn similar(candidate: &str, wanted: &str) -> bool {
    let (c, w) = (candidate.to_ascii_lowercase(), wanted.to_ascii_lowercase());
    c.contains(&w) || w.contains(&c) || c.chars().zip(w.chars()).take_while(|(a, b)| a == b).count() >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inode_and_rejects_unknown() {
        assert_eq!(resolve_netns("4026531840"), Ok(4026531840));
        assert!(matches!(resolve_netns("surely-not-a-namespace"), Err(SelectError::UnknownNetns(..))));
        let own = resolve_pid(std::process::id()).expect("own netns");
        assert_eq!(resolve_netns("/proc/self/ns/net"), Ok(own));
        assert_eq!(resolve_pid(u32::MAX), Err(SelectError::UnknownPid(u32::MAX)));
        assert!(similar("lab-a", "lab-b"));
        assert!(!similar("web", "db"));
    }
}
