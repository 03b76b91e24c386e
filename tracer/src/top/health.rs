//! Drops, TCP retransmissions and resets as columns of `tracer top`'s
//! container, interface and flow rows (and the selection `tracer serve`
//! applies to its drop and TCP series).
//!
//! The `skb:kfree_skb` program and the TCP tracepoints, loaded in their
//! counting mode, add each event to per-CPU counters: drops per namespace,
//! interface and reason (`DROP_COUNTS`) and per flow (`DROP_FLOWS`),
//! retransmitted segments and resets per namespace and interface
//! (`TCP_COUNTS`, the interface the socket's route goes out of) and per
//! flow (`TCP_FLOWS`). [`HealthMeter`] reads them every interval into
//! [`HealthInterval`]s; [`place`] decides which row an event belongs to:
//! its interface's when that interface is traced, else its namespace's
//! row for no interface (`-`), which `-i` leaves out, as it leaves out
//! the traffic of other interfaces.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use aya::{
    Ebpf, Pod,
    maps::{MapData, PerCpuHashMap},
};
use tracer_common::{
    maps,
    tcp::{TcpCounts, TcpKey},
    top::FlowKey,
};

use super::{
    counters::{CounterMap, CountersError},
    reasons::{KeyCount, ReasonMeter},
    stats::{Deltas, Health, HealthInterval},
};

/// A TCP counter's events as a row's [`Health`].
fn tcp_health(c: &TcpCounts) -> Health {
    Health { drops: 0, retransmits: c.retransmits, resets: c.resets_sent + c.resets_received }
}

/// Where the events of namespace `ns` on interface `ifindex` (0: none)
/// are shown: `Some(ifindex)` on a traced interface, `Some(0)` for the
/// namespace's row without interface, `None` left out: not a covered
/// namespace (`covered`, when the scope is not every namespace), or `-i`
/// was given (`iface_globs`) and this is not one of its interfaces.
pub fn place(ns: u64, ifindex: u32, attached: &HashSet<(u64, u32)>, iface_globs: bool, covered: Option<&HashSet<u64>>) -> Option<u32> {
    if ns == 0 || covered.is_some_and(|c| !c.contains(&ns)) {
        return None;
    }
    if ifindex != 0 && attached.contains(&(ns, ifindex)) {
        Some(ifindex)
    } else if iface_globs {
        None
    } else {
        Some(0)
    }
}

/// The per-CPU TCP counters of one map and their totals at the last read.
struct TcpDeltas<K: Pod> {
    map: PerCpuHashMap<MapData, K, TcpCounts>,
    prev: HashMap<K, TcpCounts>,
}

impl<K: Pod + Eq + Hash> TcpDeltas<K> {
    fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, CountersError> {
        let map = crate::bpf::take_map(ebpf, name)?;
        let map = PerCpuHashMap::try_from(map).map_err(|_| CountersError::NotPerCpuHash(name))?;
        Ok(Self { map, prev: HashMap::new() })
    }

    /// What each entry counted since the last read (an entry smaller than
    /// before was evicted and made again: all it holds is new).
    fn read(&mut self) -> Vec<(K, TcpCounts)> {
        let mut next = HashMap::new();
        let mut out = Vec::new();
        for (k, per_cpu) in self.map.iter().flatten() {
            let t = per_cpu.iter().fold(TcpCounts::default(), |a, c| TcpCounts {
                retransmits: a.retransmits + c.retransmits,
                resets_sent: a.resets_sent + c.resets_sent,
                resets_received: a.resets_received + c.resets_received,
            });
            out.push((k, tcp_delta(self.prev.get(&k), &t)));
            next.insert(k, t);
        }
        self.prev = next;
        out
    }
}

/// `now` minus `prev`, or all of `now` when it is a new entry.
fn tcp_delta(prev: Option<&TcpCounts>, now: &TcpCounts) -> TcpCounts {
    match prev {
        Some(p) if now.retransmits >= p.retransmits && now.resets_sent >= p.resets_sent && now.resets_received >= p.resets_received => TcpCounts {
            retransmits: now.retransmits - p.retransmits,
            resets_sent: now.resets_sent - p.resets_sent,
            resets_received: now.resets_received - p.resets_received,
        },
        _ => *now,
    }
}

/// The drop and TCP counter maps, read every interval.
pub struct HealthMeter {
    drops: ReasonMeter,
    tcp: TcpDeltas<TcpKey>,
    /// `--by flow`: the per-flow maps.
    flows: Option<(CounterMap<FlowKey>, Deltas<FlowKey>, TcpDeltas<FlowKey>)>,
}

impl HealthMeter {
    /// Takes the maps out of `ebpf`; the flow maps only for `flows`.
    pub fn take(ebpf: &mut Ebpf, flows: bool) -> Result<Self, CountersError> {
        let drops = ReasonMeter::take(ebpf)?;
        let tcp = TcpDeltas::take(ebpf, maps::TCP_COUNTS)?;
        let flows = if flows {
            Some((CounterMap::take(ebpf, maps::DROP_FLOWS)?, Deltas::default(), TcpDeltas::take(ebpf, maps::TCP_FLOWS)?))
        } else {
            None
        };
        Ok(Self { drops, tcp, flows })
    }

