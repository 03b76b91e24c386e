//! Issue #10's scale table: 200 namespaces with one veth each on a bridge,
//! as Docker makes them (401 interfaces), and for each mode the time from
//! start to the ready line, RSS after ready (peak and current), CPU with
//! no traffic but the namespaces' own (10 s), the BPF programs' cost per
//! packet of a UDP flood between two of the namespaces with every
//! interface attached and with only the flood's two host veths attached
//! (`-i`); then how long namespaces created at 20 per second after ready
//! take to be traced; and `top`'s flow table right after the namespaces
//! were made (its early LRU losses). Prints tables; asserts nothing.
//!
//! usage: bench-scale [scale|modes|attach|lru] [--namespaces N] [--seconds S] [--modes KEY,...]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::UdpSocket,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{
    bench::{
        CpuWindow,
        bpf::{self, StatsOn},
        irq_work_interrupts,
        load::{self, in_netns},
        loadavg,
        opts::Opts,
        scale::ScaleLab,
        table::{Table, count, spread},
        today,
        tool::{Stdout, Summary, Tool},
    },
    flood::status_kib,
    tracer_bin,
};

const IDLE_SECS: u64 = 10;

fn main() {
    let opts = Opts::from_env();
    let (modes, attach, lru) = (opts.wants(&["scale", "modes"]), opts.wants(&["scale", "attach"]), opts.wants(&["scale", "lru"]));
    if !(modes || attach || lru) {
        return;
    }
    let began = std::time::Instant::now();
    let nice = tracer_tests::bench::prioritize();
    let n = opts.namespaces.unwrap_or(200).max(3);
    let secs = opts.seconds(3.0);
    // On for the whole run: no throughput is measured here.
    let stats = StatsOn::enable();
    if stats.is_none() {
        println!("(BPF run-time statistics cannot be turned on here: no program costs)");
    }
    // Two namespaces first: the per-packet cost with few attached, on the
    // very interfaces the flood later crosses with all of them attached.
    let (mut lab, _) = ScaleLab::new(2, opts.ipv6);
    let rows: Vec<ModeRow> = mode_rows(&lab).into_iter().filter(|r| opts.mode(r.key)).collect();
    let mut small: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut idle_rates = Vec::new();
    if modes {
        for r in rows.iter().filter(|r| SMALL.contains(&r.key)) {
            small.insert(r.key, measure(&lab, r, secs).0);
        }
    }
    let took = lab.grow(n);
    println!(
        "# scale, {}: {n} namespaces, one veth each on bridge {} ({} interfaces with the bridge), IPv6 {} in the namespaces, made in {took:.1} s; nice {nice}, load average {}",
        today(),
        lab.bridge,
        2 * n + 1,
        if opts.ipv6 { "on (--ipv6)" } else { "off (as Docker sets an IPv4-only network's containers)" },
        loadavg()
    );
    if lru {
        lru_part(&lab);
    }
    if modes {
        let mut cells = Vec::new();
        for r in &rows {
            let (c, idle) = measure(&lab, r, secs);
            cells.push(c);
            idle_rates.push(idle);
            if let Some(s) = small.remove(r.key) {
                cells.push(s);
            }
        }
        print_modes(n, cells, &idle_rates, secs);
    }
    if attach {
        attach_table(&lab, &opts);
    }
    println!("(load average {} at the end; {:.0} s in all)", loadavg(), began.elapsed().as_secs_f64());
}

/// Packets (rx + tx) the lab's host veths counted so far.
fn lab_packets(lab: &ScaleLab) -> u64 {
    let prefix = format!("tsv{}x", lab.id);
    load::if_packets(None).iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, (r, t))| r + t).sum()
}

