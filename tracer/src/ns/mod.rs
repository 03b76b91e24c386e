//! Network namespaces and what lives in them: discovery (processes, bind
//! mounts, nsfs mounts), containers (candidates from cgroups, confirmed and
//! named by their runtime, see `identity`), interfaces with their veth peers (rtnetlink inside each namespace), the
//! cached [`Registry`] that enriches events, and the selectors users give
//! (`--netns NAME|PATH|INODE`, `--pid PID`, `--container NAME|ID`).

pub mod cgroup;
pub mod identity;
pub mod links;
pub mod registry;
pub mod runtime;
pub mod watch;

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

pub use registry::Registry;

use crate::sys::ns_inode;

/// Directories whose entries are bind mounts of namespace files with names.
pub const NAMED_NS_DIRS: &[&str] = &["/run/netns", "/var/run/netns", "/run/docker/netns"];
/// Of those, the ones whose entry names mean something to a user (`ip netns`);
/// Docker's are sandbox ids, which nobody types.
pub const USER_NS_DIRS: &[&str] = &["/run/netns", "/var/run/netns"];

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
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NsPid {
    pub pid: u32,
    pub comm: String,
}

/// A container, as the DESIGN.md contract prints it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Container {
    pub runtime: String,
    /// The full id.
    pub id: String,
    pub name: Option<String>,
}

impl Container {
    /// The name if the runtime gave one, else the short id, as people write it.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id[..self.id.len().min(12)])
    }
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
    let mut seen_dirs = Vec::new();
    for dir in NAMED_NS_DIRS {
        // /var/run is usually a link to /run: list each directory once.
        let Ok(real) = fs::canonicalize(dir) else { continue };
        if seen_dirs.contains(&real) {
            continue;
        }
        seen_dirs.push(real.clone());
        let user = USER_NS_DIRS.contains(dir);
        let Ok(entries) = fs::read_dir(&real) else { continue };
        for e in entries.flatten() {
            if let Ok(ino) = ns_inode(&e.path()) {
                // An empty file left by a failed `ip netns add` is no namespace.
                if !is_nsfs(&e.path()) {
                    continue;
                }
                let name = user.then(|| e.file_name().to_string_lossy().into_owned());
                s.mounts.entry(ino).or_default().push((e.path(), name));
            }
        }
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

fn is_nsfs(p: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs into a zeroed struct with a valid C path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == NSFS_MAGIC
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

/// The host's (initial) network namespace: kthreadd's (pid 2) is always in
/// it and stays readable where pid 1 belongs to someone else.
pub fn host_netns() -> Option<u64> {
    ["/proc/1/ns/net", "/proc/2/ns/net"].iter().find_map(|p| ns_inode(Path::new(p)).ok())
}

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("no network namespace {0:?}: not a name in /run/netns, a namespace file, or a known inode{1}")]
    UnknownNetns(String, String),
    #[error("no process {0}: /proc/{0}/ns/net does not exist")]
    UnknownPid(u32),
    #[error("no running container {0:?} (by name or id prefix){1}")]
    UnknownContainer(String, String),
    #[error("container id prefix {0:?} matches several containers: {1}; give more of the id or the name")]
    AmbiguousContainer(String, String),
    #[error("{0}")]
    Discovery(String),
}

impl From<NsError> for SelectError {
    fn from(e: NsError) -> Self {
        SelectError::Discovery(e.to_string())
    }
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
    Err(SelectError::UnknownNetns(arg.into(), did_you_mean(names.values().map(String::as_str), arg)))
}

/// Resolves `--pid PID` to the inode of its network namespace.
pub fn resolve_pid(pid: u32) -> Result<u64, SelectError> {
    ns_inode(Path::new(&format!("/proc/{pid}/ns/net"))).map_err(|_| SelectError::UnknownPid(pid))
}

/// A `/proc/PID/comm` file as text: its one line, exactly (spaces kept),
/// invalid UTF-8 as U+FFFD.
fn comm_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(raw)).into_owned()
}

/// Loose match for "did you mean": shared prefix or containment.
pub fn similar(candidate: &str, wanted: &str) -> bool {
    let (c, w) = (candidate.to_ascii_lowercase(), wanted.to_ascii_lowercase());
    c.contains(&w) || w.contains(&c) || c.chars().zip(w.chars()).take_while(|(a, b)| a == b).count() >= 3
}

