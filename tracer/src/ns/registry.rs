//! The cached view of namespaces and containers that events are enriched
//! from. A lookup never scans /proc: it reads the cache, and only a miss
//! (an unknown namespace, an unnamed one) asks for a [`Registry::refresh`],
//! which rescans at most once per `min_interval`. Which container a process
//! or a namespace belongs to is decided in `super::identity`; the per-pid
//! candidates are cached per process lifetime, so a rescan reads only new
//! processes' cgroups.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Container, Iface, NsError, NsPid, Netns, Peer, SelectError, did_you_mean,
    identity::{self, CgroupIds, Confirmer, Member, PidCache, ProcFs, RealProc},
    rtnl::{RawLink, Rtnl},
    runtime,
};
use crate::sys::{in_netns, ns_inode};

/// How often a Docker sandbox whose container does not run yet is
/// rescanned for it, at most (others: every `min_interval`).
const STARTING_RESCAN: std::time::Duration = std::time::Duration::from_millis(150);
/// The most named namespace mounts read to find one the last scan missed.
const SANDBOX_SCAN_MAX: usize = 4096;

pub struct Registry {
    ns: BTreeMap<u64, Netns>,
    proc: Arc<dyn ProcFs>,
    /// pid -> the container candidate its cgroup names, per process lifetime.
    pids: PidCache,
    /// cgroup v2 id (as events carry it) -> the candidate its path names.
    cgroup_ids: CgroupIds,
    /// candidate -> what its runtime confirmed (name included), for a while.
    confirmer: Confirmer,
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
        Self::with_proc(src, Arc::new(RealProc::default()))
    }

    fn with_proc(src: runtime::Sources, proc: Arc<dyn ProcFs>) -> Self {
        let min_interval = Duration::from_millis(500);
        Self {
            ns: BTreeMap::new(),
            proc,
            pids: PidCache::default(),
            cgroup_ids: CgroupIds::default(),
            confirmer: Confirmer::new(runtime::Runtimes::new(src)),
            containerd_ns: Vec::new(),
            last: None,
            host: super::host_netns(),
            min_interval,
        }
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Netns> {
        self.ns.values()
    }

    #[cfg(test)]
    pub fn get(&self, inode: u64) -> Option<&Netns> {
        self.ns.get(&inode)
    }

    /// Rescans now. `interfaces`: also read every namespace's links (setns
    /// into each; slower, needs CAP_SYS_ADMIN) and process names.
    pub fn rescan(&mut self, interfaces: bool) -> Result<(), NsError> {
        self.containerd_ns = runtime::containerd_namespaces(&self.confirmer.runtimes.src.containerd_tasks);
        self.confirmer.ttl = self.min_interval;
        self.confirmer.runtimes.ttl = self.min_interval;
        let s = super::scan(interfaces)?;
        let live: HashSet<u32> = s.pids.values().flatten().map(|p| p.pid).collect();
        self.pids.retain(&live);
        let mut seen = HashSet::new();
        let mut out = BTreeMap::new();
        let inodes: Vec<u64> = s.pids.keys().chain(s.mounts.keys()).copied().collect::<HashSet<_>>().into_iter().collect();
        for ino in inodes {
            let pids = s.pids.get(&ino).cloned().unwrap_or_default();
            let mounts = s.mounts.get(&ino).cloned().unwrap_or_default();
            let mut candidates = Vec::new();
            for p in &pids {
                if let Some(c) = self.pids.lookup(&*self.proc, p.pid, &self.containerd_ns, self.min_interval)
                    && !candidates.contains(&c)
                {
                    candidates.push(c);
                }
            }
            let members: Vec<Member> = candidates
                .iter()
                .filter_map(|c| self.confirmer.confirm(&*self.proc, c, &self.containerd_ns))
                .filter(|m| identity::owns(&*self.proc, m, ino))
                .collect();
            seen.extend(candidates);
            let mut id = identity::classify(self.host, ino, members);
            // A container's namespace outlives its processes for a moment:
            // Docker stops the container, then takes its network down (the
            // veth moved out, the sandbox unmounted). While Docker's mount
            // keeps the namespace, it keeps the owner it had (its record
            // says "not running" from the moment the process exits).
            if id.owner.is_none() && mounts.iter().any(|(p, _)| is_docker_sandbox(p)) {
                id.owner = self.ns.get(&ino).and_then(|o| o.container.clone());
            }
            let mut names: Vec<String> = id.owner.iter().filter_map(|c| c.name.clone()).collect();
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
                    container: id.owner,
                    containers: id.containers,
                    host_containers: id.host_containers,
                    interfaces: old.map(|o| o.interfaces.clone()).unwrap_or_default(),
                    path,
                    mounts: mounts.into_iter().map(|(p, _)| p).collect(),
                    error: None,
                },
            );
        }
        self.confirmer.retain(&seen);
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

    /// The container that owns the namespace (never one merely on the host network).
    pub fn container_for_netns(&self, inode: u64) -> Option<Container> {
        self.ns.get(&inode)?.container.clone()
    }

    /// Whether the namespace is a Docker sandbox (a bind mount in
    /// `/run/docker/netns`, not the host's) that no container owns yet:
    /// dockerd makes it and moves the container's veth in before the
    /// container runs, and only a running container's record names it.
    /// A namespace the last scan did not see as a sandbox (dockerd made or
    /// mounted it since) is looked for among the sandboxes' bind mounts.
    pub fn unowned_docker_sandbox(&self, inode: u64) -> bool {
        if Some(inode) == self.host {
            return false;
        }
        match self.ns.get(&inode) {
            Some(n) if n.container.is_some() => false,
            Some(n) if n.mounts.iter().any(|p| is_docker_sandbox(p)) => true,
            // Unseen, or seen before dockerd mounted it (its helpers run
            // in it first).
            _ => super::named::mounts(SANDBOX_SCAN_MAX).iter().any(|m| m.inode == inode && is_docker_sandbox(&m.path)),
        }
    }

    /// Whether the last scan saw the namespace mounted as a Docker sandbox
    /// that no container owns yet (see [`Registry::unowned_docker_sandbox`]),
    /// without reading the mounts again: for the attach thread, which has
    /// just scanned.
    pub fn unowned_docker_sandbox_as_scanned(&self, inode: u64) -> bool {
        Some(inode) != self.host && self.ns.get(&inode).is_some_and(|n| n.container.is_none() && n.mounts.iter().any(|p| is_docker_sandbox(p)))
    }

    /// Whether the process is in a container's cgroup whose runtime does
    /// not say it runs (yet): runc brings up a new container's `lo` from
    /// it before dockerd mounts the namespace as a sandbox, and before the
    /// record says the container runs. (A container stopping looks the
    /// same for a moment.)
    pub fn unconfirmed_container(&mut self, pid: u32, cgroup_id: u64) -> bool {
        let c = match self.cgroup_ids.lookup(&*self.proc, cgroup_id, &self.containerd_ns) {
            Some(c) => c,
            None if pid == 0 => None,
            None => self.pids.lookup(&*self.proc, pid, &self.containerd_ns, self.min_interval),
        };
        c.is_some_and(|c| self.confirmer.confirm(&*self.proc, &c, &self.containerd_ns).is_none())
    }

    /// The container a process is in, as its runtime confirms and names it;
    /// the cgroup's candidate is cached per process lifetime.
    #[cfg(test)]
    pub fn container_for_pid(&mut self, pid: u32) -> Option<Container> {
        self.member_for_pid(pid).map(|m| m.container)
    }

    fn member_for_pid(&mut self, pid: u32) -> Option<Member> {
        let c = self.pids.lookup(&*self.proc, pid, &self.containerd_ns, self.min_interval)?;
        self.confirmer.confirm(&*self.proc, &c, &self.containerd_ns)
    }

    /// The container of the process that sent an event, known by the
    /// cgroup v2 id the kernel saw it in (right after the process exited,
    /// whatever its pid became), else by its pid.
    fn member_for_sender(&mut self, pid: u32, cgroup_id: u64) -> Option<Member> {
        match self.cgroup_ids.lookup(&*self.proc, cgroup_id, &self.containerd_ns) {
            Some(c) => self.confirmer.confirm(&*self.proc, &c?, &self.containerd_ns),
            None => self.member_for_pid(pid),
        }
    }

    /// Name and container for an event from namespace `inode` sent by `pid`
    /// in cgroup `cgroup_id` (0 when unknown): the container that owns the
    /// namespace, else the one the sender is in (a host-network container's
    /// process in the host's namespace). Refreshes (rate limited) when the
    /// namespace is new or still unnamed, so a container that starts while
    /// tracing is named on its first events.
    pub fn enrich(&mut self, inode: u64, pid: u32, cgroup_id: u64) -> (Option<String>, Option<Container>) {
        // A Docker sandbox is named by its id until its container runs:
        // asked again, it is rescanned (rate limited) for the container.
        let starting = self.unowned_docker_sandbox(inode);
        let known = self.ns.get(&inode).is_some_and(|n| !n.names.is_empty()) && !starting;
        if starting {
            // Requests into it wait for its container's name: sooner.
            if self.last.is_none_or(|t| t.elapsed() >= STARTING_RESCAN) {
                let _ = self.rescan(false);
            }
        } else if !known && Some(inode) != self.host {
            self.refresh();
        }
        if let Some(c) = self.container_for_netns(inode) {
            return (self.netns_name(inode), Some(c));
        }
        let member = self.member_for_sender(pid, cgroup_id);
        // The container that made this namespace names it, even before the
        // next rescan: its first events must carry the name. Whether it
        // made it is asked of its first process (see `adopt`), not of the
        // sender, which is often gone by now (`docker exec ... ip` is).
        if let Some(m) = &member {
            self.adopt(inode, m.record.pid, m.clone());
        }
        (self.netns_name(inode), member.map(|m| m.container))
    }

    /// Records `m` (a container a sender of namespace `inode` is in) as the
    /// namespace's container, if it owns the namespace.
    fn adopt(&mut self, inode: u64, pid: u32, m: Member) {
        if !identity::owns(&*self.proc, &m, inode) {
            return;
        }
        let id = identity::classify(self.host, inode, vec![m]);
        let n = self.ns.entry(inode).or_insert_with(|| Netns {
            inode,
            cookie: None,
            names: Vec::new(),
            pids: Vec::new(),
            container: None,
            containers: Vec::new(),
            host_containers: Vec::new(),
            interfaces: Vec::new(),
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
            mounts: Vec::new(),
            error: None,
        });
        for c in id.host_containers {
            if !n.host_containers.contains(&c) {
                n.host_containers.push(c);
            }
        }
        let Some(owner) = id.owner else { return };
        if let Some(name) = &owner.name
            && !n.names.contains(name)
        {
            n.names.insert(0, name.clone());
        }
        n.containers.retain(|c| c.id != owner.id);
        n.containers.insert(0, owner.clone());
        n.container = Some(owner);
    }

    /// `--container NAME|ID-prefix` -> the container and its namespace inode
    /// (the host's for a container on the host network).
    pub fn resolve_container(&mut self, sel: &str) -> Result<(Container, u64), SelectError> {
        if self.last.is_none() {
            self.rescan(false)?;
        }
        let all: Vec<(Container, u64)> = self
            .ns
            .values()
            .flat_map(|n| n.containers.iter().chain(&n.host_containers).map(move |c| (c.clone(), n.inode)))
            .collect();
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
                let list: Vec<String> = many.iter().map(|(c, _)| format!("{} ({})", c.short_id(), c.label())).collect();
                Err(SelectError::AmbiguousContainer(sel.to_string(), list.join(", ")))
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

/// A bind mount in Docker's sandbox directory (`/var/run` is usually a
/// link to `/run`, and mountinfo may say either).
fn is_docker_sandbox(p: &std::path::Path) -> bool {
    ["/run/docker/netns", "/var/run/docker/netns"].iter().any(|d| p.parent() == Some(std::path::Path::new(d)))
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
    use crate::ns::identity::tests::{A, B, FakeProc, docker_cg, docker_sources};

    fn ns(inode: u64, containers: Vec<Container>, names: Vec<&str>) -> Netns {
        Netns {
            inode,
            cookie: None,
            names: names.into_iter().map(String::from).collect(),
            pids: vec![],
            container: containers.first().cloned(),
            containers,
            host_containers: vec![],
            interfaces: vec![],
            path: PathBuf::from("/nonexistent"),
            mounts: vec![],
            error: None,
        }
    }

    fn c(id: &str, name: Option<&str>) -> Container {
        Container { pod: None, runtime: "docker".into(), id: id.into(), name: name.map(String::from) }
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

    /// A Docker sandbox is worth asking about again until a container owns
    /// it; a `/run/netns` one or an owned one is not.
    #[test]
    fn unowned_docker_sandbox_until_its_container_runs() {
        let mut r = Registry::new();
        let sandbox = |inode, containers| Netns { mounts: vec![PathBuf::from("/run/docker/netns/6d74c40dc64b")], ..ns(inode, containers, vec![]) };
        r.insert_for_test(sandbox(9_000_001, vec![]));
        r.insert_for_test(Netns { mounts: vec![PathBuf::from("/var/run/docker/netns/1a2b3c4d5e6f")], ..ns(9_000_002, vec![], vec![]) });
        r.insert_for_test(sandbox(9_000_003, vec![c("ab", Some("web"))]));
        r.insert_for_test(Netns { mounts: vec![PathBuf::from("/run/netns/lab")], ..ns(9_000_004, vec![], vec!["lab"]) });
        assert!(r.unowned_docker_sandbox(9_000_001) && r.unowned_docker_sandbox(9_000_002));
        assert!(!r.unowned_docker_sandbox(9_000_003), "its container runs");
        assert!(!r.unowned_docker_sandbox(9_000_004), "not Docker's");
        assert!(!is_docker_sandbox(std::path::Path::new("/run/docker/netns")) && !is_docker_sandbox(std::path::Path::new("/run/docker/netns/x/y")));
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
    fn refresh_is_rate_limited() {
        let mut r = Registry::new();
        assert!(r.refresh(), "first refresh scans");
        assert!(!r.refresh(), "second within min_interval does not");
        let own = ns_inode(std::path::Path::new("/proc/self/ns/net")).expect("own");
        assert!(r.get(own).is_some_and(|n| n.pids.iter().any(|p| p.pid == std::process::id())));
    }

    /// A registry over a fake `/proc` and a scratch Docker root, whose host
    /// namespace is inode 1 and which never rescans.
    fn fake_registry(tag: &str, containers: &[(&str, &str, u32, &str)]) -> (Registry, Arc<FakeProc>, PathBuf) {
        let (src, dir) = docker_sources(tag, containers);
        let proc = Arc::new(FakeProc::default());
        let mut r = Registry::with_proc(src, proc.clone());
        r.host = Some(1);
        // No rescan of the real /proc: the tests say what exists.
        r.last = Some(Instant::now());
        r.min_interval = Duration::from_secs(3600);
        (r, proc, dir)
    }

    /// A pid that named a container and is then reused by a process outside
    /// it does not keep the label, in a namespace that needs no rescan.
    #[test]
    fn reused_pid_loses_its_container() {
        let (mut r, proc, dir) = fake_registry("reuse", &[(A, "web", 10, "bridge")]);
        r.insert_for_test(ns(800, vec![], vec!["lab"]));
        proc.set(10, 50, &docker_cg(A), 700);
        proc.set(20, 60, &docker_cg(A), 700);
        assert_eq!(r.container_for_pid(20).and_then(|c| c.name), Some("web".into()));
        proc.exit(20);
        proc.set(20, 99, "0::/user.slice/user-0.slice/session-1.scope\n", 800);
        assert_eq!(r.enrich(800, 20, 0), (Some("lab".into()), None));
        assert_eq!(r.container_for_pid(20), None);
        let _ = fs::remove_dir_all(dir);
    }

    /// A process in the cgroup of a container its runtime does not say runs
    /// (runc setting a new container up) is in an unconfirmed container;
    /// one in a running container's, or in none, is not.
    #[test]
    fn a_container_not_running_yet_is_unconfirmed() {
        let (mut r, proc, dir) = fake_registry("starting", &[(A, "web", 10, "bridge")]);
        proc.set(10, 50, &docker_cg(A), 700);
        proc.set(40, 60, &docker_cg(B), 900);
        proc.set(41, 61, "0::/\n", 1);
        assert!(r.unconfirmed_container(40, 0), "no record of B yet");
        assert!(!r.unconfirmed_container(10, 0), "A runs");
        assert!(!r.unconfirmed_container(41, 0), "no container's cgroup");
        assert!(!r.unconfirmed_container(0, 0), "no sender");
        let _ = fs::remove_dir_all(dir);
    }

    /// The host's namespace stays the host's: a host process's events carry
    /// no container, a host-network container's process its own, and the
    /// container is listed with the namespace without labelling it.
    #[test]
    fn host_network_container_does_not_label_the_host() {
        let (mut r, proc, dir) = fake_registry("hostnet", &[(B, "hn", 30, "host")]);
        proc.set(30, 70, &docker_cg(B), 1);
        proc.set(31, 80, "0::/\n", 1);
        assert_eq!(r.enrich(1, 31, 0), (None, None));
        let (name, c) = r.enrich(1, 30, 0);
        assert_eq!((name, c.and_then(|c| c.name)), (None, Some("hn".into())));
        assert_eq!(r.enrich(1, 31, 0), (None, None));
        let host = r.get(1).expect("host adopted");
        assert_eq!((host.container.clone(), host.containers.len()), (None, 0));
        assert_eq!(host.host_containers.iter().map(|c| c.label()).collect::<Vec<_>>(), ["hn"]);
        assert_eq!(r.resolve_container("hn").map(|(_, i)| i), Ok(1));
        let _ = fs::remove_dir_all(dir);
    }

    /// The cgroup the kernel saw the sender in decides, after the sender
    /// exited and whatever its pid became.
    #[test]
    fn sender_known_by_its_cgroup_id() {
        let (mut r, proc, dir) = fake_registry("cgid", &[(B, "hn", 30, "host")]);
        proc.set(30, 70, &docker_cg(B), 1);
        proc.cgroups.lock().expect("lock").extend([
            (500, format!("/docker/{B}")),
            (501, format!("/user.slice/user-1000.slice/docker-{B}.scope")),
            (1, "/".to_string()),
        ]);
        // A short-lived `docker exec hn ip ...`: gone by the time it is named.
        assert_eq!(r.enrich(1, 55, 500).1.and_then(|c| c.name), Some("hn".into()));
        // Its pid now belongs to a host process: the cgroup id still tells.
        proc.set(55, 99, "0::/\n", 1);
        assert_eq!(r.enrich(1, 55, 500).1.and_then(|c| c.name), Some("hn".into()));
        // A look-alike cgroup, whatever the pid's process is now.
        proc.set(56, 99, &docker_cg(B), 1);
        assert_eq!(r.enrich(1, 56, 501), (None, None));
        // The root cgroup says nothing: the pid (with its start time) decides.
        assert_eq!(r.enrich(1, 56, 1).1.and_then(|c| c.name), Some("hn".into()));
        assert_eq!(r.enrich(1, 31, 1), (None, None));
        let _ = fs::remove_dir_all(dir);
    }

    /// A process in a cgroup a user named after a real, running container
    /// is not that container, and does not label its namespace.
    #[test]
    fn look_alike_cgroup_names_nothing() {
        let (mut r, proc, dir) = fake_registry("alike", &[(A, "web", 10, "bridge")]);
        proc.set(10, 50, &docker_cg(A), 700);
        r.insert_for_test(ns(800, vec![], vec!["lab"]));
        proc.set(40, 90, &format!("0::/user.slice/user-1000.slice/docker-{A}.scope\n"), 800);
        assert_eq!(r.enrich(800, 40, 0), (Some("lab".into()), None));
        // Even in the real container's cgroup, a process in another
        // namespace does not make that namespace the container's.
        proc.set(41, 91, &docker_cg(A), 800);
        let (name, c) = r.enrich(800, 41, 0);
        assert_eq!((name.as_deref(), c.and_then(|c| c.name).as_deref()), (Some("lab"), Some("web")));
        assert_eq!(r.container_for_netns(800), None);
        // Its own first process's namespace is its own.
        r.insert_for_test(ns(700, vec![], vec![]));
        assert_eq!(r.enrich(700, 10, 0).1.and_then(|c| c.name), Some("web".into()));
        assert_eq!(r.container_for_netns(700).and_then(|c| c.name), Some("web".into()));
        assert_eq!(r.netns_name(700).as_deref(), Some("web"));
        let _ = fs::remove_dir_all(dir);
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
