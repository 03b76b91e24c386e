//! The cached view of namespaces and containers that events are enriched
//! from. A lookup never scans /proc: it reads the cache, and only a miss
//! (an unknown namespace, an unnamed one) asks for a [`Registry::refresh`],
//! which rescans at most once per `min_interval`. Per-process container
//! identity is cached per pid, so a rescan reads only new processes' cgroups.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io,
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{
    Container, Iface, NsError, NsPid, Netns, Peer, SelectError, cgroup, did_you_mean,
    links::{RawLink, Rtnl},
    runtime,
};
use crate::{
    cache::BoundedMap,
    sys::{in_netns, ns_inode},
};

/// Processes whose container is remembered, at most (senders come and go
/// faster than rescans forget them); the oldest looked up go first.
pub const PIDS_MAX: usize = 16_384;
/// Container names and failed name lookups remembered, at most.
pub const CONTAINER_NAMES_MAX: usize = 4096;

pub struct Registry {
    src: runtime::Sources,
    ns: BTreeMap<u64, Netns>,
    /// pid -> its container without the name (names live in `names`), and
    /// when that was read: a process is moved into its container's cgroup
    /// just after it starts, so "no container" is read again later.
    pids: BoundedMap<u32, (Option<Container>, Instant)>,
    /// container id -> name.
    names: BoundedMap<String, String>,
    /// container id -> when a name was last looked for and not found.
    name_miss: BoundedMap<String, Instant>,
    containerd_ns: Vec<String>,
    last: Option<Instant>,
    host: Option<u64>,
    pub min_interval: Duration,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry; the first lookup that misses fills it.
    pub fn new() -> Self {
        Self::with_sources(runtime::Sources::default())
    }

