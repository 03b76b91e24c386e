//! `--hops`: one line per packet with the path it took across the traced
//! interfaces (container eth0 egress -> host veth ingress -> bridge -> other
//! veth -> other container) and the time each hop took.
//!
//! Events are grouped by [`Decoded::hop_key`](super::decode::Decoded), a
//! hash of what a veth or bridge does not change (addresses, IP id and
//! length, ports, TCP sequence numbers, the first payload bytes). The skb
//! hash is not used: it is a flow hash, equal for every packet of a flow,
//! and it is recomputed on some hops (the summary at exit says how often
//! it stayed the same). A group stays open for [`WINDOW_NS`] after its first
//! event and one (namespace, interface, direction) appears in it once, so a
//! retransmission starts a new path.
//!
//! Memory is bounded: a path has at most [`MAX_HOPS_PER_PATH`] hops (then a
//! new one starts), and at most [`MAX_HELD_HOPS`] hops wait in open paths;
//! past that the oldest paths are printed before their hold is over, counted
//! in [`HopStats::early`].

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::PacketEvent;
use crate::{
    output::Render,
    procs::{Process, render},
    sys::clock,
};

/// How long after its first hop a packet may still be seen elsewhere.
pub const WINDOW_NS: u64 = 100_000_000;
/// How long a path is held before it is printed.
pub const HOLD_NS: u64 = 200_000_000;
/// Hops one path may have; a packet crosses far fewer interfaces.
pub const MAX_HOPS_PER_PATH: usize = 64;
/// Hops held in open paths, at most (200 ms at 160k packets/s).
pub const MAX_HELD_HOPS: usize = 32_768;

pub struct PacketPath {
    /// The hops in time order; the first one describes the packet.
    pub hops: Vec<PacketEvent>,
}

impl PacketPath {
    pub fn transit_ns(&self) -> u64 {
        match (self.hops.first(), self.hops.last()) {
            (Some(a), Some(b)) => b.wall_ns - a.wall_ns,
            _ => 0,
        }
    }

    /// Whether every hop saw the same skb hash.
    pub fn hash_stable(&self) -> bool {
        self.hops.windows(2).all(|w| w[0].hash == w[1].hash)
    }

    fn first(&self) -> &PacketEvent {
        &self.hops[0]
    }

    /// The sending process (the first hop that names one) and the
    /// receiving one (the last), when process attribution is on.
    pub fn procs(&self) -> Option<(Option<&Process>, Option<&Process>)> {
        if !self.hops.iter().any(|h| h.procs.on) {
            return None;
        }
        let sender = self.hops.iter().find_map(|h| h.procs.sender.as_deref());
        let receiver = self.hops.iter().rev().find_map(|h| h.procs.receiver.as_deref());
        Some((sender, receiver))
    }
}

fn micros(ns: u64) -> String {
    format!("{:.1}us", ns as f64 / 1000.0)
}

impl Render for PacketPath {
    fn json(&self) -> Value {
        let f = self.first();
        let mut v = f.json();
        v["type"] = json!("packet_path");
        for k in ["ifname", "ifindex", "direction", "netns", "container"] {
            if let Some(o) = v.as_object_mut() {
                o.remove(k);
            }
        }
        let hops: Vec<Value> = self
            .hops
            .iter()
            .enumerate()
            .map(|(i, h)| {
                json!({
                    "time": clock::rfc3339(h.wall_ns),
                    "netns": h.netns,
                    "container": h.container(),
                    "ifname": h.ifname,
                    "ifindex": h.ifindex,
                    "direction": h.direction_name(),
                    "delta_ns": if i == 0 { 0 } else { h.wall_ns - self.hops[i - 1].wall_ns },
                    "hash": h.hash,
                })
            })
            .collect();
        v["hops"] = json!(hops);
        v["transit_ns"] = json!(self.transit_ns());
        v["hash_stable"] = json!(self.hash_stable());
        if let Some((sender, receiver)) = self.procs() {
            v["process"] = json!(sender.map(render::json));
            v["peer_process"] = json!(receiver.map(render::json));
        }
        v
    }

