//! One benchmark round: a mode (untraced, a tracer command, tcpdump)
//! started on a two-namespace lab, a load pushed through it, and what the
//! round measured: the load's rate, the tool's CPU and time to ready, the
//! events it delivered against the packets its interfaces counted, what it
//! lost, and (with BPF statistics on) what its programs cost per run.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

use super::{
    CpuWindow, irq_work_interrupts,
    bpf::{self, Cost},
    load::{self, Flood},
    tool::{Stdout, Summary, Tool},
};
use crate::{Lab, LabNs, tracer_bin};

/// Which interfaces a mode watches, to count the packets it should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The sender's `eth0` only.
    SenderIface,
    /// The stream's four interfaces (both `eth0`, both host veths).
    Stream,
}

/// How a mode's stdout is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Null,
    /// To a file on tmpfs (deleted after the round).
    File,
    /// `tracer top --json`: rows summed as they come.
    TopRows,
}

#[derive(Debug, Clone)]
pub struct Mode {
    /// Short name for `--modes`.
    pub key: &'static str,
    /// What the table shows.
    pub label: String,
    /// Tracer arguments (`None`: untraced or tcpdump).
    pub args: Option<Vec<String>>,
    pub tcpdump: bool,
    pub out: Out,
    pub scope: Scope,
    /// Another tracer binary than the one under test (`--before`).
    pub bin: Option<String>,
}

impl Mode {
    /// The same mode run with the tracer binary at `path`, keyed `KEY@before`.
    pub fn before(&self, path: &str) -> Mode {
        Mode {
            key: Box::leak(format!("{}@before", self.key).into_boxed_str()),
            label: format!("{} [before]", self.label),
            bin: Some(path.to_string()),
            ..self.clone()
        }
    }
}

/// The lab of a throughput run: two namespaces on a bridge, and files on tmpfs.
pub struct Rig {
    pub lab: Lab,
    pub a: LabNs,
    pub b: LabNs,
    dir: PathBuf,
}

impl Rig {
    pub fn new() -> Rig {
        let lab = Lab::new(2);
        let (a, b) = (lab.ns[0].clone(), lab.ns[1].clone());
        // tmpfs: the files cost memory copies, never disk writeback that
        // would land in a later round.
        let dir = PathBuf::from("/dev/shm");
        Rig { lab, a, b, dir }
    }

    pub fn file(&self, ext: &str) -> String {
        self.dir.join(format!("tracer-bench-{}.{ext}", self.lab.id)).to_string_lossy().into_owned()
    }

    /// rx + tx packets on the interfaces of `scope`.
    fn packets(&self, scope: Scope) -> u64 {
        let (a, b) = (Some(self.a.path()), Some(self.b.path()));
        let host = load::if_packets(None);
        let host_of = |n: &str| host.get(n).map(|(r, t)| r + t).unwrap_or(0);
        match scope {
            Scope::SenderIface => load::packets_of(a.as_deref(), "eth0"),
            Scope::Stream => {
                load::packets_of(a.as_deref(), "eth0")
                    + load::packets_of(b.as_deref(), "eth0")
                    + host_of(&self.a.host_veth)
                    + host_of(&self.b.host_veth)
            }
        }
    }

    fn remove_files(&self) {
        for ext in ["pcapng", "json", "pcap"] {
            let _ = std::fs::remove_file(self.file(ext));
        }
    }
}

impl Default for Rig {
    fn default() -> Self {
        Rig::new()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.remove_files();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Tcp,
    Udp,
    /// UDP, a new flow for almost every datagram.
    UdpNewFlows,
}

/// What one round measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Gbit/s (TCP) or datagrams sent per second (UDP).
    pub rate: f64,
    /// UDP: datagrams the receiving interface counted per second.
    pub delivered_rate: Option<f64>,
    /// Seconds from start to the ready line.
    pub ready: Option<f64>,
    /// % of one CPU the tool used while the load ran.
    pub tool_cpu: Option<f64>,
    /// Events the tool delivered (packets written or printed, counted by
    /// `top`, captured by tcpdump).
    pub events: Option<u64>,
    /// Packets its interfaces counted while it ran.
    pub of: u64,
    pub summary: Summary,
    /// `top --json` lost lines, summed.
    pub lost_lines: u64,
    /// Per program name, when BPF statistics are on.
    pub costs: BTreeMap<String, Cost>,
    /// IRQ work interrupts (ring buffer wakeups among them) while the load ran.
    pub irq_work: u64,
    pub error: Option<String>,
}