    /// What was counted since the last read, placed by `place` (see
    /// [`place`]: it returns the interface to count under, or `None`).
    pub fn read(&mut self, place: impl Fn(u64, u32) -> Option<u32>) -> Result<HealthInterval, CountersError> {
        let (_, drops) = self.drops.read()?;
        let tcp = self.tcp.read();
        let mut iv = HealthInterval::default();
        sum_drops(&drops, &place, &mut iv.per_if);
        for (k, c) in &tcp {
            let ns = u64::from(k.netns_ino);
            if let Some(idx) = place(ns, k.ifindex) {
                iv.per_if.entry((ns, idx)).or_default().add(tcp_health(c));
            }
        }
        if let Some((dmap, ddeltas, tmap)) = &mut self.flows {
            let dflows = ddeltas.update(dmap.read()?);
            for (k, c) in &dflows {
                add_flow(&mut iv.flows, k, Health { drops: c.packets, ..Health::default() }, &place);
            }
            for (k, c) in &tmap.read() {
                add_flow(&mut iv.flows, k, tcp_health(c), &place);
            }
        }
        iv.per_if.retain(|_, h| !h.is_zero());
        iv.flows.retain(|_, h| !h.is_zero());
        Ok(iv)
    }
}

/// Adds the drops of one read to the rows they belong to.
fn sum_drops(drops: &[KeyCount], place: &impl Fn(u64, u32) -> Option<u32>, out: &mut HashMap<(u64, u32), Health>) {
    for (k, d, _) in drops {
        let ns = u64::from(k.netns_ino);
        if let Some(idx) = place(ns, k.ifindex) {
            out.entry((ns, idx)).or_default().drops += d;
        }
    }
}

fn add_flow(out: &mut HashMap<FlowKey, Health>, k: &FlowKey, h: Health, place: &impl Fn(u64, u32) -> Option<u32>) {
    if let Some(idx) = place(u64::from(k.netns_ino), k.ifindex) {
        out.entry(FlowKey { ifindex: idx, ..*k }).or_default().add(h);
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::drops::DropKey;

    use super::*;

    #[test]
    fn events_go_to_traced_interfaces_else_to_the_namespace_unless_interfaces_were_chosen() {
        let attached = HashSet::from([(7, 2), (8, 2)]);
        assert_eq!(place(7, 2, &attached, false, None), Some(2));
        // No device, or one not traced (lo): the namespace's `-` row...
        assert_eq!(place(7, 0, &attached, false, None), Some(0));
        assert_eq!(place(7, 1, &attached, false, None), Some(0));
        // ... which `-i` leaves out, as it leaves out their traffic.
        assert_eq!(place(7, 1, &attached, true, None), None);
        assert_eq!(place(7, 0, &attached, true, None), None);
        assert_eq!(place(7, 2, &attached, true, None), Some(2));
        // Not a selected namespace, or none at all.
        let covered = HashSet::from([7]);
        assert_eq!(place(8, 2, &attached, false, Some(&covered)), None);
        assert_eq!(place(7, 2, &attached, false, Some(&covered)), Some(2));
        assert_eq!(place(0, 0, &attached, false, None), None);
    }

    #[test]
    fn drops_of_every_reason_add_up_per_row() {
        let attached = HashSet::from([(7, 2)]);
        let k = |ns: u32, ifindex: u32, reason: u32| DropKey { netns_ino: ns, ifindex, reason, _pad: 0 };
        let drops = [(k(7, 2, 12), 37, 37), (k(7, 2, 3), 4, 9), (k(7, 0, 3), 2, 2), (k(7, 1, 3), 1, 1), (k(9, 2, 3), 5, 5)];
        let covered = HashSet::from([7]);
        let mut out = HashMap::new();
        sum_drops(&drops, &|ns, i| place(ns, i, &attached, false, Some(&covered)), &mut out);
        assert_eq!(out[&(7, 2)].drops, 41);
        assert_eq!(out[&(7, 0)].drops, 3);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn tcp_deltas_start_over_with_a_new_entry() {
        let c = |r: u64, s: u64, v: u64| TcpCounts { retransmits: r, resets_sent: s, resets_received: v };
        assert_eq!(tcp_delta(None, &c(3, 1, 0)), c(3, 1, 0));
        assert_eq!(tcp_delta(Some(&c(3, 1, 0)), &c(10, 1, 2)), c(7, 0, 2));
        assert_eq!(tcp_delta(Some(&c(10, 1, 2)), &c(2, 0, 0)), c(2, 0, 0));
        assert_eq!(tcp_health(&c(7, 1, 2)), Health { drops: 0, retransmits: 7, resets: 3 });
    }
}
