//! The drop flood of issue #11: 64-byte UDP datagrams from A to B as fast
//! as one sender goes, every one dropped by an nftables rule in B (its
//! counter says how many), with `tracer drops --netns B --json` (a record
//! per drop) and `tracer top --by reason --json --netns B` (per-CPU
//! counters, no record) running. Every drop must be either reported or
//! counted as lost: the table gives the rule's count, what the tracer
//! reported, what it said it lost, and the difference (which must be 0).
//!
//! usage: bench-drops [drop-flood] [--rounds N] [--seconds S]

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{
    bench::{
        load, loadavg, num_cpus,
        opts::Opts,
        round::Rig,
        tool::{Stdout, Summary, Tool},
        today,
    },
    tracer_bin,
};

/// The rule's counter in B.
fn counter(rig: &Rig) -> u64 {
    let j: Value = serde_json::from_str(&rig.b.sh("nft -j list chain inet benchdrop in")).expect("nft json");
    j["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .find_map(|o| o["rule"]["expr"].as_array()?.iter().find_map(|x| x["counter"]["packets"].as_u64()))
        .expect("a rule with a counter")
}

/// One run: the flood with the tracer (`args`, JSON on stdout) or without;
/// the rule's count, the datagrams/s sent, what the tracer reported and lost.
fn run(rig: &Rig, args: Option<&[&str]>, secs: f64) -> (u64, f64, u64, u64) {
    let reported = Arc::new(Mutex::new(0u64));
    let tool = args.map(|a| {
        let r = reported.clone();
        let mut cmd = Command::new(tracer_bin());
        cmd.args(a);
        let lines = Stdout::Lines(Box::new(move |l: &str| {
            let Ok(v) = serde_json::from_str::<Value>(l) else { return };
            let n = match v["type"].as_str() {
                Some("drop") if v["reason"] == "NETFILTER_DROP" && v["dport"] == 9999 => 1,
                Some("top") if v["reason"] == "NETFILTER_DROP" && v["ifname"] == "eth0" => v["drops"].as_u64().unwrap_or(0),
                _ => 0,
            };
            if let Ok(mut c) = r.lock() {
                *c += n;
            }
        }));
        Tool::start(cmd, "ready", lines, Duration::from_secs(60)).expect("tracer ready")
    });
    let before = counter(rig);
    let f = load::udp_flood(&rig.a.path(), &rig.b.path(), &rig.b.ip, "eth0", secs);
    let dropped = counter(rig) - before;
    let lost = match tool {
        Some(t) => {
            let stopped = t.stop();
            assert_eq!(stopped.code, Some(0), "{:?}", stopped.stderr);
            Summary::of(&stopped.stderr).lost_total()
        }
        None => 0,
    };
    let got = *reported.lock().expect("count");
    (dropped, f.sent_rate(), got, lost)
}

fn main() {
    let opts = Opts::from_env();
    if !opts.wants(&["drop-flood"]) {
        return;
    }
    let rounds = opts.rounds(3);
    let secs = opts.seconds(3.0);
    let rig = Rig::new();
    rig.b.sh(
        "nft add table inet benchdrop && nft add chain inet benchdrop in '{ type filter hook input priority 0; }' && \
         nft add rule inet benchdrop in udp dport 9999 counter drop",
    );
    println!(
        "# drop flood, {} (kernel {}, {} CPUs shared with other work; load average {} at start)",
        today(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        num_cpus(),
        loadavg()
    );
    println!("\n64-byte UDP datagrams A -> B, one sender as fast as it goes, all dropped by an nft rule in B; {rounds} rounds of {secs} s\n");
    println!("| mode | sent/s | dropped (rule counter) | dropped/s | reported | lost (reported by the tracer) | unaccounted |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let b = rig.b.name.clone();
    let drops_args = ["drops", "--netns", b.as_str(), "--json"];
    let top_args = ["top", "--by", "reason", "--json", "--interval", "1", "--netns", b.as_str()];
    let modes: [(&str, Option<&[&str]>); 3] =
        [("untraced", None), ("`tracer drops --netns B --json`", Some(&drops_args)), ("`tracer top --by reason --json --netns B`", Some(&top_args))];
    for r in 0..rounds {
        for (name, args) in &modes {
            let (dropped, rate, got, lost) = run(&rig, *args, secs);
            let gap = if args.is_some() { (dropped as i64 - got as i64 - lost as i64).to_string() } else { "-".into() };
            let got = if args.is_some() { got.to_string() } else { "-".into() };
            println!("| {name} (round {}) | {rate:.0} | {dropped} | {:.0} | {got} | {lost} | {gap} |", r + 1, dropped as f64 / secs);
        }
    }
    println!("\n(load average {} at the end)", loadavg());
}
