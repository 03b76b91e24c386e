//! Process attribution: which local process sent a packet and which one
//! it is delivered to, without kprobes or trampolines. A layer of its own
//! above `ns` (it names containers with `ns::label`) and below the
//! capabilities: `packets`, `top --by process` and `doctor` all use it,
//! none of them owns it.
//!
//! Design, layer by layer:
//! - kernel (tracer-ebpf's `sock.rs`): programs on the cgroup v2 root
//!   ([`attach`], found by [`cgroup2`]) record, in the task that creates,
//!   binds, connects or sends on an inet socket, that task as the socket's
//!   owner (cookie -> owner, an LRU map), and emit a socket event; the TC
//!   programs put each packet's socket cookie (`skb->sk`) in its record.
//!   `--process`/`--comm` select in the kernel, by owner and local port.
//! - userspace: [`table::Owners`] joins a packet to its sender (by cookie,
//!   else by port and tuple) and its receiver (by port and tuple), from
//!   the socket events and, for the sockets that existed before the
//!   tracer started, a sock_diag dump per namespace ([`diag`]) with the
//!   `/proc/*/fd` walk that finds their processes ([`fdmap`]). Containers
//!   and command lines are found on a thread of their own ([`enrich`]).
//! - output: [`render`].
//!
//! Where the cgroup v2 hierarchy is missing or the kernel refuses the
//! programs, packets flow without process fields and `tracer doctor` says
//! why.

pub mod attach;
pub mod cgroup2;
pub mod diag;
pub mod doctor;
pub mod enrich;
pub mod fdmap;
pub mod render;
pub mod table;

use std::{collections::HashSet, path::PathBuf, sync::Arc};

use aya::{Ebpf, maps::HashMap as BpfHashMap};
use tracer_common::{
    maps,
    sock::{ProcConfig, SelPort, SockOwner},
};

pub use table::{Endpoints, Hop, Owners, Process};

use crate::{bpf::event::RawEvent, ns::Container, sys::text};

/// TASK_COMM_LEN (16) less the NUL: the longest process name.
pub const COMM_MAX: usize = 15;

/// `--process PID` and `--comm NAME`: the processes whose sockets' packets
/// are kept (in the kernel).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcSelect {
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

impl ProcSelect {
    pub fn is_some(&self) -> bool {
        self.pid.is_some() || self.comm.is_some()
    }

    /// Whether a process matches.
    pub fn matches(&self, pid: u32, comm: &str) -> bool {
        self.pid == Some(pid) || self.comm.as_deref() == Some(comm)
    }

    /// Checks a `--comm` (at most 15 bytes, as the kernel keeps it).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(c) = &self.comm
            && (c.is_empty() || c.len() > COMM_MAX || c.contains('\0'))
        {
            return Err(format!(
                "--comm takes a process name of 1 to {} bytes, as the kernel keeps it (see /proc/PID/comm), not {c:?}",
                COMM_MAX
            ));
        }
        if self.pid == Some(0) {
            return Err("--process takes a process id, not 0".into());
        }
        Ok(())
    }

    /// The kernel's settings for packet jobs (`cookies`: TC reads cookies).
    pub fn config(&self, cookies: bool) -> ProcConfig {
        let mut c = ProcConfig { cookies: u32::from(cookies), select: u32::from(self.is_some()), ..Default::default() };
        if let Some(pid) = self.pid {
            c.sel_pid = pid;
        }
        if let Some(comm) = &self.comm {
            let b = crate::sys::bounded::cut(comm, COMM_MAX).as_bytes();
            c.sel_comm[..b.len()].copy_from_slice(b);
            c.sel_comm_on = 1;
        }
        c
    }
}

