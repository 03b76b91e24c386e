//! Reads the ring buffer from tokio without copying records twice, and
//! counts the records userspace could not parse; with the kernel's counts
//! ([`super::lost`]) that is every event lost on the way.

use std::{collections::VecDeque, io};

use aya::{
    Ebpf,
    maps::{Map, MapData, RingBuf},
};
use tokio::io::unix::AsyncFd;
use tracer_common::{LostSource, maps};

use super::{MapError, lost::LostCounters, take_map};
use crate::{bpf::event::RawEvent, sys::clock::Clock};

/// Most records one [`Reader::read`] or [`Reader::drain`] takes. A producer
/// that fills the ring as fast as it is read must not keep the event loop
/// in here: after this many the loop goes back to its `select!`, where
/// shutdown, deadlines and timers are served, and comes back for the rest.
/// About 20 ms of work at the slowest per-record processing measured here.
pub const MAX_RECORDS_PER_READ: usize = 4096;
/// Most bytes one read takes: 4096 netlink records of 16 KiB would be 64
/// MiB copied out of the ring before any of it is decoded and freed, which
/// is what a flood of large requests drives the tracer's memory with.
/// Measured under a 200,000-request flood: peak RSS 62-66 MiB with this
/// limit, up to 129 MiB with the record limit alone.
pub const MAX_BYTES_PER_READ: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("cannot poll the ring buffer: {0}")]
    Io(#[from] io::Error),
}

pub struct Reader {
    ring: AsyncFd<RingBuf<MapData>>,
    /// The ring's size in bytes.
    ring_bytes: usize,
    lost: LostCounters,
    /// Records that could not be parsed.
    pub malformed: u64,
    /// The last drain reached its limit: records are perhaps left.
    backlog: bool,
}

/// Where records come from, one at a time: the ring buffer, or a queue in
/// tests. `f` sees the record's bytes while they are still in place.
pub trait RecordSource {
    /// Calls `f` on the next record and consumes it; false when there is none.
    fn take_next(&mut self, f: impl FnOnce(&[u8])) -> bool;
}

impl RecordSource for RingBuf<MapData> {
    fn take_next(&mut self, f: impl FnOnce(&[u8])) -> bool {
        match self.next() {
            Some(item) => {
                f(&item);
                true
            }
            None => false,
        }
    }
}

impl RecordSource for VecDeque<Vec<u8>> {
    fn take_next(&mut self, f: impl FnOnce(&[u8])) -> bool {
        match self.pop_front() {
            Some(r) => {
                f(&r);
                true
            }
            None => false,
        }
    }
}

/// How a [`take_records`] call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The source ran dry.
    Empty,
    /// A limit was reached with records perhaps left.
    Limit,
}

/// When a [`take_records`] call stops.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most records consumed.
    pub records: usize,
    /// Most bytes consumed, counted as the ring counts them (8 bytes of
    /// header per record, rounded up to 8).
    pub bytes: usize,
    /// Records stamped later than this are consumed but not kept: they
    /// happened after the stop.
    pub stop_ns: Option<u64>,
}

impl Limits {
    /// One read of the event loop: [`MAX_RECORDS_PER_READ`] and [`MAX_BYTES_PER_READ`].
    pub const READ: Limits = Limits { records: MAX_RECORDS_PER_READ, bytes: MAX_BYTES_PER_READ, stop_ns: None };
}

/// Takes records from `src` until it is dry or a limit is reached, parsed
/// into `out`; a record that cannot be parsed counts in `malformed`.
pub fn take_records(src: &mut impl RecordSource, lim: Limits, out: &mut Vec<RawEvent>, malformed: &mut u64) -> Taken {
    let (mut records, mut bytes) = (0usize, 0usize);
    while records < lim.records && bytes < lim.bytes {
        let more = src.take_next(|rec| {
            bytes = bytes.saturating_add(8 + rec.len().next_multiple_of(8));
            match RawEvent::parse(rec) {
                Ok(ev) if lim.stop_ns.is_some_and(|s| ev.header.ts_ns > s) => {}
                Ok(ev) => out.push(ev),
                Err(_) => *malformed += 1,
            }
        });
        if !more {
            return Taken::Empty;
        }
        records += 1;
    }
    Taken::Limit
}

impl Reader {
    /// Takes the ring buffer and the lost counters out of `ebpf`.
    pub fn new(ebpf: &mut Ebpf) -> Result<Self, ReaderError> {
        let ring = take_map(ebpf, maps::EVENTS)?;
        let ring_bytes = match &ring {
            Map::RingBuf(d) => d.info().map_err(|e| MapError::Kind(maps::EVENTS, e))?.max_entries() as usize,
            _ => 0,
        };
        let ring = RingBuf::try_from(ring).map_err(|e| MapError::Kind(maps::EVENTS, e))?;
        let lost = LostCounters::new(ebpf)?;
        // SAFETY: the ring buffer owns its fd and is moved into the AsyncFd,
        // which deregisters it before dropping it.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| ReaderError::Io(e.into()))?;
        Ok(Self { ring, ring_bytes, lost, malformed: 0, backlog: false })
    }

