//! The jobs that read the ring buffer: `tracer netlink`, `tracer packets`,
//! and the default job, which runs both on one ring buffer, with drops
//! (`skb:kfree_skb`) and retransmissions (`tcp_retransmit_skb`), and prints
//! them as one timeline ([`super::merged`]). One pipeline serves all three:
//! records -> the netlink correlator and the packet decoder (each when the
//! job has it) -> the merger -> text or JSON lines, or pcapng.

use std::time::Duration;

use aya::Ebpf;
use tracer_common::{
    EventKind,
    drops::DROP_DATA_MAX,
    packet::DIR_INGRESS,
    tp::{ObsConfig, mode},
};

use super::{
    Error,
    merged::{Item, MERGER_MAX_BYTES, MERGER_MAX_ITEMS, Merger},
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::{
        event::RawEvent,
        hooks,
        load::{self, LoadOptions},
        ring::Reader,
        tp::EnumNames,
    },
    drops::{event::DropEvent, kallsyms::Symbols},
    netlink::{self, Correlator, NetlinkJob},
    ns::{
        trigger::Bell,
        watch::{self, Watcher},
    },
    output::{Sink, Stream},
    packets::{DRAIN_INTERVAL, PacketEvent, PacketsError, PacketsJob, capfile, hops, pcapng, rotate},
    procs::{self, Attribution},
    sys::{
        clock::{self, Clock},
        shutdown::Shutdown,
        text,
    },
    tc::{TcError, TcSession, attach::PACKET_PROGRAMS},
    tcp::event::{TcpEvent, What},
};

/// How often the netlink audit alone looks at its correlator when no
/// record wakes it: requests whose answer never comes are printed on time.
const NETLINK_TICK: Duration = Duration::from_millis(100);
/// How long the last answers and packets are given to arrive at the end.
const LAST_EVENTS_WAIT: Duration = Duration::from_millis(50);
/// Output bytes deferred before they are written anyway.
const SINK_MAX_BUFFERED: usize = 1 << 20;
/// How long packets are held before they are printed, so that a process
/// first seen is shown with its container and command line (found on
/// another thread, usually within milliseconds), and a new container's
/// first packets with its name (its runtime names it once it runs, and the
/// attach thread is asked to look again every LOOK_GAP meanwhile).
const PACKETS_HOLD_NS: u64 = 400_000_000;

/// Where printed items go.
enum Out {
    Sink(Sink),
    /// Packets as pcapng; every other line (netlink requests, paths, lost
    /// events) to the sink.
    Pcapng(pcapng::PcapngOut, Sink),
}

impl Out {
    fn sink(&mut self) -> &mut Sink {
        match self {
            Out::Sink(s) | Out::Pcapng(_, s) => s,
        }
    }
}

/// The netlink audit, the packet tracing, or both, running.
struct Events {
    reader: Reader,
    /// The object, held while no TC session holds it (the netlink audit
    /// alone): its tracepoints stay attached as long as it lives.
    _ebpf: Option<Ebpf>,
    tc: Option<TcSession>,
    clock: Clock,
    netlink: Option<(NetlinkJob, Correlator)>,
    packets: Option<PacketsJob>,
    grouper: Option<hops::Grouper>,
    /// Process attribution, unless `--no-process` or the kernel refused it.
    attribution: Option<Attribution>,
    merger: Merger,
    out: Out,
    target: Option<capfile::Target>,
    batch: Vec<RawEvent>,
    ready: String,
    /// The interface watcher's notifications (the watcher itself is the
    /// correlator's).
    changes: Option<tokio::sync::mpsc::Receiver<watch::Event>>,
    /// Namespaces packets came from unnamed: when the attach thread was
    /// first and last asked to look again for each.
    asked: std::collections::HashMap<u64, (std::time::Instant, Option<std::time::Instant>)>,
    /// Ticks in a row whose drain found fewer than QUIET_RECORDS.
    quiet_ticks: u32,
    /// The default job: drops and retransmissions on the timeline.
    timeline: Option<Timeline>,
}

/// What names the drops and retransmissions of the default job.
struct Timeline {
    drop_reasons: EnumNames,
    rst_reasons: EnumNames,
    symbols: Option<Symbols>,
}

