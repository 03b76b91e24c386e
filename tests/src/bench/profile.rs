//! Where the CPU goes, untraced and under `packets -w`, `packets --json`,
//! `top` and `top --by flow`, with one TCP stream and with the 64-byte UDP flood: `perf
//! record` on every CPU with the software clock (this machine kind has no
//! hardware counters), then the share of each process, the symbols that
//! took the most samples, and the samples in the tracer's BPF programs
//! (`bpf_prog_<tag>_<name>`), the ring buffer and the wakeups it sends.
//!
//! The machine is shared: other processes show in the profile as they ran.

use std::process::Command;

use super::{
    round::{self, Load, Mode, Rig},
    which,
};

/// What the third view picks out of the symbols.
const PER_PACKET: &[&str] = &["bpf_prog_", "bpf_ringbuf", "ringbuf", "irq_work", "ipi", "apic", "bpf_skb", "bpf_map", "htab", "lru", "ktime"];

pub fn run(rig: &Rig, modes: &[Mode], secs: f64) {
    if !which("perf") {
        println!("\n(perf is not installed: no profile; Debian's linux-perf has it)");
        return;
    }
    let plan = [
        ("untraced", Load::Tcp),
        ("packets-w", Load::Tcp),
        ("packets-json", Load::Tcp),
        ("top", Load::Tcp),
        ("top-flow", Load::Tcp),
        ("untraced", Load::Udp),
        ("packets-w", Load::Udp),
        ("packets-json", Load::Udp),
        ("top", Load::Udp),
        ("top-flow", Load::Udp),
    ];
    for (key, load) in plan {
        let Some(mode) = modes.iter().find(|m| m.key == key) else { continue };
        let data = rig.file("perf.data");
        let m = round::run_with(rig, mode, load, secs, Some(&data));
        let rate = match load {
            Load::Tcp => format!("{:.1} Gbit/s", m.rate),
            Load::Udp | Load::UdpNewFlows => format!("{:.0}k datagrams/s", m.rate / 1000.0),
        };
        println!("\n## Profile: {} under {load:?} ({rate}), {secs} s, every CPU, cpu-clock samples\n", mode.label);
        let report = |sort: &str, limit: &str| {
            let out = Command::new("perf")
                .args(["report", "-i", &data, "--no-children", "--sort", sort, "--stdio", "-g", "none", "--percent-limit", limit])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            // Only the summary lines (no comments).
            out.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).map(str::to_string).collect::<Vec<_>>()
        };
        println!("by process (at least 1%):\n```");
        report("comm", "1").iter().take(12).for_each(|l| println!("{l}"));
        println!("```\nby symbol (the 20 largest):\n```");
        report("sym", "0.3").iter().take(20).for_each(|l| println!("{l}"));
        println!("```\nBPF programs, ring buffer, wakeups, maps:\n```");
        report("sym", "0.01").iter().filter(|l| PER_PACKET.iter().any(|p| l.contains(p))).take(20).for_each(|l| println!("{l}"));
        println!("```");
        let _ = std::fs::remove_file(&data);
        let _ = std::fs::remove_file(format!("{data}.old"));
    }
}