    fn text(&self) -> String {
        let f = self.first();
        let mut s = format!("{} {}  path:", clock::hms_micros(f.wall_ns), f.summary());
        let procs = self.procs();
        // `curl[812] in web -> HOPS -> nginx[77] in api`
        if let Some((sender, _)) = procs {
            s.push_str(&format!(" {} ->", render::text(sender)));
        }
        for (i, h) in self.hops.iter().enumerate() {
            if i > 0 {
                s.push_str(&format!(" +{}", micros(h.wall_ns - self.hops[i - 1].wall_ns)));
            }
            s.push_str(&format!(" {} {}", h.where_text(), h.dir_short()));
        }
        if let Some((_, receiver)) = procs {
            s.push_str(&format!(" -> {}", render::text(receiver)));
        }
        if self.hops.len() > 1 {
            s.push_str(&format!("  total {}", micros(self.transit_ns())));
        }
        s
    }
}

/// Running totals, printed at exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct HopStats {
    pub paths: u64,
    pub multi_hop: u64,
    pub hash_stable: u64,
    pub transit_ns_sum: u64,
    /// Paths printed before their hold was over, because too many hops were held.
    pub early: u64,
}

struct Group {
    key: u64,
    hops: Vec<PacketEvent>,
}

#[derive(Default)]
pub struct Grouper {
    next_id: u64,
    groups: BTreeMap<u64, Group>,
    /// hop key -> the open group's id
    open: HashMap<u64, u64>,
    /// Hops in all groups.
    held: usize,
    pub stats: HopStats,
}

