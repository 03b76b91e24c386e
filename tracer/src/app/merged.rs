//! The one timeline of the ring-buffer jobs: netlink requests, packets,
//! packet paths, and in the default job drops and retransmissions, held
//! for a moment and let out in time order (netlink requests wait for their
//! answer, so they arrive late), within bounds.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
};

use crate::{
    drops::event::DropEvent,
    netlink::{NetlinkEvent, effects::Change},
    ns::NetnsId,
    output::Render,
    packets::{PacketEvent, hops},
    procs::Attribution,
    tc::topology::Topology,
    tcp::event::TcpEvent,
};

/// Something to print, ordered by time in the merged timeline.
pub(super) enum Item {
    Netlink(Box<NetlinkEvent>),
    /// A kernel notification no request took.
    Change(Box<Change>),
    Packet(Box<PacketEvent>),
    Path(hops::PacketPath),
    /// The default job: a dropped packet, a retransmission.
    Drop(Box<DropEvent>),
    Tcp(Box<TcpEvent>),
}

impl Item {
    /// About the memory it takes: the captured bytes and a fixed part for
    /// the decoded fields and names.
    fn bytes(&self) -> usize {
        match self {
            Item::Netlink(e) => e.mem_bytes() + 512 * e.effects.len(),
            Item::Change(c) => 512 + c.line.len(),
            Item::Packet(p) => 512 + p.frame.len(),
            Item::Path(p) => p.hops.iter().map(|h| 512 + h.frame.len()).sum(),
            Item::Drop(d) => 512 + d.frame.len(),
            Item::Tcp(_) => 512,
        }
    }

    pub(super) fn wall_ns(&self) -> u64 {
        match self {
            Item::Netlink(e) => e.wall_ns,
            Item::Change(c) => c.wall_ns,
            Item::Packet(p) => p.wall_ns,
            Item::Path(p) => p.hops.first().map(|h| h.wall_ns).unwrap_or(0),
            Item::Drop(d) => d.wall_ns,
            Item::Tcp(t) => t.wall_ns,
        }
    }

    /// Shows the processes as they are known now (their container and
    /// command line may have been found while the item was held).
    pub(super) fn refresh_procs(&mut self, a: &Attribution) {
        match self {
            Item::Netlink(_) | Item::Change(_) | Item::Drop(_) | Item::Tcp(_) => {}
            Item::Packet(p) => a.refresh(&mut p.procs),
            Item::Path(p) => p.hops.iter_mut().for_each(|h| a.refresh(&mut h.procs)),
        }
    }

    /// Names the namespaces and interfaces its packets were decoded
    /// without, as the attach thread knows them now.
    pub(super) fn refresh_names(&mut self, topo: &Topology) {
        match self {
            Item::Netlink(_) | Item::Change(_) => {}
            Item::Drop(d) => d.rename(topo),
            Item::Tcp(t) => t.rename(topo),
            Item::Packet(p) => p.rename(topo),
            Item::Path(p) => p.hops.iter_mut().for_each(|h| h.rename(topo)),
        }
    }

    /// The namespace of a Docker container that does not run yet whose
    /// name this item's line still lacks (see [`Topology::starting`]).
    pub(super) fn waits_for_name(&self, topo: &Topology) -> Option<u64> {
        let waits = |n: &NetnsId| (n.name.is_none() && n.owner.is_none() && !n.host && topo.starting(n.inode)).then_some(n.inode);
        match self {
            Item::Netlink(_) | Item::Change(_) | Item::Tcp(_) => None,
            Item::Packet(p) => waits(&p.netns),
            Item::Path(p) => p.hops.iter().find_map(|h| waits(&h.netns)),
            Item::Drop(d) => d.netns.as_ref().and_then(waits),
        }
    }

    pub(super) fn render(&self) -> &dyn Render {
        match self {
            Item::Netlink(e) => e.as_ref(),
            Item::Change(c) => c.as_ref(),
            Item::Packet(p) => p.as_ref(),
            Item::Path(p) => p,
            Item::Drop(d) => d.as_ref(),
            Item::Tcp(t) => t.as_ref(),
        }
    }
}

/// Items the merger holds, at most, by count and by estimated memory. The
/// hold is ~400 ms of everything traced (at 250k packets/s, 100,000
/// packets, 60 MiB): past either cap, the oldest come out before their hold is
/// over, counted, which may put a late netlink request after packets that
/// followed it.
pub(super) const MERGER_MAX_ITEMS: usize = 16_384;
pub(super) const MERGER_MAX_BYTES: usize = 16 << 20;

