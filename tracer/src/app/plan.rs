//! The command line validated into one job before anything touches the
//! kernel: numbers in range, at most one selector resolved into a scope,
//! filters compiled. Every refusal is one sentence (a usage error, exit 2).

use std::time::Duration;

use tracer_common::{drops::DROP_DATA_MAX, packet::PKT_DATA_MAX};

use super::Error;
use crate::{
    bpf::{btf::KernelBtf, load::LoadError, tp::EnumNames},
    cli::{self, Cli, Command, DropsArgs, NetlinkArgs, PacketArgs, ServeArgs, TcArgs, TcpArgs, TopArgs},
    drops::{self, DropsJob},
    netlink::{NetlinkJob, decode},
    ns::{Scope, Selector},
    packets::{
        DEFAULT_SNAPLEN, PacketsJob,
        rotate::{self, Rotation},
    },
    procs::ProcSelect,
    serve::{self, ServeJob},
    tc::{
        cbpf::PacketFilter,
        follow::Selection,
    },
    tcp::{MAX_RTT_INTERVAL, TcpJob},
    top::{self, MIN_INTERVAL, TopJob},
};

/// What to run.
#[derive(Debug)]
pub enum Job {
    Doctor,
    Ns(NsJob),
    Netlink(NetlinkJob),
    Packets(PacketsJob),
    Top(TopJob),
    Drops(DropsJob),
    Tcp(TcpJob),
    Serve(ServeJob),
    /// The default job: netlink audit and packets of every namespace, merged.
    All(NetlinkJob, PacketsJob),
}

/// `tracer ns`: which namespaces to list (all when `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsJob {
    pub netns: Option<u64>,
}

/// A job and how it runs.
#[derive(Debug)]
pub struct Plan {
    pub job: Job,
    pub json: bool,
    /// `--duration`
    pub duration: Option<Duration>,
    /// `--count`
    pub count: Option<u64>,
    /// `--buffer-size`, in bytes.
    pub ring_bytes: Option<u32>,
}

/// Validates the command line into a [`Plan`].
pub fn plan(cli: &Cli) -> Result<Plan, Error> {
    let c = &cli.common;
    if let Some(b) = c.buffer_kib
        && (!(4..=1 << 20).contains(&b) || !b.is_power_of_two())
    {
        return Err(Error::Usage(format!("--buffer-size must be a power of two between 4 and 1048576 KiB, not {b}")));
    }
    let duration = match c.duration {
        Some(d) if !(d.is_finite() && d > 0.0) => {
            return Err(Error::Usage(format!("--duration must be a positive number of seconds, not {d}")));
        }
        Some(d) => Some(Duration::try_from_secs_f64(d).unwrap_or(Duration::MAX)),
        None => None,
    };
    let job = match &cli.command {
        Some(Command::Doctor) => Job::Doctor,
        Some(Command::Netlink(a)) => Job::Netlink(netlink_job(a)?),
        Some(Command::Packets(a)) => Job::Packets(packets_job(a)?),
        Some(Command::Ns(a)) => Job::Ns(NsJob { netns: scope(&a.sel)?.netns() }),
        Some(Command::Top(a)) => Job::Top(top_job(a)?),
        Some(Command::Drops(a)) => Job::Drops(drops_job(a)?),
        Some(Command::Tcp(a)) => Job::Tcp(tcp_job(a)?),
        Some(Command::Serve(a)) => {
            if c.count.is_some() {
                return Err(Error::Usage("--count does not apply to serve (it has no events to count); use --duration".into()));
            }
            Job::Serve(serve_job(a)?)
        }
        None => Job::All(NetlinkJob::default(), PacketsJob::default()),
    };
    Ok(Plan { job, json: c.json, duration, count: c.count, ring_bytes: c.buffer_kib.map(|k| k * 1024) })
}

/// The selector given, if any. On the command line clap refuses two (they
/// are one group); a `Cli` built otherwise gets the same rule.
fn selector(sel: &cli::Selectors) -> Result<Option<Selector>, Error> {
    let given: Vec<Selector> = [
        sel.netns.clone().map(Selector::Netns),
        sel.pid.map(Selector::Pid),
        sel.container.clone().map(Selector::Container),
    ]
    .into_iter()
    .flatten()
    .collect();
    match <[Selector; 1]>::try_from(given) {
        Ok([one]) => Ok(Some(one)),
        Err(v) if v.is_empty() => Ok(None),
        Err(_) => Err(Error::Usage("give at most one of --netns, --pid, --container".into())),
    }
}

