//! tracer: an eBPF tracer for Linux network namespaces and containers.
//!
//! The layers, each in its own module, data flowing one way:
//! discovery (`ns`, `sys`, `btf`) -> attach (`ebpf`, `hooks`) -> read
//! (`reader`, `event`) -> decode (`netlink`, `packets`) -> output
//! (`output`). `top` reads counters the kernel keeps instead of events.
//! The binary is thin: [`run`] is what it and the tests call.

pub mod btf;
pub mod cbpf;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod contain;
pub mod doctor;
pub mod drops;
pub mod ebpf;
pub mod event;
pub mod fuzzing;
pub mod hooks;
pub mod netlink;
pub mod ns;
pub mod nsnames;
pub mod obs_run;
pub mod output;
pub mod packets;
pub mod reader;
pub mod shutdown;
pub mod sys;
pub mod tcp;
pub mod top;
pub mod tp;

use std::time::Duration;

use tracer_common::EventKind;

use crate::{
    cli::{Cli, Command, CommonArgs, NetlinkArgs},
    clock::Clock,
    output::Sink,
    reader::{LostTracker, Reader},
    shutdown::Shutdown,
};

/// Everything that can stop the tracer, each as one sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("tracer must run as root (it loads eBPF programs; missing {0})")]
    NotRoot(&'static str),
    #[error(transparent)]
    Load(#[from] ebpf::LoadError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error(transparent)]
    Reader(#[from] reader::ReaderError),
    #[error(transparent)]
    Select(#[from] ns::SelectError),
    #[error(transparent)]
    Ns(#[from] ns::NsError),
    #[error(transparent)]
    Packets(#[from] packets::PacketsError),
    #[error(transparent)]
    Top(#[from] top::TopError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("the kernel cannot run the tracer here: {0} (see `tracer doctor`)")]
    Kernel(String),
}

/// The validated form of the command line.
#[derive(Debug)]
pub enum Job {
    Doctor,
    Netlink(NetlinkJob),
    Ns(NsJob),
    Packets(packets::PacketsJob),
    Top(top::TopJob),
    Drops(obs_run::DropsJob),
    Tcp(obs_run::TcpJob),
    /// The default job: netlink audit and packets of every namespace, merged.
    All(NetlinkJob, packets::PacketsJob),
}

/// `tracer ns`: which namespaces to list (all when `None`).
#[derive(Debug, Clone, Default)]
pub struct NsJob {
    pub netns: Option<u64>,
}

/// The namespace the selectors name, if any: `--netns`, else `--container`,
/// else `--pid`. An unknown one is an error that lists close matches.
pub fn resolve_selectors(sel: &cli::Selectors) -> Result<Option<u64>, Error> {
    if let Some(s) = &sel.netns {
        return Ok(Some(ns::resolve_netns(s)?));
    }
    if let Some(c) = &sel.container {
        let (_, ino) = ns::Registry::new().resolve_container(c)?;
        return Ok(Some(ino));
    }
    if let Some(pid) = sel.pid {
        return Ok(Some(ns::resolve_pid(pid)?));
    }
    Ok(None)
}

#[derive(Debug, Clone, Default)]
pub struct NetlinkJob {
    pub netns: Option<u64>,
    pub pid: Option<u32>,
    pub protocols: Option<Vec<u16>>,
    pub types: Option<Vec<u16>>,
    pub include_get: bool,
}

impl NetlinkJob {
    pub fn from_args(a: &NetlinkArgs) -> Result<Self, Error> {
        let netns = resolve_selectors(&a.sel)?;
        let protocols = netlink::decode::parse_protocols(&a.protocol).map_err(Error::Usage)?;
        let types = a.types.as_deref().map(netlink::decode::parse_types).transpose().map_err(Error::Usage)?;
        Ok(Self { netns, pid: None, protocols, types, include_get: a.include_get })
    }

    pub(crate) fn wants(&self, e: &netlink::NetlinkEvent) -> bool {
        if !self.include_get && !e.is_malformed() && (e.is_get() || e.is_probe()) {
            return false;
        }
        if let Some(ns) = self.netns
            && u64::from(e.netns_ino) != ns {
                return false;
            }
        if let Some(ps) = &self.protocols
            && !ps.contains(&e.protocol) {
                return false;
            }
        if let Some(ts) = &self.types
            && (e.protocol != netlink::decode::NETLINK_ROUTE || !ts.contains(&e.header.msg_type)) {
                return false;
            }
        // Whatever its header claims to be, a malformed message is shown.
        if e.is_malformed() {
            return true;
        }
        // Answers and end-of-dump markers are not requests.
        if matches!(e.header.msg_type, netlink::decode::NLMSG_ERROR | netlink::decode::NLMSG_DONE) {
            return false;
        }
        // nfnetlink batch begin/end markers frame the changes but make none.
        self.include_get || !(e.protocol == netlink::decode::NETLINK_NETFILTER && matches!(e.header.msg_type, 0x10 | 0x11))
    }
}

/// Validates the command line into a [`Job`].
pub fn plan(cli: &Cli) -> Result<Job, Error> {
    if let Some(b) = cli.common.buffer_kib
        && (!(4..=1 << 20).contains(&b) || !b.is_power_of_two()) {
            return Err(Error::Usage(format!("--buffer-size must be a power of two between 4 and 1048576 KiB, not {b}")));
        }
    if let Some(d) = cli.common.duration
        && !(d.is_finite() && d > 0.0) {
            return Err(Error::Usage(format!("--duration must be a positive number of seconds, not {d}")));
        }
    match &cli.command {
        Some(Command::Doctor) => Ok(Job::Doctor),
        Some(Command::Netlink(a)) => Ok(Job::Netlink(NetlinkJob::from_args(a)?)),
        Some(Command::Packets(a)) => Ok(Job::Packets(packets::PacketsJob::from_args(a)?)),
        Some(Command::Ns(a)) => Ok(Job::Ns(NsJob { netns: resolve_selectors(&a.sel)? })),
        Some(Command::Top(a)) => Ok(Job::Top(top::TopJob::from_args(a)?)),
        Some(Command::Drops(a)) => Ok(Job::Drops(obs_run::DropsJob::from_args(a)?)),
        Some(Command::Tcp(a)) => Ok(Job::Tcp(obs_run::TcpJob::from_args(a)?)),
        None => Ok(Job::All(NetlinkJob::default(), packets::PacketsJob::default())),
    }
}

fn require_root() -> Result<(), Error> {
    let caps = sys::effective_caps();
    for (n, name) in [(39u32, "CAP_BPF"), (12, "CAP_NET_ADMIN")] {
        if !sys::has_cap(caps, n) && !sys::has_cap(caps, 21) {
            return Err(Error::NotRoot(name));
        }
    }
    Ok(())
}

/// Runs a job until it ends by itself (`--count`, `--duration`) or a stop
/// is asked for (`shutdown`, also during start-up: see
/// [`stopped_during_start_up`]). Returns the process exit code.
pub async fn run(cli: Cli, shutdown: Shutdown) -> Result<i32, Error> {
    let job = plan(&cli)?;
    match job {
        Job::Doctor => {
            require_root()?;
            let report = doctor::run();
            if cli.common.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                doctor::print_text(&report, &mut std::io::stdout())?;
            }
            Ok(if report.can_run { 0 } else { 1 })
        }
        Job::Netlink(nj) => {
            require_root()?;
            run_netlink(nj, cli.common, shutdown).await.map(|_| 0)
        }
        Job::Ns(j) => run_ns(&j, cli.common.json).map(|_| 0),
        Job::Packets(pj) => {
            require_root()?;
            packets::run(None, pj, cli.common, shutdown).await.map(|_| 0)
        }
        Job::Top(tj) => {
            require_root()?;
            top::run(tj, cli.common, shutdown).await.map(|_| 0)
        }
        Job::Drops(j) => {
            require_root()?;
            obs_run::run_drops(j, cli.common, shutdown).await.map(|_| 0)
        }
        Job::Tcp(j) => {
            require_root()?;
            obs_run::run_tcp(j, cli.common, shutdown).await.map(|_| 0)
        }
        Job::All(nj, pj) => {
            require_root()?;
            packets::run(Some(nj), pj, cli.common, shutdown).await.map(|_| 0)
        }
    }
}

/// `tracer ns`: discovery, printed. Without root the other namespaces'
/// interfaces cannot be read; each such row says so.
pub fn run_ns(job: &NsJob, json: bool) -> Result<usize, Error> {
    let list: Vec<ns::Netns> = ns::discover()?.into_iter().filter(|n| job.netns.is_none_or(|i| i == n.inode)).collect();
    let mut out = std::io::stdout().lock();
    if json {
        use std::io::Write as _;
        for n in &list {
            writeln!(out, "{}", output::json_safe(serde_json::to_string(n).unwrap_or_default()))?;
        }
    } else {
        ns::write_table(&list, &mut out)?;
    }
    Ok(list.len())
}

/// Whether a stop was asked for before the job became ready; if so, says
/// so. The caller then returns, and whatever it loaded or attached is
/// released on the way out: a clean stop, exit status 0.
pub fn stopped_during_start_up(stop: &Shutdown) -> bool {
    let stopped = stop.is_set();
    if stopped {
        eprintln!("tracer: stopped during start-up");
    }
    stopped
}

/// The netlink audit: attach, read, correlate, print.
pub async fn run_netlink(job: NetlinkJob, common: CommonArgs, stop: Shutdown) -> Result<u64, Error> {
    let mut opts = ebpf::LoadOptions { nl_netns: job.netns, ..Default::default() };
    if let Some(kib) = common.buffer_kib {
        opts.ring_bytes = kib * 1024;
    }
    let mut loaded = ebpf::load(&opts)?;
    if !loaded.missing_fields.is_empty() {
        return Err(Error::Kernel(format!("its BTF lacks {}", loaded.missing_fields.join(", "))));
    }
    hooks::attach_tracepoints(&mut loaded.ebpf, hooks::NETLINK_HOOKS)?;
    if stopped_during_start_up(&stop) {
        return Ok(0);
    }
    let mut reader = Reader::new(&mut loaded.ebpf)?;
    let clock = Clock::new();
    let mut corr = netlink::Correlator::new(clock);
    let mut sink = Sink::new(common.json);
    let mut lost = LostTracker::default();
    eprintln!("tracer: ready: netlink audit attached to {} tracepoints", hooks::NETLINK_HOOKS.len());

    let shutdown = stop.wait();
    tokio::pin!(shutdown);
    let deadline = tokio::time::sleep(common.duration.map(Duration::from_secs_f64).unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut batch = Vec::new();
    let mut done = false;
    while !done {
        let mut flush_all = false;
        tokio::select! {
            _ = &mut shutdown => { flush_all = true; done = true; }
            _ = &mut deadline => { flush_all = true; done = true; }
            r = reader.read(&mut batch) => { r?; }
            _ = tick.tick() => {}
        }
        if done {
            // Let the last answers arrive before giving up on them.
            tokio::time::sleep(Duration::from_millis(50)).await;
            reader.drain_until_now(&mut batch);
        }
        for ev in batch.drain(..) {
            if matches!(ev.kind, EventKind::NetlinkSend | EventKind::NetlinkAck) {
                corr.push(&ev);
            }
        }
        // Named and attributed to their container by the correlator.
        for e in corr.ready(Clock::now_mono_ns(), flush_all) {
            if !job.wants(&e) {
                continue;
            }
            sink.emit(&e)?;
            if common.count.is_some_and(|c| sink.written >= c) {
                done = true;
                break;
            }
        }
        for (src, n) in lost.update(reader.lost_totals()) {
            sink.lost(src, n, &clock::rfc3339(clock::now_wall_ns()))?;
        }
    }
    let summary = lost.summary();
    eprintln!("tracer: {}", corr.summary());
    eprintln!("tracer: {} events, lost: {summary}", sink.written);
    netlink::report_malformed(&corr);
    Ok(sink.written)
}
