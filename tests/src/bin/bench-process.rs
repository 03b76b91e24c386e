//! What process attribution costs: a veth pair between two lab namespaces,
//! pushed with one TCP stream, 64-byte UDP datagrams on a connected socket
//! (`send`), the same on an unconnected one (`sendto`, which runs the
//! `sendmsg4` hook on every datagram) and short TCP connections (a socket,
//! a connect, a close each: the socket hooks' worst case); each untraced,
//! with `tracer packets --no-process` and with `tracer packets` (process
//! attribution on) on both ends, as ratios to the `--no-process` run of the
//! same load. Then `tracer top`: by interface (what it always ran) against
//! `--by process`, with the kernel's BPF statistics per program type, and
//! which program types each loads. Asserts nothing.
//!
//! `bench-process [SECONDS]` (default 3 per run).

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use tracer_tests::{
    Lab, LabNs,
    bench::{Load, ProgramStats, Watched, cpu_ticks, num_cpus, system_ticks, ticks_per_sec, tracer, veth_pair},
    shell_quote,
};

/// The loads of this benchmark: the shared ones and two of its own.
#[derive(Clone, Copy)]
enum Work {
    Shared(Load),
    /// 64-byte datagrams with `sendto` on an unconnected socket.
    UdpSendto,
    /// TCP connections, each opened, written once and closed.
    Connections,
}

/// Runs `work` for `secs`: (rate, unit).
fn push(work: Work, a: &LabNs, b: &LabNs, b_if: &str, secs: f64) -> (f64, &'static str) {
    match work {
        Work::Shared(load) => {
            let (r, u, _) = tracer_tests::bench::push(load, a, b, b_if, secs);
            (r, u)
        }
        Work::UdpSendto => {
            let mut sink = b.spawn(&format!(
                "exec python3 -c {}",
                shell_quote(&format!("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{}',9997))\ntime.sleep({})\n", b.ip, secs + 3.0))
            ));
            std::thread::sleep(Duration::from_millis(200));
            let py = format!(
                "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nd=('{}',9997)\n\
                 p=b'x'*64; n=0; end=time.time()+{secs}\n\
                 while time.time()<end:\n    for i in range(200):\n        s.sendto(p,d)\n    n+=200\nprint(n)\n",
                b.ip
            );
            let n: f64 = a.sh(&format!("python3 -c {}", shell_quote(&py))).trim().parse().unwrap_or(0.0);
            let _ = sink.kill();
            let _ = sink.wait();
            (n / secs, "datagrams/s")
        }
        Work::Connections => {
            let server = format!(
                "import socket,time\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 s.bind(('{}',9996)); s.listen(512); s.settimeout({})\n\
                 try:\n    while True:\n        c,_=s.accept(); c.recv(64); c.close()\nexcept OSError: pass\n",
                b.ip,
                secs + 3.0
            );
            let mut srv = b.spawn(&format!("exec python3 -c {}", shell_quote(&server)));
            std::thread::sleep(Duration::from_millis(300));
            let client = format!(
                "import socket,time\nd=('{}',9996); n=0; end=time.time()+{secs}\n\
                 while time.time()<end:\n    c=socket.create_connection(d); c.sendall(b'hi'); c.close(); n+=1\nprint(n)\n",
                b.ip
            );
            let n: f64 = a.sh(&format!("python3 -c {}", shell_quote(&client))).trim().parse().unwrap_or(0.0);
            let _ = srv.kill();
            let _ = srv.wait();
            (n / secs, "connections/s")
        }
    }
}

/// (runs, ns) of the programs `pid` holds, by BPF program type.
fn prog_stats(pid: u32) -> BTreeMap<u64, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return out };
    for e in dir.flatten() {
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(t) = field("prog_type:") {
            let s = out.entry(t).or_insert((0, 0));
            s.0 += field("run_cnt:").unwrap_or(0);
            s.1 += field("run_time_ns:").unwrap_or(0);
        }
    }
    out
}

fn type_name(t: u64) -> &'static str {
    match t {
        3 => "tc",
        8 => "cgroup_sock",
        13 => "sock_ops",
        18 => "cgroup_sock_addr",
        _ => "other",
    }
}

struct Outcome {
    rate: f64,
    unit: &'static str,
    tool_cpu: Option<f64>,
    programs: String,
}

