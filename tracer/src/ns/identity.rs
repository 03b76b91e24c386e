//! Which container a process and a namespace belong to, and why to believe
//! it. A process's cgroup only names a candidate (`super::cgroup`, which
//! looks only under the runtimes' own cgroup parents). The candidate's
//! runtime must then confirm it runs (`super::runtime`, root-owned records
//! only), and the process the runtime recorded as the container's first must
//! still be alive in that container's cgroup, so a stale record whose pid
//! was reused confirms nothing.
//!
//! A namespace is labelled with a container only when that container's own
//! process is in it (or it is the runtime's bind mount of the container's
//! sandbox), and the container made it: when several containers share one
//! (`docker run --network container:X`), the one that made it owns it and
//! the others are listed as sharing it. The host's namespace is never
//! labelled: containers on the host network are listed with it instead.
//!
//! The sender of an event is best known by the cgroup the kernel saw it in
//! (the event's cgroup v2 id, resolved to its path through the cgroup
//! filesystem): that holds after the process exited and whatever its pid
//! became. Where the id says nothing (no cgroup v2, or the root), its pid
//! is asked; pid -> candidate entries carry the process's start time (field
//! 22 of `/proc/PID/stat`) and are read again when it changes, so a pid
//! reused by another process does not inherit a label.