    /// Waits until records are available, then appends up to
    /// `MAX_RECORDS_PER_READ` of them to `out`. When more are left the
    /// ring stays marked readable, so the caller's next `select!` comes
    /// straight back here after serving whatever else is ready.
    pub async fn read(&mut self, out: &mut Vec<RawEvent>) -> Result<(), ReaderError> {
        let mut guard = self.ring.readable_mut().await?;
        let taken = take_records(guard.get_inner_mut(), Limits::READ, out, &mut self.malformed);
        if taken == Taken::Empty {
            guard.clear_ready();
        }
        Ok(())
    }

    /// Takes up to `MAX_RECORDS_PER_READ` records that are already there,
    /// without waiting.
    /// When it reaches its limit, [`Reader::backlog`] says so.
    pub fn drain(&mut self, out: &mut Vec<RawEvent>) {
        self.backlog = take_records(self.ring.get_mut(), Limits::READ, out, &mut self.malformed) == Taken::Limit;
    }

    /// Whether the last drain reached its limit (records are perhaps
    /// left): the caller drains again at once, not a tick later (a tick
    /// per 4,096 records capped a 20 ms drain at 205,000 records a second).
    pub fn backlog(&self) -> bool {
        self.backlog
    }

    /// Every record stamped until now, however many, and none after: the
    /// last drain before exit. Programs still attached keep producing, so
    /// this reads at most twice the ring's size: everything stamped before
    /// now was in the ring by then (but for a record reserved a moment
    /// after being stamped, which the slack covers), and a drain that
    /// waited for the programs to stop could go on for ever.
    pub fn drain_until_now(&mut self, out: &mut Vec<RawEvent>) {
        let lim = Limits { records: usize::MAX, bytes: self.ring_bytes.saturating_mul(2), stop_ns: Some(Clock::now_mono_ns()) };
        take_records(self.ring.get_mut(), lim, out, &mut self.malformed);
    }

    /// The kernel's loss counters this reader took.
    pub fn lost_counters(&self) -> &LostCounters {
        &self.lost
    }

    /// Lost events of one source, summed over CPUs (ring buffer or not).
    pub fn lost_of(&self, s: LostSource) -> u64 {
        self.lost.total(s)
    }

    /// Total lost events per source of the ring buffer, summed over CPUs.
    pub fn lost(&self) -> Vec<(LostSource, u64)> {
        // `Stats` counts packets `tracer top` could not count, which never
        // go through the ring buffer.
        // (nor do the drop and TCP counters of `top`).
        let ring = |s: &LostSource| !matches!(s, LostSource::Stats | LostSource::DropStats | LostSource::TcpStats);
        LostSource::ALL.iter().filter(|s| ring(s)).map(|&s| (s, self.lost.total(s))).collect()
    }

