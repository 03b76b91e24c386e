//! Issue #10's throughput tables, measured in one run with rounds
//! interleaved: one TCP stream between two lab namespaces over veth +
//! bridge, untraced, under each tracer mode and under tcpdump on the same
//! interface (every round runs every mode, in a rotated order; each ratio
//! is to the untraced measurement of the same round); a 64-byte UDP flood
//! at the rate one sender reaches, for `top`, `packets -w` and tcpdump; and
//! what each BPF program costs per packet (the kernel's run-time
//! statistics, on only in those rounds), and in the kernel's test harness
//! with no traffic (`progrun`). With `profile`, where the CPU goes
//! (perf, software clock) under `packets -w` and `top`.
//!
//! usage: bench-throughput [throughput|tcp|udp|programs|progrun|profile] [--rounds N]
//!        [--seconds S] [--modes untraced,top,top-flow,top-filter,packets-w,packets-json,packets-all-w,tcpdump,
//!        drops-all,tcp-all]

use tracer_tests::bench::{
    bpf::{self, StatsOn},
    loadavg, num_cpus,
    opts::Opts,
    round::{self, Load, Measured, Mode, Rig},
    table::{Table, count, spread},
    today, which,
};

fn main() {
    let opts = Opts::from_env();
    let tcp = opts.wants(&["throughput", "tcp"]);
    let udp = opts.wants(&["throughput", "udp"]);
    let programs = opts.wants(&["throughput", "programs"]);
    let progrun = opts.wants(&["throughput", "progrun"]);
    let profile = opts.selectors.iter().any(|s| s == "profile");
    if !(tcp || udp || programs || progrun || profile) {
        return;
    }
    let began = std::time::Instant::now();
    let nice = tracer_tests::bench::prioritize();
    let rounds = opts.rounds(5);
    let secs = opts.seconds(3.0);
    let rig = Rig::new();
    let mut modes: Vec<Mode> = round::modes(&rig).into_iter().filter(|m| opts.mode(m.key)).collect();
    if let Some(before) = &opts.before {
        let old: Vec<Mode> = modes.iter().filter(|m| m.args.is_some()).map(|m| m.before(before)).collect();
        modes.extend(old);
    }
    if !which("tcpdump") {
        eprintln!("bench: tcpdump is not installed (cargo xtask test installs it): its rows are left out");
        modes.retain(|m| !m.tcpdump);
    }
    println!(
        "# throughput, {} (kernel {}, {} CPUs shared with other work; the benchmark, its loads and tools at nice {nice}; load average {} at start)",
        today(),
        crate_kernel(),
        num_cpus(),
        loadavg()
    );
    if tcp {
        tcp_table(&rig, &modes, rounds, secs);
    }
    if udp {
        let udp_modes: Vec<Mode> =
            modes.iter().filter(|m| ["untraced", "top", "packets-w", "tcpdump"].contains(&m.key.trim_end_matches("@before"))).cloned().collect();
        udp_table(&rig, &udp_modes, rounds, secs);
    }
    if programs {
        programs_table(&rig, &modes, secs);
    }
    if progrun {
        tracer_tests::bench::progrun::table(&rig, &modes);
    }
    if profile {
        tracer_tests::bench::profile::run(&rig, &modes, secs.max(5.0));
    }
    println!("(load average {} at the end; {:.0} s in all)", loadavg(), began.elapsed().as_secs_f64());
}

fn crate_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// Every mode once per round, the order rotated by one each round.
fn interleaved(rig: &Rig, modes: &[Mode], load: Load, rounds: usize, secs: f64) -> Vec<Vec<Measured>> {
    let mut out: Vec<Vec<Measured>> = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        for k in 0..modes.len() {
            let i = (k + r) % modes.len();
            let m = round::run(rig, &modes[i], load, secs);
            eprintln!(
                "bench: {load:?} round {}/{rounds} {:<14} {:>10.2}{}{}",
                r + 1,
                modes[i].key,
                m.rate,
                m.events.map(|e| format!("  events {e} of {}", m.of)).unwrap_or_default(),
                m.error.as_deref().map(|e| format!("  ERROR {e}")).unwrap_or_default()
            );
            out[i].push(m);
        }
    }
    out
}

/// Each round's rate over the untraced rate of the same round.
fn ratios(modes: &[Mode], res: &[Vec<Measured>], i: usize) -> Vec<f64> {
    let Some(u) = modes.iter().position(|m| m.key == "untraced") else { return Vec::new() };
    res[i].iter().zip(&res[u]).filter(|(m, b)| m.error.is_none() && b.rate > 0.0).map(|(m, b)| m.rate / b.rate).collect()
}

fn delivered(ms: &[Measured]) -> String {
    let ev: Vec<u64> = ms.iter().filter_map(|m| m.events).collect();
    if ev.is_empty() {
        return "-".into();
    }
    let of: u64 = ms.iter().filter(|m| m.events.is_some()).map(|m| m.of).sum();
    format!("{} of {}", count(ev.iter().sum()), count(of))
}

fn lost(ms: &[Measured], mode: &Mode) -> String {
    if mode.args.is_none() && !mode.tcpdump {
        return "-".into();
    }
    if mode.tcpdump {
        return format!("{} dropped by kernel", count(ms.iter().filter_map(|m| m.summary.dropped).sum()));
    }
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for m in ms {
        for (k, n) in &m.summary.lost {
            *by.entry(k.clone()).or_default() += n;
        }
    }
    let v: Vec<String> = by.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}={}", count(*n))).collect();
    if v.is_empty() { "none".into() } else { v.join(" ") }
}