fn tracer(args: &[String], stdout: Stdout) -> Result<Tool, String> {
    let mut c = Command::new(tracer_bin());
    c.args(args);
    Tool::start(c, "ready", stdout, Duration::from_secs(180))
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `top --by flow` right after the namespaces were made, for 16 s: the
/// flow table's fill each second, the distinct flows it reported, and the
/// flow packets it called lost.
fn lru_part(lab: &ScaleLab) {
    let flows = Arc::new(Mutex::new((BTreeSet::<String>::new(), 0u64, BTreeMap::<String, BTreeSet<String>>::new())));
    let f2 = flows.clone();
    let lines = Stdout::Lines(Box::new(move |l: &str| {
        let v: Value = serde_json::from_str(l).unwrap_or_default();
        let Ok(mut f) = f2.lock() else { return };
        match v["type"].as_str() {
            Some("top") => {
                let key = format!(
                    "{}/{}/{}/{}/{}/{}/{}/{}",
                    v["netns"]["inode"], v["ifindex"], v["direction"], v["proto"], v["src"], v["dst"], v["sport"], v["dport"]
                );
                f.2.entry(dst_class(&v)).or_default().insert(key.clone());
                f.0.insert(key);
            }
            Some("lost") if v["source"] == "flow" => f.1 += v["count"].as_u64().unwrap_or(0),
            _ => {}
        }
    }));
    let p0 = lab_packets(lab);
    let t = match tracer(&args(&["top", "--by", "flow", "--json", "--interval", "1"]), lines) {
        Ok(t) => t,
        Err(e) => {
            println!("lru: {e}");
            return;
        }
    };
    let map = bpf::maps(t.pid()).into_iter().find(|m| m.name == "TOP_FLOWS");
    let mut fill = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(16) {
        std::thread::sleep(Duration::from_secs(1));
        fill.push(map.as_ref().and_then(bpf::entries).unwrap_or(0));
    }
    let stopped = t.stop();
    let packets = lab_packets(lab) - p0;
    let s = Summary::of(&stopped.stderr);
    let (distinct, lost_lines, classes) = flows.lock().map(|f| (f.0.len(), f.1, f.2.clone())).unwrap_or_default();
    let mut classes: Vec<(String, usize)> = classes.into_iter().map(|(k, v)| (k, v.len())).collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.1));
    println!("\n## `top`'s flow table with {} fresh namespaces (16 s from the tracer's start, no traffic but their own)\n", lab.ns.len());
    println!(
        "- table: {} (LRU per-CPU hash, max {} entries, flags {:#x}); entries each second: {}",
        map.as_ref().map(|m| m.name.as_str()).unwrap_or("TOP_FLOWS not found"),
        map.as_ref().map(|m| m.max_entries).unwrap_or(0),
        map.as_ref().map(|m| m.flags).unwrap_or(0),
        fill.iter().map(|x| count(*x)).collect::<Vec<_>>().join(" ")
    );
    println!("- distinct flows reported (interface, direction, addresses, ports): {}", count(distinct as u64));
    println!(
        "- by destination: {}",
        classes.iter().take(8).map(|(k, n)| format!("{k} {}", count(*n as u64))).collect::<Vec<_>>().join(", ")
    );
    println!("- flow packets reported lost: {} (summary: {})", count(lost_lines), s.lost_text());
    println!("- packets on the lab's host veths meanwhile: {} ({:.0}/s)", count(packets), packets as f64 / 16.0);
}

/// What kind of destination a flow row has: the multicast group (the
/// solicited-node groups together), broadcast, or unicast.
fn dst_class(v: &Value) -> String {
    let proto = v["proto"].as_str().or(v["l3"].as_str()).unwrap_or("?");
    let dst = v["dst"].as_str().unwrap_or("");
    let what = if dst.starts_with("ff02::1:ff") {
        "ff02::1:ff00:0/104".to_string()
    } else if dst.starts_with("ff") || dst.starts_with("224.") || dst.starts_with("239.") {
        dst.to_string()
    } else if dst.ends_with(".255") {
        "broadcast".to_string()
    } else {
        "unicast".to_string()
    };
    format!("{proto} to {what}")
}

struct ModeRow {
    key: &'static str,
    label: &'static str,
    args: Vec<String>,
    stdout_file: bool,
}

fn mode_rows(lab: &ScaleLab) -> Vec<ModeRow> {
    let pcap = format!("/dev/shm/tracer-bench-{}.pcapng", lab.id);
    let row = |key, label, a: &[&str], stdout_file| ModeRow { key, label, args: args(a), stdout_file };
    vec![
        row("netlink", "`tracer netlink`", &["netlink"], false),
        row("packets", "`tracer packets --all`", &["packets", "--all"], false),
        row("packets-json", "`tracer packets --all --json > FILE`", &["packets", "--all", "--json"], true),
        row("packets-w", "`tracer packets --all -w FILE`", &["packets", "--all", "-w", &pcap], false),
        row("top", "`tracer top --all`", &["top", "--all"], false),
        row("top-filter", "`tracer top --all udp` (filtered: programs attached)", &["top", "--all", "udp"], false),
        row("default", "`tracer` (default job)", &[], false),
    ]
}