/// The scope the selectors give, resolved once.
fn scope(sel: &cli::Selectors) -> Result<Scope, Error> {
    Ok(Scope::resolve(selector(sel)?.as_ref())?)
}

fn netlink_job(a: &NetlinkArgs) -> Result<NetlinkJob, Error> {
    Ok(NetlinkJob {
        netns: scope(&a.sel)?.netns(),
        protocols: decode::parse_protocols(&a.protocol).map_err(Error::Usage)?,
        types: a.types.as_deref().map(decode::parse_types).transpose().map_err(Error::Usage)?,
        include_get: a.include_get,
    })
}

/// Namespaces and interfaces of a TC job.
fn selection(a: &TcArgs) -> Result<Selection, Error> {
    selection_of(&a.sel, a.all, a.iface.as_deref())
}

fn selection_of(sel: &cli::Selectors, all: bool, iface: Option<&str>) -> Result<Selection, Error> {
    if all && selector(sel)?.is_some() {
        return Err(Error::Usage("give one of --all, --netns, --pid, --container".into()));
    }
    let iface_globs = match iface {
        Some(g) => {
            let globs: Vec<String> = g.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            if globs.is_empty() {
                return Err(Error::Usage("--iface needs a name or a glob such as 'veth*'".into()));
            }
            Some(globs)
        }
        None => None,
    };
    Ok(Selection { scope: scope(sel)?, iface_globs })
}

/// The filter of a TC job, as `--filter EXPR` or as trailing words (not
/// both); refused expressions are usage errors.
fn filter(a: &TcArgs) -> Result<PacketFilter, Error> {
    filter_of(a.filter.as_ref(), &a.expr)
}

fn filter_of(flag: Option<&String>, words: &[String]) -> Result<PacketFilter, Error> {
    let expr = match (flag, words.is_empty()) {
        (Some(_), false) => {
            return Err(Error::Usage("give the filter either with --filter or as trailing words, not both".into()));
        }
        (Some(f), true) => f.clone(),
        (None, _) => words.join(" "),
    };
    PacketFilter::parse(&expr).map_err(|e| Error::Usage(format!("invalid filter \"{}\": {e}", expr.trim())))
}

fn packets_job(a: &PacketArgs) -> Result<PacketsJob, Error> {
    let max = PKT_DATA_MAX as u32;
    let snaplen = match a.snaplen {
        // As tcpdump: 0 means as much as possible.
        Some(0) => max,
        Some(n) if n > max => {
            eprintln!("tracer: --snaplen {n} lowered to {max}, the most the kernel side copies");
            max
        }
        Some(n) => n,
        // A file is for later reading: whole frames, as tcpdump -w.
        None if a.write.is_some() => max,
        None => DEFAULT_SNAPLEN,
    };
    let procs = (!a.no_process).then(|| ProcSelect { pid: a.process, comm: a.comm.clone() });
    if let Some(p) = &procs {
        p.validate().map_err(Error::Usage)?;
    }
    let mut select = selection(&a.tc)?;
    // `--process PID` alone: that process's namespace, where its packets
    // are sent and delivered.
    if let Some(pid) = a.process
        && !a.tc.all
        && selector(&a.tc.sel)?.is_none()
    {
        select.scope = Scope::resolve(Some(&Selector::Pid(pid)))?;
    }
    let rotation = rotation(a)?;
    Ok(PacketsJob { select, snaplen, write: a.write.clone(), hops: a.hops, read: a.read.clone(), rotation, filter: filter(&a.tc)?, procs })
}