fn run(label: &str, work: Work, a: &LabNs, b: &LabNs, b_if: &str, secs: f64, tool: Option<(Command, &str)>) -> Outcome {
    let watched = tool.map(|(cmd, ready)| Watched::start(cmd, ready));
    let cpu0 = watched.as_ref().map(|w| cpu_ticks(w.pid()));
    let sys0 = system_ticks();
    let t0 = Instant::now();
    let (rate, unit) = push(work, a, b, b_if, secs);
    std::thread::sleep(Duration::from_millis(500));
    let wall = t0.elapsed().as_secs_f64();
    let sys1 = system_ticks();
    let sys_cpu = (sys1.0 - sys0.0) as f64 / (sys1.1 - sys0.1).max(1) as f64 * 100.0 * num_cpus();
    let tool_cpu = match (&watched, cpu0) {
        (Some(w), Some(c0)) => Some((cpu_ticks(w.pid()) - c0) as f64 / ticks_per_sec() / wall * 100.0),
        _ => None,
    };
    let programs = watched
        .as_ref()
        .map(|w| {
            prog_stats(w.pid())
                .iter()
                .map(|(t, (n, ns))| format!("{} {}x{:.0}ns", type_name(*t), n, if *n > 0 { *ns as f64 / *n as f64 } else { 0.0 }))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let note = watched
        .map(|w| w.stop().into_iter().filter(|l| l.contains("lost:") || l.contains("processes:")).collect::<Vec<_>>().join("; "))
        .unwrap_or_default();
    println!(
        "  {label:<40} {rate:>10.2} {unit:<14} system CPU {sys_cpu:>5.1}%  tool CPU {}  [{programs}]  {note}",
        tool_cpu.map(|c| format!("{c:>5.1}%")).unwrap_or_else(|| "    -".into()),
    );
    Outcome { rate, unit, tool_cpu, programs }
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let lab = Lab::new(0);
    let (a, b, ia, ib) = veth_pair(&lab);
    let both = format!("{ia},{ib}");
    let stats = ProgramStats::enable();
    println!(
        "process attribution bench: veth pair {}/{ia} <-> {}/{ib}, {secs} s per run, {} CPUs, BPF run-time statistics {}",
        a.name,
        b.name,
        num_cpus(),
        if stats.is_some() { "on" } else { "unavailable" }
    );
    let works = [
        ("TCP bulk stream", Work::Shared(Load::Tcp)),
        ("UDP 64-byte datagrams, connected socket (send)", Work::Shared(Load::Udp)),
        ("UDP 64-byte datagrams, unconnected socket (sendto)", Work::UdpSendto),
        ("TCP connections (socket, connect, send, close)", Work::Connections),
    ];
    let mut summary = Vec::new();
    for (name, work) in works {
        println!("{name}:");
        let base = run("no tracing", work, &a, &b, &ib, secs, None);
        let off = run("tracer packets --no-process, both ends", work, &a, &b, &ib, secs, Some(tracer(&["packets", "--all", "-i", &both, "--no-process", "--json"])));
        let on = run("tracer packets (processes), both ends", work, &a, &b, &ib, secs, Some(tracer(&["packets", "--all", "-i", &both, "--json"])));
        let ratio = on.rate / off.rate.max(1e-9);
        println!(
            "  => {}: attribution on/off {:.3} ({:+.1}%); untraced {:.2}; tracer CPU {} vs {}",
            base.unit,
            ratio,
            (ratio - 1.0) * 100.0,
            base.rate,
            on.tool_cpu.map(|c| format!("{c:.1}%")).unwrap_or_default(),
            off.tool_cpu.map(|c| format!("{c:.1}%")).unwrap_or_default(),
        );
        summary.push(format!("{name}: on/off {ratio:.3}"));
    }
    println!("tracer top (one UDP flow, connected socket):");
    let work = Work::Shared(Load::Udp);
    let base = run("no tracing", work, &a, &b, &ib, secs, None);
    let plain = run("tracer top --by iface, both ends", work, &a, &b, &ib, secs, Some(tracer(&["top", "--all", "-i", &both, "--by", "iface", "--json"])));
    let by_proc = run("tracer top --by process, both ends", work, &a, &b, &ib, secs, Some(tracer(&["top", "--all", "-i", &both, "--by", "process", "--json"])));
    println!(
        "  => {}: by process / by iface {:.3}; by iface / untraced {:.3}; programs by iface: [{}] (no socket programs loaded); by process: [{}]",
        base.unit,
        by_proc.rate / plain.rate.max(1e-9),
        plain.rate / base.rate.max(1e-9),
        plain.programs,
        by_proc.programs
    );
    println!("summary: {}", summary.join("; "));
    drop(stats);
}