    pub fn with_sources(src: runtime::Sources) -> Self {
        Self {
            src,
            ns: BTreeMap::new(),
            pids: BoundedMap::new(PIDS_MAX),
            names: BoundedMap::new(CONTAINER_NAMES_MAX),
            name_miss: BoundedMap::new(CONTAINER_NAMES_MAX),
            containerd_ns: Vec::new(),
            last: None,
            // kthreadd (pid 2) is always in the initial namespace, and stays
            // readable where pid 1 belongs to someone else.
            host: ["/proc/1/ns/net", "/proc/2/ns/net"].iter().find_map(|p| ns_inode(std::path::Path::new(p)).ok()),
            min_interval: Duration::from_millis(500),
        }
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Netns> {
        self.ns.values()
    }

    pub fn get(&self, inode: u64) -> Option<&Netns> {
        self.ns.get(&inode)
    }

    /// Rescans now. `interfaces`: also read every namespace's links (setns
    /// into each; slower, needs CAP_SYS_ADMIN) and process names.
    pub fn rescan(&mut self, interfaces: bool) -> Result<(), NsError> {
        self.containerd_ns = runtime::containerd_namespaces(&self.src.containerd_tasks);
        let s = super::scan(interfaces)?;
        let live: HashSet<u32> = s.pids.values().flatten().map(|p| p.pid).collect();
        self.pids.retain(|pid, _| live.contains(pid));
        let mut out = BTreeMap::new();
        let inodes: Vec<u64> = s.pids.keys().chain(s.mounts.keys()).copied().collect::<HashSet<_>>().into_iter().collect();
        for ino in inodes {
            let pids = s.pids.get(&ino).cloned().unwrap_or_default();
            let mounts = s.mounts.get(&ino).cloned().unwrap_or_default();
            let mut containers: Vec<Container> = Vec::new();
            for p in &pids {
                if let Some(mut c) = self.pid_container(p.pid)
                    && !containers.iter().any(|x| x.id == c.id)
                {
                    c.name = self.name_for(&c);
                    containers.push(c);
                }
            }
            let mut names: Vec<String> = containers.iter().filter_map(|c| c.name.clone()).collect();
            for n in mounts.iter().filter_map(|(_, n)| n.clone()) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let path = match (mounts.first(), pids.first()) {
                (Some((p, _)), _) => p.clone(),
                (None, Some(p)) => PathBuf::from(format!("/proc/{}/ns/net", p.pid)),
                (None, None) => continue,
            };
            let old = self.ns.get(&ino);
            out.insert(
                ino,
                Netns {
                    inode: ino,
                    cookie: old.and_then(|o| o.cookie),
                    names,
                    pids,
                    containers,
                    interfaces: old.map(|o| o.interfaces.clone()).unwrap_or_default(),
                    path,
                    mounts: mounts.into_iter().map(|(p, _)| p).collect(),
                    error: None,
                },
            );
        }
        self.ns = out;
        if interfaces {
            self.read_interfaces();
        }
        self.last = Some(Instant::now());
        Ok(())
    }

    /// Rescans (without interfaces) unless the last scan is younger than
    /// `min_interval`. Returns whether it rescanned.
    pub fn refresh(&mut self) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return false;
        }
        self.rescan(false).is_ok()
    }

    /// The namespace's name: its container's, else its `/run/netns` name.
    pub fn netns_name(&self, inode: u64) -> Option<String> {
        self.ns.get(&inode)?.names.first().cloned()
    }

    pub fn container_for_netns(&self, inode: u64) -> Option<Container> {
        self.ns.get(&inode)?.containers.first().cloned()
    }

    /// The container a process is in (from its cgroup), named when the
    /// runtime says; cached per pid.
    pub fn container_for_pid(&mut self, pid: u32) -> Option<Container> {
        let mut c = self.pid_container(pid)?;
        c.name = self.name_for(&c);
        Some(c)
    }

    /// Name and container for an event from namespace `inode` sent by `pid`:
    /// the container of the namespace, else the one the process is in.
    /// Refreshes (rate limited) when the namespace is new or still unnamed,
    /// so a container that starts while tracing is named on its first events.
    pub fn enrich(&mut self, inode: u64, pid: u32) -> (Option<String>, Option<Container>) {
        let known = self.ns.get(&inode).is_some_and(|n| !n.names.is_empty());
        if !known && Some(inode) != self.host {
            self.refresh();
        }
        if let Some(c) = self.container_for_netns(inode) {
            return (self.netns_name(inode), Some(c));
        }
        let container = self.container_for_pid(pid);
        // A process of a container that is in this namespace names it, even
        // before the next rescan: its first events must carry the name.
        if let Some(c) = &container
            && ns_inode(std::path::Path::new(&format!("/proc/{pid}/ns/net"))).ok() == Some(inode)
        {
            self.adopt(inode, pid, c.clone());
        }
        (self.netns_name(inode), container)
    }

    /// Records `c` (seen in a process of namespace `inode`) as the namespace's container.
    fn adopt(&mut self, inode: u64, pid: u32, c: Container) {
        let n = self.ns.entry(inode).or_insert_with(|| Netns {
            inode,
            cookie: None,
            names: Vec::new(),
            pids: Vec::new(),
            containers: Vec::new(),
            interfaces: Vec::new(),
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
            mounts: Vec::new(),
            error: None,
        });
        if let Some(name) = &c.name
            && !n.names.contains(name)
        {
            n.names.insert(0, name.clone());
        }
        n.containers.push(c);
    }

    /// `--container NAME|ID-prefix` -> the container and its namespace inode.
    pub fn resolve_container(&mut self, sel: &str) -> Result<(Container, u64), SelectError> {
        if self.last.is_none() {
            self.rescan(false)?;
        }
        let all: Vec<(Container, u64)> =
            self.ns.values().flat_map(|n| n.containers.iter().map(move |c| (c.clone(), n.inode))).collect();
        let want = sel.trim_start_matches('/');
        if let Some(hit) = all.iter().find(|(c, _)| c.name.as_deref() == Some(want) || c.id == want) {
            return Ok(hit.clone());
        }
        let by_prefix: Vec<&(Container, u64)> = all.iter().filter(|(c, _)| !want.is_empty() && c.id.starts_with(want)).collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => {
                let hint = if all.is_empty() {
                    "; no running containers were found (Docker, Podman, containerd, Kubernetes)".to_string()
                } else {
                    did_you_mean(all.iter().map(|(c, _)| c.label()), want)
                };
                Err(SelectError::UnknownContainer(sel.to_string(), hint))
            }
            many => {
                let list: Vec<String> = many.iter().map(|(c, _)| format!("{} ({})", &c.id[..c.id.len().min(12)], c.label())).collect();
                Err(SelectError::AmbiguousContainer(sel.to_string(), list.join(", ")))
            }
        }
    }

    fn pid_container(&mut self, pid: u32) -> Option<Container> {
        if let Some((c, at)) = self.pids.get(&pid)
            && (c.is_some() || at.elapsed() < self.min_interval)
        {
            return c.clone();
        }
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let c = cgroup::container_from_proc_cgroup(&text, &self.containerd_ns);
        self.pids.insert(pid, (c.clone(), Instant::now()));
        c
    }

    /// The runtime's name for a container, cached; a runtime that does not
    /// know it is asked again only after `min_interval`.
    fn name_for(&mut self, c: &Container) -> Option<String> {
        if let Some(n) = self.names.get(&c.id) {
            return Some(n.clone());
        }
        if self.name_miss.get(&c.id).is_some_and(|t| t.elapsed() < self.min_interval) {
            return None;
        }
        match c.runtime.as_str() {
            cgroup::DOCKER => {
                // The on-disk metadata first: no daemon round trip, and it
                // works while dockerd is busy or gone.
                if let Some(n) = runtime::docker_name_on_disk(&self.src.docker_root, &c.id) {
                    self.names.insert(c.id.clone(), n);
                } else if let Some(all) = runtime::docker_names_api(&self.src) {
                    self.names.extend(all);
                }
            }
            cgroup::PODMAN => self.names.extend(runtime::podman_names(&self.src.podman_containers)),
            _ => {}
        }
        match self.names.get(&c.id) {
            Some(n) => Some(n.clone()),
            None => {
                self.name_miss.insert(c.id.clone(), Instant::now());
                None
            }
        }
    }

    /// Reads each namespace's links from inside it, then pairs veths across
    /// namespaces.
    fn read_interfaces(&mut self) {
        let mut raw: BTreeMap<u64, Vec<RawLink>> = BTreeMap::new();
        let here = ns_inode(std::path::Path::new("/proc/thread-self/ns/net")).ok();
        let query = || -> io::Result<(Vec<RawLink>, Option<u64>)> {
            let mut rt = Rtnl::open()?;
            Ok((rt.links()?, rt.cookie()))
        };
        for n in self.ns.values_mut() {
            // setns needs CAP_SYS_ADMIN even into the namespace one is in:
            // without it, the own namespace can still be read.
            let r = if Some(n.inode) == here { query() } else { in_netns(&n.path, query).and_then(|x| x) };
            match r {
                Ok((links, cookie)) => {
                    n.cookie = cookie;
                    raw.insert(n.inode, links);
                }
                Err(e) => {
                    n.error = Some(format!("cannot read its interfaces through {}: {e}", n.path.display()));
                    n.interfaces.clear();
                }
            }
        }
        let peers = self.resolve_peers(&raw);
        for (ino, links) in &raw {
            let Some(n) = self.ns.get_mut(ino) else { continue };
            n.interfaces = links
                .iter()
                .map(|l| Iface {
                    name: l.name.clone(),
                    ifindex: l.ifindex,
                    kind: l.kind.clone(),
                    master: l.master.and_then(|m| links.iter().find(|x| x.ifindex == m)).map(|m| m.name.clone()),
                    peer: peers.get(&(*ino, l.ifindex)).cloned(),
                    up: l.up,
                })
                .collect();
        }
    }

    /// (namespace, ifindex) of a veth -> its peer. A veth names its peer by
    /// ifindex plus a netns id that only its own namespace understands; the
    /// peer names it back the same way. Pairs that point at each other are a
    /// match; when several namespaces could hold the peer (ifindex numbers
    /// repeat across namespaces), the namespace is asked which netns id each
    /// candidate has.
    fn resolve_peers(&self, raw: &BTreeMap<u64, Vec<RawLink>>) -> HashMap<(u64, u32), Peer> {
        let mut out = HashMap::new();
        let is_pair = |l: &RawLink| matches!(l.kind.as_deref(), Some("veth" | "netkit" | "vxcan"));
        for (&ino, links) in raw {
            for l in links.iter().filter(|l| is_pair(l)) {
                let Some(peer_idx) = l.link else { continue };
                let Some(nsid) = l.link_nsid else {
                    if let Some(p) = links.iter().find(|x| x.ifindex == peer_idx) {
                        out.insert((ino, l.ifindex), Peer { netns_inode: ino, ifindex: p.ifindex, name: p.name.clone() });
                    }
                    continue;
                };
                let candidates: Vec<(u64, &RawLink)> = raw
                    .iter()
                    .filter(|(other, _)| **other != ino)
                    .filter_map(|(other, ls)| {
                        ls.iter().find(|x| x.ifindex == peer_idx && x.link == Some(l.ifindex) && x.link_nsid.is_some()).map(|x| (*other, x))
                    })
                    .collect();
                let chosen = match candidates.as_slice() {
                    [one] => Some(*one),
                    [] => None,
                    many => self.pick_by_nsid(ino, nsid, many),
                };
                if let Some((pino, p)) = chosen {
                    out.insert((ino, l.ifindex), Peer { netns_inode: pino, ifindex: p.ifindex, name: p.name.clone() });
                }
            }
        }
        out
    }

    fn pick_by_nsid<'a>(&self, ino: u64, nsid: i32, candidates: &[(u64, &'a RawLink)]) -> Option<(u64, &'a RawLink)> {
        let home = self.ns.get(&ino)?;
        let files: Vec<Option<fs::File>> =
            candidates.iter().map(|(c, _)| self.ns.get(c).and_then(|n| fs::File::open(&n.path).ok())).collect();
        let found = in_netns(&home.path, || -> Option<usize> {
            let mut rt = Rtnl::open().ok()?;
            files.iter().position(|f| f.as_ref().is_some_and(|f| rt.nsid_of(f.as_raw_fd()).ok().flatten() == Some(nsid)))
        })
        .ok()
        .flatten()?;
        candidates.get(found).copied()
    }

    #[cfg(test)]
    pub(crate) fn insert_for_test(&mut self, n: Netns) {
        self.last = Some(Instant::now());
        self.ns.insert(n.inode, n);
    }
}