/// Runs `mode` once under `load` for `secs`.
pub fn run(rig: &Rig, mode: &Mode, load: Load, secs: f64) -> Measured {
    run_with(rig, mode, load, secs, None)
}

/// [`run`], with `perf record` sampling every CPU into `perf_data` while
/// the load runs.
pub fn run_with(rig: &Rig, mode: &Mode, load: Load, secs: f64, perf_data: Option<&str>) -> Measured {
    let mut m = Measured::default();
    let rows = Arc::new(Mutex::new((0u64, 0u64)));
    let tool = match command(rig, mode) {
        None => None,
        Some((cmd, ready)) => {
            let stdout = match mode.out {
                Out::Null => Stdout::Null,
                Out::File => Stdout::File(PathBuf::from(rig.file("json"))),
                Out::TopRows => {
                    let rows = rows.clone();
                    Stdout::Lines(Box::new(move |l: &str| {
                        let v: Value = serde_json::from_str(l).unwrap_or_default();
                        if let Ok(mut r) = rows.lock() {
                            match v["type"].as_str() {
                                Some("top") => r.0 += v["rx_packets"].as_u64().unwrap_or(0) + v["tx_packets"].as_u64().unwrap_or(0),
                                Some("lost") => r.1 += v["count"].as_u64().unwrap_or(0),
                                _ => {}
                            }
                        }
                    }))
                }
            };
            match Tool::start(cmd, ready, stdout, Duration::from_secs(90)) {
                Ok(t) => Some(t),
                Err(e) => {
                    m.error = Some(e);
                    rig.remove_files();
                    return m;
                }
            }
        }
    };
    m.ready = tool.as_ref().filter(|_| mode.args.is_some()).map(|t| t.ready_after.as_secs_f64());
    let progs0 = tool.as_ref().map(|t| bpf::programs(t.pid())).unwrap_or_default();
    let of0 = rig.packets(mode.scope);
    let cpu = tool.as_ref().map(|t| CpuWindow::start(t.pid()));
    let iwi = irq_work_interrupts();
    let (a, b) = (rig.a.path(), rig.b.path());
    let perf = perf_data.and_then(|p| {
        let mut c = Command::new("perf");
        c.args(["record", "-e", "cpu-clock", "-F", "4999", "-a", "-g", "-o", p]);
        Tool::start(c, "", Stdout::Null, Duration::from_secs(10)).ok()
    });
    match load {
        Load::Tcp => m.rate = load::tcp_stream(&a, &b, &rig.b.ip, secs),
        Load::Udp | Load::UdpNewFlows => {
            let f: Flood = if load == Load::Udp {
                load::udp_flood(&a, &b, &rig.b.ip, "eth0", secs)
            } else {
                load::udp_flood_new_flows(&a, &b, &rig.b.ip, "eth0", secs)
            };
            m.rate = f.sent_rate();
            m.delivered_rate = Some(f.delivered as f64 / f.secs.max(1e-9));
        }
    }
    m.irq_work = irq_work_interrupts().saturating_sub(iwi);
    if let Some(p) = perf {
        p.stop();
    }
    // What the tool still has to read is part of its cost.
    std::thread::sleep(Duration::from_millis(300));
    m.tool_cpu = cpu.map(|c| c.percent());
    m.of = rig.packets(mode.scope).saturating_sub(of0);
    if let Some(t) = tool {
        let progs1 = bpf::programs(t.pid());
        m.costs = bpf::cost(&progs0, &progs1).into_iter().filter(|(_, c)| c.runs > 0).collect();
        let stopped = t.stop();
        m.summary = Summary::of(&stopped.stderr);
        m.events = if mode.tcpdump { m.summary.captured } else { m.summary.events };
        if mode.out == Out::TopRows {
            let (counted, lost) = rows.lock().map(|r| *r).unwrap_or_default();
            m.events = Some(counted);
            m.lost_lines = lost;
        }
        if stopped.code != Some(0) {
            m.error = Some(format!("exit {:?}: {}", stopped.code, stopped.stderr.join(" / ")));
        }
    }
    rig.remove_files();
    m
}

/// Starts `mode`'s tool (its output thrown away), hands its pid to `f`
/// once ready, and stops it. `Err` when it would not start or exited
/// with an error.
pub fn with_tool<T>(rig: &Rig, mode: &Mode, f: impl FnOnce(u32) -> T) -> Result<T, String> {
    let (cmd, ready) = command(rig, mode).ok_or("no tool in this mode")?;
    let tool = Tool::start(cmd, ready, Stdout::Null, Duration::from_secs(90))?;
    let out = f(tool.pid());
    let stopped = tool.stop();
    rig.remove_files();
    match stopped.code {
        Some(0) => Ok(out),
        code => Err(format!("exit {code:?}: {}", stopped.stderr.join(" / "))),
    }
}