fn errors(ms: &[Measured]) -> String {
    let n = ms.iter().filter(|m| m.error.is_some()).count();
    if n == 0 { String::new() } else { format!(" ({n} rounds failed: {})", ms.iter().find_map(|m| m.error.clone()).unwrap_or_default()) }
}

fn col<T>(ms: &[Measured], f: impl Fn(&Measured) -> Option<T>) -> Vec<T> {
    ms.iter().filter(|m| m.error.is_none()).filter_map(f).collect()
}

fn tcp_table(rig: &Rig, modes: &[Mode], rounds: usize, secs: f64) {
    let res = interleaved(rig, modes, Load::Tcp, rounds, secs);
    println!("\n## One TCP stream A -> B (veth + bridge), {rounds} rounds of {secs} s, modes interleaved\n");
    let mut t = Table::new(&["mode", "Gbit/s", "ratio to untraced", "events delivered of packets seen", "lost", "tool CPU %", "ready s"]);
    for (i, m) in modes.iter().enumerate() {
        let ms = &res[i];
        t.row(vec![
            format!("{}{}", m.label, errors(ms)),
            spread(&col(ms, |x| Some(x.rate)), 1),
            if m.key == "untraced" { "1".into() } else { spread(&ratios(modes, &res, i), 2) },
            delivered(ms),
            lost(ms, m),
            spread(&col(ms, |x| x.tool_cpu), 0),
            spread(&col(ms, |x| x.ready), 2),
        ]);
    }
    println!("{}", t.render());
    println!("\nmedian (min-max) over rounds; events: packets written or printed, counted by `top` (its JSON rows), captured by tcpdump; packets seen: what the watched interfaces' own counters said meanwhile (A's eth0 for `--netns A` and tcpdump, the four interfaces of the stream otherwise).");
}

fn udp_table(rig: &Rig, modes: &[Mode], rounds: usize, secs: f64) {
    let res = interleaved(rig, modes, Load::Udp, rounds, secs);
    println!("\n## 64-byte UDP datagrams A -> B, one sender as fast as it goes, {rounds} rounds of {secs} s, interleaved\n");
    let mut t = Table::new(&["mode", "sent/s", "ratio to untraced", "received by B/s", "events delivered of packets seen", "lost", "tool CPU %"]);
    for (i, m) in modes.iter().enumerate() {
        let ms = &res[i];
        t.row(vec![
            format!("{}{}", m.label, errors(ms)),
            spread(&col(ms, |x| Some(x.rate / 1000.0)), 0) + "k",
            if m.key == "untraced" { "1".into() } else { spread(&ratios(modes, &res, i), 2) },
            spread(&col(ms, |x| x.delivered_rate.map(|d| d / 1000.0)), 0) + "k",
            delivered(ms),
            lost(ms, m),
            spread(&col(ms, |x| x.tool_cpu), 0),
        ]);
    }
    println!("{}", t.render());
}

fn per_k(n: u64, runs: u64) -> String {
    if runs == 0 { "-".into() } else { format!("{:.1}", n as f64 * 1000.0 / runs as f64) }
}

fn programs_table(rig: &Rig, modes: &[Mode], secs: f64) {
    let Some(_stats) = StatsOn::enable() else {
        println!("\n(BPF run-time statistics cannot be turned on here: no program costs)");
        return;
    };
    println!("\n## BPF program cost (kernel run-time statistics on), mean ns per run (one run per packet and hook)\n");
    let mut t = Table::new(&[
        "mode",
        "TCP ns/packet",
        "UDP ns/packet",
        "UDP, new flow each: ns/packet (lost)",
        "per program (TCP / UDP)",
        "runs per packet seen (TCP / UDP)",
        "IRQ work per 1,000 runs (TCP / UDP)",
    ]);
    let all = |x: &Measured| {
        let mut c = bpf::Cost::default();
        for v in x.costs.values() {
            c.add(*v);
        }
        c
    };
    let ns = |c: bpf::Cost| c.per_run().map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    for m in modes.iter().filter(|m| m.args.is_some()) {
        let tcp = round::run(rig, m, Load::Tcp, secs);
        let udp = round::run(rig, m, Load::Udp, secs);
        // The flow table's worst case: an LRU insert and an eviction per packet.
        let spread = m.key.starts_with("top").then(|| round::run(rig, m, Load::UdpNewFlows, secs));
        let (ct, cu) = (all(&tcp), all(&udp));
        let per: Vec<String> = tcp
            .costs
            .iter()
            .map(|(name, c)| format!("{name} {} / {}", ns(*c), udp.costs.get(name).map(|u| ns(*u)).unwrap_or_else(|| "-".into())))
            .collect();
        let rpp = |c: bpf::Cost, of: u64| if of > 0 { format!("{:.2}", c.runs as f64 / of as f64) } else { "-".into() };
        t.row(vec![
            format!("{}{}", m.label, errors(&[tcp.clone(), udp.clone()])),
            ns(ct),
            ns(cu),
            spread.map(|s| format!("{} ({})", ns(all(&s)), s.summary.lost_text())).unwrap_or_else(|| "-".into()),
            per.join(", "),
            format!("{} / {}", rpp(ct, tcp.of), rpp(cu, udp.of)),
            format!("{} / {}", per_k(tcp.irq_work, ct.runs), per_k(udp.irq_work, cu.runs)),
        ]);
    }
    println!("{}", t.render());
    println!("\nOne round of {secs} s per load and mode. The statistics add two clock reads to every run; the throughput rounds above ran without them. IRQ work: interrupts on all CPUs while the load ran (/proc/interrupts IWI), the way a ring buffer wakeup reaches the reader.");
}