/// The modes whose per-packet cost is compared between 2 and N namespaces.
const SMALL: &[&str] = &["packets-w", "top"];

/// One mode on the lab as it is now: the cells of its row, and the
/// packets per second the lab's host veths counted while it idled.
fn measure(lab: &ScaleLab, r: &ModeRow, secs: f64) -> (Vec<String>, f64) {
    let json = format!("/dev/shm/tracer-bench-{}.json", lab.id);
    let pcap = format!("/dev/shm/tracer-bench-{}.pcapng", lab.id);
    let stdout = if r.stdout_file { Stdout::File(PathBuf::from(&json)) } else { Stdout::Null };
    let head = vec![r.label.to_string(), lab.ns.len().to_string()];
    let tool = match tracer(&r.args, stdout) {
        Ok(t) => t,
        Err(e) => return ([head, vec![format!("failed: {e}")]].concat(), 0.0),
    };
    let pid = tool.pid();
    let ready = tool.ready_after.as_secs_f64();
    let (hwm, rss) = (status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS"));
    std::thread::sleep(Duration::from_secs(1));
    let p0 = bpf::programs(pid);
    let idle_pkts0 = lab_packets(lab);
    let cpu = CpuWindow::start(pid);
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    let idle_cpu = cpu.percent();
    let idle_secs = cpu.elapsed().as_secs_f64();
    let idle_rate = (lab_packets(lab) - idle_pkts0) as f64 / idle_secs;
    let p1 = bpf::programs(pid);
    let idle_ns: u64 = bpf::cost(&p0, &p1).values().map(|c| c.ns).sum();
    let tc = r.key != "netlink";
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let iwi = irq_work_interrupts();
    let flood = tc.then(|| load::udp_flood(&a.path(), &b.path(), &b.ip, "eth0", secs));
    let iwi = irq_work_interrupts().saturating_sub(iwi);
    let p2 = bpf::programs(pid);
    let mut c = bpf::Cost::default();
    for (_, v) in bpf::cost(&p1, &p2).iter().filter(|(k, _)| k.starts_with("pkt_") || k.starts_with("top_")) {
        c.add(*v);
    }
    let hwm_end = status_kib(pid, "VmHWM");
    let stopped = tool.stop();
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&json);
    let s = Summary::of(&stopped.stderr);
    eprintln!("bench: scale {:<13} {:>4} namespaces  ready {ready:.2} s  idle CPU {idle_cpu:.2}%  ({idle_rate:.0} lab packets/s while idle)", r.key, lab.ns.len());
    let cells = vec![
        format!("{ready:.2}"),
        format!("{:.0}", hwm as f64 / 1024.0),
        format!("{:.0}", rss as f64 / 1024.0),
        format!("{:.0}", hwm_end as f64 / 1024.0),
        format!("{idle_cpu:.2}"),
        if tc { format!("{:.3}", idle_ns as f64 / 1e9 / idle_secs * 100.0) } else { "-".into() },
        c.per_run().map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into()),
        flood.map(|f| format!("{:.0}k", f.sent_rate() / 1000.0)).unwrap_or_else(|| "-".into()),
        if c.runs > 0 { format!("{:.1}", iwi as f64 * 1000.0 / c.runs as f64) } else { "-".into() },
        s.lost_text(),
    ];
    ([head, cells].concat(), idle_rate)
}

const MODE_HEAD: &[&str] = &["mode", "namespaces", "ready s", "VmHWM MiB", "VmRSS MiB", "VmHWM at end MiB", "idle CPU %", "idle BPF %", "ns/packet (flood)", "flood sent/s", "IRQ work per 1,000 runs", "lost"];

fn print_modes(n: usize, rows: Vec<Vec<String>>, idle_rates: &[f64], secs: f64) {
    let mut t = Table::new(MODE_HEAD);
    for r in rows {
        t.row(r);
    }
    println!("\n## {n} namespaces, one mode at a time\n");
    println!("{}", t.render());
    println!(
        "\nready: from start to the ready line; VmHWM/VmRSS right after ready, VmHWM again after the flood; idle: {IDLE_SECS} s with no traffic but what the namespaces and veths send on their own (CPU of the tracer process; BPF: its programs' run time over the same time, % of one CPU); ns/packet: mean run time of its TC programs during {secs} s of 64-byte UDP between two of the namespaces (4 program runs per datagram: both `eth0` and both host veths); the rows with 2 namespaces were measured on the same lab before the others were made. Packets on the lab's host veths while idle: {}/s.",
        spread(idle_rates, 0)
    );
}

