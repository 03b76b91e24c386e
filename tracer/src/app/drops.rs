//! `tracer drops` running: records of the `skb:kfree_skb` program decoded
//! into drop events ([`crate::drops`]), named, symbolised, and written as
//! text or JSON lines, or as pcapng with the reason and the function in
//! each packet's comment. The packet filter runs in the kernel
//! ([`crate::tc::cbpf::drops`]); the same code is applied here to what the
//! kernel sent unfiltered (all of it where the kernel refused the filter,
//! which the ready line says).

use tracer_common::{
    EventKind,
    tp::{ObsConfig, mode},
};

use super::{
    Error,
    obs::{TpSession, scope_text, tp_ring_job},
    run::{self, Limits, Running, Step},
};
use crate::{
    bpf::{event::RawEvent, tp},
    drops::{
        DropsJob,
        event::DropEvent,
        kallsyms::{self, Symbols},
    },
    frames::{capfile, pcapng::PcapngOut},
    tc::cbpf::{
        Filter, LinkType,
        drops::{self as kfilter, KernelDropFilter, Placement},
    },
    ns::NetnsId,
    output::{Sink, Stream},
    sys::{
        clock::Clock,
        shutdown::Shutdown,
        text,
    },
};

struct Drops {
    job: DropsJob,
    s: TpSession,
    clock: Clock,
    reasons: tp::EnumNames,
    symbols: Option<Symbols>,
    sink: Sink,
    pcap: Option<PcapngOut>,
    target: Option<capfile::Target>,
    batch: Vec<RawEvent>,
    ready: String,
    /// Drops written with no namespace (neither a device nor a socket).
    unknown_ns: u64,
    /// Drops written whose reason was `NOT_SPECIFIED` or none.
    unspecified: u64,
    /// libpcap's code for the filter on Ethernet frames (`None`: every drop).
    filter: Option<Filter>,
    /// The same code in the kernel, kept while the job runs.
    _kernel_filter: Option<KernelDropFilter>,
    placement: Option<Placement>,
    /// Drop records the kernel sent (with the filter in the kernel, only
    /// those it kept, and any it could not filter).
    received: u64,
}

/// `tracer drops` until `limits` or `stop`.
pub async fn run(job: DropsJob, json: bool, ring_bytes: Option<u32>, limits: Limits, stop: Shutdown) -> Result<(), Error> {
    let filter = job.filter.file_filter(LinkType::Ethernet).map_err(|e| Error::Usage(format!("invalid filter \"{}\": {e}", job.filter.expression())))?;
    // The capture target first: a refused path fails before anything is
    // loaded, and a FIFO's reader is waited for (stoppable).
    let target = job.write.as_deref().map(capfile::Target::from_arg);
    let capture = match &target {
        Some(t) => {
            let (deadline, asked) = (limits.deadline(), stop.clone().wait());
            let stopped = async {
                tokio::select! {
                    _ = deadline => {}
                    _ = asked => {}
                }
            };
            match capfile::open(t, stopped).await? {
                Some(f) => Some(f),
                None => return Ok(()),
            }
        }
        None => None,
    };
    // `TRACER_DROP_FILTER=userspace`: the filter as before it ran in the
    // kernel (every drop sent), to compare the two.
    let forced = filter.is_some() && std::env::var("TRACER_DROP_FILTER").is_ok_and(|v| v == "userspace");
    let in_kernel = filter.is_some() && !forced;
    let mut obs = ObsConfig { drops: mode::EVENTS, snaplen: job.snaplen, drop_filter: u32::from(in_kernel), ..ObsConfig::off() };
    if let Some(rs) = &job.reasons {
        obs.select_reasons = 1;
        for (_, v) in rs {
            obs.reasons[(*v / 64) as usize] |= 1 << (v % 64);
        }
    }
    // The filter goes into its slot before the drop program is attached;
    // when the kernel refuses it, the drop program finds the slot empty
    // and sends every record, and the filter below applies.
    let install = |ebpf: &mut aya::Ebpf| match &filter {
        None => (None, None),
        Some(_) if forced => (None, Some(Placement::Userspace("TRACER_DROP_FILTER=userspace".into()))),
        Some(f) => match kfilter::install(ebpf, f) {
            Ok(k) => {
                let p = Placement::Kernel { insns: k.insns };
                (Some(k), Some(p))
            }
            Err(e) => (None, Some(Placement::Userspace(text::field(&kfilter::one_line(&e), text::SENTENCE_MAX).into_owned()))),
        },
    };
    let (mut s, (kernel_filter, placement)) =
        TpSession::start_prepared(obs, ring_bytes, &job.select, &[tp::KFREE_SKB], &[tp::KFREE_SKB.name], install)?;
    // With `-w -` stdout carries pcapng: every line goes to stderr.
    let lines = if target == Some(capfile::Target::Stdout) { Stream::Stderr } else { Stream::Stdout };
    let pcap = match capture {
        Some(f) => Some(PcapngOut::new(f, job.snaplen)?),
        None => None,
    };
    let symbols = match Symbols::load() {
        Ok(s) => Some(s),
        Err(e) => {
            text::warn(&format!("functions are not named: {e}"));
            None
        }
    };
    if stop.stopped_during_start_up() {
        return Ok(());
    }
    let reasons = std::mem::take(&mut s.loaded.drop_reasons);
    let reason_note = if reasons.is_empty() { "this kernel gives no reasons".to_string() } else { format!("{} reasons named from BTF", reasons.len()) };
    let filter_note = placement.as_ref().map(|p| format!(" (filter {})", p.describe())).unwrap_or_default();
    let ready = format!("tracing drops (kfree_skb, {reason_note}) in {}, {}{filter_note}", scope_text(&job.select.scope), job.filter);
    let mut d = Drops {
        job,
        s,
        clock: Clock::new(),
        reasons,
        symbols,
        sink: Sink::to(json, lines),
        pcap,
        target,
        batch: Vec::new(),
        ready,
        unknown_ns: 0,
        unspecified: 0,
        filter,
        _kernel_filter: kernel_filter,
        placement,
        received: 0,
    };
    run::run(&mut d, limits, stop).await?;
    Ok(())
}

