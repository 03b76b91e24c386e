//! Running `tracer drops` and `tracer tcp`: the validated jobs, loading
//! and attaching their tracepoint programs (selection and filter written
//! into the kernel first), and their event loops.
//!
//! This is wiring: it joins [`crate::drops`] and [`crate::tcp`] with the
//! packet decoder and pcapng writer of [`crate::packets`] (the drop modules
//! themselves import nothing of `packets`), the loader and the namespace
//! names. With the restructure (issue #9) it belongs in `app/`.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use aya::maps::{HashMap as BpfHashMap, MapData};
use tracer_common::{
    EventKind,
    drops::DROP_DATA_MAX,
    maps,
    packet::DIR_INGRESS,
    tp::{ObsConfig, mode},
};

use crate::{
    Error,
    btf::KernelBtf,
    cli::{CommonArgs, DropsArgs, TcpArgs},
    clock::{self, Clock},
    drops::{
        event::DropEvent,
        kallsyms::{self, Symbols},
    },
    ebpf::{self, Loaded},
    hooks,
    ns,
    nsnames::{Refresher, Selector},
    output::{self, Sink, Stream},
    packets::{
        self, PacketEvent, PacketsError, Scope, Selection, capfile,
        filter::{self, FilterProgram},
        glob_match, pcapng,
    },
    reader::{LostTracker, Reader},
    shutdown::Shutdown,
    tcp::{event::TcpEvent, tracker::Tracker},
    tp::{self as tpmod, EnumNames, TpCheck, Tracepoint},
};

/// How often the ring buffer is drained (records do not wake the reader)
/// and the namespace selection is brought up to date.
const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// The validated form of `tracer drops`.
#[derive(Clone, Debug)]
pub struct DropsJob {
    pub select: Selection,
    /// `--reason`: the kernel's values of the names given.
    pub reasons: Option<Vec<(String, u32)>>,
    pub snaplen: u32,
    pub write: Option<PathBuf>,
    pub filter: FilterProgram,
}

impl DropsJob {
    pub fn from_args(a: &DropsArgs) -> Result<Self, Error> {
        let select = Selection::from_args(&a.sel, a.all, a.iface.as_deref())?;
        let filter = filter::from_args(a.filter.as_deref(), &a.expr)?;
        let max = DROP_DATA_MAX as u32;
        let snaplen = match a.snaplen {
            Some(0) | None => max,
            Some(n) if n > max => {
                eprintln!("tracer: --snaplen {n} lowered to {max}, the most the kernel side copies of a dropped packet");
                max
            }
            Some(n) => n,
        };
        let reasons = match &a.reason {
            None => None,
            Some(list) => {
                let btf = KernelBtf::open().map_err(ebpf::LoadError::from)?;
                Some(parse_reasons(list, &drop_reasons(&btf))?)
            }
        };
        Ok(Self { select, reasons, snaplen, write: a.write.clone(), filter })
    }
}

/// The kernel's drop reason names.
pub fn drop_reasons(btf: &KernelBtf) -> EnumNames {
    EnumNames::from_btf(btf, "skb_drop_reason", &["SKB_DROP_REASON_", "SKB_"])
}