/// `"; did you mean a, b?"` for the candidates [`similar`] to `wanted`, or "".
/// The closest come first (by edit distance), at most five.
pub fn did_you_mean<'a>(candidates: impl IntoIterator<Item = &'a str>, wanted: &str) -> String {
    let mut close: Vec<&str> = candidates.into_iter().filter(|n| similar(n, wanted)).collect();
    close.sort_by_key(|c| (edit_distance(&c.to_ascii_lowercase(), &wanted.to_ascii_lowercase()), *c));
    close.dedup();
    close.truncate(5);
    let close: Vec<_> = close.into_iter().map(crate::sys::text::name).collect();
    if close.is_empty() { String::new() } else { format!("; did you mean {}?", close.join(", ")) }
}

/// Levenshtein distance, for ranking suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `tracer ns` as a table: one row per namespace. Names (of namespaces,
/// containers, processes, interfaces) are cut and every cell is escaped
/// before the columns are measured (see [`crate::sys::text`]).
pub fn write_table(list: &[Netns], w: &mut impl std::io::Write) -> std::io::Result<()> {
    use crate::sys::text::{escape, name};
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|n| {
            let containers = containers_text(n);
            let names: Vec<String> = n.names.iter().map(|x| name(x).into_owned()).collect();
            [
                n.inode.to_string(),
                n.cookie.map_or("-".into(), |c| c.to_string()),
                if names.is_empty() { "-".into() } else { names.join(",") },
                if containers.is_empty() { "-".into() } else { containers.join(",") },
                if n.pids.is_empty() { "-".into() } else { registry::pid_list(&n.pids, 3) },
                n.error.clone().unwrap_or_else(|| n.interfaces.iter().map(iface_text).collect::<Vec<_>>().join(" ")),
            ]
            .map(|cell| escape(&cell).into_owned())
        })
        .collect();
    let head = ["NETNS", "COOKIE", "NAMES", "CONTAINERS", "PIDS", "INTERFACES"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The owner as `docker:web`, then the containers sharing it as
/// `docker:side(shared)`, or those on the host network as `docker:hn(host-network)`.
fn containers_text(n: &Netns) -> Vec<String> {
    use crate::sys::text::name;
    let text = |c: &Container, how: &str| format!("{}:{}{how}", name(&c.runtime), name(c.label()));
    let shared = n.containers.iter().map(|c| if n.container.as_ref() == Some(c) { text(c, "") } else { text(c, "(shared)") });
    shared.chain(n.host_containers.iter().map(|c| text(c, "(host-network)"))).collect()
}

/// `eth0(veth,up)->veth1a2b@4026531840`, `docker0(bridge)`, `vethab(veth,up,master=docker0)->eth0@4026532301`.
fn iface_text(i: &Iface) -> String {
    use crate::sys::text::name;
    let mut attrs: Vec<String> = i.kind.iter().map(|k| name(k).into_owned()).collect();
    if !i.up {
        attrs.push("down".into());
    }
    if let Some(m) = &i.master {
        attrs.push(format!("master={}", name(m)));
    }
    let mut s = if attrs.is_empty() { name(&i.name).into_owned() } else { format!("{}({})", name(&i.name), attrs.join(",")) };
    if let Some(p) = &i.peer {
        s.push_str(&format!("->{}@{}", name(&p.name), p.netns_inode));
    }
    s
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
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(did_you_mean(["lab-b", "lab-a", "lab-abc"], "lab-ax"), "; did you mean lab-a, lab-abc, lab-b?");
        assert_eq!(did_you_mean(["web-1", "db", "web-2"], "web"), "; did you mean web-1, web-2?");
        assert_eq!(did_you_mean(["db"], "web"), "");
    }

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
        // Docker's sandbox of the host network names nothing; ip netns names do.
        assert!(!names_namespace("/run/docker/netns", 1, Some(1)));
        assert!(names_namespace("/run/docker/netns", 2, Some(1)));
        assert!(names_namespace("/run/netns", 1, Some(1)));
        assert_eq!(unescape_mount("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn scan_finds_own_namespace_and_process() {
        let s = scan(true).expect("scan");
        let own = resolve_pid(std::process::id()).expect("own");
        let pids = s.pids.get(&own).expect("own namespace");
        let me = pids.iter().find(|p| p.pid == std::process::id()).expect("own pid");
        let comm = fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(me.comm, comm.trim_end());
        assert_eq!(comm_text(b"a b \xff\x1b\n"), "a b \u{fffd}\x1b");
    }

    fn docker(id: char, name: &str) -> Container {
        Container { runtime: "docker".into(), id: id.to_string().repeat(64), name: Some(name.into()) }
    }

    #[test]
    fn table_rows() {
        let web = docker('a', "web");
        let n = Netns {
            inode: 4026532301,
            cookie: Some(7),
            names: vec!["web".into()],
            pids: vec![NsPid { pid: 42, comm: "sleep".into() }],
            container: Some(web.clone()),
            containers: vec![web],
            host_containers: vec![],
            interfaces: vec![
                Iface { name: "lo".into(), ifindex: 1, kind: Some("loopback".into()), master: None, peer: None, up: false },
                Iface {
                    name: "eth0".into(),
                    ifindex: 2,
                    kind: Some("veth".into()),
                    master: None,
                    peer: Some(Peer { netns_inode: 4026531840, ifindex: 9, name: "veth1a2b".into() }),
                    up: true,
                },
            ],
            path: PathBuf::from("/proc/42/ns/net"),
            mounts: vec![],
            error: None,
        };
        let mut out = Vec::new();
        write_table(&[n], &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NETNS       COOKIE  NAMES  CONTAINERS  PIDS       INTERFACES"), "{text}");
        assert_eq!(lines[1], "4026532301  7       web    docker:web  42(sleep)  lo(loopback,down) eth0(veth)->veth1a2b@4026531840");
    }

    /// The owner unmarked, the others marked: a namespace shared with
    /// `--network container:web`, and the host's with host-network containers.
    #[test]
    fn shared_and_host_network_containers() {
        let (web, side, hn) = (docker('a', "web"), docker('b', "side"), docker('c', "hn"));
        let shared = Netns {
            inode: 9,
            cookie: None,
            names: vec!["web".into()],
            pids: vec![],
            container: Some(web.clone()),
            containers: vec![web.clone(), side.clone()],
            host_containers: vec![],
            interfaces: vec![],
            path: PathBuf::from("/proc/42/ns/net"),
            mounts: vec![],
            error: None,
        };
        assert_eq!(containers_text(&shared), ["docker:web", "docker:side(shared)"]);
        let host = Netns { inode: 1, names: vec![], container: None, containers: vec![], host_containers: vec![hn.clone()], ..shared.clone() };
        assert_eq!(containers_text(&host), ["docker:hn(host-network)"]);
        assert!(host.has_container(&hn.id) && shared.has_container(&side.id) && !host.has_container(&web.id));
        let json = serde_json::to_value(&host).expect("json");
        assert_eq!(json["container"], serde_json::Value::Null);
        assert_eq!(json["containers"], serde_json::json!([]));
        assert_eq!(json["host_containers"], serde_json::json!([{"runtime": "docker", "id": hn.id, "name": "hn"}]));
        let json = serde_json::to_value(&shared).expect("json");
        assert_eq!(json["container"]["name"], "web");
        assert_eq!(json["host_containers"], serde_json::json!([]));
    }

    #[test]
    fn table_escapes_and_cuts_names_from_outside() {
        let n = Netns {
            inode: 4026532301,
            cookie: None,
            names: vec!["lab\x1b[2J".into()],
            pids: vec![NsPid { pid: 42, comm: "x\x1b]0;pwn\x07".into() }],
            container: Some(Container { runtime: "docker".into(), id: "ab".repeat(32), name: Some("w".repeat(500)) }),
            containers: vec![Container { runtime: "docker".into(), id: "ab".repeat(32), name: Some("w".repeat(500)) }],
            host_containers: vec![],
            interfaces: vec![Iface {
                name: "e\u{9b}1m".into(),
                ifindex: 2,
                kind: Some("veth".into()),
                master: Some("br\x07".into()),
                peer: Some(Peer { netns_inode: 1, ifindex: 9, name: "p\x1b".into() }),
                up: true,
            }],
            path: PathBuf::from("/proc/42/ns/net"),
            mounts: vec![],
            error: None,
        };
        let mut out = Vec::new();
        write_table(&[n.clone(), Netns { names: vec!["b".into()], container: None, containers: vec![], ..n }], &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        let want_container = format!("docker:{}{}", "w".repeat(crate::sys::text::NAME_MAX - 3), crate::sys::text::ELLIPSIS);
        assert!(lines[1].contains(&format!("lab\\x1b[2J  {want_container}  42(x\\x1b]0;pwn\\x07)")), "{text}");
        assert!(lines[1].ends_with(r"e\x9b1m(veth,master=br\x07)->p\x1b@1"), "{text}");
        // The PIDS column starts at the same place on both rows.
        assert_eq!(lines[1].find("42(").map(|i| lines[1][..i].chars().count()), lines[2].find("42(").map(|i| lines[2][..i].chars().count()));
    }

    #[test]
    fn container_label() {
        let c = Container { runtime: "docker".into(), id: "0123456789abcdef".into(), name: None };
        assert_eq!(c.label(), "0123456789ab");
        assert_eq!(Container { name: Some("web".into()), ..c }.label(), "web");
    }
}