/// `-C`, `-G`, `-W` as tcpdump takes them.
fn rotation(a: &PacketArgs) -> Result<Rotation, Error> {
    let size = a.file_size.as_deref().map(rotate::parse_size).transpose().map_err(Error::Usage)?;
    if a.rotate_seconds == Some(0) {
        return Err(Error::Usage("-G needs a number of seconds above 0".into()));
    }
    let every = a.rotate_seconds.map(Duration::from_secs);
    if (size.is_some() || every.is_some() || a.file_count.is_some()) && a.write.is_none() {
        return Err(Error::Usage("-C, -G and -W rotate the files of -w FILE: give -w".into()));
    }
    if a.file_count.is_some() && size.is_none() && every.is_none() {
        return Err(Error::Usage("-W needs -C or -G".into()));
    }
    if a.file_count == Some(0) {
        return Err(Error::Usage("-W needs a number of files above 0".into()));
    }
    if (size.is_some() || every.is_some()) && a.write.as_deref().is_some_and(|w| w.as_os_str() == "-") {
        return Err(Error::Usage("-C and -G need a file name for -w, not standard output".into()));
    }
    Ok(Rotation { size, every, files: a.file_count })
}

fn top_job(a: &TopArgs) -> Result<TopJob, Error> {
    if !(a.interval.is_finite() && a.interval >= MIN_INTERVAL) {
        return Err(Error::Usage(format!("--interval must be at least {MIN_INTERVAL} seconds, not {}", a.interval)));
    }
    if a.limit == Some(0) {
        return Err(Error::Usage("--limit must be at least 1".into()));
    }
    let by = match a.by {
        cli::By::Container => top::By::Container,
        cli::By::Iface => top::By::Iface,
        cli::By::Flow => top::By::Flow,
        cli::By::Process => top::By::Process,
        cli::By::Reason => top::By::Reason,
    };
    let select = selection(&a.tc)?;
    if by == top::By::Reason && (a.tc.filter.is_some() || !a.tc.expr.is_empty()) {
        return Err(Error::Usage("--by reason counts every drop in the kernel: a packet filter does not apply to it".into()));
    }
    Ok(TopJob { select, filter: filter(&a.tc)?, interval: Duration::from_secs_f64(a.interval), by, limit: a.limit })
}

fn drops_job(a: &DropsArgs) -> Result<DropsJob, Error> {
    let max = DROP_DATA_MAX as u32;
    let snaplen = match a.snaplen {
        Some(0) | None => max,
        Some(n) if n > max => {
            eprintln!("tracer: --snaplen {n} lowered to {max}, the most the kernel side copies of a dropped packet");
            max
        }
        Some(n) => n,
    };
    let select = selection(&a.tc)?;
    let filter = filter(&a.tc)?;
    let reasons = match &a.reason {
        None => None,
        Some(list) => {
            // The names are the running kernel's: read from its BTF.
            let btf = KernelBtf::open().map_err(LoadError::from)?;
            let names = EnumNames::from_btf(&btf, "skb_drop_reason", drops::REASON_PREFIXES);
            Some(drops::parse_reasons(list, &names).map_err(Error::Usage)?)
        }
    };
    Ok(DropsJob { select, reasons, snaplen, write: a.write.clone(), filter })
}

fn tcp_job(a: &TcpArgs) -> Result<TcpJob, Error> {
    if !(a.rtt_interval.is_finite() && (0.0..=MAX_RTT_INTERVAL).contains(&a.rtt_interval)) {
        return Err(Error::Usage(format!("--rtt-interval must be between 0 and {MAX_RTT_INTERVAL} seconds, not {}", a.rtt_interval)));
    }
    Ok(TcpJob {
        select: selection_of(&a.sel, a.all, None)?,
        rtt_interval: Duration::from_secs_f64(a.rtt_interval),
        filter: filter_of(a.filter.as_ref(), &a.expr)?,
    })
}

fn serve_job(a: &ServeArgs) -> Result<ServeJob, Error> {
    let listen = a.listen.as_deref().unwrap_or(serve::DEFAULT_LISTEN);
    let listen = listen.parse().map_err(|_| {
        Error::Usage(format!("--listen needs an address and a port, such as 127.0.0.1:9464 or [::1]:9464, not {}", super::sentence(listen)))
    })?;
    let grace = match a.grace {
        None => serve::DEFAULT_GRACE,
        Some(g) if !(g.is_finite() && g >= 0.0) => return Err(Error::Usage(format!("--grace must be a number of seconds, not {g}"))),
        Some(g) => Duration::try_from_secs_f64(g).unwrap_or(Duration::MAX),
    };
    Ok(ServeJob { listen, select: selection(&a.tc)?, filter: filter(&a.tc)?, grace })
}