/// A packet's processes, as the output shows them.
#[derive(Clone, Debug, Default)]
pub struct PacketProcs {
    /// Attribution is on: the fields are shown (`-`/null when unknown).
    pub on: bool,
    /// The socket cookie the TC program read (0: none).
    pub cookie: u64,
    /// `bpf_ktime_get_ns()` of the packet (to compare with socket closes).
    pub mono_ns: u64,
    /// The owner of the socket that sent it, if local.
    pub sender: Option<Arc<Process>>,
    /// The owner of the socket it is delivered to, if local.
    pub receiver: Option<Arc<Process>>,
}

/// Process attribution at work: the kernel's programs attached, the join
/// tables, the enrichment thread.
pub struct Attribution {
    pub owners: Owners,
    enricher: enrich::Enricher,
    /// The cgroup v2 root the programs are attached to.
    pub root: PathBuf,
    /// Sockets found at start (before the tracer), and those whose process
    /// could not be found.
    pub existing: usize,
    pub existing_unowned: usize,
    /// New processes not yet handed to the enrichment thread.
    pending: Vec<Arc<Process>>,
}

/// Why attribution is off, for the one line on stderr.
pub fn unavailable(e: &attach::AttachError) -> String {
    format!("process attribution is off: {e} (packets are traced without process fields; see `tracer doctor`)")
}

impl Attribution {
    /// Attaches the socket programs, then reads the sockets that existed
    /// before (those made meanwhile are seen by both, which is harmless),
    /// marking the selected ones in the kernel.
    pub fn start(ebpf: &mut Ebpf, select: &ProcSelect) -> Result<Self, attach::AttachError> {
        let root = attach::attach(ebpf)?;
        let mut owners = Owners::default();
        let scan = existing_sockets();
        let existing = scan.len();
        let mut unowned = 0;
        let mut marks: Vec<(u64, SockOwner, Option<SelPort>)> = Vec::new();
        for (netns, s, owner) in scan {
            if owner.is_none() {
                unowned += 1;
            }
            if let Some(p) = &owner
                && select.matches(p.pid, &p.comm)
            {
                let mut comm = [0u8; 16];
                let b = p.comm.as_bytes();
                comm[..b.len().min(15)].copy_from_slice(&b[..b.len().min(15)]);
                let o = SockOwner { tgid: p.pid, tid: p.tid, uid: p.uid, lport: s.local.1, selected: 1, comm, ..Default::default() };
                let port = u32::try_from(netns).ok().map(|n| SelPort { netns_ino: n, port: s.local.1, protocol: s.proto, _pad: 0 });
                marks.push((s.cookie, o, port));
            }
            let remote = (s.remote.1 != 0).then_some(s.remote);
            owners.add_existing(s.cookie, netns, s.proto, s.local, remote, s.listening, owner);
        }
        if select.is_some() {
            mark_selected(ebpf, &marks);
        }
        let mut enricher = enrich::Enricher::new();
        // The registry's first scan takes a while: done now, not on the
        // first packet's process.
        enricher.warm_up();
        Ok(Self { owners, enricher, root, existing, existing_unowned: unowned, pending: Vec::new() })
    }

    /// Takes in a socket event; `container_of` names the container of a
    /// namespace where the caller knows it (before the enrichment thread
    /// answers).
    pub fn push(&mut self, ev: &RawEvent, container_of: &dyn Fn(u64) -> Option<Container>) {
        self.owners.push(ev);
        for p in self.owners.take_new_processes() {
            let mut q = (*p).clone();
            q.container = container_of(q.netns_ino);
            if q.container.is_some() {
                self.owners.enrich(q);
            }
            self.pending.push(p);
        }
    }

    /// Fills a packet's processes: seen in namespace `netns`, leaving it
    /// (`egress`) or arriving, with these addresses if decoded.
    pub fn fill(&mut self, pp: &mut PacketProcs, netns: u64, egress: bool, ep: Option<&Endpoints>) {
        let (s, r) = self.owners.attribute(pp.mono_ns, pp.cookie, Hop { netns_ino: netns, egress }, ep);
        pp.on = true;
        pp.sender = s;
        pp.receiver = r;
    }

