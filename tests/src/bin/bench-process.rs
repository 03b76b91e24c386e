//! What process attribution costs (issue #12): the lab's two namespaces on
//! a bridge, pushed with one TCP stream and the 64-byte UDP flood, each
//! untraced, under `tracer packets --netns A --json --no-process` and under
//! `tracer packets --netns A --json` (attribution on), as ratios to the
//! `--no-process` round of the same load; rounds interleaved. Then short
//! TCP connections (a socket, a connect, a send, the server's close and
//! the client's: the socket programs' worst case) the same three ways,
//! with BPF statistics on, and `tracer top` by
//! interface against `--by process` under the UDP flood, with the kernel's
//! run counts per program. Asserts nothing: it measures.
//!
//! `cargo xtask bench process [--rounds N] [--seconds S]` (default 3 rounds of 3 s).

use std::{process::Command, time::Duration};

use tracer_tests::{
    bench::{
        CpuWindow,
        bpf::{self, StatsOn},
        opts::Opts,
        prioritize,
        round::{self, Load, Measured, Mode, Out, Rig, Scope},
        table::spread,
        tool::{Stdout, Tool},
    },
    shell_quote, tracer_bin,
};

fn mode(key: &'static str, args: &[&str], out: Out, rig: &Rig) -> Mode {
    let ns = rig.a.name.clone();
    Mode {
        key,
        label: key.into(),
        args: Some(args.iter().map(|s| s.replace("{A}", &ns)).collect()),
        tcpdump: false,
        out,
        scope: Scope::SenderIface,
        bin: None,
    }
}

/// TCP connections per second from A to B for `secs` (the server closes
/// first, so the client's ports are not held in TIME_WAIT across rounds), with `args` (a
/// tracer command) running, or untraced: (rate, tool CPU %, socket
/// programs' runs).
fn connections(rig: &Rig, args: Option<&[&str]>, secs: f64) -> (f64, Option<f64>, u64) {
    let tool = args.map(|a| {
        let mut c = Command::new(tracer_bin());
        c.args(a.iter().map(|s| s.replace("{A}", &rig.a.name)));
        Tool::start(c, "ready", Stdout::Null, Duration::from_secs(90)).expect("tracer starts")
    });
    let server = format!(
        "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{}',9996)); s.listen(512); s.settimeout({})\n\
         while True:\n    try:\n        c,_=s.accept()\n    except OSError: break\n    try: c.recv(64); c.close()\n    except OSError: pass\n",
        rig.b.ip,
        secs + 3.0
    );
    let mut srv = rig.b.spawn(&format!("exec python3 -c {}", shell_quote(&server)));
    std::thread::sleep(Duration::from_millis(300));
    let progs0 = tool.as_ref().map(|t| bpf::programs(t.pid())).unwrap_or_default();
    let cpu = tool.as_ref().map(|t| CpuWindow::start(t.pid()));
    let client = format!(
        "import socket,time\nd=('{}',9996); n=0; end=time.time()+{secs}\n\
         while time.time()<end:\n    c=socket.create_connection(d); c.sendall(b'hi'); c.recv(8); c.close(); n+=1\nprint(n)\n",
        rig.b.ip
    );
    let n: f64 = rig.a.sh(&format!("python3 -c {}", shell_quote(&client))).trim().parse().unwrap_or(0.0);
    let tool_cpu = cpu.map(|c| c.percent());
    let sock_runs = tool
        .as_ref()
        .map(|t| {
            let costs = bpf::cost(&progs0, &bpf::programs(t.pid()));
            costs.iter().filter(|(name, _)| name.starts_with("sock")).map(|(_, c)| c.runs).sum()
        })
        .unwrap_or(0);
    let _ = srv.kill();
    let _ = srv.wait();
    if let Some(t) = tool {
        t.stop();
    }
    (n / secs, tool_cpu, sock_runs)
}

fn costs(m: &Measured) -> String {
    m.costs.iter().map(|(n, c)| format!("{n} {}x{:.0}ns", c.runs, c.per_run().unwrap_or(0.0))).collect::<Vec<_>>().join(", ")
}

