//! `tracer top` under load: a veth pair between two lab namespaces, pushed
//! with 64-byte UDP datagrams on one flow, then on a new flow for almost
//! every datagram (the flow table's worst case: an LRU insert and an
//! eviction per packet), then one TCP stream; each untraced, with `tracer
//! top` on both ends (by interface and by flow), and with `tracer packets`
//! on both ends for comparison. With the kernel's BPF statistics on, it
//! also prints what each program costs per run. Asserts nothing.
//!
//! `bench-top [SECONDS]` (default 3 per run).

use tracer_tests::{
    Lab,
    bench::{Load, ProgramStats, Result_, num_cpus, run, tracer, veth_pair},
};

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let lab = Lab::new(0);
    let (a, b, ia, ib) = veth_pair(&lab);
    let both = format!("{ia},{ib}");
    // On for the whole benchmark, untraced runs included, so that every
    // run pays the same (small) bookkeeping.
    let stats = ProgramStats::enable();
    println!(
        "top bench: veth pair {}/{ia} <-> {}/{ib}, {secs} s per run, {} CPUs, BPF run-time statistics {}",
        a.name,
        b.name,
        num_cpus(),
        if stats.is_some() { "on" } else { "unavailable" }
    );
    let loads = [
        ("UDP 64-byte datagrams, one flow", Load::Udp),
        ("UDP 64-byte datagrams, a new flow each", Load::UdpSpread),
        ("TCP bulk stream", Load::Tcp),
    ];
    for (name, load) in loads {
        println!("{name}:");
        let base = run("no tracing", load, &a, &b, &ib, secs, None);
        let by_if = run("tracer top --by iface, both ends", load, &a, &b, &ib, secs, Some(tracer(&["top", "--all", "-i", &both, "--by", "iface", "--json"])));
        let by_flow = run("tracer top --by flow, both ends", load, &a, &b, &ib, secs, Some(tracer(&["top", "--all", "-i", &both, "--by", "flow", "--json"])));
        let packets = run("tracer packets, both ends, text", load, &a, &b, &ib, secs, Some(tracer(&["packets", "--all", "-i", &both])));
        let pct = |r: &Result_| (r.rate / base.rate.max(1e-9) - 1.0) * 100.0;
        println!(
            "  => {}: top {:+.1}% (by iface) {:+.1}% (by flow), packets {:+.1}% vs untraced",
            base.unit,
            pct(&by_if),
            pct(&by_flow),
            pct(&packets)
        );
    }
    drop(stats);
}