/// Namespaces created at 20 per second after the tracer is ready, each
/// sending a datagram every 20 ms from the moment it exists: the time
/// from its creation (its `eth0` up) until the tracer shows it (a packet
/// of it, or for `top` a row of its interface, which shows with or without
/// traffic; reports every 0.2 s).
fn attach_table(lab: &ScaleLab, opts: &Opts) {
    const ADDS: usize = 20;
    let modes = [
        ("packets-json", "`tracer packets --all --json`", args(&["packets", "--all", "--json"])),
        ("top", "`tracer top --all --by iface --json --interval 0.2`", args(&["top", "--all", "--by", "iface", "--json", "--interval", "0.2"])),
    ];
    let mut t = Table::new(&["mode", "namespaces added at 20/s", "traced", "creation to traced, s", "within 1 s"]);
    for (round, (key, label, a)) in modes.iter().enumerate() {
        if !opts.mode(key) {
            continue;
        }
        let first = lab.ns.len() + 1000 * (round + 1);
        let mut names: HashMap<String, usize> = HashMap::new();
        for k in first..first + ADDS {
            names.insert(format!("trs{}-{k}", lab.id), k);
            names.insert(format!("tsv{}x{k}", lab.id), k);
        }
        let seen: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
        let s2 = seen.clone();
        let lines = Stdout::Lines(Box::new(move |l: &str| {
            let v: Value = serde_json::from_str(l).unwrap_or_default();
            let hit = [v["netns"]["name"].as_str(), v["ifname"].as_str()].into_iter().flatten().find_map(|n| names.get(n).copied());
            if let (Some(k), Ok(mut s)) = (hit, s2.lock()) {
                s.entry(k).or_insert_with(Instant::now);
            }
        }));
        let tool = match tracer(a, lines) {
            Ok(t) => t,
            Err(e) => {
                t.row(vec![format!("{label} (failed: {e})")]);
                continue;
            }
        };
        let socks: Arc<Mutex<Vec<(usize, UdpSocket)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let (socks, stop, seen) = (socks.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let done: Vec<usize> = seen.lock().map(|s| s.keys().copied().collect()).unwrap_or_default();
                    if let Ok(v) = socks.lock() {
                        for (k, s) in v.iter().filter(|(k, _)| !done.contains(k)) {
                            let _ = (k, s.send(b"attach?"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let dst = lab.ns[0].ip.clone();
        let mut created: BTreeMap<usize, Instant> = BTreeMap::new();
        let t0 = Instant::now();
        for j in 0..ADDS {
            let due = t0 + Duration::from_millis(50 * j as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let k = first + j;
            let ns = lab.add(k);
            created.insert(k, Instant::now());
            let dst = dst.clone();
            let sock = in_netns(&ns.path(), move || {
                let s = UdpSocket::bind("0.0.0.0:0").ok()?;
                s.connect((dst.as_str(), 9)).ok()?;
                Some(s)
            })
            .join()
            .ok()
            .flatten();
            if let (Some(s), Ok(mut v)) = (sock, socks.lock()) {
                v.push((k, s));
            }
        }
        let create_secs = t0.elapsed().as_secs_f64();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && seen.lock().map(|s| s.len() < ADDS).unwrap_or(false) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = sender.join();
        let _ = tool.stop();
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let delays: Vec<f64> = created.iter().filter_map(|(k, c)| seen.get(k).map(|s| s.saturating_duration_since(*c).as_secs_f64())).collect();
        eprintln!("bench: attach {key}: {} of {ADDS} traced, created in {create_secs:.2} s", delays.len());
        t.row(vec![
            label.to_string(),
            format!("{ADDS} in {create_secs:.1} s"),
            format!("{} of {ADDS}", delays.len()),
            spread(&delays, 2),
            format!("{} of {ADDS}", delays.iter().filter(|d| **d <= 1.0).count()),
        ]);
        socks.lock().map(|mut v| v.clear()).unwrap_or_default();
        lab.remove_added();
        std::thread::sleep(Duration::from_secs(2));
    }
    println!("\n## Namespaces created after ready, at 20 per second, {} already there\n", lab.ns.len());
    println!("{}", t.render());
    println!("\ncreation to traced: from the new namespace's `eth0` being up (its datagrams start) to the tracer's first line about it, as read by the benchmark (packets drain every 20 ms; `top` reports every 0.2 s).");
}