/// How long the attach thread is asked to look again for one unnamed
/// namespace (every LOOK_GAP while its packets come): a container's
/// namespace is made before its process runs, and Docker names it only
/// once it runs. Bounded, so that a namespace no container or name will
/// ever own (`unshare -n`) costs a few rescans once, not a rescan a tick.
/// As long as a starting container's lines wait for its name.
const LOOK_FOR: Duration = Duration::from_nanos(netlink::SANDBOX_WAIT_NS);
const LOOK_GAP: Duration = Duration::from_millis(100);

/// The drain tick once QUIET_AFTER ticks in a row found fewer than
/// QUIET_RECORDS records (under ~12,800 a second): a tracer with little to
/// do wakes 12 times a second, not 50. A burst after the quiet waits at
/// most this long in the ring (at 600,000 records a second, ~10 of its 16
/// MiB); the first drain that finds more goes back to DRAIN_INTERVAL, and
/// one that reaches its limit drains again at once.
const DRAIN_IDLE: Duration = Duration::from_millis(80);
const QUIET_RECORDS: usize = 256;
const QUIET_AFTER: u32 = 5;
const ASKED_MAX: usize = 4096;

/// Notifications taken from the watcher per step at most (the channel
/// is bounded too; the rest wait for the next step).
const CHANGES_PER_STEP: usize = 8192;

/// Starts the interface watcher for the netlink audit. Without it the
/// audit still runs, naming links by asking the namespaces (one sentence
/// on stderr says so).
/// `bell` is rung on link and namespace changes (for the packets' attach
/// thread, which then needs no watcher of its own).
async fn start_watcher(bell: Option<Bell>) -> Option<(std::sync::Arc<Watcher>, tokio::sync::mpsc::Receiver<watch::Event>)> {
    let started = tokio::task::spawn_blocking(|| Watcher::start(watch::Config { bell, ..Default::default() })).await;
    match started {
        Ok(Ok((w, rx))) => Some((std::sync::Arc::new(w), rx)),
        Ok(Err(e)) => {
            text::warn(&format!("the interface watcher did not start ({e}); deleted and moved links may go unnamed"));
            None
        }
        Err(_) => None,
    }
}

