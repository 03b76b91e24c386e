//! Enrichment of netlink events with what the kernel record lacks: interface
//! names for the indexes a request carries (looked up with RTM_GETLINK inside
//! the sender's namespace, cached), and the namespace a request targets
//! (`IFLA_NET_NS_FD` resolved through the sender's open namespace files the
//! kernel program recorded, `IFLA_NET_NS_PID` through /proc).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use serde_json::{Value, json};

use super::route::{NsRef, TargetRef};
use crate::{ns, sys};

/// Names of namespaces and interfaces, cached with a short lifetime.
pub struct Enricher {
    netns_names: HashMap<u64, String>,
    netns_paths: HashMap<u64, PathBuf>,
    names_at: Instant,
    ifnames: HashMap<(u64, u32), (Option<String>, Instant)>,
}

// Reading /run/netns is a few stats: cheap enough to redo on a miss.
const NAMES_TTL: Duration = Duration::from_millis(50);
const IFNAME_TTL: Duration = Duration::from_secs(2);

impl Default for Enricher {
    fn default() -> Self {
        Self::new()
    }
}

impl Enricher {
    pub fn new() -> Self {
        let mut e = Self {
            netns_names: HashMap::new(),
            netns_paths: HashMap::new(),
            names_at: Instant::now(),
            ifnames: HashMap::new(),
        };
        e.reload_names();
        e
    }

    fn reload_names(&mut self) {
        self.netns_names.clear();
        self.netns_paths.clear();
        let host = ns::host_netns();
        for dir in ns::NAMED_NS_DIRS {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for ent in entries.flatten() {
                if let Ok(ino) = sys::ns_inode(&ent.path()) {
                    if ns::names_namespace(dir, ino, host) {
                        self.netns_names.entry(ino).or_insert_with(|| ent.file_name().to_string_lossy().into_owned());
                    }
                    self.netns_paths.entry(ino).or_insert(ent.path());
                }
            }
        }
        self.names_at = Instant::now();
    }

    /// Name of a namespace (a /run/netns entry), refreshing on a miss.
    pub fn netns_name(&mut self, ino: u64) -> Option<String> {
        if !self.netns_names.contains_key(&ino) && self.names_at.elapsed() > NAMES_TTL {
            self.reload_names();
        }
        self.netns_names.get(&ino).cloned()
    }

    /// A file to setns into namespace `ino`: the sender's own, or a named one.
    fn netns_path(&mut self, ino: u64, pid: u32) -> Option<PathBuf> {
        let own = PathBuf::from(format!("/proc/{pid}/ns/net"));
        if sys::ns_inode(&own).ok() == Some(ino) {
            return Some(own);
        }
        if !self.netns_paths.contains_key(&ino) && self.names_at.elapsed() > NAMES_TTL {
            self.reload_names();
        }
        if let Some(p) = self.netns_paths.get(&ino) {
            return Some(p.clone());
        }
        if sys::ns_inode(Path::new("/proc/self/ns/net")).ok() == Some(ino) {
            return Some(PathBuf::from("/proc/self/ns/net"));
        }
        None
    }

    /// Name of interface `index` in namespace `ino`.
    pub fn ifname(&mut self, ino: u64, pid: u32, index: u32) -> Option<String> {
        if index == 0 {
            return None;
        }
        if let Some((name, at)) = self.ifnames.get(&(ino, index))
            && name.is_some() && at.elapsed() < IFNAME_TTL {
                return name.clone();
            }
        let path = self.netns_path(ino, pid)?;
        let name = sys::in_netns(&path, || link_name(index)).ok().flatten();
        self.ifnames.insert((ino, index), (name.clone(), Instant::now()));
        name
    }

    /// Remembers a name the request itself revealed.
    pub fn learn(&mut self, ino: u64, index: u32, name: &str) {
        self.ifnames.insert((ino, index), (Some(name.to_string()), Instant::now()));
    }

    /// After a link was created, learns its index while it exists, so a
    /// later request naming it only by index (`ip link del` does) is named.
    pub fn learn_created(&mut self, ino: u64, pid: u32, name: &str) {
        if self.ifnames.iter().any(|((i, _), (n, at))| *i == ino && n.as_deref() == Some(name) && at.elapsed() < IFNAME_TTL) {
            return;
        }
        let Some(path) = self.netns_path(ino, pid) else { return };
        if let Ok(Some(index)) = sys::in_netns(&path, || link_index(name)) {
            self.learn(ino, index, name);
        }
    }

    /// Resolves a request's namespace reference to `{inode, name, of}`.
    pub fn target(&mut self, t: &TargetRef, pid: u32, ns_fds: &[(u32, u32)]) -> Value {
        let ino = match t.ns {
            NsRef::Fd(fd) => ns_fds
                .iter()
                .find(|(f, i)| *f as i32 == fd && *i != 0)
                .map(|(_, i)| u64::from(*i))
                .or_else(|| fd_netns(pid, fd)),
            NsRef::Pid(p) => sys::ns_inode(Path::new(&format!("/proc/{p}/ns/net"))).ok(),
            NsRef::Nsid(_) => None,
        };
        let mut v = json!({"inode": ino, "name": ino.and_then(|i| self.netns_name(i)), "of": t.of});
        match t.ns {
            NsRef::Fd(fd) => v["fd"] = json!(fd),
            NsRef::Pid(p) => v["pid"] = json!(p),
            NsRef::Nsid(id) => v["nsid"] = json!(id),
        }
        v
    }
}

/// The namespace an open fd of `pid` refers to, while the process lives.
fn fd_netns(pid: u32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_string_lossy();
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// RTM_GETLINK by name in the current thread's namespace: the index.
fn link_index(name: &str) -> Option<u32> {
    let mut lm = LinkMessage::default();
    lm.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_link(lm).map(|l| l.header.index)
}

/// RTM_GETLINK for one index in the current thread's namespace.
fn link_name(index: u32) -> Option<String> {
    let mut lm = LinkMessage::default();
    lm.header.index = index;
    get_link(lm)?.attributes.into_iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n),
        _ => None,
    })
}

fn get_link(lm: LinkMessage) -> Option<LinkMessage> {
    let mut sock = Socket::new(NETLINK_ROUTE).ok()?;
    sock.bind_auto().ok()?;
    sock.connect(&SocketAddr::new(0, 0)).ok()?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(RouteNetlinkMessage::GetLink(lm)));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0).ok()?;
    let (data, _) = sock.recv_from_full().ok()?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data).ok()?;
    match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => Some(l),
        _ => None,
    }
}
