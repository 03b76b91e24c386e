//! `tracer top --by process`: a row per local process, with what its
//! sockets sent and what was delivered to them.
//!
//! The `top_proc_*` programs count per flow, interface and sending socket
//! (cookie) in `TOP_PROC_FLOWS`; the socket programs of
//! [`crate::procs`] report owners through the ring buffer, drained here on
//! a short timer. At each report every flow row is joined to its processes
//! like a packet: a process's TX is what its sockets sent out of the
//! interfaces of its own namespace, its RX what arrived there for them. So
//! a packet is counted once per process and traced interface of that
//! namespace it crosses (a container's `eth0`: once), never on the host
//! veths or bridges it crosses on its way. Traffic no local socket sent
//! or receives is in no row.

use std::{collections::HashMap, sync::Arc};

use aya::Ebpf;
use tracer_common::{
    EventKind, maps,
    packet::DIR_EGRESS,
    top::{FlowKey, ProcFlowKey},
};

use super::{
    TopError,
    counters::CounterMap,
    stats::{Count, Deltas, FlowFields, Row},
};
use crate::{
    bpf::{event::RawEvent, ring::Reader},
    procs::{Attribution, Endpoints, Hop, ProcSelect, Process, render, table::ProcKey},
    sys::clock::Clock,
    tc::topology::Topology,
};

/// The per-socket flow counters, and the attribution that names them.
/// Drains of 4,096 socket events per report, at most.
const SOCK_DRAINS_PER_REPORT: usize = 16;

pub struct ProcTop {
    flows: CounterMap<ProcFlowKey>,
    deltas: Deltas<ProcFlowKey>,
    pub attribution: Attribution,
    pub reader: Reader,
    batch: Vec<RawEvent>,
}

impl ProcTop {
    /// Takes the counters and the ring buffer, and attaches the socket
    /// programs (before the TC programs, so no socket is missed).
    pub fn start(ebpf: &mut Ebpf) -> Result<Self, TopError> {
        let flows = CounterMap::take(ebpf, maps::TOP_PROC_FLOWS)?;
        let reader = Reader::new(ebpf)?;
        let attribution = Attribution::start(ebpf, &ProcSelect::default()).map_err(TopError::Procs)?;
        Ok(Self { flows, deltas: Deltas::default(), attribution, reader, batch: Vec::new() })
    }

    /// Takes in the socket events waiting in the ring buffer.
    pub fn drain(&mut self, topo: &Topology) {
        // Once a report: all that is there, within a bound.
        for _ in 0..SOCK_DRAINS_PER_REPORT {
            self.reader.drain(&mut self.batch);
            let more = self.reader.backlog();
            for ev in self.batch.drain(..) {
                if ev.kind == EventKind::Sock {
                    self.attribution.push(&ev, &|ns| topo.netns(ns).owner);
                }
            }
            if !more {
                break;
            }
        }
        self.attribution.tick(Clock::now_mono_ns());
    }

    /// Counts since the last read, per flow and socket.
    pub fn update(&mut self) -> Result<HashMap<ProcFlowKey, Count>, TopError> {
        let now = self.flows.read()?;
        Ok(self.deltas.update(now))
    }

    /// Deletes the entries of a released interface (all they counted was read).
    pub fn forget_iface(&mut self, netns_ino: u32, ifindex: u32, seen: &HashMap<ProcFlowKey, Count>) -> Result<(), TopError> {
        for k in seen.keys().filter(|k| k.flow.netns_ino == netns_ino && k.flow.ifindex == ifindex) {
            self.flows.delete(k)?;
            self.deltas.forget(k);
        }
        Ok(())
    }
}

/// The same counts per flow (all sockets together), for the loss accounting
/// that compares flows with interfaces.
pub fn collapse(d: &HashMap<ProcFlowKey, Count>) -> HashMap<FlowKey, Count> {
    let mut out: HashMap<FlowKey, Count> = HashMap::with_capacity(d.len());
    for (k, c) in d {
        let e = out.entry(k.flow).or_default();
        e.packets += c.packets;
        e.bytes += c.bytes;
    }
    out
}

fn endpoints(k: &FlowKey) -> Option<Endpoints> {
    let f = FlowFields::from_key(k);
    let proto = k.pkt.proto;
    Some(Endpoints { proto, src: f.src?, sport: f.sport?, dst: f.dst?, dport: f.dport? })
}

/// One row per process that sent or received something in the interval.
pub fn rows(d: &HashMap<ProcFlowKey, Count>, a: &mut Attribution, topo: &Topology) -> Vec<Row> {
    let now = Clock::now_mono_ns();
    let mut per: HashMap<ProcKey, (Arc<Process>, Count, Count)> = HashMap::new();
    for (k, c) in d.iter().filter(|(_, c)| !c.is_zero()) {
        let netns = u64::from(k.flow.netns_ino);
        let egress = k.flow.pkt.direction == DIR_EGRESS;
        let ep = endpoints(&k.flow);
        let (sender, receiver) = a.attribute(now, k.sock_cookie, Hop { netns_ino: netns, egress }, ep.as_ref());
        // Counted where the socket is: on its own namespace's interfaces.
        let who = if egress { sender } else { receiver };
        let Some(p) = who.filter(|p| p.netns_ino == netns) else { continue };
        let e = per.entry(p.key()).or_insert_with(|| (p.clone(), Count::default(), Count::default()));
        let side = if egress { &mut e.2 } else { &mut e.1 };
        side.packets += c.packets;
        side.bytes += c.bytes;
    }
    let mut out: Vec<Row> = per
        .into_values()
        .map(|(p, rx, tx)| {
            let mut netns = topo.netns(p.netns_ino);
            // The process's container, else its namespace's owner: the
            // same one, found by another way.
            let p = match (&p.container, &netns.owner) {
                (None, Some(c)) => Arc::new(Process { container: Some(c.clone()), ..(*p).clone() }),
                _ => p,
            };
            if netns.owner.is_none() {
                netns.owner = p.container.clone();
            }
            Row {
                netns,
                label: render::text(Some(&p)),
                ifname: None,
                ifindex: None,
                interfaces: None,
                flow: None,
                process: Some(p),
                rx,
                tx,
                health: None,
            }
        })
        .collect();
    out.sort_by(|a, b| b.bytes().cmp(&a.bytes()).then_with(|| a.label.cmp(&b.label)));
    out
}