/// `(pid, comm)` of a namespace's processes, for display.
pub fn pid_list(pids: &[NsPid], max: usize) -> String {
    let mut s: Vec<String> = pids.iter().take(max).map(|p| format!("{}({})", p.pid, p.comm)).collect();
    if pids.len() > max {
        s.push(format!("+{}", pids.len() - max));
    }
    s.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(inode: u64, containers: Vec<Container>, names: Vec<&str>) -> Netns {
        Netns {
            inode,
            cookie: None,
            names: names.into_iter().map(String::from).collect(),
            pids: vec![],
            containers,
            interfaces: vec![],
            path: PathBuf::from("/nonexistent"),
            mounts: vec![],
            error: None,
        }
    }

    fn c(id: &str, name: Option<&str>) -> Container {
        Container { runtime: "docker".into(), id: id.into(), name: name.map(String::from) }
    }

    #[test]
    fn container_selectors() {
        let mut r = Registry::new();
        r.insert_for_test(ns(10, vec![c(&format!("abc1{}", "0".repeat(60)), Some("web"))], vec!["web"]));
        r.insert_for_test(ns(11, vec![c(&format!("abc2{}", "0".repeat(60)), Some("web-2"))], vec!["web-2"]));
        r.insert_for_test(ns(12, vec![c(&format!("def0{}", "0".repeat(60)), None)], vec![]));
        assert_eq!(r.resolve_container("web").map(|(c, i)| (c.name, i)), Ok((Some("web".into()), 10)));
        assert_eq!(r.resolve_container("/web-2").map(|(_, i)| i), Ok(11));
        assert_eq!(r.resolve_container("abc2").map(|(_, i)| i), Ok(11));
        assert_eq!(r.resolve_container("def").map(|(_, i)| i), Ok(12));
        let amb = r.resolve_container("abc").expect_err("ambiguous");
        assert!(matches!(amb, SelectError::AmbiguousContainer(..)), "{amb}");
        assert!(amb.to_string().contains("abc100000000 (web)"), "{amb}");
        let unk = r.resolve_container("webb").expect_err("unknown").to_string();
        assert!(unk.contains("no running container \"webb\"") && unk.contains("did you mean web, web-2?"), "{unk}");
        assert_eq!(r.netns_name(10).as_deref(), Some("web"));
        assert_eq!(r.netns_name(12), None);
        assert_eq!(r.container_for_netns(12).map(|c| c.id.len()), Some(64));
    }

    #[test]
    fn no_containers_says_so() {
        let mut r = Registry::new();
        r.insert_for_test(ns(10, vec![], vec!["lab"]));
        let e = r.resolve_container("web").expect_err("none").to_string();
        assert!(e.contains("no running containers were found"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn per_process_and_per_container_caches_are_bounded() {
        let mut r = Registry::new();
        for pid in 0..(PIDS_MAX as u32 + 100) {
            r.pids.insert(pid, (None, Instant::now()));
        }
        r.names.extend((0..CONTAINER_NAMES_MAX + 100).map(|i| (format!("{i:064x}"), format!("c{i}"))));
        for i in 0..CONTAINER_NAMES_MAX + 100 {
            r.name_miss.insert(format!("{i:064x}"), Instant::now());
        }
        assert_eq!((r.pids.len(), r.names.len(), r.name_miss.len()), (PIDS_MAX, CONTAINER_NAMES_MAX, CONTAINER_NAMES_MAX));
        // The newest stay: this process's own entry is read again and kept.
        let me = std::process::id();
        r.pids.remove(&me);
        let _ = r.container_for_pid(me);
        assert!(r.pids.get(&me).is_some());
        assert!(r.pids.get(&0).is_none());
    }

    #[test]
    fn refresh_is_rate_limited() {
        let mut r = Registry::new();
        assert!(r.refresh(), "first refresh scans");
        assert!(!r.refresh(), "second within min_interval does not");
        let own = ns_inode(std::path::Path::new("/proc/self/ns/net")).expect("own");
        assert!(r.get(own).is_some_and(|n| n.pids.iter().any(|p| p.pid == std::process::id())));
    }

    #[test]
    fn veth_pairs_across_namespaces() {
        let r = Registry::new();
        let veth = |ifindex, name: &str, link, nsid| RawLink {
            ifindex,
            name: name.into(),
            kind: Some("veth".into()),
            master: None,
            link: Some(link),
            link_nsid: nsid,
            up: true,
        };
        let mut raw = BTreeMap::new();
        // Host: two veths whose peers are both ifindex 2 in two namespaces.
        raw.insert(1, vec![veth(10, "vetha", 2, Some(0)), veth(11, "vethb", 2, Some(1)), veth(20, "va", 21, None), veth(21, "vb", 20, None)]);
        raw.insert(2, vec![veth(2, "eth0", 10, Some(0))]);
        raw.insert(3, vec![veth(2, "eth0", 11, Some(0))]);
        let p = r.resolve_peers(&raw);
        assert_eq!(p[&(1, 10)], Peer { netns_inode: 2, ifindex: 2, name: "eth0".into() });
        assert_eq!(p[&(1, 11)], Peer { netns_inode: 3, ifindex: 2, name: "eth0".into() });
        assert_eq!(p[&(2, 2)], Peer { netns_inode: 1, ifindex: 10, name: "vetha".into() });
        assert_eq!(p[&(3, 2)], Peer { netns_inode: 1, ifindex: 11, name: "vethb".into() });
        // A pair inside one namespace.
        assert_eq!(p[&(1, 20)], Peer { netns_inode: 1, ifindex: 21, name: "vb".into() });
    }
}