/// One held item, ordered by its time, then by arrival.
struct Held {
    t: u64,
    seq: u64,
    bytes: usize,
    item: Item,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.t, self.seq).cmp(&(o.t, o.seq))
    }
}

/// Holds items for `hold_ns` so that late ones (netlink requests wait for
/// their answer) still come out in time order. Most items come in time
/// order (packets from the ring buffer): those wait in a queue, at no heap
/// cost; an item older than the queue's newest goes to a heap, and the
/// older of the two fronts comes out first, so the order is the same.
pub(super) struct Merger {
    hold_ns: u64,
    seq: u64,
    /// Items in (time, arrival) order, each pushed after the one before.
    run: VecDeque<Held>,
    heap: BinaryHeap<Reverse<Held>>,
    bytes: usize,
    /// Items let out before their hold was over because of the caps.
    pub(super) early: u64,
}

impl Merger {
    pub(super) fn new(hold_ns: u64) -> Self {
        Self { hold_ns, seq: 0, run: VecDeque::new(), heap: BinaryHeap::new(), bytes: 0, early: 0 }
    }

    pub(super) fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn push(&mut self, item: Item) {
        self.seq += 1;
        let bytes = item.bytes();
        self.bytes += bytes;
        let h = Held { t: item.wall_ns(), seq: self.seq, bytes, item };
        // Arrival numbers only grow: after the newest queued, by time alone.
        if self.run.back().is_none_or(|b| b.t <= h.t) {
            self.run.push_back(h);
        } else {
            self.heap.push(Reverse(h));
        }
    }

