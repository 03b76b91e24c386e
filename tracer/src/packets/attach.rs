//! Attaching a pair of TC programs (loaded once: [`PACKET_PROGRAMS`] for
//! `tracer packets`, [`TOP_PROGRAMS`] for `tracer top`) to many interfaces
//! in many namespaces, and releasing them again.
//!
//! Each attachment is made from inside the interface's namespace
//! (`sys::in_netns`), since interface names and indexes only mean something
//! there. TCX (Linux >= 6.6) is preferred: a TCX link is an fd, detaches
//! when closed from any namespace, and leaves nothing behind. Older kernels
//! get clsact + cls_bpf over netlink, whose pitfalls (DESIGN.md) are handled
//! here: the clsact qdisc is removed again if this module added it, and a
//! filter is only ever detached from inside its own namespace, never by an
//! ifindex that may mean another interface in the tracer's namespace.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcAttachType, TcError},
    },
};
use tracer_common::programs as p;

use crate::{
    hooks::HookError,
    ns::{Iface, Netns, links::Rtnl},
};

/// How TC programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcMode {
    /// BPF links on the device (Linux >= 6.6).
    Tcx,
    /// A clsact qdisc and cls_bpf filters, set up over netlink.
    NetlinkTc,
}

impl TcMode {
    /// TCX where the kernel has it. `TRACER_TC=netlink` forces the fallback,
    /// so that it can be tested on a kernel that has TCX.
    pub fn detect() -> Self {
        if std::env::var("TRACER_TC").is_ok_and(|v| v == "netlink") || crate::sys::kernel_version() < (6, 6) {
            Self::NetlinkTc
        } else {
            Self::Tcx
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::NetlinkTc => "netlink-tc",
        }
    }
}

/// The ingress and egress program of a job, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramPair {
    pub ingress: &'static str,
    pub egress: &'static str,
}

/// Copy packets to the ring buffer.
pub const PACKET_PROGRAMS: ProgramPair = ProgramPair { ingress: p::PKT_INGRESS, egress: p::PKT_EGRESS };
/// Count packets per interface and flow in maps.
pub const TOP_PROGRAMS: ProgramPair = ProgramPair { ingress: p::TOP_INGRESS, egress: p::TOP_EGRESS };

/// One interface the programs are attached to.
struct Attached {
    /// The namespace's cookie: inode numbers are reused as soon as a
    /// namespace is freed (a restarted container often gets its old one),
    /// cookies never are.
    cookie: Option<u64>,
    ns_path: PathBuf,
    label: String,
    /// Ingress and egress; dropping a link detaches it.
    links: Vec<SchedClassifierLink>,
    /// netlink-tc only: the clsact qdisc was added by us.
    added_qdisc: bool,
}

/// What one [`Attacher::sync`] did.
#[derive(Debug, Default)]
pub struct Changes {
    pub attached: Vec<String>,
    pub released: Vec<String>,
    /// (namespace inode, ifindex) of each released interface.
    pub released_keys: Vec<(u64, u32)>,
    /// Interfaces that could not be attached, with the reason (reported once).
    pub failed: Vec<(String, String)>,
}

pub struct Attacher {
    mode: TcMode,
    programs: ProgramPair,
    attached: HashMap<(u64, u32), Attached>,
    /// Interfaces that failed once, with their namespace's cookie: not
    /// retried while they are the same interface.
    failed: HashSet<(u64, Option<u64>, u32)>,
}