    /// The newest form of a packet's processes (enriched meanwhile).
    pub fn refresh(&self, pp: &mut PacketProcs) {
        if let Some(p) = &pp.sender {
            pp.sender = Some(self.owners.newest(p));
        }
        if let Some(p) = &pp.receiver {
            pp.receiver = Some(self.owners.newest(p));
        }
    }

    /// Hands new processes to the enrichment thread and takes its answers;
    /// forgets sockets closed long enough ago. Call often.
    pub fn tick(&mut self, now_mono_ns: u64) {
        let mut fresh = std::mem::take(&mut self.pending);
        fresh.extend(self.owners.take_new_processes());
        for p in fresh {
            if !self.enricher.submit(&p) {
                self.owners.counts.unenriched += 1;
            }
        }
        for p in self.enricher.answers() {
            self.owners.enrich(p);
        }
        self.owners.sweep(now_mono_ns);
    }

    /// The sender and receiver of a packet.
    pub fn attribute(&mut self, ts_ns: u64, cookie: u64, hop: Hop, ep: Option<&Endpoints>) -> (Option<Arc<Process>>, Option<Arc<Process>>) {
        self.owners.attribute(ts_ns, cookie, hop, ep)
    }

    /// The line on stderr at exit.
    pub fn summary(&self) -> String {
        let c = self.owners.counts;
        let (socks, ports, procs) = self.owners.sizes();
        format!(
            "processes (socket programs on {}): {} socket events; senders named by socket {} and by port {}, receivers by port {}; {} packets with an unknown socket; {} sockets found at start ({} without a process); {socks} sockets, {ports} ports, {procs} processes held ({} forgotten to make room); {} processes without container and command line (enrichment thread busy)",
            text::escape(&self.root.to_string_lossy()),
            c.events,
            c.sender_by_cookie,
            c.sender_by_port,
            c.receiver_by_port,
            c.unknown_cookie,
            self.existing,
            self.existing_unowned,
            c.evicted,
            c.unenriched,
        )
    }
}

/// Writes the selected sockets found at start into the kernel's maps, so
/// `--process` keeps their packets from the first one.
fn mark_selected(ebpf: &mut Ebpf, marks: &[(u64, SockOwner, Option<SelPort>)]) {
    if let Some(m) = ebpf.map_mut(maps::SOCK_OWNERS)
        && let Ok(mut owners) = BpfHashMap::<_, u64, SockOwner>::try_from(m)
    {
        for (cookie, o, _) in marks {
            let _ = owners.insert(cookie, o, 0);
        }
    }
    if let Some(m) = ebpf.map_mut(maps::SOCK_SEL_PORTS)
        && let Ok(mut ports) = BpfHashMap::<_, SelPort, u64>::try_from(m)
    {
        for (cookie, _, port) in marks {
            if let Some(p) = port {
                let _ = ports.insert(p, cookie, 0);
            }
        }
    }
}

/// Every TCP and UDP socket of every network namespace, with its
/// namespace and, when found, its process.
pub fn existing_sockets() -> Vec<(u64, diag::DiagSock, Option<Process>)> {
    let Ok(namespaces) = crate::ns::discover() else { return Vec::new() };
    let mut all = Vec::new();
    for n in &namespaces {
        if let Ok((socks, _skipped)) = diag::dump_netns(&n.path) {
            all.extend(socks.into_iter().map(|s| (n.inode, s)));
        }
    }
    let wanted: HashSet<u64> = all.iter().map(|(_, s)| s.inode).filter(|i| *i != 0).collect();
    let walk = fdmap::walk(&wanted);
    let mut procs: std::collections::HashMap<u32, Option<Process>> = std::collections::HashMap::new();
    all.into_iter()
        .map(|(ns, s)| {
            let owner = walk.holders.get(&s.inode).and_then(|pid| procs.entry(*pid).or_insert_with(|| fdmap::process(*pid, ns)).clone());
            let owner = owner.map(|p| Process { netns_ino: ns, ..p });
            (ns, s, owner)
        })
        .collect()
}