use std::{
    collections::{HashMap, HashSet},
    fs,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use super::{
    Container,
    cgroup::{self, Candidate},
    runtime::{NetMode, Record, Runtimes},
};
use crate::sys::ns_inode;

/// What identity needs from `/proc` and the filesystem; tests put in their own.
pub trait ProcFs: Send + Sync {
    /// When the process started (field 22 of `/proc/PID/stat`, clock ticks after boot).
    fn start_time(&self, pid: u32) -> Option<u64>;
    /// The text of `/proc/PID/cgroup`.
    fn cgroup(&self, pid: u32) -> Option<String>;
    /// The inode of the process's network namespace.
    fn netns(&self, pid: u32) -> Option<u64>;
    /// The inode of the network namespace a bind mount holds.
    fn ns_file(&self, path: &Path) -> Option<u64>;
    /// The path (from the root of the hierarchy) of the cgroup v2 whose id
    /// is `id`, as `bpf_get_current_cgroup_id` reports it; `None` when it is
    /// gone or cannot be looked up.
    fn cgroup_path(&self, id: u64) -> Option<String>;
}

/// The real `/proc` and cgroup filesystem.
#[derive(Default)]
pub struct RealProc {
    /// Where the cgroup v2 hierarchy is mounted, found on first use.
    v2_root: OnceLock<Option<PathBuf>>,
}

impl RealProc {
    fn v2_root(&self) -> Option<&Path> {
        self.v2_root
            .get_or_init(|| {
                let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
                info.lines().find_map(|l| {
                    let (left, right) = l.split_once(" - ")?;
                    let point = left.split(' ').nth(4)?;
                    (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(super::unescape_mount(point)))
                })
            })
            .as_deref()
    }
}

/// `FILEID_KERNFS`: the file handle type of cgroup v2 directories, whose 8
/// bytes are the cgroup's id.
const FILEID_KERNFS: i32 = 0xfe;

impl ProcFs for RealProc {
    fn start_time(&self, pid: u32) -> Option<u64> {
        crate::sys::proc::start_time(pid)
    }

    fn cgroup(&self, pid: u32) -> Option<String> {
        fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
    }

    fn netns(&self, pid: u32) -> Option<u64> {
        ns_inode(Path::new(&format!("/proc/{pid}/ns/net"))).ok()
    }

    fn ns_file(&self, path: &Path) -> Option<u64> {
        ns_inode(path).ok()
    }

    fn cgroup_path(&self, id: u64) -> Option<String> {
        /// `struct file_handle` with room for the 8 bytes of a kernfs handle.
        #[repr(C)]
        struct Handle {
            bytes: u32,
            kind: i32,
            id: u64,
        }
        let root = self.v2_root()?;
        let mount = fs::File::open(root).ok()?;
        let mut h = Handle { bytes: 8, kind: FILEID_KERNFS, id };
        // SAFETY: `h` is laid out as a `struct file_handle` followed by its
        // `handle_bytes` (8) bytes of handle; `mount` is an open directory.
        let fd = unsafe {
            libc::open_by_handle_at(mount.as_raw_fd(), (&raw mut h).cast(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
        let rel = path.strip_prefix(root).ok()?.to_str()?;
        Some(format!("/{rel}"))
    }
}

struct PidEntry {
    start: u64,
    candidate: Option<Candidate>,
    read: Instant,
}

/// pid -> the container candidate its cgroup names, per process lifetime.
/// Emptied when it reaches [`PidCache::CAP`] (a flood of short-lived
/// senders between two rescans), else pruned to the live processes at each
/// rescan.
#[derive(Default)]
pub struct PidCache {
    map: HashMap<u32, PidEntry>,
}

impl PidCache {
    pub const CAP: usize = 65_536;

    /// The candidate of process `pid`. Read from the cache while the pid
    /// still belongs to the same process (same start time); "none" is read
    /// again after `recheck`, because a runtime moves a new process into its
    /// container's cgroup just after it starts.
    pub fn lookup(&mut self, proc: &dyn ProcFs, pid: u32, containerd_ns: &[String], recheck: Duration) -> Option<Candidate> {
        let Some(start) = proc.start_time(pid) else {
            self.map.remove(&pid);
            return None;
        };
        if let Some(e) = self.map.get(&pid)
            && e.start == start
            && (e.candidate.is_some() || e.read.elapsed() < recheck)
        {
            return e.candidate.clone();
        }
        let text = proc.cgroup(pid)?;
        // The process may have exited, and its pid been taken, while we read.
        if proc.start_time(pid) != Some(start) {
            self.map.remove(&pid);
            return None;
        }
        let candidate = cgroup::container_from_proc_cgroup(&text, containerd_ns);
        if self.map.len() >= Self::CAP {
            self.map.clear();
        }
        self.map.insert(pid, PidEntry { start, candidate: candidate.clone(), read: Instant::now() });
        candidate
    }

    /// Forgets the processes not in `live`.
    pub fn retain(&mut self, live: &HashSet<u32>) {
        self.map.retain(|pid, _| live.contains(pid));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// cgroup v2 id -> the container candidate its path names. Ids are never
/// reused while the machine runs, so an answer stays true (a cgroup that is
/// gone stays gone); the map is emptied when it reaches [`CgroupIds::CAP`].
#[derive(Default)]
pub struct CgroupIds {
    /// `None`: the id says nothing (the root, gone, not resolvable).
    map: HashMap<u64, Option<Option<Candidate>>>,
}

impl CgroupIds {
    pub const CAP: usize = 4096;

    /// `None`: the id says nothing (0, the root, gone, not resolvable), so
    /// ask the pid; `Some(None)`: a cgroup that is no container's.
    pub fn lookup(&mut self, proc: &dyn ProcFs, id: u64, containerd_ns: &[String]) -> Option<Option<Candidate>> {
        if id == 0 {
            return None;
        }
        if let Some(c) = self.map.get(&id) {
            return c.clone();
        }
        let said = proc.cgroup_path(id).filter(|p| p != "/").map(|p| cgroup::container_from_cgroup_path(&p, containerd_ns));
        if self.map.len() >= Self::CAP {
            self.map.clear();
        }
        self.map.insert(id, said.clone());
        said
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// A container its runtime confirmed, with what tells its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Named as the runtime names it.
    pub container: Container,
    pub record: Record,
    /// When its first process started: the earliest of several that claim a
    /// namespace made it.
    pub started: u64,
}

/// Candidates confirmed by their runtimes, each asked again after `ttl`.
/// Candidates come only from cgroups under the runtimes' root-owned
/// parents, so there are about as many as containers; still, the cache is
/// emptied at [`Confirmer::CAP`].
pub struct Confirmer {
    pub runtimes: Runtimes,
    cache: HashMap<Candidate, (Option<Member>, Instant)>,
    pub ttl: Duration,
}

impl Confirmer {
    pub const CAP: usize = 4096;

    pub fn new(runtimes: Runtimes) -> Self {
        Confirmer { runtimes, cache: HashMap::new(), ttl: Duration::from_millis(500) }
    }

    /// The container `c` names, when its runtime says it runs and the
    /// process the runtime recorded as its first is alive in that very
    /// container's cgroup (a record left by a dead container, or naming a
    /// pid since reused, confirms nothing).
    pub fn confirm(&mut self, proc: &dyn ProcFs, c: &Candidate, containerd_ns: &[String]) -> Option<Member> {
        if let Some((m, at)) = self.cache.get(c)
            && at.elapsed() < self.ttl
        {
            return m.clone();
        }
        // Only a confirmation is remembered. A container being set up has
        // no record yet, or one whose process does not run yet, while its
        // runtime's own processes already send netlink requests from its
        // cgroup: that "no" must not stand for the requests that come a
        // moment later. Candidates come only from cgroups under the
        // runtimes' root-owned parents, so asking again costs a file read
        // per request of a container that is starting or stopping.
        let m = self.runtimes.record(c).and_then(|record| {
            let started = proc.start_time(record.pid)?;
            let first = cgroup::container_from_proc_cgroup(&proc.cgroup(record.pid)?, containerd_ns)?;
            if &first != c || proc.start_time(record.pid) != Some(started) {
                return None;
            }
            let container = Container { runtime: record.runtime.to_string(), id: c.id.clone(), name: record.name.clone(), pod: record.pod.clone() };
            Some(Member { container, record, started })
        });
        let Some(m) = m else {
            self.cache.remove(c);
            return None;
        };
        if self.cache.len() >= Self::CAP {
            self.cache.clear();
        }
        self.cache.insert(c.clone(), (Some(m.clone()), Instant::now()));
        Some(m)
    }

    /// Forgets the candidates not in `keep`.
    pub fn retain(&mut self, keep: &HashSet<Candidate>) {
        self.cache.retain(|c, _| keep.contains(c));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Whether namespace `inode` is the member's own: its first process is in
/// it, or it is the sandbox the runtime keeps for it.
pub fn owns(proc: &dyn ProcFs, m: &Member, inode: u64) -> bool {
    proc.netns(m.record.pid) == Some(inode) || m.record.sandbox.as_deref().is_some_and(|p| proc.ns_file(p) == Some(inode))
}

/// Who a namespace belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The container that made it, which labels it.
    pub owner: Option<Container>,
    /// The owner first, then the containers that share it.
    pub containers: Vec<Container>,
    /// For the host's namespace: the containers on the host network.
    pub host_containers: Vec<Container>,
}

/// Sorts out the members whose namespace `inode` is (see [`owns`]): the
/// host's is nobody's; otherwise the earliest started of those that made
/// their own namespace owns it, and the rest share it.
pub fn classify(host: Option<u64>, inode: u64, mut members: Vec<Member>) -> Identity {
    members.sort_by(|a, b| (a.started, &a.container.id).cmp(&(b.started, &b.container.id)));
    members.dedup_by(|a, b| a.container.id == b.container.id);
    let all = || members.iter().map(|m| m.container.clone());
    if host == Some(inode) {
        return Identity { host_containers: all().collect(), ..Identity::default() };
    }
    let owner = members.iter().find(|m| m.record.net == NetMode::Own).map(|m| m.container.clone());
    let mut containers: Vec<Container> = owner.iter().cloned().collect();
    containers.extend(all().filter(|c| Some(c) != owner.as_ref()));
    Identity { owner, containers, host_containers: Vec::new() }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ns::runtime::Sources;

    /// A `/proc` whose processes the test sets.
    #[derive(Default)]
    pub(crate) struct FakeProc {
        /// pid -> (start time, cgroup text, netns inode).
        pub procs: Mutex<HashMap<u32, (u64, String, u64)>>,
        pub files: Mutex<HashMap<PathBuf, u64>>,
        /// cgroup id -> path.
        pub cgroups: Mutex<HashMap<u64, String>>,
    }

    impl FakeProc {
        pub(crate) fn set(&self, pid: u32, start: u64, cgroup: &str, netns: u64) {
            self.procs.lock().expect("lock").insert(pid, (start, cgroup.to_string(), netns));
        }

        pub(crate) fn exit(&self, pid: u32) {
            self.procs.lock().expect("lock").remove(&pid);
        }
    }

    impl ProcFs for FakeProc {
        fn start_time(&self, pid: u32) -> Option<u64> {
            self.procs.lock().ok()?.get(&pid).map(|p| p.0)
        }
        fn cgroup(&self, pid: u32) -> Option<String> {
            self.procs.lock().ok()?.get(&pid).map(|p| p.1.clone())
        }
        fn netns(&self, pid: u32) -> Option<u64> {
            self.procs.lock().ok()?.get(&pid).map(|p| p.2)
        }
        fn ns_file(&self, path: &Path) -> Option<u64> {
            self.files.lock().ok()?.get(path).copied()
        }
        fn cgroup_path(&self, id: u64) -> Option<String> {
            self.cgroups.lock().ok()?.get(&id).cloned()
        }
    }

    pub(crate) const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    pub(crate) const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// A Docker root in a scratch directory with running containers
    /// `(id, name, pid, network mode)`, trusted as the current user's.
    pub(crate) fn docker_sources(tag: &str, containers: &[(&str, &str, u32, &str)]) -> (Sources, PathBuf) {
        let dir = std::env::temp_dir().join(format!("tracer-id-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (id, name, pid, mode) in containers {
            let d = dir.join("docker/containers").join(id);
            fs::create_dir_all(&d).expect("mkdir");
            let key = if *mode == "host" { "/var/run/docker/netns/default".to_string() } else { String::new() };
            fs::write(
                d.join("config.v2.json"),
                format!(r#"{{"Name":"/{name}","State":{{"Running":true,"Pid":{pid}}},"NetworkSettings":{{"SandboxKey":"{key}"}}}}"#),
            )
            .expect("write");
            fs::write(d.join("hostconfig.json"), format!(r#"{{"NetworkMode":"{mode}"}}"#)).expect("write");
        }
        let src = Sources {
            docker_sock: dir.join("none.sock"),
            docker_root: dir.join("docker"),
            podman_containers: dir.join("none.json"),
            podman_run: dir.join("none"),
            containerd_tasks: vec![],
            timeout: Duration::from_millis(100),
            // SAFETY: geteuid has no preconditions.
            trusted_uid: unsafe { libc::geteuid() },
        };
        (src, dir)
    }

    pub(crate) fn docker_cg(id: &str) -> String {
        format!("4:memory:/docker/{id}\n0::/docker/{id}\n")
    }

    #[test]
    fn stat_start_time() {
        let real = RealProc::default();
        let own = real.start_time(std::process::id()).expect("own start time");
        assert_eq!(real.start_time(std::process::id()), Some(own));
        assert_eq!(real.start_time(u32::MAX), None);
    }

    /// A pid that exits and is reused by another process does not keep the
    /// first one's container, even when the cache was filled before.
    #[test]
    fn pid_reuse_does_not_inherit_a_container() {
        let proc = FakeProc::default();
        let mut cache = PidCache::default();
        let long = Duration::from_secs(3600);
        proc.set(100, 5000, &docker_cg(A), 1);
        assert_eq!(cache.lookup(&proc, 100, &[], long).map(|c| c.id), Some(A.to_string()));
        // The same process: from the cache, even if its cgroup file changed.
        proc.set(100, 5000, "0::/\n", 1);
        assert_eq!(cache.lookup(&proc, 100, &[], long).map(|c| c.id), Some(A.to_string()));
        // It exits; a host process takes its pid.
        proc.exit(100);
        proc.set(100, 9000, "0::/user.slice/user-1000.slice/session-1.scope\n", 2);
        assert_eq!(cache.lookup(&proc, 100, &[], long), None);
        // And another container's process after that.
        proc.set(100, 9500, &docker_cg(B), 3);
        assert_eq!(cache.lookup(&proc, 100, &[], long).map(|c| c.id), Some(B.to_string()));
        // Gone: nothing, and forgotten.
        proc.exit(100);
        assert_eq!(cache.lookup(&proc, 100, &[], long), None);
        assert!(cache.is_empty());
    }

    /// "No container" is looked at again after `recheck`: a runtime moves
    /// its process into the container's cgroup just after it starts.
    #[test]
    fn no_container_is_read_again_later() {
        let proc = FakeProc::default();
        let mut cache = PidCache::default();
        proc.set(7, 1, "0::/\n", 1);
        assert_eq!(cache.lookup(&proc, 7, &[], Duration::from_secs(3600)), None);
        proc.set(7, 1, &docker_cg(A), 1);
        assert_eq!(cache.lookup(&proc, 7, &[], Duration::from_secs(3600)), None);
        assert_eq!(cache.lookup(&proc, 7, &[], Duration::ZERO).map(|c| c.id), Some(A.to_string()));
        cache.retain(&HashSet::new());
        assert_eq!(cache.len(), 0);
    }

    /// A flood of senders between two rescans does not grow it without bound.
    #[test]
    fn pid_cache_is_capped() {
        let proc = FakeProc::default();
        let mut cache = PidCache::default();
        for pid in 1..=(PidCache::CAP as u32 + 10) {
            proc.set(pid, 1, "0::/\n", 1);
            assert_eq!(cache.lookup(&proc, pid, &[], Duration::from_secs(60)), None);
            assert!(cache.len() <= PidCache::CAP);
        }
        assert_eq!(cache.len(), 10);
    }

    /// The kernel's cgroup id of a process, resolved back to its path.
    #[test]
    fn cgroup_ids_resolve_to_paths() {
        let proc = RealProc::default();
        // Needs cgroup v2 and CAP_DAC_READ_SEARCH (open_by_handle_at).
        // SAFETY: geteuid has no preconditions.
        if let Some(root) = proc.v2_root().filter(|_| unsafe { libc::geteuid() } == 0) {
            let own = fs::read_to_string("/proc/self/cgroup").expect("cgroup");
            let path = own.lines().find_map(|l| l.strip_prefix("0::")).expect("v2 line").to_string();
            use std::os::unix::fs::MetadataExt as _;
            let id = fs::metadata(root.join(path.trim_start_matches('/'))).expect("cgroup dir").ino();
            assert_eq!(proc.cgroup_path(id), Some(path));
            assert_eq!(proc.cgroup_path(u64::MAX - 7), None);
        }

        let fake = FakeProc::default();
        fake.cgroups.lock().expect("lock").extend([
            (5, format!("/docker/{A}")),
            (6, format!("/user.slice/user-1000.slice/docker-{A}.scope")),
            (1, "/".to_string()),
        ]);
        let mut ids = CgroupIds::default();
        assert_eq!(ids.lookup(&fake, 5, &[]).map(|c| c.map(|c| c.id)), Some(Some(A.to_string())));
        assert_eq!(ids.lookup(&fake, 6, &[]), Some(None));
        // The root, an unknown id and no id say nothing: the pid decides.
        assert_eq!(ids.lookup(&fake, 1, &[]), None);
        assert_eq!(ids.lookup(&fake, 7, &[]), None);
        assert_eq!(ids.lookup(&fake, 0, &[]), None);
        // Answers stay (ids are not reused), within the cap.
        fake.cgroups.lock().expect("lock").clear();
        assert_eq!(ids.lookup(&fake, 5, &[]).map(|c| c.map(|c| c.id)), Some(Some(A.to_string())));
        assert_eq!(ids.lookup(&fake, 1, &[]), None);
        assert_eq!(ids.len(), 4);
        for id in 100..(100 + CgroupIds::CAP as u64) {
            ids.lookup(&fake, id, &[]);
            assert!(ids.len() <= CgroupIds::CAP);
        }
    }

    /// The runtime's record counts only while its first process is alive in
    /// the container's own cgroup.
    #[test]
    fn confirmation_needs_the_recorded_process() {
        let (src, dir) = docker_sources("confirm", &[(A, "web", 10, "bridge")]);
        let proc = FakeProc::default();
        let mut conf = Confirmer::new(Runtimes::new(src));
        conf.ttl = Duration::ZERO;
        let cand = cgroup::container_from_cgroup_path(&format!("/docker/{A}"), &[]).expect("candidate");
        // Not running (no process 10).
        assert_eq!(conf.confirm(&proc, &cand, &[]), None);
        // Pid 10 is someone else's.
        proc.set(10, 50, "0::/\n", 1);
        assert_eq!(conf.confirm(&proc, &cand, &[]), None);
        proc.set(10, 50, &docker_cg(B), 1);
        assert_eq!(conf.confirm(&proc, &cand, &[]), None);
        // The container's own.
        proc.set(10, 50, &docker_cg(A), 1);
        let m = conf.confirm(&proc, &cand, &[]).expect("confirmed");
        assert_eq!(m.container, Container { pod: None, runtime: "docker".into(), id: A.into(), name: Some("web".into()) });
        assert_eq!(m.started, 50);
        // An id the runtime does not know.
        let other = cgroup::container_from_cgroup_path(&format!("/docker/{B}"), &[]).expect("candidate");
        proc.set(11, 60, &docker_cg(B), 1);
        assert_eq!(conf.confirm(&proc, &other, &[]), None);
        assert_eq!(conf.len(), 1, "only confirmations are remembered");
        conf.retain(&HashSet::new());
        assert_eq!(conf.len(), 0);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_container_still_starting_is_confirmed_as_soon_as_its_process_runs() {
        // Its runtime's processes send requests from its cgroup before its
        // first process runs: that "no" must not stand for the next request.
        let (src, dir) = docker_sources("starting", &[(A, "web", 10, "bridge")]);
        let proc = FakeProc::default();
        let mut conf = Confirmer::new(Runtimes::new(src));
        conf.ttl = Duration::from_secs(3600);
        let cand = cgroup::container_from_cgroup_path(&format!("/docker/{A}"), &[]).expect("candidate");
        assert_eq!(conf.confirm(&proc, &cand, &[]), None);
        proc.set(10, 50, &docker_cg(A), 1);
        assert!(conf.confirm(&proc, &cand, &[]).is_some(), "confirmed once its process runs, within the ttl");
        // Nor is an id its runtime does not know yet.
        let other = cgroup::container_from_cgroup_path(&format!("/docker/{B}"), &[]).expect("candidate");
        assert_eq!(conf.confirm(&proc, &other, &[]), None);
        assert_eq!(conf.len(), 1);
        let _ = fs::remove_dir_all(dir);
    }

    fn member(id: &str, name: &str, started: u64, net: NetMode) -> Member {
        Member {
            container: Container { pod: None, runtime: "docker".into(), id: id.into(), name: Some(name.into()) },
            record: Record { runtime: "docker", name: Some(name.into()), pid: 1, net, sandbox: None, pod: None },
            started,
        }
    }

    #[test]
    fn classify_owner_sharers_and_host() {
        let web = member(A, "web", 10, NetMode::Own);
        let side = member(B, "side", 5, NetMode::Joined);
        // `--network container:web`: web made it, so web owns it, even if
        // side's process had started first.
        let id = classify(Some(1), 7, vec![side.clone(), web.clone()]);
        assert_eq!(id.owner, Some(web.container.clone()));
        assert_eq!(id.containers, vec![web.container.clone(), side.container.clone()]);
        assert!(id.host_containers.is_empty());
        // The host namespace: nobody's, whatever the modes.
        let hn = member(A, "hn", 10, NetMode::Host);
        let id = classify(Some(1), 1, vec![hn.clone(), side.clone()]);
        assert_eq!(id.owner, None);
        assert!(id.containers.is_empty());
        assert_eq!(id.host_containers, vec![side.container.clone(), hn.container.clone()]);
        // Two that both made "their own" (Podman pods): the first started.
        let infra = member(A, "infra", 3, NetMode::Own);
        let app = member(B, "app", 4, NetMode::Own);
        assert_eq!(classify(Some(1), 7, vec![app.clone(), infra.clone()]).owner, Some(infra.container.clone()));
        // Only sharers: listed, but nobody's label.
        let id = classify(Some(1), 7, vec![side.clone()]);
        assert_eq!((id.owner, id.containers), (None, vec![side.container.clone()]));
        // A host-network container seen outside the host's namespace (a
        // runtime that runs in a namespace of its own) does not own it.
        assert_eq!(classify(Some(1), 7, vec![hn]).owner, None);
        assert_eq!(classify(None, 7, vec![]), Identity::default());
    }

    #[test]
    fn owns_by_process_or_sandbox() {
        let proc = FakeProc::default();
        proc.set(1, 1, "0::/\n", 70);
        let mut m = member(A, "web", 1, NetMode::Own);
        assert!(owns(&proc, &m, 70));
        assert!(!owns(&proc, &m, 71));
        m.record.sandbox = Some(PathBuf::from("/run/docker/netns/ab"));
        proc.files.lock().expect("lock").insert(PathBuf::from("/run/docker/netns/ab"), 71);
        assert!(owns(&proc, &m, 71));
        proc.exit(1);
        assert!(!owns(&proc, &m, 70));
    }
}