/// The two programs of `pair`, borrowed together from the object.
fn programs(ebpf: &mut Ebpf, pair: ProgramPair) -> Result<(&mut SchedClassifier, &mut SchedClassifier), HookError> {
    let (mut ingress, mut egress) = (None, None);
    for (name, prog) in ebpf.programs_mut() {
        if name == pair.ingress {
            ingress = Some(prog);
        } else if name == pair.egress {
            egress = Some(prog);
        }
    }
    let ingress = ingress.ok_or(HookError::NoProgram(pair.ingress))?;
    let egress = egress.ok_or(HookError::NoProgram(pair.egress))?;
    let ingress: &mut SchedClassifier =
        ingress.try_into().map_err(|source| HookError::Load { program: pair.ingress, source })?;
    let egress: &mut SchedClassifier =
        egress.try_into().map_err(|source| HookError::Load { program: pair.egress, source })?;
    Ok((ingress, egress))
}

/// Whether an attach error only means the interface or namespace went away
/// meanwhile, which is no failure worth reporting.
fn vanished(e: &ProgramError) -> bool {
    let io = match e {
        ProgramError::SyscallError(s) => Some(&s.io_error),
        ProgramError::TcError(TcError::IoError(e)) => Some(e),
        _ => None,
    };
    match io.and_then(io::Error::raw_os_error) {
        Some(code) => code == libc::ENODEV || code == libc::ENOENT || code == libc::ENXIO,
        None => matches!(e, ProgramError::UnknownInterface { .. }),
    }
}