/// Runs the netlink audit (`netlink`), packet tracing (`packets`), or both
/// merged into one timeline, until `limits` or `stop`.
pub async fn run(
    netlink: Option<NetlinkJob>,
    packets: Option<PacketsJob>,
    json: bool,
    ring_bytes: Option<u32>,
    limits: Limits,
    stop: Shutdown,
) -> Result<(), Error> {
    // The capture target first: a refused path fails before anything is
    // loaded, and a FIFO's reader is waited for (stoppable) before attaching.
    // With -C/-G/-W the first file's name is made as tcpdump makes it.
    let mut rotator = packets
        .as_ref()
        .filter(|p| p.rotation != Default::default())
        .and_then(|p| Some(rotate::Rotator::new(p.write.as_deref()?, p.rotation)));
    let first = rotator.as_mut().map(rotate::Rotator::first);
    let target = match first {
        Some(f) => Some(capfile::Target::Path(f)),
        None => packets.as_ref().and_then(|p| p.write.as_deref()).map(capfile::Target::from_arg),
    };
    let capture = match &target {
        Some(t) => {
            let (deadline, asked) = (limits.deadline(), stop.clone().wait());
            let stopped = async {
                tokio::select! {
                    _ = deadline => {}
                    _ = asked => {}
                }
            };
            match capfile::open(t, stopped).await.map_err(PacketsError::from)? {
                Some(f) => Some(f),
                None => return Ok(()),
            }
        }
        None => None,
    };
    // The default job (netlink and packets): drops and retransmissions too.
    let timeline = netlink.is_some() && packets.is_some();
    let mut opts = LoadOptions {
        snaplen: packets.as_ref().map_or(0, |p| p.snaplen),
        obs: if timeline {
            ObsConfig { drops: mode::EVENTS, tcp: mode::EVENTS, snaplen: DROP_DATA_MAX as u32, ..ObsConfig::off() }
        } else {
            ObsConfig::off()
        },
        // Without packets the kernel filters netlink by namespace itself.
        nl_netns: if packets.is_none() { netlink.as_ref().and_then(|n| n.netns) } else { None },
        pkt_filter: packets.as_ref().is_some_and(|p| !p.filter.is_match_all()),
        pkt_hash: packets.as_ref().is_some_and(|p| p.shows_hash(json)),
        procs: packets.as_ref().and_then(|p| p.procs.as_ref()).map(|s| s.config(true)),
        ..Default::default()
    };
    if let Some(b) = ring_bytes {
        opts.ring_bytes = b;
    }
    let mut loaded = load::load_for_job(&opts)?;
    if netlink.is_some() {
        hooks::attach_tracepoints(&mut loaded.ebpf, hooks::NETLINK_HOOKS)?;
    }
    let timeline = if timeline {
        // A kernel that refuses them costs the timeline its drops, not the job.
        let attached = super::obs::attach_timeline(&mut loaded).unwrap_or_else(|e| {
            text::warn(&format!("drops and retransmissions are left out: {e}"));
            Vec::new()
        });
        let symbols = match Symbols::load() {
            Ok(s) => Some(s),
            Err(e) => {
                text::warn(&format!("functions of drops are not named: {e}"));
                None
            }
        };
        (!attached.is_empty()).then(|| Timeline {
            drop_reasons: std::mem::take(&mut loaded.drop_reasons),
            rst_reasons: std::mem::take(&mut loaded.rst_reasons),
            symbols,
        })
    } else {
        None
    };
    let reader = Reader::new(&mut loaded.ebpf)?;
    // Before the packet programs: a socket made in between would be missed.
    let attribution = match packets.as_ref().and_then(|p| p.procs.as_ref()) {
        Some(sel) => match Attribution::start(&mut loaded.ebpf, sel) {
            Ok(a) => Some(a),
            // Selecting by process needs it; without a selection, packets
            // go on without process fields.
            Err(e) if sel.is_some() => return Err(Error::Kernel(format!("--process and --comm need process attribution: {e}"))),
            Err(e) => {
                text::warn(&procs::unavailable(&e));
                None
            }
        },
        None => None,
    };
    // With `-w -` stdout carries pcapng: every line goes to stderr.
    let lines = if target == Some(capfile::Target::Stdout) { Stream::Stderr } else { Stream::Stdout };
    let mut out = match capture {
        Some(f) => {
            let snaplen = packets.as_ref().map_or(0, |p| p.snaplen);
            let mut w = pcapng::PcapngOut::new(f, snaplen).map_err(PacketsError::from)?;
            if let Some(r) = rotator {
                w = w.rotating(r);
            }
            Out::Pcapng(w, Sink::to(json, lines))
        }
        None => Out::Sink(Sink::new(json)),
    };
    // With both, the netlink audit's watcher tells the attach thread of changes.
    let bell = if netlink.is_some() && packets.is_some() {
        Some(Bell::new().map_err(|e| Error::Kernel(format!("cannot make an eventfd: {e}")))?)
    } else {
        None
    };
    let (ebpf, tc, ready) = match &packets {
        Some(p) => {
            let Some((tc, first)) = TcSession::start(loaded.ebpf, PACKET_PROGRAMS, &p.filter, &p.select, "trace", &stop, bell.clone()).await? else {
                return Ok(());
            };
            // -G's first period starts with the capture, not when the file
            // was opened before loading (which can take a second or more).
            if let Out::Pcapng(w, _) = &mut out {
                w.start_period();
            }
            let what = match (&netlink, &timeline) {
                (Some(_), Some(_)) => "netlink audit, packets, drops and retransmissions",
                (Some(_), None) => "netlink audit and packets",
                (None, _) => "packets",
            };
            let ready = format!(
                "tracing {what} on {} interfaces in {} namespaces ({})",
                first.interfaces,
                first.namespaces,
                first.mode.name()
            );
            (None, Some(tc), ready)
        }
        None => {
            if stop.stopped_during_start_up() {
                return Ok(());
            }
            (Some(loaded.ebpf), None, format!("netlink audit attached to {} tracepoints", hooks::NETLINK_HOOKS.len()))
        }
    };
    let clock = Clock::new();
    let watched = if netlink.is_some() { start_watcher(bell).await } else { None };
    let (watcher, changes) = match watched {
        Some((w, rx)) => (Some(w), Some(rx)),
        None => (None, None),
    };
    // Netlink requests come out of the correlator up to ACK_WAIT_NS late:
    // with packets, everything is held that long to stay in time order.
    // A new process's container and command line take a moment to find.
    let hold_ns = if netlink.is_some() && packets.is_some() {
        netlink::ACK_WAIT_NS + 100_000_000
    } else if packets.is_some() || attribution.is_some() {
        PACKETS_HOLD_NS
    } else {
        0
    };
    let mut job = Events {
        reader,
        _ebpf: ebpf,
        tc,
        clock,
        netlink: netlink.map(|j| {
            let c = Correlator::new(clock);
            (j, match watcher { Some(w) => c.with_watcher(w), None => c })
        }),
        grouper: packets.as_ref().filter(|p| p.hops).map(|_| hops::Grouper::default()),
        packets,
        attribution,
        merger: Merger::new(hold_ns),
        out,
        target,
        batch: Vec::new(),
        ready,
        changes,
        asked: std::collections::HashMap::new(),
        quiet_ticks: 0,
        timeline,
    };
    run::run(&mut job, limits, stop).await?;
    Ok(())
}

