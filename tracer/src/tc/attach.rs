//! Attaching a pair of TC programs (loaded once: [`PACKET_PROGRAMS`] for
//! `tracer packets`, [`TOP_PROGRAMS`] for `tracer top`) to many interfaces
//! in many namespaces, and releasing them again.
//!
//! Each attachment is made from inside the interface's namespace
//! (`sys::in_netns`), since interface names and indexes only mean something
//! there; the namespace entered is checked to be the one discovery saw
//! (a `/proc/PID/ns/net` path can name another after PID reuse). TCX
//! (Linux >= 6.6) is preferred: a TCX link is an fd, detaches when closed
//! from any namespace, also when the process is killed. Older kernels get
//! clsact + cls_bpf over netlink ([`super::clsact`]), which outlive the
//! process: those are made recognisable, detached with checks, and what a
//! killed run left is removed by the next ([`super::stale`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io,
};

use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier,
        tc::{SchedClassifierLink, TcAttachOptions, TcAttachType, TcError},
    },
};
use tracer_common::programs as p;

use super::{
    clsact::{self, HeldNs, NlAttachment, Prog},
    journal::{DeadJournals, Journal},
};
use crate::{
    bpf::{describe, hooks::HookError},
    ns::{Iface, Netns},
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

/// The ingress and egress program of a job, by name, and the bodies a
/// matching packet filter tail-calls (`tc::cbpf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramPair {
    pub ingress: &'static str,
    pub egress: &'static str,
    /// The capture bodies a matching filter continues into.
    pub ingress_body: &'static str,
    pub egress_body: &'static str,
    /// Whether they are attached at all: `false` loads them (their ids
    /// date the stale sweep) and only keeps track of the interfaces, for
    /// a job that reads the kernel's own counters of each.
    pub attach: bool,
}

/// Copy packets to the ring buffer.
pub const PACKET_PROGRAMS: ProgramPair = ProgramPair {
    ingress: p::PKT_INGRESS,
    egress: p::PKT_EGRESS,
    ingress_body: p::PKT_INGRESS_BODY,
    egress_body: p::PKT_EGRESS_BODY,
    attach: true,
};
/// Count packets per interface and flow in maps.
pub const TOP_PROGRAMS: ProgramPair = ProgramPair {
    ingress: p::TOP_INGRESS,
    egress: p::TOP_EGRESS,
    ingress_body: p::TOP_INGRESS_BODY,
    egress_body: p::TOP_EGRESS_BODY,
    attach: true,
};
/// The same, keyed by sending socket too (`tracer top --by process`).
pub const TOP_PROC_PROGRAMS: ProgramPair = ProgramPair {
    ingress: p::TOP_PROC_INGRESS,
    egress: p::TOP_PROC_EGRESS,
    ingress_body: p::TOP_PROC_INGRESS_BODY,
    egress_body: p::TOP_PROC_EGRESS_BODY,
    attach: true,
};
/// Nothing attached: `tracer top` by interface or container without a
/// filter reads each interface's own counters, which cost no packet anything.
pub const INTERFACE_COUNTERS: ProgramPair = ProgramPair { attach: false, ..TOP_PROGRAMS };

/// How one interface is attached.
enum How {
    /// Ingress and egress links; dropping them detaches.
    Tcx(Vec<SchedClassifierLink>),
    /// Filters that stay until deleted, with their namespace held open.
    Netlink(NlAttachment),
    /// Nothing attached, only followed ([`ProgramPair::attach`] false).
    Tracked,
}

/// One interface the programs are attached to.
struct Attached {
    /// The namespace's cookie: inode numbers are reused as soon as a
    /// namespace is freed (a restarted container often gets its old one),
    /// cookies never are.
    cookie: Option<u64>,
    label: String,
    how: How,
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
    /// Interfaces that could not be detached cleanly, with the reason.
    pub release_failed: Vec<(String, String)>,
}

pub struct Attacher {
    mode: TcMode,
    programs: ProgramPair,
    /// Kernel ids of the ingress and egress programs (0 if unknown).
    prog_ids: [u32; 2],
    attached: HashMap<(u64, u32), Attached>,
    /// Interfaces that failed once, with their namespace's cookie: not
    /// retried while they are the same interface.
    failed: HashSet<(u64, Option<u64>, u32)>,
    /// The clsact qdiscs added (netlink-tc).
    journal: Journal,
    /// The attach generation last written to the programs' map.
    generation: u64,
}