    /// [`Self::lost`] by name, with the records userspace could not read
    /// ([`tracer_common::LOST_MALFORMED`]): what the event loops report.
    pub fn lost_totals(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self.lost().into_iter().map(|(s, n)| (s.name(), n)).collect();
        v.push((tracer_common::LOST_MALFORMED, self.malformed));
        v
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::{EventHeader, EventKind, packet::PacketMeta};

    use super::*;

    /// A record as a program writes it: header, then `payload` bytes.
    fn record(kind: u32, ts_ns: u64, payload: usize) -> Vec<u8> {
        let h = EventHeader {
            kind,
            cpu: 0,
            ts_ns,
            pid_tgid: 0,
            uid_gid: 0,
            cgroup_id: 0,
            netns_ino: 1,
            payload_len: payload as u32,
            comm: [0; 16],
        };
        // SAFETY: EventHeader is repr(C) plain data without padding holes.
        let mut v = unsafe { std::slice::from_raw_parts((&raw const h).cast::<u8>(), size_of::<EventHeader>()) }.to_vec();
        v.resize(v.len() + payload, 0);
        v
    }

    fn read(n: usize) -> Limits {
        Limits { records: n, ..Limits::READ }
    }

    fn packets(n: usize) -> VecDeque<Vec<u8>> {
        (0..n).map(|i| record(EventKind::Packet as u32, 100 + i as u64, size_of::<PacketMeta>())).collect()
    }

    #[test]
    fn a_read_takes_at_most_its_limit_and_says_more_are_left() {
        let mut src = packets(10);
        let (mut out, mut bad) = (Vec::new(), 0);
        assert_eq!(take_records(&mut src, read(4), &mut out, &mut bad), Taken::Limit);
        assert_eq!((out.len(), src.len()), (4, 6));
        assert_eq!(take_records(&mut src, read(4), &mut out, &mut bad), Taken::Limit);
        assert_eq!(take_records(&mut src, read(4), &mut out, &mut bad), Taken::Empty);
        assert_eq!((out.len(), src.len(), bad), (10, 0, 0));
        // In order, each once.
        assert!(out.iter().enumerate().all(|(i, e)| e.header.ts_ns == 100 + i as u64));
        // Exactly the limit left: the next call finds the source dry.
        let mut src = packets(4);
        out.clear();
        assert_eq!(take_records(&mut src, read(4), &mut out, &mut bad), Taken::Limit);
        assert_eq!(take_records(&mut src, read(4), &mut out, &mut bad), Taken::Empty);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_flood_is_read_in_bounded_bites() {
        // A producer that never runs dry: every call still returns.
        struct Endless(u64);
        impl RecordSource for Endless {
            fn take_next(&mut self, f: impl FnOnce(&[u8])) -> bool {
                self.0 += 1;
                f(&record(EventKind::Packet as u32, self.0, size_of::<PacketMeta>()));
                true
            }
        }
        let mut src = Endless(0);
        let (mut out, mut bad) = (Vec::new(), 0);
        assert_eq!(take_records(&mut src, Limits::READ, &mut out, &mut bad), Taken::Limit);
        assert_eq!(out.len(), MAX_RECORDS_PER_READ);
        // The drain at exit keeps what was stamped before its start and
        // ends after a budget of bytes, however fast records come.
        out.clear();
        let stop = src.0 + 1000;
        let per_record = 8 + (size_of::<EventHeader>() + size_of::<PacketMeta>()).next_multiple_of(8);
        let lim = Limits { records: usize::MAX, bytes: 3000 * per_record, stop_ns: Some(stop) };
        assert_eq!(take_records(&mut src, lim, &mut out, &mut bad), Taken::Limit);
        assert_eq!(out.len(), 1000);
        assert_eq!(src.0, stop - 1000 + 3000, "3000 records consumed, the budget");
        assert!(out.iter().all(|e| e.header.ts_ns <= stop));
    }

    #[test]
    fn a_read_of_large_records_stops_at_its_byte_limit() {
        // 16 KiB netlink records: the record limit alone would take 64 MiB.
        let big = 16 << 10;
        let mut src: VecDeque<Vec<u8>> =
            (0..1000).map(|i| record(EventKind::NetlinkSend as u32, i, big)).collect();
        let (mut out, mut bad) = (Vec::new(), 0);
        assert_eq!(take_records(&mut src, Limits::READ, &mut out, &mut bad), Taken::Limit);
        let per_record = 8 + (size_of::<EventHeader>() + big).next_multiple_of(8);
        assert_eq!(out.len(), MAX_BYTES_PER_READ.div_ceil(per_record));
        assert!(out.len() * per_record < MAX_BYTES_PER_READ + per_record);
    }

    #[test]
    fn the_drain_at_exit_keeps_records_stamped_before_it_behind_later_ones() {
        // A record reserved a moment after it was stamped can sit behind
        // one stamped after the stop.
        let mut src: VecDeque<Vec<u8>> =
            [10, 20, 31, 25, 40, 29].iter().map(|&ts| record(EventKind::Packet as u32, ts, size_of::<PacketMeta>())).collect();
        let (mut out, mut bad) = (Vec::new(), 0);
        let lim = Limits { records: usize::MAX, bytes: usize::MAX, stop_ns: Some(30) };
        assert_eq!(take_records(&mut src, lim, &mut out, &mut bad), Taken::Empty);
        let ts: Vec<u64> = out.iter().map(|e| e.header.ts_ns).collect();
        assert_eq!(ts, vec![10, 20, 25, 29]);
    }

    #[test]
    fn unreadable_records_count_as_malformed_and_do_not_stop_the_read() {
        let mut src: VecDeque<Vec<u8>> = VecDeque::new();
        src.push_back(vec![0; 10]); // shorter than a header
        src.push_back(record(0xdead, 1, 0)); // unknown kind
        src.push_back(record(EventKind::Packet as u32, 2, 3)); // payload shorter than PacketMeta
        src.push_back(record(EventKind::Packet as u32, 3, size_of::<PacketMeta>()));
        let (mut out, mut bad) = (Vec::new(), 0);
        assert_eq!(take_records(&mut src, read(10), &mut out, &mut bad), Taken::Empty);
        assert_eq!((out.len(), bad), (1, 3));
        assert_eq!(out[0].header.ts_ns, 3);
    }

}