impl Events {
    /// Decodes the records taken so far: packets into events (or paths),
    /// netlink records into the correlator.
    fn take_batch(&mut self) -> Result<(), TcError> {
        let Some(tc) = &self.tc else {
            for ev in self.batch.drain(..) {
                if let Some((_, corr)) = &mut self.netlink {
                    corr.push(&ev);
                }
            }
            return Ok(());
        };
        let topo = tc.topology()?;
        let decode = self.packets.as_ref().is_some_and(PacketsJob::decodes);
        for ev in self.batch.drain(..) {
            match ev.kind {
                EventKind::Sock => {
                    if let Some(a) = &mut self.attribution {
                        a.push(&ev, &|ns| topo.netns(ns).owner);
                    }
                }
                EventKind::Packet => {
                    let Some(mut p) = PacketEvent::from_raw(&ev, &self.clock, &topo, decode) else {
                        self.reader.malformed += 1;
                        continue;
                    };
                    if p.unnamed() && should_look_again(&mut self.asked, p.netns.inode) {
                        tc.look_again();
                    }
                    if let Some(a) = &mut self.attribution {
                        let ep = p.endpoints();
                        a.fill(&mut p.procs, p.netns.inode, p.direction != DIR_INGRESS, ep.as_ref());
                    }
                    match &mut self.grouper {
                        Some(g) => g.push(p),
                        None => self.merger.push(Item::Packet(Box::new(p))),
                    }
                }
                EventKind::NetlinkSend | EventKind::NetlinkAck => {
                    if let Some((_, corr)) = &mut self.netlink {
                        corr.push(&ev);
                    }
                }
                EventKind::Drop => {
                    let Some(t) = &mut self.timeline else { continue };
                    let symbols = &mut t.symbols;
                    let mut symbolise = |a: u64| symbols.as_mut().and_then(|s| s.lookup_or_reload(a));
                    match DropEvent::from_raw(&ev, &self.clock, &*topo, &t.drop_reasons, &mut symbolise) {
                        Some(d) => {
                            if let Some(n) = d.netns.as_ref().filter(|n| n.name.is_none() && !n.host)
                                && should_look_again(&mut self.asked, n.inode)
                            {
                                tc.look_again();
                            }
                            self.merger.push(Item::Drop(Box::new(d)))
                        }
                        None => self.reader.malformed += 1,
                    }
                }
                EventKind::TcpRetransmit => {
                    let Some(t) = &self.timeline else { continue };
                    match TcpEvent::from_raw(&ev, &self.clock, &*topo, &t.rst_reasons) {
                        // Failed attempts (the segment never left) are not retransmissions.
                        Some(e) if matches!(e.what, What::Retransmit { err: 0, .. }) => self.merger.push(Item::Tcp(Box::new(e))),
                        Some(_) => {}
                        None => self.reader.malformed += 1,
                    }
                }
                // The other TCP programs are not attached by these jobs.
                _ => {}
            }
        }
        Ok(())
    }
}