/// Writes the attach generation the TC programs key what they remember
/// of devices with (see `device_netns` in the kernel crate).
fn raise_generation(ebpf: &mut Ebpf, generation: u64) -> Result<(), String> {
    let map = ebpf.map_mut(tracer_common::maps::ATTACH_GEN).ok_or_else(|| format!("no map {}", tracer_common::maps::ATTACH_GEN))?;
    let mut a: aya::maps::Array<&mut aya::maps::MapData, u64> = aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    a.set(0, generation, 0).map_err(|e| e.to_string())
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

impl Attacher {
    /// Loads both programs of `pair` into the kernel (once; they are
    /// attached many times).
    pub fn new(ebpf: &mut Ebpf, mode: TcMode, pair: ProgramPair) -> Result<Self, HookError> {
        let (ingress, egress) = programs(ebpf, pair)?;
        ingress.load().map_err(|source| HookError::Load { program: pair.ingress, source })?;
        egress.load().map_err(|source| HookError::Load { program: pair.egress, source })?;
        let id = |p: &SchedClassifier| p.info().map(|i| i.id()).unwrap_or(0);
        let prog_ids = [id(ingress), id(egress)];
        Ok(Self { mode, programs: pair, prog_ids, attached: HashMap::new(), failed: HashSet::new(), journal: Journal::new(), generation: 0 })
    }

    pub fn mode(&self) -> TcMode {
        self.mode
    }

    /// Number of interfaces attached now.
    pub fn len(&self) -> usize {
        self.attached.len()
    }

    /// (namespace inode, ifindex) of every interface attached now.
    pub fn keys(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.attached.keys().copied()
    }

    /// The lowest kernel id of this run's programs (0 if unknown): older
    /// programs are candidates for [`super::stale::sweep`], newer ones not.
    pub fn first_program_id(&self) -> u32 {
        self.prog_ids.iter().copied().filter(|i| *i != 0).min().unwrap_or(0)
    }

    /// Makes the attachments match `want`: (namespace, interfaces to trace
    /// in it). Interfaces no longer wanted, or gone, are released. Stops
    /// attaching as soon as `cancelled` says so (a stop was asked for).
    pub fn sync(&mut self, ebpf: &mut Ebpf, want: &BTreeMap<u64, (Netns, Vec<Iface>)>, cancelled: &dyn Fn() -> bool) -> Changes {
        let mut changes = Changes::default();
        let wanted: HashSet<(u64, Option<u64>, u32)> =
            want.iter().flat_map(|(ino, (n, ifs))| ifs.iter().map(move |i| (*ino, n.cookie, i.ifindex))).collect();
        let gone: Vec<(u64, u32)> =
            self.attached.iter().filter(|((ino, idx), a)| !wanted.contains(&(*ino, a.cookie, *idx))).map(|(k, _)| *k).collect();
        for key in gone {
            if let Some(a) = self.attached.remove(&key) {
                changes.released.push(a.label.clone());
                changes.released_keys.push(key);
                let label = a.label.clone();
                if let Err(why) = self.release(a, false) {
                    changes.release_failed.push((label, why.to_string()));
                }
            }
        }
        // Failures are forgotten once the interface is gone, so a new one
        // that reuses the index gets its own try.
        self.failed.retain(|k| wanted.contains(k));

        let new = |ino: &u64, ns: &Netns, i: &Iface| !self.attached.contains_key(&(*ino, i.ifindex)) && !self.failed.contains(&(*ino, ns.cookie, i.ifindex));
        if self.programs.attach && want.iter().any(|(ino, (ns, ifs))| ifs.iter().any(|i| new(ino, ns, i))) {
            // Before the programs run on a device they have not seen: what
            // they remember of devices is then of an older generation.
            self.generation += 1;
            if let Err(e) = raise_generation(ebpf, self.generation) {
                crate::sys::text::warn(&format!("cannot start a new attach generation, not attaching: {e}"));
                return changes;
            }
        }
        let Ok((ingress, egress)) = programs(ebpf, self.programs) else { return changes };
        let (mode, names, ids) = (self.mode, self.programs, self.prog_ids);
        let journal = &mut self.journal;
        for (ino, (ns, ifs)) in want {
            if cancelled() {
                break;
            }
            let todo: Vec<&Iface> = ifs
                .iter()
                .filter(|i| !self.attached.contains_key(&(*ino, i.ifindex)) && !self.failed.contains(&(*ino, ns.cookie, i.ifindex)))
                .collect();
            if todo.is_empty() {
                continue;
            }
            if !names.attach {
                for i in todo {
                    let label = format!("{}/{}", ns.id().label(), i.name);
                    changes.attached.push(label.clone());
                    self.attached.insert((*ino, i.ifindex), Attached { cookie: ns.cookie, label, how: How::Tracked });
                }
                continue;
            }
            let entered = crate::sys::in_netns(&ns.path, || -> io::Result<Vec<_>> {
                // The path may name another namespace by now.
                let here = HeldNs::here(*ino, ns.cookie)?;
                Ok(todo
                    .iter()
                    .map_while(|i| {
                        (!cancelled()).then(|| {
                            let r = match mode {
                                TcMode::Tcx => attach_tcx(&mut *ingress, &mut *egress, &i.name).map(How::Tcx),
                                TcMode::NetlinkTc => {
                                    let ing = Prog { prog: &mut *ingress, name: names.ingress, id: ids[0] };
                                    let eg = Prog { prog: &mut *egress, name: names.egress, id: ids[1] };
                                    clsact::attach(&here, ing, eg, &i.name, journal).map(How::Netlink)
                                }
                            };
                            (i, r)
                        })
                    })
                    .collect())
            });
            // The namespace went away (or was replaced) since discovery:
            // nothing to do there.
            let Ok(Ok(results)) = entered else { continue };
            for (i, r) in results {
                let label = format!("{}/{}", ns.id().label(), i.name);
                let key = (*ino, i.ifindex);
                match r {
                    Ok(how) => {
                        changes.attached.push(label.clone());
                        self.attached.insert(key, Attached { cookie: ns.cookie, label, how });
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

    /// Detaches one interface. `claimed_by_dead`: a tracer that is gone
    /// recorded its clsact qdisc as added (see [`super::stale`]).
    fn release(&mut self, a: Attached, claimed_by_dead: bool) -> io::Result<()> {
        match a.how {
            // Closing the link fds detaches, from whatever namespace.
            How::Tcx(links) => drop(links),
            How::Tracked => {}
            How::Netlink(att) => {
                let r = att.release(&mut self.journal, claimed_by_dead)?;
                if r.qdisc_kept {
                    eprintln!("tracer: kept the clsact qdisc of {}: it holds filters of others now", a.label);
                }
            }
        }
        Ok(())
    }

    /// Releases every attachment (at exit).
    pub fn release_all(&mut self) {
        let all: Vec<((u64, u32), Attached)> = self.attached.drain().collect();
        // A qdisc another tracer added, that it had to leave because ours
        // were in it, goes with ours once empty.
        let dead = if self.mode == TcMode::NetlinkTc { DeadJournals::read() } else { DeadJournals::default() };
        for (_, a) in all {
            let label = a.label.clone();
            let claimed = match &a.how {
                How::Netlink(att) => att.claim().is_none() && att.is_claimed_by(&dead),
                How::Tcx(_) | How::Tracked => false,
            };
            if let Err(e) = self.release(a, claimed) {
                eprintln!("tracer: cannot detach from {label}: {e}");
            }
        }
        self.journal.finish();
    }
}

impl Drop for Attacher {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// Attaches ingress and egress to `ifname` in the thread's namespace, as
/// TCX links, first in the chain, so that a later program that redirects
/// or drops cannot hide the packet from us; ours always continues.
///
/// Each TCX attach (and detach) waits for an RCU grace period while it
/// holds the RTNL lock (`bpf_mprog_commit`), 10-40 ms on a busy machine:
/// 401 interfaces take 8-11 s to attach and as long to detach, and doing
/// it from many threads at once gains nothing (measured), since the lock
/// serialises them.
fn attach_tcx(ingress: &mut SchedClassifier, egress: &mut SchedClassifier, ifname: &str) -> Result<Vec<SchedClassifierLink>, ProgramError> {
    let mut links = Vec::with_capacity(2);
    for (prog, ty) in [(ingress, TcAttachType::Ingress), (egress, TcAttachType::Egress)] {
        let opts = TcAttachOptions::TcxOrder(LinkOrder::first());
        // On failure the link made so far is dropped, which detaches it.
        links.push(prog.attach_with_options(ifname, ty, opts).and_then(|id| prog.take_link(id))?);
    }
    Ok(links)
}