/// `--reason A,B` against the kernel's names: unknown names are an error
/// that lists close ones.
pub fn parse_reasons(list: &str, names: &EnumNames) -> Result<Vec<(String, u32)>, Error> {
    if names.is_empty() {
        return Err(Error::Usage("this kernel gives no drop reasons (skb:kfree_skb has them from Linux 5.17 on): --reason cannot select".into()));
    }
    let mut out = Vec::new();
    for n in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let n = n.strip_prefix("SKB_DROP_REASON_").unwrap_or(n);
        match names.value(n) {
            Some(v) if v < 256 => out.push((n.to_ascii_uppercase(), v as u32)),
            Some(_) => return Err(Error::Usage(format!("drop reason {n} cannot be selected in the kernel (value beyond 255)"))),
            None => {
                let all = names.names();
                return Err(Error::Usage(format!(
                    "unknown drop reason {}{}",
                    output::name(n),
                    ns::did_you_mean(all.iter().copied(), &n.to_ascii_uppercase())
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Usage("--reason needs at least one reason name, e.g. NETFILTER_DROP".into()));
    }
    Ok(out)
}

/// The validated form of `tracer tcp`.
#[derive(Clone, Debug)]
pub struct TcpJob {
    pub select: Selection,
    pub rtt_interval: Duration,
    pub filter: FilterProgram,
}

impl TcpJob {
    pub fn from_args(a: &TcpArgs) -> Result<Self, Error> {
        if !(a.rtt_interval.is_finite() && a.rtt_interval >= 0.0 && a.rtt_interval <= 3600.0) {
            return Err(Error::Usage(format!("--rtt-interval must be between 0 and 3600 seconds, not {}", a.rtt_interval)));
        }
        let select = Selection::from_args(&a.sel, a.all, None)?;
        let filter = filter::from_args(a.filter.as_deref(), &a.expr)?;
        Ok(Self { select, rtt_interval: Duration::from_secs_f64(a.rtt_interval), filter })
    }
}

/// Loaded, selected, filtered and attached tracepoint programs.
pub struct Session {
    pub loaded: Loaded,
    pub reader: Reader,
    pub names: Refresher,
    netns_map: Option<BpfHashMap<MapData, u32, u32>>,
    synced: BTreeSet<u64>,
    pub attached: Vec<&'static str>,
}

/// The programs (with their tracepoints) of `tps` this kernel can run;
/// refuses to start when one in `needed` (tracepoint names) cannot be,
/// and says which others are left out.
fn usable(checks: &[TpCheck], tps: &[Tracepoint], needed: &[&str]) -> Result<Vec<(&'static str, &'static str)>, Error> {
    let mut out = Vec::new();
    for t in tps {
        let c = checks.iter().find(|c| c.tracepoint == t.name);
        match c.and_then(|c| c.program) {
            Some(p) => out.push((p, t.name)),
            None => {
                let why = c.and_then(|c| c.error.clone()).unwrap_or_else(|| "not checked".into());
                if needed.contains(&t.name) {
                    return Err(Error::Kernel(format!("tracepoint {}: {why}", t.name)));
                }
                output::warn(&format!("tracepoint {} left out: {why}", t.name));
            }
        }
    }
    Ok(out)
}

impl Session {
    /// Loads the object with `obs`, writes the filter and the namespace
    /// selection, then attaches `tps` (those of `needed` must be there).
    pub fn start(
        mut obs: ObsConfig,
        common: &CommonArgs,
        select: &Selection,
        filter: &FilterProgram,
        tps: &[Tracepoint],
        needed: &[&str],
    ) -> Result<Self, Error> {
        obs.select_netns = u32::from(select.scope != Scope::All);
        let mut opts = ebpf::LoadOptions { obs, ..Default::default() };
        if let Some(kib) = common.buffer_kib {
            opts.ring_bytes = kib * 1024;
        }
        let mut loaded = ebpf::load(&opts)?;
        if !loaded.missing_fields.is_empty() {
            return Err(Error::Kernel(format!("its BTF lacks {}", loaded.missing_fields.join(", "))));
        }
        let use_tps = usable(&loaded.tp_checks, tps, needed)?;
        // Before any program is attached (see packets::run).
        filter::install(&mut loaded.ebpf, filter).map_err(PacketsError::from)?;
        let host = ns::resolve_pid(std::process::id()).ok();
        let selector: Option<Selector> = match &select.scope {
            Scope::Container(id) => {
                let id = id.clone();
                Some(Box::new(move |n: &ns::Netns| n.has_container(&id)))
            }
            _ => None,
        };
        let names = Refresher::start(host, selector);
        let mut netns_map = None;
        let mut synced = BTreeSet::new();
        if select.scope != Scope::All {
            let map = loaded.ebpf.take_map(maps::OBS_NETNS).ok_or(Error::Kernel("the eBPF object has no OBS_NETNS map".into()))?;
            let map = BpfHashMap::<MapData, u32, u32>::try_from(map).map_err(|e| Error::Kernel(format!("map OBS_NETNS: {e}")))?;
            netns_map = Some(map);
            if let Scope::Netns(ino) = select.scope {
                synced.insert(ino);
            }
        }
        let mut s = Self { reader: Reader::new(&mut loaded.ebpf)?, loaded, names, netns_map, synced: BTreeSet::new(), attached: vec![] };
        if let Some(map) = &mut s.netns_map {
            for ino in &synced {
                let _ = map.insert(*ino as u32, 1, 0);
            }
            s.synced = synced;
        }
        s.sync_selection();
        let btf = aya::Btf::from_sys_fs().map_err(|e| Error::Kernel(format!("cannot read its BTF: {e}")))?;
        hooks::attach_btf_tracepoints(&mut s.loaded.ebpf, &btf, &use_tps)?;
        s.attached = use_tps.iter().map(|(_, t)| *t).collect();
        Ok(s)
    }

    /// Follows a container into its new namespace: the kernel's selection
    /// is made the refresher's.
    pub fn sync_selection(&mut self) {
        let Some(map) = &mut self.netns_map else { return };
        let want = match self.names.table.read() {
            Ok(t) if !t.selected.is_empty() || self.synced.is_empty() => t.selected.clone(),
            _ => return,
        };
        if want == self.synced {
            return;
        }
        for gone in self.synced.difference(&want) {
            let _ = map.remove(&(*gone as u32));
        }
        for new in want.difference(&self.synced) {
            let _ = map.insert(*new as u32, 1, 0);
        }
        self.synced = want;
    }
}

/// A drop as `tracer packets` hands packets to pcapng.
fn as_packet(e: &DropEvent, host: Option<u64>) -> PacketEvent {
    PacketEvent {
        wall_ns: e.wall_ns,
        cpu: e.cpu,
        netns_ino: e.netns_ino,
        netns_name: e.netns_name.clone(),
        host_netns: host == Some(u64::from(e.netns_ino)),
        container: e.container.clone(),
        ifindex: e.ifindex.unwrap_or(0),
        ifname: e.ifname.clone().unwrap_or_else(|| "-".into()),
        direction: DIR_INGRESS,
        len: e.len + if e.synthesized_eth { 14 } else { 0 },
        hash: 0,
        mark: 0,
        ethernet: true,
        frame: e.frame.clone(),
        decoded: Default::default(),
    }
}

/// Whether a drop passes `-i`: its device's name matches a glob.
fn iface_ok(select: &Selection, e: &DropEvent) -> bool {
    match (&select.iface_globs, &e.ifname) {
        (None, _) => true,
        (Some(globs), Some(n)) => globs.iter().any(|g| glob_match(g, n)),
        (Some(_), None) => false,
    }
}

fn deadline(common: &CommonArgs) -> tokio::time::Sleep {
    tokio::time::sleep(common.duration.map(Duration::from_secs_f64).unwrap_or(Duration::from_secs(u64::MAX / 4)))
}

/// `tracer drops`: until `--count`, `--duration` or a stop. Returns the
/// number of drops written.
pub async fn run_drops(job: DropsJob, common: CommonArgs, stop: Shutdown) -> Result<u64, Error> {
    let shutdown = stop.clone().wait();
    tokio::pin!(shutdown);
    let deadline = deadline(&common);
    tokio::pin!(deadline);
    let target = job.write.as_deref().map(capfile::Target::from_arg);
    let capture = match &target {
        Some(t) => {
            let stopped = async {
                tokio::select! {
                    _ = &mut shutdown => {}
                    _ = &mut deadline => {}
                }
            };
            match capfile::open(t, stopped).await.map_err(PacketsError::from)? {
                Some(f) => Some(f),
                None => return Ok(0),
            }
        }
        None => None,
    };
    let mut obs = ObsConfig { drops: mode::EVENTS, snaplen: job.snaplen, ..ObsConfig::off() };
    if let Some(rs) = &job.reasons {
        obs.select_reasons = 1;
        for (_, v) in rs {
            obs.reasons[(*v / 64) as usize] |= 1 << (v % 64);
        }
    }
    let mut s = Session::start(obs, &common, &job.select, &job.filter, &[tpmod::KFREE_SKB], &[tpmod::KFREE_SKB.name])?;
    let lines = if target == Some(capfile::Target::Stdout) { Stream::Stderr } else { Stream::Stdout };
    let mut pcap = match capture {
        Some(f) => Some(pcapng::PcapngOut::new(f, job.snaplen).map_err(PacketsError::from)?),
        None => None,
    };
    let mut sink = Sink::to(common.json, lines);
    let mut symbols = match Symbols::load() {
        Ok(s) => Some(s),
        Err(e) => {
            output::warn(&format!("functions are not named: {e}"));
            None
        }
    };
    if crate::stopped_during_start_up(&stop) {
        return Ok(0);
    }
    let reasons = std::mem::take(&mut s.loaded.drop_reasons);
    let host = s.names.table.read().ok().and_then(|t| t.host);
    let reason_note = if reasons.is_empty() { "this kernel gives no reasons".to_string() } else { format!("{} reasons named from BTF", reasons.len()) };
    eprintln!("tracer: ready: tracing drops (kfree_skb, {reason_note}) in {}, {}", scope_text(&job.select.scope), job.filter);

    let clock = Clock::new();
    let mut lost = LostTracker::default();
    let (mut written, mut unknown_ns, mut unspecified) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    let mut done = false;
    let mut stopping = false;
    while !done {
        if !stopping {
            tokio::select! {
                _ = &mut shutdown => stopping = true,
                _ = &mut deadline => stopping = true,
                r = s.reader.read(&mut batch) => { r?; }
                _ = tick.tick() => { s.reader.drain(&mut batch); s.sync_selection(); }
            }
        }
        if stopping {
            s.reader.drain_until_now(&mut batch);
            done = true;
        }
        let names = s.names.table.read().map_err(|_| Error::Kernel("the namespace table is poisoned".into()))?.clone();
        let mut symbolise = |a: u64| symbols.as_mut().and_then(|s| s.lookup_or_reload(a));
        for ev in batch.drain(..) {
            if ev.kind != EventKind::Drop {
                continue;
            }
            let Some(e) = DropEvent::from_raw(&ev, &clock, &names, &reasons, &mut symbolise, &packets::frame_headers) else {
                s.reader.malformed += 1;
                continue;
            };
            if !iface_ok(&job.select, &e) || common.count.is_some_and(|c| written >= c) {
                continue;
            }
            if e.netns_ino == 0 {
                unknown_ns += 1;
            }
            if !e.specified() {
                unspecified += 1;
            }
            match &mut pcap {
                Some(w) => w.write_annotated(&as_packet(&e, host), Some(&e.comment())).map_err(PacketsError::from)?,
                None => sink.defer(&e),
            }
            written += 1;
            if common.count.is_some_and(|c| written >= c) {
                stopping = true;
            }
        }
        sink.flush()?;
        if let Some(w) = &mut pcap {
            w.flush().map_err(PacketsError::from)?;
            if w.reader_gone && !stopping {
                output::warn("the reader of the capture closed it; stopping");
                stopping = true;
            }
        }
        for (src, n) in lost.update(s.reader.lost_totals()) {
            sink.lost(src, n, &clock::rfc3339(clock::now_wall_ns()))?;
        }
    }
    if let (Some(w), Some(t)) = (&pcap, &target) {
        output::warn(&format!("{} dropped packets written to {}", w.packets, t.describe()));
    }
    eprintln!(
        "tracer: {written} drops ({unknown_ns} with no namespace: neither a device nor a socket; {unspecified} without a specified reason), lost: {}",
        lost.summary()
    );
    if let Some(sy) = &symbols
        && sy.dropped > 0
    {
        eprintln!("tracer: {} kernel symbols not kept (more than {} or {} MiB)", sy.dropped, kallsyms::MAX_SYMBOLS, kallsyms::MAX_NAME_BYTES >> 20);
    }
    Ok(written)
}

fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::All => "every namespace".into(),
        Scope::Netns(i) => format!("namespace {i}"),
        Scope::Container(id) => format!("container {}", &id[..id.len().min(12)]),
    }
}

/// `tracer tcp`: until `--count`, `--duration` or a stop. Returns the
/// number of events written.
pub async fn run_tcp(job: TcpJob, common: CommonArgs, stop: Shutdown) -> Result<u64, Error> {
    let obs = ObsConfig { tcp: mode::EVENTS, rtt_interval_ns: job.rtt_interval.as_nanos() as u64, ..ObsConfig::off() };
    let tps: Vec<Tracepoint> = tpmod::TRACEPOINTS.iter().filter(|t| t.name != tpmod::KFREE_SKB.name).copied().collect();
    let needed = ["inet_sock_set_state", "tcp_retransmit_skb"];
    let mut s = Session::start(obs, &common, &job.select, &job.filter, &tps, &needed)?;
    let mut sink = Sink::new(common.json);
    if crate::stopped_during_start_up(&stop) {
        return Ok(0);
    }
    let rst = std::mem::take(&mut s.loaded.rst_reasons);
    eprintln!(
        "tracer: ready: tracing TCP ({} tracepoints: {}) in {}, {}",
        s.attached.len(),
        s.attached.join(", "),
        scope_text(&job.select.scope),
        job.filter
    );
    let shutdown = stop.wait();
    tokio::pin!(shutdown);
    let deadline = deadline(&common);
    tokio::pin!(deadline);
    let clock = Clock::new();
    let mut tracker = Tracker::new();
    let mut lost = LostTracker::default();
    let mut written = 0u64;
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    let mut done = false;
    let mut stopping = false;
    while !done {
        if !stopping {
            tokio::select! {
                _ = &mut shutdown => stopping = true,
                _ = &mut deadline => stopping = true,
                r = s.reader.read(&mut batch) => { r?; }
                _ = tick.tick() => { s.reader.drain(&mut batch); s.sync_selection(); }
            }
        }
        if stopping {
            s.reader.drain_until_now(&mut batch);
            done = true;
        }
        let names = s.names.table.read().map_err(|_| Error::Kernel("the namespace table is poisoned".into()))?.clone();
        for ev in batch.drain(..) {
            let Some(mut e) = TcpEvent::from_raw(&ev, &clock, &names, &rst) else {
                s.reader.malformed += 1;
                continue;
            };
            if !tracker.observe(&mut e) || common.count.is_some_and(|c| written >= c) {
                continue;
            }
            sink.defer(&e);
            written += 1;
            if common.count.is_some_and(|c| written >= c) {
                stopping = true;
            }
        }
        sink.flush()?;
        for (src, n) in lost.update(s.reader.lost_totals()) {
            sink.lost(src, n, &clock::rfc3339(clock::now_wall_ns()))?;
        }
    }
    eprintln!(
        "tracer: {written} TCP events, {} connections open at exit, {} forgotten (more than {}), lost: {}",
        tracker.len(),
        tracker.evicted,
        crate::tcp::tracker::MAX_CONNS,
        lost.summary()
    );
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_checked_against_the_kernels_names() {
        let names = EnumNames::from_members(
            vec![("SKB_DROP_REASON_NO_SOCKET".into(), 3), ("SKB_DROP_REASON_NETFILTER_DROP".into(), 12), ("SKB_DROP_REASON_HUGE".into(), 300)],
            &["SKB_DROP_REASON_"],
        );
        assert_eq!(parse_reasons("netfilter_drop, NO_SOCKET", &names).expect("ok"), [("NETFILTER_DROP".into(), 12), ("NO_SOCKET".into(), 3)]);
        assert_eq!(parse_reasons("SKB_DROP_REASON_NO_SOCKET", &names).expect("ok"), [("NO_SOCKET".into(), 3)]);
        let Err(Error::Usage(m)) = parse_reasons("NETFILTER_DORP", &names) else { panic!("accepted a typo") };
        assert!(m.contains("NETFILTER_DROP"), "{m}");
        assert!(matches!(parse_reasons(" , ", &names), Err(Error::Usage(_))));
        assert!(matches!(parse_reasons("HUGE", &names), Err(Error::Usage(_))));
        assert!(matches!(parse_reasons("NO_SOCKET", &EnumNames::default()), Err(Error::Usage(_))));
    }

    #[test]
    fn tcp_args_validate() {
        let a = TcpArgs { sel: Default::default(), all: false, rtt_interval: 1.0, filter: None, expr: vec!["port".into(), "80".into()] };
        let j = TcpJob::from_args(&a).expect("ok");
        assert_eq!((j.rtt_interval, j.filter.expression()), (Duration::from_secs(1), "port 80"));
        for bad in [f64::NAN, -1.0, 1e9] {
            assert!(matches!(TcpJob::from_args(&TcpArgs { rtt_interval: bad, ..a.clone() }), Err(Error::Usage(_))));
        }
    }
}