fn main() {
    let opts = Opts::from_env();
    if !opts.wants(&["process"]) {
        return;
    }
    let nice = prioritize();
    let rounds = opts.rounds.unwrap_or(3).max(1);
    let secs = opts.seconds.unwrap_or(3.0);
    let rig = Rig::new();
    let untraced = Mode { key: "untraced", label: "untraced".into(), args: None, tcpdump: false, out: Out::Null, bin: None, scope: Scope::SenderIface };
    let off = mode("packets --no-process", &["packets", "--netns", "{A}", "--json", "--no-process"], Out::File, &rig);
    let on = mode("packets (processes)", &["packets", "--netns", "{A}", "--json"], Out::File, &rig);
    println!("process attribution bench: {} -> {} on a bridge, {rounds} rounds of {secs} s, nice {nice}", rig.a.name, rig.b.name);
    let mut summary = Vec::new();
    for (load, name, unit) in [(Load::Tcp, "TCP stream", "Gbit/s"), (Load::Udp, "UDP 64-byte flood", "datagrams/s")] {
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut cpu: [Vec<f64>; 3] = Default::default();
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let ms: Vec<Measured> = [&untraced, &off, &on].iter().map(|m| round::run(&rig, m, load, secs)).collect();
            for (i, m) in ms.iter().enumerate() {
                if let Some(e) = &m.error {
                    println!("  {name}: {}: {e}", [&untraced, &off, &on][i].label);
                }
                rates[i].push(m.rate);
                cpu[i].extend(m.tool_cpu);
            }
            ratios.push(ms[2].rate / ms[1].rate.max(1e-9));
        }
        println!(
            "{name} ({unit}): untraced {}; --no-process {} (tracer CPU {}%); processes {} (tracer CPU {}%); on/off {}",
            spread(&rates[0], 2),
            spread(&rates[1], 2),
            spread(&cpu[1], 1),
            spread(&rates[2], 2),
            spread(&cpu[2], 1),
            spread(&ratios, 3)
        );
        summary.push(format!("{name}: on/off {}", spread(&ratios, 3)));
    }
    let mut conn: [Vec<f64>; 3] = Default::default();
    let mut runs = 0;
    // Run counts need the kernel's statistics: on for all three alike.
    let stats = StatsOn::enable();
    for _ in 0..rounds {
        conn[0].push(connections(&rig, None, secs).0);
        conn[1].push(connections(&rig, Some(&["packets", "--netns", "{A}", "--json", "--no-process"]), secs).0);
        let (r, _, n) = connections(&rig, Some(&["packets", "--netns", "{A}", "--json"]), secs);
        conn[2].push(r);
        runs = n;
    }
    drop(stats);
    let ratios: Vec<f64> = conn[2].iter().zip(&conn[1]).map(|(a, b)| a / b.max(1e-9)).collect();
    println!(
        "TCP connections (connections/s): untraced {}; --no-process {}; processes {} ({runs} socket program runs in the last round); on/off {}",
        spread(&conn[0], 0),
        spread(&conn[1], 0),
        spread(&conn[2], 0),
        spread(&ratios, 3)
    );
    summary.push(format!("TCP connections: on/off {}", spread(&ratios, 3)));
    // `top`: by interface runs no socket program; by process does.
    let _stats = StatsOn::enable();
    let by_iface = mode("top --by iface", &["top", "--netns", "{A}", "--by", "iface", "--json"], Out::TopRows, &rig);
    let by_proc = mode("top --by process", &["top", "--netns", "{A}", "--by", "process", "--json"], Out::TopRows, &rig);
    let base = round::run(&rig, &untraced, Load::Udp, secs);
    let a = round::run(&rig, &by_iface, Load::Udp, secs);
    let b = round::run(&rig, &by_proc, Load::Udp, secs);
    for (m, md) in [(&a, &by_iface), (&b, &by_proc)] {
        if let Some(e) = &m.error {
            println!("  {}: {e}", md.label);
        }
    }
    println!(
        "top under the UDP flood (datagrams/s, BPF statistics on): untraced {:.0}; --by iface {:.0} [{}]; --by process {:.0} [{}]; by process / by iface {:.3}",
        base.rate,
        a.rate,
        costs(&a),
        b.rate,
        costs(&b),
        b.rate / a.rate.max(1e-9)
    );
    println!("summary: {}", summary.join("; "));
}