#[cfg(test)]
mod tests {
    use clap::{Parser as _, error::ErrorKind};

    use super::*;

    fn plan_of(args: &[&str]) -> Result<Plan, Error> {
        let cli = Cli::try_parse_from(std::iter::once("tracer").chain(args.iter().copied())).map_err(|e| Error::Usage(e.to_string()))?;
        plan(&cli)
    }

    fn usage(args: &[&str]) -> String {
        match plan_of(args) {
            Err(Error::Usage(m)) => m,
            other => panic!("{args:?}: not a usage error: {other:?}"),
        }
    }

    fn own_netns() -> u64 {
        crate::sys::ns_inode(std::path::Path::new("/proc/self/ns/net")).expect("own netns")
    }

    #[test]
    fn two_selectors_are_refused_by_every_command_alike() {
        for cmd in ["netlink", "packets", "top", "ns"] {
            let args = [cmd, "--netns", "1", "--pid", "1"];
            let e = Cli::try_parse_from(std::iter::once("tracer").chain(args)).expect_err(cmd);
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{cmd}: {e}");
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            assert!(first.contains("--netns") && first.contains("--pid"), "{cmd}: one sentence naming both: {first}");
        }
        for cmd in ["packets", "top"] {
            let e = Cli::try_parse_from(["tracer", cmd, "--all", "--container", "web"]).expect_err(cmd);
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{cmd}: {e}");
        }
        // The same rule for a command line built in code.
        let mut cli = Cli::try_parse_from(["tracer", "netlink"]).expect("parses");
        if let Some(Command::Netlink(a)) = &mut cli.command {
            a.sel.netns = Some("1".into());
            a.sel.pid = Some(1);
        }
        assert!(matches!(plan(&cli), Err(Error::Usage(m)) if m == "give at most one of --netns, --pid, --container"));
    }

    #[test]
    fn selectors_resolve_once_into_a_scope() {
        let own = own_netns();
        let pid = std::process::id().to_string();
        match plan_of(&["netlink", "--pid", &pid]).expect("plan").job {
            Job::Netlink(j) => assert_eq!(j.netns, Some(own)),
            j => panic!("{j:?}"),
        }
        match plan_of(&["packets", "--netns", "/proc/self/ns/net"]).expect("plan").job {
            Job::Packets(j) => assert_eq!(j.select.scope, Scope::Netns(own)),
            j => panic!("{j:?}"),
        }
        match plan_of(&["top", "--netns", "42"]).expect("plan").job {
            Job::Top(j) => assert_eq!(j.select.scope, Scope::Netns(42)),
            j => panic!("{j:?}"),
        }
        match plan_of(&["ns", "--netns", "42"]).expect("plan").job {
            Job::Ns(j) => assert_eq!(j, NsJob { netns: Some(42) }),
            j => panic!("{j:?}"),
        }
        // An unknown one fails (exit 1: the command line is fine, the system has no such thing).
        let unknown = |args: &[&str]| match plan_of(args) {
            Err(e @ Error::Select(_)) => (e.exit_code(), e.to_string()),
            other => panic!("{args:?}: {other:?}"),
        };
        assert!(matches!(unknown(&["netlink", "--pid", &u32::MAX.to_string()]), (1, m) if m.contains("no process")));
        assert!(matches!(unknown(&["packets", "--netns", "surely-not-a-namespace"]), (1, m) if m.contains("no network namespace")));
        // No selector: everything, the default job included.
        match plan_of(&[]).expect("plan").job {
            Job::All(n, p) => assert_eq!((n.netns, p.select.scope, p.snaplen), (None, Scope::All, DEFAULT_SNAPLEN)),
            j => panic!("{j:?}"),
        }
    }