impl Grouper {
    pub fn push(&mut self, e: PacketEvent) {
        let key = e.decoded.hop_key;
        if key != 0
            && let Some(g) = self.open.get(&key).and_then(|id| self.groups.get_mut(id))
        {
            let first = g.hops[0].wall_ns;
            let seen_here =
                g.hops.iter().any(|h| h.netns.inode == e.netns.inode && h.ifindex == e.ifindex && h.direction == e.direction);
            if e.wall_ns.abs_diff(first) <= WINDOW_NS && !seen_here && g.hops.len() < MAX_HOPS_PER_PATH {
                g.hops.push(e);
                self.held += 1;
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        if key != 0 {
            self.open.insert(key, id);
        }
        self.groups.insert(id, Group { key, hops: vec![e] });
        self.held += 1;
    }

    /// Paths whose first hop is older than [`HOLD_NS`] before `now_wall_ns`
    /// (all of them with `flush`; the oldest while more than
    /// [`MAX_HELD_HOPS`] are held), in the order they started.
    pub fn ready(&mut self, now_wall_ns: u64, flush: bool) -> Vec<PacketPath> {
        let mut out = Vec::new();
        while let Some(entry) = self.groups.first_entry() {
            if !flush && entry.get().hops[0].wall_ns + HOLD_NS > now_wall_ns {
                if self.held <= MAX_HELD_HOPS {
                    break;
                }
                self.stats.early += 1;
            }
            let (id, mut g) = entry.remove_entry();
            self.held -= g.hops.len();
            if self.open.get(&g.key) == Some(&id) {
                self.open.remove(&g.key);
            }
            g.hops.sort_by_key(|h| h.wall_ns);
            let p = PacketPath { hops: g.hops };
            self.stats.paths += 1;
            if p.hops.len() > 1 {
                self.stats.multi_hop += 1;
                self.stats.transit_ns_sum += p.transit_ns();
                if p.hash_stable() {
                    self.stats.hash_stable += 1;
                }
            }
            out.push(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ns::NetnsId, packets::decode};
    use etherparse::PacketBuilder;
    use tracer_common::packet::{DIR_EGRESS, DIR_INGRESS};

    fn ev(wall_ns: u64, ns: u32, ifindex: u32, dir: u8, payload: &[u8], hash: u32) -> PacketEvent {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1000, 2000);
        let mut f = Vec::new();
        b.write(&mut f, payload).expect("build");
        let decoded = decode::decode(&f, true);
        PacketEvent {
            wall_ns,
            netns: NetnsId { inode: u64::from(ns), name: Some(format!("ns{ns}")), ..Default::default() },
            ifindex,
            ifname: format!("if{ifindex}"),
            direction: dir,
            len: f.len() as u32,
            hash,
            mark: 0,
            ethernet: true,
            frame: f,
            decoded,
            procs: Default::default(),
        }
    }

    #[test]
    fn groups_one_packet_across_hops() {
        let mut g = Grouper::default();
        g.push(ev(1_000, 1, 2, DIR_EGRESS, b"one", 7));
        g.push(ev(4_000, 9, 5, DIR_INGRESS, b"one", 7));
        g.push(ev(5_000, 9, 6, DIR_EGRESS, b"one", 8));
        g.push(ev(2_000, 2, 2, DIR_INGRESS, b"two", 1));
        g.push(ev(6_500, 3, 2, DIR_INGRESS, b"one", 8));
        assert!(g.ready(10_000, false).is_empty(), "held for HOLD_NS");
        let paths = g.ready(10_000 + HOLD_NS, false);
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[0].hops.len(), 4);
        assert_eq!(paths[0].transit_ns(), 5_500);
        assert!(!paths[0].hash_stable());
        assert_eq!(paths[1].hops.len(), 1);
        let text = paths[0].text();
        assert!(text.contains("path: ns1/if2 Out +3.0us ns9/if5 In +1.0us ns9/if6 Out +1.5us ns3/if2 In  total 5.5us"), "{text}");
        let j = paths[0].json();
        assert_eq!(j["type"], "packet_path");
        assert_eq!(j["hops"][1]["delta_ns"], 3000);
        assert_eq!(j["hops"][3]["netns"]["inode"], 3);
        assert_eq!(j["dport"], 2000);
        assert_eq!((g.stats.paths, g.stats.multi_hop, g.stats.hash_stable), (2, 1, 0));
    }

    #[test]
    fn the_same_interface_twice_is_a_new_packet() {
        let mut g = Grouper::default();
        g.push(ev(1_000, 1, 2, DIR_EGRESS, b"x", 0));
        g.push(ev(2_000, 1, 2, DIR_EGRESS, b"x", 0));
        g.push(ev(3_000 + WINDOW_NS, 4, 2, DIR_INGRESS, b"x", 0));
        let paths = g.ready(0, true);
        assert_eq!(paths.iter().map(|p| p.hops.len()).collect::<Vec<_>>(), vec![1, 1, 1]);
    }

    #[test]
    fn held_hops_are_bounded() {
        let mut g = Grouper::default();
        // One packet seen on more interfaces than any path crosses.
        for i in 0..(MAX_HOPS_PER_PATH as u32 + 3) {
            g.push(ev(1_000 + u64::from(i), 1, i + 1, DIR_EGRESS, b"same", 0));
        }
        // A burst of distinct packets, more than may be held.
        for i in 0..MAX_HELD_HOPS as u64 {
            g.push(ev(2_000 + i, 1, 2, DIR_EGRESS, &i.to_be_bytes(), 0));
        }
        assert_eq!(g.held, MAX_HELD_HOPS + MAX_HOPS_PER_PATH + 3);
        // Nothing is old enough, but the oldest paths go to make room.
        let early = g.ready(0, false);
        assert_eq!(early.iter().map(|p| p.hops.len()).collect::<Vec<_>>(), vec![MAX_HOPS_PER_PATH, 3]);
        assert_eq!((g.held, g.stats.early), (MAX_HELD_HOPS, 2));
        assert!(g.ready(0, false).is_empty());
        assert_eq!(g.ready(0, true).len(), MAX_HELD_HOPS);
        assert_eq!(g.held, 0);
    }
}