    /// Whether the oldest item is the queue's (else the heap's).
    fn oldest_queued(&self) -> Option<bool> {
        match (self.run.front(), self.heap.peek()) {
            (None, None) => None,
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(r), Some(Reverse(h))) => Some(r < h),
        }
    }

    /// The oldest item whose hold is over, or any past the caps. None
    /// newer than `until` (the oldest item a source still holds back) comes
    /// out before it, whatever its hold.
    pub(super) fn pop_ready(&mut self, now_wall_ns: u64, flush: bool, until: Option<u64>) -> Option<Item> {
        let queued = self.oldest_queued()?;
        let t = if queued { self.run.front()?.t } else { self.heap.peek()?.0.t };
        if !flush && (t + self.hold_ns > now_wall_ns || until.is_some_and(|u| t > u)) {
            if self.len() <= MERGER_MAX_ITEMS && self.bytes <= MERGER_MAX_BYTES {
                return None;
            }
            self.early += 1;
        }
        let h = if queued { self.run.pop_front()? } else { self.heap.pop()?.0 };
        self.bytes -= h.bytes;
        Some(h.item)
    }

    /// Puts back the item just popped, first among those of its time, to
    /// hold it and everything newer a while longer. Refused (None) past
    /// the caps: it goes out as it is.
    pub(super) fn hold_back(&mut self, item: Item) -> Option<Item> {
        if self.len() >= MERGER_MAX_ITEMS || self.bytes >= MERGER_MAX_BYTES {
            return Some(item);
        }
        let bytes = item.bytes();
        self.bytes += bytes;
        self.heap.push(Reverse(Held { t: item.wall_ns(), seq: 0, bytes, item }));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merger_orders_by_time_after_hold() {
        let mut m = Merger::new(100);
        let mk = |t| {
            let mut g = hops::Grouper::default();
            g.push(PacketEvent::sample(t, vec![0u8; 20]));
            Item::Path(g.ready(0, true).pop().expect("path"))
        };
        m.push(mk(50));
        m.push(mk(10));
        assert!(m.pop_ready(100, false, None).is_none());
        assert_eq!(m.pop_ready(110, false, None).map(|i| i.wall_ns()), Some(10));
        assert!(m.pop_ready(110, false, None).is_none());
        assert_eq!(m.pop_ready(0, true, None).map(|i| i.wall_ns()), Some(50));
    }

    #[test]
    fn merger_holds_what_is_newer_than_a_held_back_item() {
        let mut m = Merger::new(100);
        m.push(packet(10, 20));
        m.push(packet(50, 20));
        // A source still holds something sent at 20: 10 may go, 50 not,
        // though its hold is long over.
        assert_eq!(m.pop_ready(1000, false, Some(20)).map(|i| i.wall_ns()), Some(10));
        assert!(m.pop_ready(1000, false, Some(20)).is_none());
        assert_eq!(m.pop_ready(1000, false, None).map(|i| i.wall_ns()), Some(50));
        // Past the caps the oldest go all the same.
        let mut m = Merger::new(100);
        for t in 0..(MERGER_MAX_ITEMS + 3) as u64 {
            m.push(packet(50 + t, 20));
        }
        let mut n = 0;
        while m.pop_ready(1000, false, Some(20)).is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn a_line_of_a_starting_container_is_held_back_first_until_named() {
        let mut topo = Topology::new(Some(1));
        topo.insert(7, None, None, &[(2, "eth0")]);
        topo.mark_starting(7, true);
        let in_sandbox = || {
            let mut p = PacketEvent::sample(10, vec![0u8; 20]);
            p.netns = NetnsId { inode: 7, ..Default::default() };
            Item::Packet(Box::new(p))
        };
        let mut m = Merger::new(100);
        m.push(packet(10, 20));
        m.push(in_sandbox());
        m.push(packet(50, 20));
        // The host's line of the same time goes; the sandbox's waits and
        // stays first among what is held.
        let first = m.pop_ready(1000, false, None).expect("first");
        assert_eq!(first.waits_for_name(&topo), None);
        let mut held = m.pop_ready(1000, false, None).expect("second");
        held.refresh_names(&topo);
        assert_eq!(held.waits_for_name(&topo), Some(7));
        assert!(m.hold_back(held).is_none());
        let mut again = m.pop_ready(1000, false, None).expect("held back");
        assert_eq!(again.wall_ns(), 10);
        // Named: it goes as it is now named.
        topo.insert(7, Some("web".into()), None, &[]);
        again.refresh_names(&topo);
        assert_eq!(again.waits_for_name(&topo), None);
        assert_eq!(m.pop_ready(1000, false, None).map(|i| i.wall_ns()), Some(50));
        // One no container is starting in never waits.
        topo.mark_starting(7, false);
        assert_eq!(in_sandbox().waits_for_name(&topo), None);
        // Past the caps nothing is held back.
        let mut m = Merger::new(100);
        for t in 0..MERGER_MAX_ITEMS as u64 {
            m.push(packet(t, 20));
        }
        assert!(m.hold_back(in_sandbox()).is_some());
    }

    #[test]
    fn queue_and_heap_give_the_order_a_heap_alone_gives() {
        // Mostly in order, some late (netlink requests), ties included.
        let times: Vec<u64> = vec![10, 20, 20, 15, 30, 5, 30, 40, 35, 35, 50, 10, 60];
        let mut m = Merger::new(0);
        for (i, t) in times.iter().enumerate() {
            let mut p = PacketEvent::sample(*t, vec![0u8; 20]);
            p.ifindex = i as u32;
            m.push(Item::Packet(Box::new(p)));
        }
        assert!(!m.heap.is_empty() && !m.run.is_empty(), "both used");
        let mut out = Vec::new();
        while let Some(Item::Packet(p)) = m.pop_ready(u64::MAX, false, None) {
            out.push((p.wall_ns, p.ifindex));
        }
        let mut want: Vec<(u64, u32)> = times.iter().enumerate().map(|(i, t)| (*t, i as u32)).collect();
        want.sort();
        assert_eq!(out, want, "by time, then arrival");
        assert!(m.is_empty() && m.bytes == 0);
    }

    fn packet(t: u64, frame_len: usize) -> Item {
        Item::Packet(Box::new(PacketEvent::sample(t, vec![0u8; frame_len])))
    }

    #[test]
    fn merger_lets_the_oldest_out_early_past_its_caps() {
        let mut m = Merger::new(1_000_000_000);
        for t in 0..(MERGER_MAX_ITEMS + 10) as u64 {
            m.push(packet(1000 + t, 20));
        }
        let mut out = Vec::new();
        while let Some(i) = m.pop_ready(0, false, None) {
            out.push(i.wall_ns());
        }
        assert_eq!((out.len(), out.first(), out.last()), (10, Some(&1000), Some(&1009)), "the 10 oldest, in order");
        assert_eq!((m.len(), m.early), (MERGER_MAX_ITEMS, 10));
        // By size: full frames reach the byte cap long before the count.
        let mut m = Merger::new(1_000_000_000);
        let per = 512 + 9000;
        for t in 0..(MERGER_MAX_BYTES / per + 5) as u64 {
            m.push(packet(t, 9000));
        }
        let mut n = 0;
        while m.pop_ready(0, false, None).is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
        assert!(m.bytes <= MERGER_MAX_BYTES);
        // Within the caps, nothing comes out before its time.
        assert!(m.pop_ready(0, false, None).is_none());
    }
}
