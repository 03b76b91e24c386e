//! Packet tracing under load: a veth pair between two lab namespaces,
//! pushed with UDP (small datagrams, packets/s) and TCP (one bulk stream,
//! Gbit/s) from python3 sockets, first untraced, then with the tracer on
//! both ends (text to /dev/null, and pcapng), then the tracer and tcpdump
//! each on one end. Prints rates, CPU and lost events; asserts nothing.
//!
//! `bench-packets [SECONDS]` (default 3 per run).

use std::process::Command;

use tracer_tests::{
    Lab,
    bench::{Load, Result_, num_cpus, run, tracer, veth_pair, which},
};

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let lab = Lab::new(0);
    let (a, b, ia, ib) = veth_pair(&lab);
    let pcap = std::env::temp_dir().join(format!("bench-{}.pcapng", lab.id));
    let pcap_s = pcap.to_string_lossy().into_owned();
    let both = format!("{ia},{ib}");
    println!("packet bench: veth pair {}/{ia} <-> {}/{ib}, {secs} s per run, {} CPUs", a.name, b.name, num_cpus());
    for (name, load) in [("UDP 64-byte datagrams", Load::Udp), ("TCP bulk stream", Load::Tcp)] {
        println!("{name}:");
        let base = run("no tracing", load, &a, &b, &ib, secs, None);
        let both_text = run("tracer, both ends, text", load, &a, &b, &ib, secs, Some(tracer(&["packets", "--all", "-i", &both])));
        run("tracer, both ends, -w pcapng", load, &a, &b, &ib, secs, Some(tracer(&["packets", "--all", "-i", &both, "-w", &pcap_s])));
        run("tracer, both ends, --hops", load, &a, &b, &ib, secs, Some(tracer(&["packets", "--all", "-i", &both, "--hops"])));
        let one_tr = run("tracer, one end, -w pcapng", load, &a, &b, &ib, secs, Some(tracer(&["packets", "--netns", &a.name, "-w", &pcap_s])));
        let mut td = Command::new("ip");
        td.args(["netns", "exec", &a.name, "tcpdump", "-n", "-i", &ia, "-w", &pcap_s]);
        let one_td = if which("tcpdump") {
            Some(run("tcpdump, one end, -w pcap", load, &a, &b, &ib, secs, Some((td, "listening"))))
        } else {
            println!("  (tcpdump not installed: skipped)");
            None
        };
        let pct = |r: &Result_| (r.rate / base.rate.max(1e-9) - 1.0) * 100.0;
        println!(
            "  => tracer on both ends: {:+.1}% {} vs untraced; tracer on one end {:+.1}%{}",
            pct(&both_text),
            base.unit,
            pct(&one_tr),
            one_td.as_ref().map(|t| format!(", tcpdump on one end {:+.1}%", pct(t))).unwrap_or_default()
        );
        let _ = (base.delivered, base.sys_cpu, base.tool_cpu, &base.note);
    }
    let _ = std::fs::remove_file(&pcap);
}