/// The next packet drain: at once while the last one left records, slower
/// once QUIET_AFTER drains in a row found little.
fn drain_tick(backlog: bool, quiet_ticks: u32) -> Duration {
    if backlog {
        Duration::ZERO
    } else if quiet_ticks >= QUIET_AFTER {
        DRAIN_IDLE
    } else {
        DRAIN_INTERVAL
    }
}

/// Whether to ask the attach thread to look again for the unnamed
/// namespace `inode` now: every LOOK_GAP, for LOOK_FOR after its first
/// unnamed line, within ASKED_MAX namespaces remembered.
fn should_look_again(asked: &mut std::collections::HashMap<u64, (std::time::Instant, Option<std::time::Instant>)>, inode: u64) -> bool {
    if asked.len() >= ASKED_MAX {
        asked.clear();
    }
    let now = std::time::Instant::now();
    let (first, last) = asked.entry(inode).or_insert((now, None));
    if now.duration_since(*first) < LOOK_FOR && last.is_none_or(|l| now.duration_since(l) >= LOOK_GAP) {
        *last = Some(now);
        return true;
    }
    false
}

impl Running for Events {
    const UNIT: &'static str = "events";

    fn ready(&self) -> String {
        self.ready.clone()
    }

    fn tick(&self) -> Duration {
        match &self.tc {
            Some(_) => drain_tick(self.reader.backlog(), self.quiet_ticks),
            None => NETLINK_TICK,
        }
    }

    async fn wake(&mut self) -> Result<(), Error> {
        Ok(self.reader.read(&mut self.batch).await?)
    }

    fn ticked(&mut self) {
        // Packet records do not wake the reader: the ring is drained here.
        if self.tc.is_some() {
            self.reader.drain(&mut self.batch);
            let quiet = self.batch.len() < QUIET_RECORDS;
            self.quiet_ticks = if quiet { self.quiet_ticks.saturating_add(1) } else { 0 };
        }
    }

    async fn stop(&mut self) {
        // Let the last answers and packets arrive, detach, then take what
        // is left in the ring buffer.
        tokio::time::sleep(LAST_EVENTS_WAIT).await;
        if let Some(tc) = &mut self.tc {
            tc.stop().await;
        }
        self.reader.drain_until_now(&mut self.batch);
    }

    fn step(&mut self, last: bool, budget: Option<u64>) -> Result<Step, Error> {
        self.take_batch()?;
        let now_wall = self.clock.wall_ns(Clock::now_mono_ns());
        if let Some(a) = &mut self.attribution {
            a.tick(Clock::now_mono_ns());
        }
        if let Some((job, corr)) = &mut self.netlink {
            if let Some(rx) = &mut self.changes {
                for _ in 0..CHANGES_PER_STEP {
                    let Ok(ev) = rx.try_recv() else { break };
                    corr.push_change(&ev);
                }
            }
            // Named and attributed to their container by the correlator.
            let now = Clock::now_mono_ns();
            for e in corr.ready(now, last) {
                if job.wants(&e) {
                    self.merger.push(Item::Netlink(Box::new(e)));
                }
            }
            for c in corr.changes_ready(now, last) {
                if job.wants_change(&c) {
                    self.merger.push(Item::Change(Box::new(c)));
                }
            }
        }
        if let Some(g) = &mut self.grouper {
            for p in g.ready(now_wall, last) {
                self.merger.push(Item::Path(p));
            }
        }
        // Nothing newer than a request the correlator still holds (one into
        // a container that does not run yet waits for its name) goes out
        // before it.
        let until = self.netlink.as_ref().and_then(|(_, c)| c.oldest_waiting_wall_ns());
        let mut step = Step::default();
        let topo = match &self.tc {
            Some(tc) => Some(tc.topology()?),
            None => None,
        };
        while budget.is_none_or(|b| step.written < b) {
            let Some(mut item) = self.merger.pop_ready(now_wall, last, until) else { break };
            if let Some(a) = &self.attribution {
                item.refresh_procs(a);
            }
            if let (Some(t), Some(tc)) = (&topo, &self.tc) {
                item.refresh_names(t);
                // A Docker container's veth sends before the container
                // runs and is named: its lines (and all newer) wait for the
                // name, like the requests into it (SANDBOX_WAIT_NS).
                if !last
                    && let Some(ino) = item.waits_for_name(t)
                    && now_wall.saturating_sub(item.wall_ns()) < netlink::SANDBOX_WAIT_NS
                {
                    if should_look_again(&mut self.asked, ino) {
                        tc.look_again();
                    }
                    match self.merger.hold_back(item) {
                        None => break,
                        Some(back) => item = back,
                    }
                }
            }
            match (&mut self.out, &item) {
                (Out::Pcapng(w, _), Item::Packet(p)) => w.write(&p.frame()).map_err(PacketsError::from)?,
                (Out::Pcapng(_, sink), _) | (Out::Sink(sink), _) => {
                    sink.defer(item.render());
                    // Lines are written once per step, but a step may let
                    // out tens of thousands: not all of them in one buffer.
                    if sink.buffered() > SINK_MAX_BUFFERED {
                        sink.flush()?;
                    }
                }
            }
            step.written += 1;
        }
        match &mut self.out {
            Out::Pcapng(w, sink) => {
                // After every drain: a reader on a pipe sees packets live.
                w.flush().map_err(PacketsError::from)?;
                sink.flush()?;
                if w.files_done && !last {
                    text::warn(&format!("the last of the -W {} files is complete; stopping", w.files));
                    step.done = true;
                } else if w.reader_gone && !last {
                    let what = self.target.as_ref().map(capfile::Target::describe).unwrap_or_default();
                    text::warn(&format!("the reader of {what} closed it; stopping"));
                    step.done = true;
                }
            }
            Out::Sink(sink) => sink.flush()?,
        }
        Ok(step)
    }