impl Running for Drops {
    const UNIT: &'static str = "drops";

    tp_ring_job!();






    fn step(&mut self, last: bool, budget: Option<u64>) -> Result<Step, Error> {
        // A copy of the names for this batch (none without records): the
        // refresher's thread goes on updating them meanwhile.
        let names = if self.batch.is_empty() { Default::default() } else { self.s.names()? };
        let symbols = &mut self.symbols;
        let mut symbolise = |a: u64| symbols.as_mut().and_then(|s| s.lookup_or_reload(a));
        let unknown = NetnsId::default();
        let mut step = Step::default();
        for ev in self.batch.drain(..) {
            if ev.kind != EventKind::Drop {
                continue;
            }
            let Some(e) = DropEvent::from_raw(&ev, &self.clock, &names, &self.reasons, &mut symbolise) else {
                self.s.reader.malformed += 1;
                continue;
            };
            self.received += 1;
            if !self.job.wants_iface(e.ifname.as_deref()) || !e.passes(self.filter.as_ref()) || budget.is_some_and(|b| step.written >= b) {
                continue;
            }
            self.unknown_ns += u64::from(e.netns.is_none());
            self.unspecified += u64::from(!e.specified());
            match &mut self.pcap {
                Some(w) => w.write(&e.frame(&unknown, &e.comment()))?,
                None => self.sink.defer(&e),
            }
            step.written += 1;
        }
        self.sink.flush()?;
        if let Some(w) = &mut self.pcap {
            // After every drain: a reader on a pipe sees packets live.
            w.flush()?;
            if w.reader_gone && !last {
                let what = self.target.as_ref().map(capfile::Target::describe).unwrap_or_default();
                text::warn(&format!("the reader of {what} closed it; stopping"));
                step.done = true;
            }
        }
        Ok(step)
    }



    fn exit_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{} drops with no namespace (neither a device nor a socket), {} without a specified reason",
            self.unknown_ns, self.unspecified
        )];
        if let Some(p) = &self.placement {
            lines.push(format!("{} drop records from the kernel; the filter ran {}", self.received, p.describe()));
        }
        if let (Some(w), Some(t)) = (&self.pcap, &self.target) {
            lines.push(text::field(&format!("{} dropped packets written to {}", w.packets, t.describe()), text::SENTENCE_MAX).into_owned());
        }
        if let Some(sy) = &self.symbols
            && sy.dropped > 0
        {
            lines.push(format!("{} kernel symbols not kept (more than {} or {} MiB)", sy.dropped, kallsyms::MAX_SYMBOLS, kallsyms::MAX_NAME_BYTES >> 20));
        }
        lines
    }
}
