//! Network namespaces and what lives in them: discovery (processes, bind
//! mounts, nsfs mounts), containers (candidates from cgroups, confirmed and
//! named by their runtime, see [`identity`]), the types events name them
//! by ([`label`]), interfaces with their veth
//! peers (rtnetlink inside each namespace, [`rtnl`]), the names in
//! `/run/netns` ([`named`]), the table that names namespaces and
//! interfaces for tracepoint events ([`names`]), the cached [`Registry`] that enriches events,
//! the selectors users give ([`select`]), `tracer ns`'s table ([`table`]),
//! and the interface watcher ([`watch`]).

pub mod cgroup;
pub mod identity;
pub mod label;
pub mod named;
pub mod names;
pub mod registry;
pub mod rtnl;
pub mod runtime;
pub mod select;
pub mod table;
pub mod trigger;
pub mod watch;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

pub use label::{Container, NetnsId, NsRef, Pod, TargetNetns};
pub use registry::Registry;
pub use select::{Scope, SelectError, Selector, did_you_mean};

use crate::sys::ns_inode;


/// One network namespace and everything found in it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Netns {
    pub inode: u64,
    /// `SO_NETNS_COOKIE`, what eBPF's `bpf_get_netns_cookie` returns.
    pub cookie: Option<u64>,
    /// The owning container's name first, then `/run/netns` names.
    pub names: Vec<String>,
    pub pids: Vec<NsPid>,
    /// The container that made it and labels it; never set for the host's.
    pub container: Option<Container>,
    /// The containers whose network namespace it is: the owner first, then
    /// those that share it (`--network container:<owner>`).
    pub containers: Vec<Container>,
    /// For the host's namespace: the containers on the host network, which
    /// use it without owning it.
    pub host_containers: Vec<Container>,
    pub interfaces: Vec<Iface>,
    /// A file to open for `setns` into it: a bind mount if there is one
    /// (it outlives processes), else `/proc/PID/ns/net`.
    pub path: PathBuf,
    /// Every nsfs mount of it (`/run/netns/x`, `/run/docker/netns/<sandbox>`, ...).
    pub mounts: Vec<PathBuf>,
    /// Why its interfaces could not be read, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Netns {
    /// Whether `--container ID` lives here: as owner, sharer, or on the host network.
    pub fn has_container(&self, id: &str) -> bool {
        self.containers.iter().chain(&self.host_containers).any(|c| c.id == id)
    }

    /// How events name it (see [`NetnsId::label`]).
    pub fn id(&self) -> NetnsId {
        NetnsId {
            inode: self.inode,
            name: self.names.first().cloned(),
            owner: self.container.clone(),
            host: tracer_netns() == Some(self.inode),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NsPid {
    pub pid: u32,
    pub comm: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    /// `veth`, `bridge`, `macvlan`, `vxlan`, `tun`, `loopback`...; `None` for
    /// a physical device.
    pub kind: Option<String>,
    /// The bridge (or bond) it is enslaved to.
    pub master: Option<String>,
    /// The other end of a veth.
    pub peer: Option<Peer>,
    pub up: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Peer {
    pub netns_inode: u64,
    pub ifindex: u32,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("cannot list processes in /proc: {0}")]
    Proc(#[source] std::io::Error),
}

/// Every network namespace on the host with its processes, containers and
/// interfaces. Reading another namespace's interfaces needs CAP_SYS_ADMIN;
/// without it they are left empty and `error` says why.
pub fn discover() -> Result<Vec<Netns>, NsError> {
    let mut reg = Registry::new();
    reg.rescan(true)?;
    Ok(reg.namespaces().cloned().collect())
}

/// What the namespace sources say, before looking inside the namespaces.
#[derive(Default, Debug)]
pub(crate) struct Sources {
    /// inode -> (pid, comm), pids ascending.
    pub pids: BTreeMap<u64, Vec<NsPid>>,
    /// inode -> (mount path, name when it is in a user-facing directory).
    pub mounts: BTreeMap<u64, Vec<(PathBuf, Option<String>)>>,
}

/// Scans `/proc/*/ns/net`, the named directories and `/proc/self/mountinfo`.
/// `comms`: also read each process's command (skipped for quick refreshes).
pub(crate) fn scan(comms: bool) -> Result<Sources, NsError> {
    let mut s = Sources::default();
    for e in fs::read_dir("/proc").map_err(NsError::Proc)?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // Processes exit while we look: skip them quietly.
        let Ok(ino) = ns_inode(&e.path().join("ns/net")) else { continue };
        // Lossy: a name that is not UTF-8 is still shown (not left empty).
        let comm = if comms { fs::read(e.path().join("comm")).map(|c| comm_text(&c)).unwrap_or_default() } else { String::new() };
        s.pids.entry(ino).or_default().push(NsPid { pid, comm });
    }
    for v in s.pids.values_mut() {
        v.sort_by_key(|p| p.pid);
    }
    for m in named::mounts(usize::MAX) {
        let name = m.user_named().then_some(m.name);
        s.mounts.entry(m.inode).or_default().push((m.path, name));
    }
    if let Ok(text) = fs::read_to_string("/proc/self/mountinfo") {
        for (ino, path) in nsfs_mounts(&text) {
            let v = s.mounts.entry(ino).or_default();
            if !v.iter().any(|(p, _)| p == &path) {
                v.push((path, None));
            }
        }
    }
    Ok(s)
}


/// (inode, mount point) of every network namespace mounted somewhere, from
/// the text of `/proc/self/mountinfo`.
pub fn nsfs_mounts(mountinfo: &str) -> Vec<(u64, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.split(' ').next()? != "nsfs" {
                return None;
            }
            let f: Vec<&str> = left.split(' ').collect();
            let ino = f.get(3)?.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()?;
            Some((ino, PathBuf::from(unescape_mount(f.get(4)?))))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The namespace the tracer runs in, which text output calls `host`: as
/// the people running it see it, it is the host's.
pub fn tracer_netns() -> Option<u64> {
    ns_inode(Path::new("/proc/self/ns/net")).ok()
}

/// The host's (initial) network namespace: kthreadd's (pid 2) is always in
/// it and stays readable where pid 1 belongs to someone else.
pub fn host_netns() -> Option<u64> {
    ["/proc/1/ns/net", "/proc/2/ns/net"].iter().find_map(|p| ns_inode(Path::new(p)).ok())
}

/// A `/proc/PID/comm` file as text: its one line, exactly (spaces kept),
/// invalid UTF-8 as U+FFFD.
fn comm_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(raw)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_nsfs_lines() {
        let text = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
612 28 0:4 net:[4026532285] /run/netns/lab-a rw - nsfs nsfs rw
613 28 0:4 net:[4026532300] /tmp/my\\040dir/ns rw - nsfs nsfs rw
614 28 0:4 mnt:[4026532301] /tmp/mnt-ns rw - nsfs nsfs rw
615 28 0:4 net:[4026532302] /run/docker/netns/1a2b3c shared:5 - nsfs nsfs rw
";
        assert_eq!(
            nsfs_mounts(text),
            vec![
                (4026532285, PathBuf::from("/run/netns/lab-a")),
                (4026532300, PathBuf::from("/tmp/my dir/ns")),
                (4026532302, PathBuf::from("/run/docker/netns/1a2b3c")),
            ]
        );
        assert_eq!(unescape_mount("a\\011b\\134c"), "a\tb\\c");
        assert_eq!(unescape_mount("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn scan_finds_own_namespace_and_process() {
        let s = scan(true).expect("scan");
        let own = select::resolve_pid(std::process::id()).expect("own");
        let pids = s.pids.get(&own).expect("own namespace");
        let me = pids.iter().find(|p| p.pid == std::process::id()).expect("own pid");
        let comm = fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(me.comm, comm.trim_end());
        assert_eq!(comm_text(b"a b \xff\x1b\n"), "a b \u{fffd}\x1b");
    }
}
