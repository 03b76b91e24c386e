//! The application, the top layer: the only reader of the command line
//! ([`crate::cli`]), which `plan.rs` validates into one job; the jobs
//! started and run in the one run loop (`run.rs`): the ring-buffer jobs
//! (`events.rs`, with the default job's timeline in `merged.rs`), `top`
//! (`top.rs`), `serve` (`serve.rs`, top's counters and the netlink audit
//! as metrics), and the tracepoint jobs `drops` and `tcp` (`drops.rs`,
//! `tcp.rs`, started alike by `obs.rs`); `doctor` and `ns`, which print
//! once; and [`Error`], every
//! way the tracer can stop, each as one sentence. [`run()`] is what the
//! binary calls.

mod drops;
mod events;
mod merged;
mod obs;
mod plan;
mod run;
mod serve;
mod tcp;
mod top;
mod top_reasons;

use std::{borrow::Cow, io::Write as _};

use tokio::time::Instant;

use crate::{
    bpf::{hooks::HookError, load::LoadError, ring::ReaderError},
    cli::Cli,
    doctor,
    frames::{capfile::CaptureError, pcapng::PcapngError},
    ns::{self, NsError, SelectError},
    packets::PacketsError,
    serve::ServeError,
    sys::{self, text},
    tc::TcError,
    top::TopError,
};
pub use crate::sys::shutdown::Shutdown;
use plan::{Job, NsJob};
use run::Limits;

/// Everything that can stop the tracer, each as one sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("tracer must run as root (it loads eBPF programs; missing {0})")]
    NotRoot(&'static str),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Reader(#[from] ReaderError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Ns(#[from] NsError),
    #[error(transparent)]
    Tc(#[from] TcError),
    #[error(transparent)]
    Packets(#[from] PacketsError),
    #[error(transparent)]
    Top(#[from] TopError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Pcapng(#[from] PcapngError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("the kernel cannot run the tracer here: {0} (see `tracer doctor`)")]
    Kernel(String),
}

impl Error {
    /// The exit status it ends the process with: 2 for a bad command line.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Runs what the command line says until it ends by itself (`--count`,
/// `--duration`) or a stop is asked for (`shutdown`, also during start-up,
/// which then releases whatever was loaded and attached). Returns the
/// process exit code.
pub async fn run(cli: Cli, shutdown: Shutdown) -> Result<i32, Error> {
    let plan = plan::plan(&cli)?;
    // From now: time spent waiting for a FIFO's reader counts too.
    let limits = Limits { deadline: plan.duration.and_then(|d| Instant::now().checked_add(d)), count: plan.count };
    match plan.job {
        Job::Doctor => {
            require_root()?;
            let report = doctor::run();
            if plan.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                doctor::print_text(&report, &mut std::io::stdout())?;
            }
            Ok(if report.can_run { 0 } else { 1 })
        }
        Job::Ns(j) => list_namespaces(&j, plan.json).map(|_| 0),
        Job::Netlink(nj) => {
            require_root()?;
            events::run(Some(nj), None, plan.json, plan.ring_bytes, limits, shutdown).await.map(|_| 0)
        }
        Job::Packets(pj) if pj.read.is_some() => read_back(&pj, plan.json, limits.count).await.map(|_| 0),
        Job::Packets(pj) => {
            require_root()?;
            events::run(None, Some(pj), plan.json, plan.ring_bytes, limits, shutdown).await.map(|_| 0)
        }
        Job::All(nj, pj) => {
            require_root()?;
            events::run(Some(nj), Some(pj), plan.json, plan.ring_bytes, limits, shutdown).await.map(|_| 0)
        }
        Job::Top(tj) if tj.by == crate::top::By::Reason => {
            require_root()?;
            top_reasons::run(tj, plan.json, limits, shutdown).await.map(|_| 0)
        }
        Job::Top(tj) => {
            require_root()?;
            top::run(tj, plan.json, limits, shutdown).await.map(|_| 0)
        }
        Job::Drops(j) => {
            require_root()?;
            drops::run(j, plan.json, plan.ring_bytes, limits, shutdown).await.map(|_| 0)
        }
        Job::Tcp(j) => {
            require_root()?;
            tcp::run(j, plan.json, plan.ring_bytes, limits, shutdown).await.map(|_| 0)
        }
        Job::Serve(sj) => {
            require_root()?;
            serve::run(sj, plan.ring_bytes, limits, shutdown).await.map(|_| 0)
        }
    }
}

/// A sentence for stderr that may quote names from outside (containers,
/// namespaces, paths, arguments): escaped and cut, like all text output.
pub fn sentence(s: &str) -> Cow<'_, str> {
    text::field(s, text::SENTENCE_MAX)
}

/// `tracer packets -r FILE`: no kernel involved, no privilege needed.
async fn read_back(job: &crate::packets::PacketsJob, json: bool, count: Option<u64>) -> Result<(), Error> {
    use crate::packets::{PacketsError, capfile, pcapng::PcapngOut, readback};
    let Some(path) = &job.read else { return Ok(()) };
    let mut out = match &job.write {
        Some(w) => {
            let target = capfile::Target::from_arg(w);
            let Some(file) = capfile::open(&target, std::future::pending::<()>()).await.map_err(PacketsError::from)? else { return Ok(()) };
            let w = PcapngOut::new(file, job.snaplen).map_err(PacketsError::from)?;
            readback::ReadOut::Pcapng(Box::new(w))
        }
        None => readback::ReadOut::Lines(crate::output::Sink::new(json)),
    };
    readback::read(path, &job.filter, &mut out, count).map_err(PacketsError::from)?;
    Ok(())
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

/// `tracer ns`: discovery, printed. Without root the other namespaces'
/// interfaces cannot be read; each such row says so.
fn list_namespaces(job: &NsJob, json: bool) -> Result<usize, Error> {
    let list: Vec<ns::Netns> = ns::discover()?.into_iter().filter(|n| job.netns.is_none_or(|i| i == n.inode)).collect();
    let mut out = std::io::stdout().lock();
    if json {
        for n in &list {
            writeln!(out, "{}", text::json_safe(serde_json::to_string(n).unwrap_or_default()))?;
        }
    } else {
        ns::table::write_table(&list, &mut out)?;
    }
    Ok(list.len())
}
