//! Namespaces with names: the bind mounts in `/run/netns` (what `ip netns`
//! makes) and Docker's sandboxes in `/run/docker/netns`.

use std::{collections::HashMap, fs};

use super::host_netns;
use crate::sys::ns_inode;

/// Directories whose entries are bind mounts of namespace files with names.
pub const NAMED_NS_DIRS: &[&str] = &["/run/netns", "/var/run/netns", "/run/docker/netns"];
/// Of those, the ones whose entry names mean something to a user (`ip netns`);
/// Docker's are sandbox ids, which nobody types.
pub const USER_NS_DIRS: &[&str] = &["/run/netns", "/var/run/netns"];

/// Whether the entry of `dir` (one of [`NAMED_NS_DIRS`]) for namespace
/// `inode` is a name of it. Docker keeps a sandbox of its host network,
/// `/run/docker/netns/default`, which is the host's namespace and no name
/// of it: the host stays the host whatever containers share it.
pub fn names_namespace(dir: &str, inode: u64, host: Option<u64>) -> bool {
    USER_NS_DIRS.contains(&dir) || Some(inode) != host
}

/// inode -> name, from the bind mounts in [`NAMED_NS_DIRS`].
pub fn named_namespaces() -> HashMap<u64, String> {
    let mut map = HashMap::new();
    let host = host_netns();
    for dir in NAMED_NS_DIRS {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            if let Ok(ino) = ns_inode(&e.path())
                && names_namespace(dir, ino, host)
            {
                map.entry(ino).or_insert_with(|| e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    map
}