fn describe(e: &ProgramError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Attacher {
    /// Loads both programs of `pair` into the kernel (once; they are
    /// attached many times).
    pub fn new(ebpf: &mut Ebpf, mode: TcMode, pair: ProgramPair) -> Result<Self, HookError> {
        let (ingress, egress) = programs(ebpf, pair)?;
        ingress.load().map_err(|source| HookError::Load { program: pair.ingress, source })?;
        egress.load().map_err(|source| HookError::Load { program: pair.egress, source })?;
        Ok(Self { mode, programs: pair, attached: HashMap::new(), failed: HashSet::new() })
    }

    pub fn mode(&self) -> TcMode {
        self.mode
    }

    /// Number of interfaces attached now.
    pub fn len(&self) -> usize {
        self.attached.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attached.is_empty()
    }

    /// (namespace inode, ifindex) of every interface attached now.
    pub fn keys(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.attached.keys().copied()
    }

    /// Makes the attachments match `want`: (namespace, interfaces to trace
    /// in it). Interfaces no longer wanted, or gone, are released.
    pub fn sync(&mut self, ebpf: &mut Ebpf, want: &BTreeMap<u64, (Netns, Vec<Iface>)>) -> Changes {
        let mut changes = Changes::default();
        let cookie = |ino: &u64| want.get(ino).and_then(|(n, _)| n.cookie);
        let wanted: HashSet<(u64, Option<u64>, u32)> =
            want.iter().flat_map(|(ino, (n, ifs))| ifs.iter().map(move |i| (*ino, n.cookie, i.ifindex))).collect();
        let gone: Vec<(u64, u32)> =
            self.attached.iter().filter(|((ino, idx), a)| !wanted.contains(&(*ino, a.cookie, *idx))).map(|(k, _)| *k).collect();
        for key in gone {
            if let Some(a) = self.attached.remove(&key) {
                changes.released.push(a.label.clone());
                changes.released_keys.push(key);
                // Alive: the same namespace, not another one with its inode.
                let ns_alive = want.contains_key(&key.0) && cookie(&key.0) == a.cookie;
                self.release(key.1, a, ns_alive);
            }
        }
        // Failures are forgotten once the interface is gone, so a new one
        // that reuses the index gets its own try.
        self.failed.retain(|k| wanted.contains(k));

        let Ok((ingress, egress)) = programs(ebpf, self.programs) else { return changes };
        for (ino, (ns, ifs)) in want {
            let todo: Vec<&Iface> = ifs
                .iter()
                .filter(|i| !self.attached.contains_key(&(*ino, i.ifindex)) && !self.failed.contains(&(*ino, ns.cookie, i.ifindex)))
                .collect();
            if todo.is_empty() {
                continue;
            }
            let mode = self.mode;
            let entered = crate::sys::in_netns(&ns.path, || {
                todo.iter().map(|i| (i, attach_one(ingress, egress, mode, &i.name))).collect::<Vec<_>>()
            });
            // The namespace went away since discovery: nothing to do there.
            let Ok(results) = entered else { continue };
            for (i, r) in results {
                let label = format!("{}/{}", ns_label(ns), i.name);
                let key = (*ino, i.ifindex);
                match r {
                    Ok((links, added_qdisc)) => {
                        changes.attached.push(label.clone());
                        let a = Attached { cookie: ns.cookie, ns_path: ns.path.clone(), label, links, added_qdisc };
                        self.attached.insert(key, a);
                    }
                    Err(e) if vanished(&e) => {}
                    Err(e) => {
                        self.failed.insert((*ino, ns.cookie, i.ifindex));
                        changes.failed.push((label, describe(&e)));
                    }
                }
            }
        }
        changes
    }

    fn release(&self, ifindex: u32, a: Attached, ns_alive: bool) {
        match self.mode {
            // Closing the link fds detaches, from whatever namespace.
            TcMode::Tcx => drop(a.links),
            TcMode::NetlinkTc => {
                let Attached { ns_path, links, added_qdisc, .. } = a;
                let mut links = Some(links);
                if ns_alive {
                    let _ = crate::sys::in_netns(&ns_path, || {
                        drop(links.take());
                        if added_qdisc {
                            let _ = del_clsact(ifindex);
                        }
                    });
                }
                // A netlink link detaches by ifindex in the thread's current
                // namespace, where that index may be another interface: when
                // its own namespace is gone (and the filter with it), it must
                // not be dropped anywhere else.
                if let Some(l) = links {
                    std::mem::forget(l);
                }
            }
        }
    }

    /// Releases every attachment (at exit).
    pub fn release_all(&mut self) {
        let all: Vec<((u64, u32), Attached)> = self.attached.drain().collect();
        for ((_, ifindex), a) in all {
            let alive = Path::new(&a.ns_path).exists();
            self.release(ifindex, a, alive);
        }
    }
}

impl Drop for Attacher {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// How a namespace is named in labels: its (container's) name, else its inode.
pub fn ns_label(ns: &Netns) -> String {
    ns.names.first().cloned().unwrap_or_else(|| ns.inode.to_string())
}

/// Removes the clsact qdisc of `ifindex` in the thread's namespace.
fn del_clsact(ifindex: u32) -> io::Result<()> {
    Rtnl::open()?.del_clsact(ifindex)
}

/// Attaches ingress and egress to `ifname` in the thread's namespace.
fn attach_one(
    ingress: &mut SchedClassifier,
    egress: &mut SchedClassifier,
    mode: TcMode,
    ifname: &str,
) -> Result<(Vec<SchedClassifierLink>, bool), ProgramError> {
    let mut added_qdisc = false;
    if mode == TcMode::NetlinkTc {
        match tc::qdisc_add_clsact(ifname) {
            Ok(()) => added_qdisc = true,
            Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut links = Vec::with_capacity(2);
    for (prog, ty) in [(ingress, TcAttachType::Ingress), (egress, TcAttachType::Egress)] {
        // First in the chain, so that a later program that redirects or
        // drops cannot hide the packet from us; ours always continues.
        let opts = match mode {
            TcMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::first()),
            TcMode::NetlinkTc => TcAttachOptions::Netlink(NlOptions::default()),
        };
        let r = prog.attach_with_options(ifname, ty, opts).and_then(|id| prog.take_link(id));
        match r {
            Ok(l) => links.push(l),
            Err(e) => {
                // Undo the half that worked, still inside the namespace.
                drop(links);
                if added_qdisc && let Ok(ifindex) = ifindex_of(ifname) {
                    let _ = del_clsact(ifindex);
                }
                return Err(e);
            }
        }
    }
    Ok((links, added_qdisc))
}

fn ifindex_of(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: if_nametoindex reads a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}