fn command(rig: &Rig, mode: &Mode) -> Option<(Command, &'static str)> {
    if mode.tcpdump {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &rig.a.name, "tcpdump", "-n", "-i", "eth0", "-w", &rig.file("pcap")]);
        return Some((c, "listening on"));
    }
    let args = mode.args.as_ref()?;
    let mut c = match &mode.bin {
        Some(b) => Command::new(b),
        None => Command::new(tracer_bin()),
    };
    c.args(args);
    Some((c, "ready"))
}

/// A filter with many of libpcap's primitive kinds (link-layer addresses,
/// byte offsets and masks, named fields, addresses, networks, ports,
/// lengths) that still keeps every packet of the bench's traffic, so that
/// only the filter's cost differs from `packets-w`. (No `vlan` in it: in
/// libpcap that keyword shifts the offsets of everything after it, also
/// under `not`, and such a filter keeps nothing here, in tcpdump too.)
/// `{B}` is replaced.
const COMPLEX_FILTER: &str = "not (ether broadcast or ether multicast or arp or ip6 or icmp) \
and (tcp[tcpflags] & tcp-rst == 0 or udp) and ip[6:2] & 0x1fff == 0 and ip[0] & 0xf >= 5 and ip[8] > 1 \
and (host {B} or net 10.0.0.0/8) and greater 0 and not portrange 1-19";

/// The modes of the throughput table, keyed for `--modes`. `{A}` is the
/// sender's namespace, `{B}` the receiver's address, `{pcapng}` a file.
pub fn modes(rig: &Rig) -> Vec<Mode> {
    let (ns, pcapng, b_ip) = (rig.a.name.clone(), rig.file("pcapng"), rig.b.ip.clone());
    let tr = |key, label: &str, args: &[&str], out, scope| Mode {
        key,
        label: label.to_string(),
        args: Some(args.iter().map(|s| s.replace("{A}", &ns).replace("{B}", &b_ip).replace("{pcapng}", &pcapng)).collect()),
        tcpdump: false,
        out,
        scope,
        bin: None,
    };
    vec![
        Mode { key: "untraced", label: "untraced".into(), args: None, tcpdump: false, out: Out::Null, scope: Scope::Stream, bin: None },
        tr("top", "`tracer top --json` (by container)", &["top", "--json"], Out::TopRows, Scope::Stream),
        tr("top-flow", "`tracer top --by flow --json`", &["top", "--by", "flow", "--json"], Out::TopRows, Scope::Stream),
        tr("top-filter", "`tracer top --json host B` (filter)", &["top", "--json", "host", "{B}"], Out::TopRows, Scope::Stream),
        tr("packets-w", "`tracer packets --netns A -w FILE`", &["packets", "--netns", "{A}", "-w", "{pcapng}"], Out::Null, Scope::SenderIface),
        tr("packets-w-host", "`tracer packets --netns A -w FILE host B` (simple filter)", &["packets", "--netns", "{A}", "-w", "{pcapng}", "host", "{B}"], Out::Null, Scope::SenderIface),
        tr(
            "packets-w-complex",
            "`tracer packets --netns A -w FILE` + a 10-term filter",
            &["packets", "--netns", "{A}", "-w", "{pcapng}", "--filter", COMPLEX_FILTER],
            Out::Null,
            Scope::SenderIface,
        ),
        tr("packets-json", "`tracer packets --netns A --json > FILE`", &["packets", "--netns", "{A}", "--json"], Out::File, Scope::SenderIface),
        tr("packets-all-w", "`tracer packets --all -w FILE` (4 interfaces)", &["packets", "--all", "-w", "{pcapng}"], Out::Null, Scope::Stream),
        Mode { key: "tcpdump", label: "`tcpdump -w FILE` in A".into(), args: None, tcpdump: true, out: Out::Null, scope: Scope::SenderIface, bin: None },
        // Tracepoints on every namespace: their events are not packets of
        // the stream's interfaces (drops and TCP events), only their cost counts.
        tr("drops-all", "`tracer drops --all --json > FILE`", &["drops", "--all", "--json"], Out::File, Scope::Stream),
        tr("tcp-all", "`tracer tcp --all --json > FILE`", &["tcp", "--all", "--json"], Out::File, Scope::Stream),
    ]
}