    #[test]
    fn process_flags_select_sockets_and_the_process_namespace() {
        let pid = std::process::id().to_string();
        // `--process` alone: its namespace, and its sockets in the kernel.
        match plan_of(&["packets", "--process", &pid]).expect("plan").job {
            Job::Packets(j) => {
                assert_eq!(j.select.scope, Scope::Netns(own_netns()));
                assert_eq!(j.procs, Some(ProcSelect { pid: Some(std::process::id()), comm: None }));
                assert!(j.decodes(), "attribution matches sockets by address and port");
            }
            j => panic!("{j:?}"),
        }
        // With `--all` every namespace; `--comm` keeps the scope.
        match plan_of(&["packets", "--all", "--process", &pid]).expect("plan").job {
            Job::Packets(j) => assert_eq!(j.select.scope, Scope::All),
            j => panic!("{j:?}"),
        }
        match plan_of(&["packets", "--comm", "curl"]).expect("plan").job {
            Job::Packets(j) => {
                assert_eq!(j.select.scope, Scope::All);
                assert_eq!(j.procs.map(|p| p.comm), Some(Some("curl".into())));
            }
            j => panic!("{j:?}"),
        }
        // On by default, the default job included; off with --no-process.
        match plan_of(&[]).expect("plan").job {
            Job::All(_, p) => assert_eq!(p.procs, Some(ProcSelect::default())),
            j => panic!("{j:?}"),
        }
        match plan_of(&["packets", "--no-process", "-w", "x.pcapng"]).expect("plan").job {
            Job::Packets(j) => assert!(j.procs.is_none() && !j.decodes()),
            j => panic!("{j:?}"),
        }
        match plan_of(&["top", "--by", "process"]).expect("plan").job {
            Job::Top(j) => assert_eq!(j.by, top::By::Process),
            j => panic!("{j:?}"),
        }
        assert!(usage(&["packets", "--comm", &"x".repeat(16)]).starts_with("--comm takes a process name of 1 to 15 bytes"));
        assert_eq!(usage(&["packets", "--process", "0"]), "--process takes a process id, not 0");
        assert!(Cli::try_parse_from(["tracer", "packets", "--no-process", "--comm", "x"]).is_err(), "--no-process conflicts");
        // A file has no sockets to select by: refused, not ignored.
        for sel in [["--process", "1"], ["--comm", "x"]] {
            assert!(Cli::try_parse_from(["tracer", "packets", "-r", "f.pcapng", sel[0], sel[1]]).is_err(), "-r with {sel:?}");
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        assert!(usage(&["--buffer-size", "3"]).contains("power of two"));
        assert!(usage(&["--buffer-size", "5000"]).contains("power of two"));
        assert!(usage(&["--buffer-size", "2097152"]).contains("power of two"));
        assert_eq!(plan_of(&["--buffer-size", "64"]).expect("plan").ring_bytes, Some(64 * 1024));
        for d in ["0", "-1", "nan", "inf"] {
            assert!(usage(&[&format!("--duration={d}")]).contains("--duration must be a positive"), "{d}");
        }
        // A duration too long for a Duration is no panic.
        assert_eq!(plan_of(&["--duration", "1e300"]).expect("plan").duration, Some(Duration::MAX));
        for i in ["0", "0.01", "nan"] {
            assert!(usage(&["top", "--interval", i]).contains("--interval must be at least"), "{i}");
        }
        assert!(usage(&["top", "--limit", "0"]).contains("--limit"));
        assert!(usage(&["top", "-c", "x"]).contains("invalid value"), "clap's own");
    }

    #[test]
    fn snaplen_and_filters() {
        let max = PKT_DATA_MAX as u32;
        let snap = |args: &[&str]| match plan_of(args).expect("plan").job {
            Job::Packets(j) => j.snaplen,
            j => panic!("{j:?}"),
        };
        assert_eq!(snap(&["packets"]), DEFAULT_SNAPLEN);
        assert_eq!(snap(&["packets", "--snaplen", "0"]), max);
        assert_eq!(snap(&["packets", "--snaplen", "999999"]), max);
        assert_eq!(snap(&["packets", "--snaplen", "64"]), 64);
        assert_eq!(snap(&["packets", "-w", "/tmp/x.pcapng"]), max, "a file gets whole frames");
        match plan_of(&["top", "--by", "flow", "udp", "port", "53"]).expect("plan").job {
            Job::Top(j) => assert_eq!((j.by, j.filter.expression()), (top::By::Flow, "udp port 53")),
            j => panic!("{j:?}"),
        }
        assert!(usage(&["packets", "--filter", "tcp", "udp"]).contains("not both"));
        assert!(usage(&["top", "tcp[13"]).starts_with("invalid filter \"tcp[13\": "));
        // The whole language, not a subset.
        match plan_of(&["top", "tcp[tcpflags]", "&", "tcp-syn", "!=", "0"]).expect("libpcap accepts it").job {
            Job::Top(j) => assert_eq!(j.filter.expression(), "tcp[tcpflags] & tcp-syn != 0"),
            j => panic!("{j:?}"),
        }
        assert!(usage(&["packets", "-i", " , "]).contains("--iface needs"));
        match plan_of(&["packets", "-i", "veth*, br0"]).expect("plan").job {
            Job::Packets(j) => assert_eq!(j.select.iface_globs, Some(vec!["veth*".to_string(), "br0".to_string()])),
            j => panic!("{j:?}"),
        }
        assert!(usage(&["netlink", "--protocol", "bogus"]).contains("unknown netlink protocol"));
        assert!(usage(&["netlink", "--type", "RTM_BOGUS"]).contains("unknown message type"));
    }

    #[test]
    fn drops_and_tcp_flags() {
        match plan_of(&["drops", "-i", "veth*", "udp", "port", "53"]).expect("plan").job {
            Job::Drops(j) => {
                assert_eq!((j.filter.expression(), j.snaplen, j.reasons), ("udp port 53", DROP_DATA_MAX as u32, None));
                assert_eq!(j.select.iface_globs, Some(vec!["veth*".to_string()]));
            }
            j => panic!("{j:?}"),
        }
        match plan_of(&["drops", "--snaplen", "99999"]).expect("plan").job {
            Job::Drops(j) => assert_eq!(j.snaplen, DROP_DATA_MAX as u32),
            j => panic!("{j:?}"),
        }
        assert!(usage(&["drops", "--filter", "tcp", "udp"]).contains("not both"));
        match plan_of(&["tcp", "--rtt-interval", "0.5", "port", "80"]).expect("plan").job {
            Job::Tcp(j) => assert_eq!((j.rtt_interval, j.filter.expression(), j.select.scope), (Duration::from_millis(500), "port 80", Scope::All)),
            j => panic!("{j:?}"),
        }
        for bad in ["nan", "-1", "1e9"] {
            assert!(usage(&["tcp", &format!("--rtt-interval={bad}")]).contains("--rtt-interval must be"), "{bad}");
        }
        for cmd in ["drops", "tcp"] {
            let e = Cli::try_parse_from(["tracer", cmd, "--all", "--netns", "x"]).expect_err(cmd);
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{cmd}: {e}");
        }
    }

    #[test]
    fn serve_listens_on_loopback_unless_told() {
        match plan_of(&["serve"]).expect("plan").job {
            Job::Serve(j) => {
                assert_eq!(j.listen, serve::DEFAULT_LISTEN.parse().expect("addr"));
                assert!(j.listen.ip().is_loopback());
                assert_eq!((j.grace, j.select.scope), (serve::DEFAULT_GRACE, Scope::All));
            }
            j => panic!("{j:?}"),
        }
        match plan_of(&["serve", "--listen", "[::]:9000", "--grace", "2", "udp"]).expect("plan").job {
            Job::Serve(j) => assert_eq!((j.listen.port(), j.grace, j.filter.expression()), (9000, Duration::from_secs(2), "udp")),
            j => panic!("{j:?}"),
        }
        for bad in ["9464", "localhost:9464", "127.0.0.1", "1.2.3.4:99999", "x\u{1b}[31m:1"] {
            let m = usage(&["serve", "--listen", bad]);
            assert!(m.starts_with("--listen needs an address and a port"), "{bad}: {m}");
            assert!(!m.contains('\u{1b}'), "escaped: {m}");
        }
        assert!(usage(&["serve", "--grace=-1"]).contains("--grace"));
        assert!(usage(&["serve", "-c", "5"]).contains("--count does not apply"));
    }
}