    fn lost(&self) -> Vec<(&'static str, u64)> {
        self.reader.lost_totals()
    }

    fn say_lost(&mut self, new: &[(&'static str, u64)]) -> Result<(), Error> {
        let time = clock::rfc3339(clock::now_wall_ns());
        for (src, n) in new {
            self.out.sink().lost(src, *n, &time)?;
        }
        Ok(())
    }

    fn exit_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let (Out::Pcapng(w, _), Some(t)) = (&self.out, &self.target) {
            lines.push(text::field(&format!("{} packets written to {}", w.packets, t.describe()), text::SENTENCE_MAX).into_owned());
        }
        if let Some(g) = &self.grouper {
            let s = g.stats;
            let avg = if s.multi_hop > 0 { s.transit_ns_sum as f64 / s.multi_hop as f64 / 1000.0 } else { 0.0 };
            lines.push(format!(
                "hops: {} packets, {} seen on more than one interface (mean transit {avg:.1}us), skb hash the same on every hop for {}",
                s.paths, s.multi_hop, s.hash_stable
            ));
            if s.early > 0 {
                lines.push(format!("hops: {} paths printed before the end of their hold (more than {} hops held)", s.early, hops::MAX_HELD_HOPS));
            }
        }
        if let Some((_, corr)) = &self.netlink {
            lines.push(corr.summary());
            lines.extend(corr.watch_summary());
        }
        if let Some(a) = &self.attribution {
            lines.push(a.summary());
        }
        if self.merger.early > 0 {
            lines.push(format!(
                "{} events printed before the end of their hold (more than {MERGER_MAX_ITEMS} events or {} MiB held)",
                self.merger.early,
                MERGER_MAX_BYTES >> 20
            ));
        }
        if let Some((_, corr)) = &self.netlink
            && corr.malformed > 0
        {
            lines.push(format!("{} netlink messages could not be decoded (reported as malformed, with their bytes)", corr.malformed));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_comes_at_once_with_records_left_and_slower_when_quiet() {
        assert_eq!(drain_tick(true, QUIET_AFTER + 10), Duration::ZERO, "records left: at once, however quiet before");
        assert_eq!(drain_tick(false, 0), DRAIN_INTERVAL);
        assert_eq!(drain_tick(false, QUIET_AFTER - 1), DRAIN_INTERVAL);
        assert_eq!(drain_tick(false, QUIET_AFTER), DRAIN_IDLE);
        assert!(DRAIN_IDLE > DRAIN_INTERVAL);
    }
}
