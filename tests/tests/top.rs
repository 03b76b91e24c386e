//! `tracer top`: counts made in the kernel, checked against traffic of
//! known size and number sent between lab namespaces (python3 sockets),
//! against the kernel's own interface counters, and against the kernel's
//! list of attached programs once the tracer has stopped.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{Lab, LabNs, Tracer, nft_counters, nft_input_drops, nstat, quiet, sh, tcp_stream, tracer_run, wait_until};

/// UDP header plus IPv4 plus Ethernet: a datagram of payload P is a frame of P + 42 bytes.
const UDP_OVERHEAD: u64 = 42;

fn host_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").expect("own netns").ino()
}

/// Sends `count` datagrams of `size` bytes from `from` (bound to `sport`)
/// to `to`:`dport`, and to `dport + i % ports` when `ports` > 1.
fn udp_blast(from: &LabNs, to: &str, sport: u16, dport: u16, ports: u32, count: u32, size: usize) {
    let py = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('',{sport}))\n\
         p=b'x'*{size}\n\
         for i in range({count}):\n    s.sendto(p,('{to}',{dport}+i%{ports}))\n"
    );
    from.sh(&format!("python3 -c {}", tracer_tests::shell_quote(&py)));
}

fn top_rows(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| e["type"] == "top").cloned().collect()
}

fn lost(events: &[Value], source: &str) -> u64 {
    events.iter().filter(|e| e["type"] == "lost" && e["source"] == source).filter_map(|e| e["count"].as_u64()).sum()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// (namespace inode, ifname, direction) -> (packets, bytes), summed over
/// every report, of the flow rows that `pred` picks.
fn flow_sums(rows: &[Value], pred: impl Fn(&Value) -> bool) -> BTreeMap<(u64, String, String), (u64, u64)> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| pred(r)) {
        let dir = r["direction"].as_str().expect("direction").to_string();
        let (p, b) = if dir == "egress" {
            assert_eq!((u(r, "rx_packets"), u(r, "rx_bytes")), (0, 0), "an egress flow receives nothing: {r}");
            (u(r, "tx_packets"), u(r, "tx_bytes"))
        } else {
            assert_eq!((u(r, "tx_packets"), u(r, "tx_bytes")), (0, 0), "an ingress flow sends nothing: {r}");
            (u(r, "rx_packets"), u(r, "rx_bytes"))
        };
        let key = (r["netns"]["inode"].as_u64().expect("inode"), r["ifname"].as_str().expect("ifname").to_string(), dir);
        let e = out.entry(key).or_insert((0, 0));
        e.0 += p;
        e.1 += b;
    }
    out
}

/// (namespace inode, ifname) -> (rx packets, rx bytes, tx packets, tx bytes)
/// over every report, of the interface rows (a namespace's row of the
/// drops on no traced interface, `ifname: null`, is none: the host's own
/// drops make one at any time).
fn iface_sums(rows: &[Value]) -> BTreeMap<(u64, String), [u64; 4]> {
    let mut out: BTreeMap<(u64, String), [u64; 4]> = BTreeMap::new();
    for r in rows {
        let Some(ifname) = r["ifname"].as_str() else {
            assert!(r["ifname"].is_null() && r["ifindex"].is_null() && r.get("drops").is_some(), "a row with no interface counts drops: {r}");
            continue;
        };
        let e = out.entry((r["netns"]["inode"].as_u64().expect("inode"), ifname.to_string())).or_default();
        for (i, k) in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"].iter().enumerate() {
            e[i] += u(r, k);
        }
    }
    out
}

fn is_flow(r: &Value, from: &LabNs, to: &LabNs, sport: u16, dport: u16) -> bool {
    r["proto"] == "udp" && r["src"] == from.ip.as_str() && r["dst"] == to.ip.as_str() && r["sport"] == sport && r["dport"] == dport
}

/// The four places a packet from `a` to `b` crosses.
fn path(a: &LabNs, b: &LabNs) -> Vec<(u64, String, String)> {
    let h = host_inode();
    vec![
        (a.inode(), "eth0".into(), "egress".into()),
        (h, a.host_veth.clone(), "ingress".into()),
        (h, b.host_veth.clone(), "egress".into()),
        (b.inode(), "eth0".into(), "ingress".into()),
    ]
}


/// Keys in the running tracer's per-flow drop table (`DROP_FLOWS`).
fn drop_flow_entries(t: &Tracer) -> u64 {
    let maps = tracer_tests::bench::bpf::maps(t.pid());
    let m = maps.iter().find(|m| m.name == "DROP_FLOWS").unwrap_or_else(|| panic!("no DROP_FLOWS in {maps:?}"));
    tracer_tests::bench::bpf::entries(m).expect("DROP_FLOWS readable")
}

/// Seconds since midnight UTC of a report's `time` (RFC 3339, UTC).
fn secs_of_day(time: &str) -> f64 {
    let hms = time.split('T').nth(1).unwrap_or_default().trim_end_matches('Z');
    hms.split(':').map(|x| x.parse::<f64>().unwrap_or_else(|_| panic!("time {time}"))).fold(0.0, |acc, x| acc * 60.0 + x)
}

fn now_secs_of_day() -> f64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// Seconds from `a` to `b`, both seconds of a day, across midnight too.
fn since(a: f64, b: f64) -> f64 {
    (b - a).rem_euclid(86_400.0)
}

/// `eth0`'s packets and bytes in direction `dir` (`rx`, `tx`), read as one
/// pair: the two are separate files, and a packet arriving between the
/// reads (a 54-byte frame did in CI: equal packets, 54 bytes apart) would be in
/// one and not the other. Read again until the packets did not move.
fn sysfs_pair(ns: &LabNs, dir: &str) -> [u64; 2] {
    loop {
        let p = sysfs(ns, &format!("{dir}_packets"));
        let b = sysfs(ns, &format!("{dir}_bytes"));
        if sysfs(ns, &format!("{dir}_packets")) == p {
            return [p, b];
        }
    }
}

fn sysfs(ns: &LabNs, stat: &str) -> u64 {
    ns.sh(&format!("cat /sys/class/net/eth0/statistics/{stat}")).trim().parse().expect("counter")
}

#[test]
fn a_flow_is_counted_exactly_on_each_of_its_four_hops() {
    flow_counted_exactly(false);
}

/// The same, with the maps read key by key as on kernels without batch
/// lookups (before 5.6).
#[test]
fn a_flow_is_counted_exactly_when_maps_are_walked_key_by_key() {
    flow_counted_exactly(true);
}

fn flow_counted_exactly(walk: bool) {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    if walk {
        // SAFETY: the tests run one at a time (--test-threads=1).
        unsafe { std::env::set_var("TRACER_MAP_READ", "walk") };
    }
    let mut t = Tracer::start(&["top", "--by", "flow", "--json", "--interval", "0.3"]);
    // SAFETY: as above.
    unsafe { std::env::remove_var("TRACER_MAP_READ") };
    let (n, size) = (250u64, 100usize);
    udp_blast(a, &b.ip, 41001, 5000, 1, n as u32, size);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let events = t.events();
    let rows = top_rows(&events);
    let ours: Vec<&Value> = rows.iter().filter(|r| is_flow(r, a, b, 41001, 5000)).collect();
    assert!(!ours.is_empty(), "no row of the flow: {rows:#?}");
    let sums = flow_sums(&rows, |r| is_flow(r, a, b, 41001, 5000));
    let want: BTreeMap<_, _> = path(a, b).into_iter().map(|k| (k, (n, n * (size as u64 + UDP_OVERHEAD)))).collect();
    assert_eq!(sums, want, "each hop counts every datagram, once");
    for r in &ours {
        assert_eq!((r["by"].as_str(), r["l3"].as_str()), (Some("flow"), Some("ipv4")));
        assert!(r["time"].as_str().is_some_and(|s| s.ends_with('Z') && s.len() == 30), "{}", r["time"]);
        assert!(r["ifindex"].as_u64().is_some_and(|i| i > 0));
        assert!(r["container"].is_null());
        let inode = r["netns"]["inode"].as_u64();
        let name = if inode == Some(a.inode()) {
            Some(a.name.as_str())
        } else if inode == Some(b.inode()) {
            Some(b.name.as_str())
        } else {
            None
        };
        assert_eq!(r["netns"]["name"].as_str(), name, "{r}");
    }
    // Nothing lost, and the summary says so.
    assert!(events.iter().all(|e| e["type"] != "lost"), "{events:?}");
    assert!(t.stderr().contains("lost: drop_stats=0 flow=0 stats=0 tcp_stats=0"), "{}", t.stderr());
}

#[test]
fn interface_counts_equal_the_kernels_and_rates_match_counts() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    quiet(&lab);
    // Let anything the lab started before going quiet pass.
    std::thread::sleep(Duration::from_millis(300));
    let mut t = Tracer::start(&["top", "--by", "iface", "--json", "--interval", "0.3"]);
    let ready_at = now_secs_of_day();
    let before = [sysfs_pair(a, "tx"), sysfs_pair(b, "rx")].concat();
    let (n, size) = (300u64, 200usize);
    udp_blast(a, &b.ip, 41002, 5000, 1, n as u32, size);
    std::thread::sleep(Duration::from_millis(700));
    let after = [sysfs_pair(a, "tx"), sysfs_pair(b, "rx")].concat();
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let rows = top_rows(&t.events());
    let sums = iface_sums(&rows);
    let at_a = sums.get(&(a.inode(), "eth0".into())).copied().unwrap_or_else(|| panic!("no row of a/eth0: {sums:?}"));
    let at_b = sums.get(&(b.inode(), "eth0".into())).copied().unwrap_or_else(|| panic!("no row of b/eth0: {sums:?}"));
    let delta: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    // The namespaces are quiet: everything they sent and received while
    // the tracer ran is in both counts.
    assert_eq!([at_a[2], at_a[3], at_b[0], at_b[1]].to_vec(), delta, "top's counts vs the kernel's (a tx, b rx)");
    // ... and the datagrams are part of it (the rest: ARP, ICMP errors).
    assert!(at_a[2] >= n && at_a[3] >= n * (size as u64 + UDP_OVERHEAD), "{at_a:?}");
    assert!(at_a[2] <= n + 4, "{at_a:?}");
    // The host veths saw the same frames.
    let host_a = sums[&(host_inode(), a.host_veth.clone())];
    assert_eq!((host_a[0], host_a[1]), (at_a[2], at_a[3]), "a's veth pair");

    // Every report has a row for each lab interface, rates are counts over
    // the measured interval, and intervals are what was asked.
    let times: BTreeSet<&str> = rows.iter().filter_map(|r| r["time"].as_str()).collect();
    assert!(times.len() >= 3, "{times:?}");
    let last = *times.last().expect("a report");
    // Each report's interval is the time since the report before it (a
    // tick the machine made late is longer, never wrong), and the first
    // one's starts when counting does, not when loading did (0.78 s for
    // 0.3 when it did): no earlier than the ready line.
    let interval_of = |time: &str| rows.iter().find(|r| r["time"] == time).and_then(|r| r["interval_s"].as_f64()).expect("interval_s");
    let stamps: Vec<(f64, f64)> = times.iter().map(|t| (secs_of_day(t), interval_of(t))).collect();
    let first = since(ready_at, stamps[0].0);
    assert!(stamps[0].1 <= first + 0.25, "first interval {} s, {first} s after ready", stamps[0].1);
    for w in stamps.windows(2) {
        let gap = since(w[0].0, w[1].0);
        assert!((w[1].1 - gap).abs() <= 0.2, "interval {} s, {gap} s after the report before", w[1].1);
    }
    for time in &times {
        let of: Vec<&Value> = rows.iter().filter(|r| r["time"] == *time).collect();
        for (ino, ifname) in [(a.inode(), "eth0"), (b.inode(), "eth0"), (host_inode(), a.host_veth.as_str()), (host_inode(), lab.bridge.as_str())] {
            assert!(of.iter().any(|r| r["netns"]["inode"] == ino && r["ifname"] == ifname), "{time}: no {ifname}");
        }
        for r in of {
            let secs = r["interval_s"].as_f64().expect("interval_s");
            // Never shorter than asked (the last one ends at the stop).
            if *time != last {
                assert!(secs >= 0.25, "interval {secs}: {r}");
            }
            for (n, pps, bytes, bps) in [("rx_packets", "rx_pps", "rx_bytes", "rx_bps"), ("tx_packets", "tx_pps", "tx_bytes", "tx_bps")] {
                let want_pps = u(r, n) as f64 / secs;
                let want_bps = u(r, bytes) as f64 * 8.0 / secs;
                assert!((r[pps].as_f64().expect("pps") - want_pps).abs() <= 0.01 + want_pps * 1e-5, "{r}");
                assert!((r[bps].as_f64().expect("bps") - want_bps).abs() <= 0.01 + want_bps * 1e-5, "{r}");
            }
        }
    }
}

#[test]
fn a_filter_restricts_what_is_counted_and_netns_one_namespace() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    // Interfaces: only the selected namespace's, and only what the filter passes.
    let mut t = Tracer::start(&["top", "--by", "iface", "--json", "--interval", "0.3", "--netns", &a.name, "udp", "port", "5001"]);
    let mut f = Tracer::start(&["top", "--by", "flow", "--json", "--interval", "0.3", "udp port 5001"]);
    udp_blast(a, &b.ip, 41003, 5001, 1, 40, 64);
    udp_blast(a, &b.ip, 41004, 5002, 1, 60, 64);
    a.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", b.ip));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert_eq!(f.stop(), 0, "{}", f.stderr());

    let rows = top_rows(&t.events());
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["netns"]["inode"] == a.inode() && r["ifname"] == "eth0"), "--netns leaked: {rows:?}");
    let sums = iface_sums(&rows);
    assert_eq!(sums[&(a.inode(), "eth0".to_string())], [0, 0, 40, 40 * (64 + UDP_OVERHEAD)], "only port 5001");

    let rows = top_rows(&f.events());
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r["proto"], "udp", "{r}");
        assert!(r["sport"] == 5001 || r["dport"] == 5001, "{r}");
    }
    let want: BTreeMap<_, _> = path(a, b).into_iter().map(|k| (k, (40, 40 * (64 + UDP_OVERHEAD)))).collect();
    assert_eq!(flow_sums(&rows, |r| is_flow(r, a, b, 41003, 5001)), want);
}

#[test]
fn packets_of_evicted_flows_are_counted_as_lost() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    // 6,000 datagrams to as many ports, seen on four interfaces: 24,000
    // flows for a table of 16,384. One interval outlasts the blast, so
    // flows are evicted before any read, however slow the machine (an
    // emulated one sends for seconds, and a flow read before its eviction
    // is not lost).
    let filter = format!("udp and src host {} and dst host {}", a.ip, b.ip);
    let mut t = Tracer::start(&["top", "--by", "flow", "--json", "--interval", "60", &filter]);
    let n = 6000u64;
    udp_blast(a, &b.ip, 41005, 20000, n as u32, n as u32, 16);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let events = t.events();
    let rows = top_rows(&events);
    let counted: u64 = rows.iter().map(|r| u(r, "rx_packets") + u(r, "tx_packets")).sum();
    let flow_lost = lost(&events, "flow");
    assert!(flow_lost > 0, "24,000 flows fit in the table? {counted} counted");
    assert_eq!(counted + flow_lost, 4 * n, "every packet is in a flow row or counted as lost ({counted} + {flow_lost})");
    assert_eq!(lost(&events, "stats"), 0);
    assert!(t.stderr().contains(&format!("lost: flow={flow_lost} stats=0")), "{}", t.stderr());
}

#[test]
fn interfaces_that_go_away_leave_the_report() {
    let lab = Lab::new(2);
    let a = &lab.ns[0];
    let c = lab.join_bridge("c", 70);
    let c_inode = c.inode();
    let mut t = Tracer::start(&["top", "--by", "iface", "--json", "--interval", "0.3"]);
    udp_blast(&c, &a.ip, 41006, 5000, 1, 20, 64);
    let seen = t
        .wait_for(Duration::from_secs(5), |e| e["netns"]["inode"] == c_inode && e["tx_packets"].as_u64().is_some_and(|p| p > 0))
        .unwrap_or_else(|| panic!("no row of c with its traffic: {:?}", t.lines()));
    assert_eq!(seen["netns"]["name"], c.name.as_str());
    sh(&format!("ip netns del {}", c.name));
    // The host veth lingers about a second; then two reports without either end.
    let gone = |e: &Value| e["netns"]["inode"] == c_inode || e["ifname"] == c.host_veth.as_str();
    let reports = |t: &Tracer| -> Vec<String> {
        let mut v: Vec<String> = t.events().iter().filter_map(|e| e["time"].as_str().map(String::from)).collect();
        v.dedup();
        v
    };
    let n0 = reports(&t).len();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let events = t.events();
            let times = reports(&t);
            times.len() >= n0 + 2 && times[times.len() - 2..].iter().all(|time| !events.iter().any(|e| e["time"] == time.as_str() && gone(e)))
        }),
        "rows of the deleted namespace stay: {:?}",
        t.lines().iter().rev().take(12).collect::<Vec<_>>()
    );
    // The rest of the lab is still reported.
    let last = reports(&t).pop().expect("a report");
    assert!(t.events().iter().any(|e| e["time"] == last.as_str() && e["netns"]["inode"] == a.inode()));
    assert_eq!(t.stop(), 0);
}

#[test]
fn nothing_is_left_attached_after_top_stops() {
    tracer_tests::assert_tc_job_attaches_first_and_leaves_nothing(&["top", "--by", "flow"]);
}

#[test]
fn top_by_interface_or_container_attaches_nothing_and_reads_the_kernels_counters() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let places = [(Some(a.path()), "eth0".to_string()), (Some(b.path()), "eth0".to_string()), (None, a.host_veth.clone()), (None, lab.bridge.clone())];
    let chains = || -> Vec<Vec<u32>> { places.iter().flat_map(|(ns, i)| [true, false].map(|ing| tracer_tests::attached_programs(ns.clone(), i, ing))).collect() };
    let before = chains();
    for by in ["container", "iface"] {
        quiet(&lab);
        let mut t = Tracer::start(&["top", "--by", by, "--json", "--interval", "0.3"]);
        assert!(wait_until(Duration::from_secs(2), || t.stderr().contains("(interface counters, every packet, by")), "{by}: {}", t.stderr());
        assert_eq!(chains(), before, "{by}: a program was attached");
        let tx0 = sysfs(a, "tx_packets");
        udp_blast(a, &b.ip, 41008, 5000, 1, 50, 32);
        std::thread::sleep(Duration::from_millis(700));
        let tx = sysfs(a, "tx_packets") - tx0;
        assert_eq!(t.stop(), 0, "{}", t.stderr());
        let events = t.events();
        let rows = top_rows(&events);
        let sent: u64 = rows.iter().filter(|r| r["netns"]["inode"] == a.inode()).map(|r| u(r, "tx_packets")).sum();
        assert!(tx >= 50 && sent == tx, "{by}: top says {sent} sent by a, its eth0 {tx}: {rows:?}");
        assert!(t.stderr().contains("lost: drop_stats=0 flow=0 stats=0 tcp_stats=0"), "{}", t.stderr());
    }
    // A filter or flows need the programs again.
    let mut t = Tracer::start(&["top", "--by", "iface", "--json", "udp"]);
    assert!(wait_until(Duration::from_secs(2), || t.stderr().contains("ready")), "{}", t.stderr());
    assert!(!t.stderr().contains("interface counters"), "{}", t.stderr());
    assert_ne!(chains(), before);
    assert_eq!(t.stop(), 0);
}

#[test]
fn netlink_tc_fallback_counts_and_leaves_no_qdisc() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    // SAFETY: the tests run one at a time (--test-threads=1).
    unsafe { std::env::set_var("TRACER_TC", "netlink") };
    let mut t = Tracer::start(&["top", "--by", "iface", "--json", "--netns", &a.name, "--interval", "0.3", "udp port 5007"]);
    // SAFETY: as above.
    unsafe { std::env::remove_var("TRACER_TC") };
    assert!(wait_until(Duration::from_secs(2), || t.stderr().contains("(netlink-tc,")), "{}", t.stderr());
    let filters = a.sh("tc filter show dev eth0 ingress; tc filter show dev eth0 egress");
    assert!(filters.contains("top_ingress") && filters.contains("top_egress"), "{filters}");
    udp_blast(a, &b.ip, 41007, 5007, 1, 30, 10);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(t.stop(), 0);
    assert_eq!(iface_sums(&top_rows(&t.events()))[&(a.inode(), "eth0".to_string())], [0, 0, 30, 30 * (10 + UDP_OVERHEAD)]);
    let qdisc = a.sh("tc qdisc show dev eth0");
    assert!(!qdisc.contains("clsact"), "clsact left behind: {qdisc}");
    let filters = a.sh("tc filter show dev eth0 ingress; tc filter show dev eth0 egress");
    assert!(filters.trim().is_empty(), "filters left behind: {filters}");
}

#[test]
fn text_reports_one_table_per_interval_and_count_stops() {
    let lab = Lab::new(1);
    let a = &lab.ns[0];
    let (code, out, err) = tracer_run(&["top", "-c", "3", "--interval", "0.2", "--netns", &a.name]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ready") && err.contains("3 reports"), "{err}");
    let headers: Vec<&str> = out.lines().filter(|l| l.contains("by container  over")).collect();
    assert_eq!(headers.len(), 3, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with(&a.name)).collect();
    assert_eq!(rows.len(), 3, "one row per report, the namespace's: {out}");
    assert!(out.lines().filter(|l| l.starts_with("CONTAINER")).count() == 3, "{out}");
    // By interface, the row is NAMESPACE/IFACE.
    let (code, out, err) = tracer_run(&["top", "-c", "1", "--interval", "0.2", "--by", "iface", "--netns", &a.name]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with(&format!("{}/eth0 ", a.name))), "{out}");
}

/// Waits until `ns`'s eth0 has received nothing for a second: the lab's
/// own chatter when its links came up (IPv6 before `quiet`, dropped in
/// every namespace) is over, and the drops counted are the test's.
fn settle(ns: &LabNs) {
    let (mut last, mut since) = (sysfs(ns, "rx_packets"), std::time::Instant::now());
    let settled = wait_until(Duration::from_secs(10), || {
        let now = sysfs(ns, "rx_packets");
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        }
        since.elapsed() >= Duration::from_secs(1)
    });
    assert!(settled, "{} keeps receiving", ns.name);
}

/// The sum of field `k` over the rows `pred` picks (each must carry it).
fn sum_of(rows: &[Value], k: &str, pred: impl Fn(&Value) -> bool) -> u64 {
    rows.iter().filter(|r| pred(r)).map(|r| u(r, k)).sum()
}

/// Drops are counted in the kernel (the `kfree_skb` program's counters,
/// no record per drop) in the rows they belong to: an nftables rule in b
/// dropping 41 datagrams that came in on eth0 is 41 drops on b's eth0 row
/// (the rule's counter), 13 datagrams to a closed port over b's loopback
/// (an interface top does not trace) are 13 on b's row with no interface
/// (`ifname` absent, `b/-` in text: b's `UdpNoPorts` growth), and b's
/// container row has both; a's namespace is not selected, and every row
/// carries `drops`, `retransmits` and `resets`.
#[test]
fn drops_are_counted_on_their_interface_and_namespace_rows() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    settle(b);
    let no_ports = nstat(b, "UdpNoPorts");
    let mut by_if = Tracer::start(&["top", "--json", "--by", "iface", "--interval", "0.3", "--netns", &b.name]);
    let mut by_ns = Tracer::start(&["top", "--json", "--interval", "0.3", "--netns", &b.name]);
    udp_blast(a, &b.ip, 4444, 5555, 1, 41, 20);
    udp_blast(b, "127.0.0.1", 4445, 5556, 1, 13, 20);
    std::thread::sleep(Duration::from_millis(800));
    // By interface or container no row is a flow: the drop program
    // leaves the per-flow table alone (it reads no headers then).
    for t in [&by_if, &by_ns] {
        assert_eq!(drop_flow_entries(t), 0, "drops counted per flow that no row shows");
    }
    assert_eq!(by_if.stop(), 0, "{}", by_if.stderr());
    assert_eq!(by_ns.stop(), 0, "{}", by_ns.stderr());
    let (rule, closed) = (nft_counters(b)[0], nstat(b, "UdpNoPorts") - no_ports);
    assert_eq!((rule, closed), (41, 13), "the kernel's own counts");
    let rows = top_rows(&by_if.events());
    let in_b = |r: &Value| r["netns"]["inode"] == b.inode();
    assert!(!rows.is_empty() && rows.iter().all(|r| in_b(r) && r["by"] == "iface"), "{rows:?}");
    assert!(rows.iter().all(|r| r["drops"].is_u64() && r["retransmits"].is_u64() && r["resets"].is_u64()), "{rows:?}");
    assert_eq!(sum_of(&rows, "drops", |r| r["ifname"] == "eth0"), rule, "{rows:?}");
    assert_eq!(sum_of(&rows, "drops", |r| r.get("ifname").is_none()), closed, "{rows:?}");
    assert!(rows.iter().filter(|r| r.get("ifname").is_none()).all(|r| r.get("ifindex").is_none() && u(r, "rx_packets") == 0), "{rows:?}");
    assert_eq!(sum_of(&rows, "retransmits", |_| true) + sum_of(&rows, "resets", |_| true), 0, "{rows:?}");
    let rows = top_rows(&by_ns.events());
    assert!(!rows.is_empty() && rows.iter().all(|r| in_b(r) && r["by"] == "container"), "{rows:?}");
    assert_eq!(sum_of(&rows, "drops", |_| true), rule + closed, "{rows:?}");
    for t in [&by_if, &by_ns] {
        assert!(t.stderr().contains("drops and TCP"), "{}", t.stderr());
        let err = t.stderr();
        let summary = err.lines().find(|l| l.contains("reports, lost: ")).unwrap_or_else(|| panic!("{err}"));
        assert!(["drop_stats=0", "tcp_stats=0", "flow=0", " stats=0"].iter().all(|s| summary.contains(s)), "{err}");
    }
}

/// Retransmissions are counted in the kernel where they leave: a 4 MB
/// stream from a to b through a rule in b dropping one data segment in 20
/// shows, on a's eth0 row and on the stream's egress flow row there, as
/// many retransmitted segments as a's own `TcpRetransSegs` grew; by flow,
/// b's dropped datagrams show on their ingress flow row, as many as the
/// rule dropping them counted.
#[test]
fn retransmits_are_counted_on_the_senders_interface_and_flow() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["tcp dport 7777 meta length gt 200 numgen random mod 20 == 0", "udp dport 5555"]);
    let before = nstat(a, "TcpRetransSegs");
    let mut by_if = Tracer::start(&["top", "--json", "--by", "iface", "--interval", "0.3", "--netns", &a.name]);
    let mut by_flow = Tracer::start(&["top", "--json", "--by", "flow", "--interval", "0.3", "--netns", &a.name]);
    let mut drop_flows = Tracer::start(&["top", "--json", "--by", "flow", "--interval", "0.3", "--netns", &b.name]);
    assert_eq!(tcp_stream(a, b, 7777, 1000), 4_000_000, "the server got every byte");
    udp_blast(a, &b.ip, 4444, 5555, 1, 17, 20);
    std::thread::sleep(Duration::from_millis(800));
    assert!(drop_flow_entries(&drop_flows) > 0, "by flow, drops are counted per flow");
    assert_eq!(by_if.stop(), 0, "{}", by_if.stderr());
    assert_eq!(by_flow.stop(), 0, "{}", by_flow.stderr());
    assert_eq!(drop_flows.stop(), 0, "{}", drop_flows.stderr());
    let grown = nstat(a, "TcpRetransSegs") - before;
    assert!(grown > 0, "the rule made retransmissions ({})", b.sh("nft list ruleset"));
    let rows = top_rows(&by_if.events());
    assert!(rows.iter().all(|r| r["netns"]["inode"] == a.inode()), "{rows:?}");
    assert_eq!(sum_of(&rows, "retransmits", |r| r["ifname"] == "eth0"), grown, "{rows:?}");
    assert_eq!(sum_of(&rows, "retransmits", |_| true), grown, "{rows:?}");
    let rows = top_rows(&by_flow.events());
    let stream = |r: &Value| {
        r["netns"]["inode"] == a.inode() && r["ifname"] == "eth0" && r["direction"] == "egress" && r["proto"] == "tcp" && r["src"] == a.ip.as_str() && r["dport"] == 7777
    };
    assert_eq!(sum_of(&rows, "retransmits", stream), grown, "{rows:?}");
    assert_eq!(sum_of(&rows, "retransmits", |r| !stream(r)), 0, "{rows:?}");
    // The stream's flow rows also count its packets.
    assert!(sum_of(&rows, "tx_packets", stream) > 0, "{rows:?}");
    let rows = top_rows(&drop_flows.events());
    let dropped = |r: &Value| r["netns"]["inode"] == b.inode() && r["ifname"] == "eth0" && r["direction"] == "ingress" && r["proto"] == "udp" && r["dport"] == 5555;
    assert_eq!(sum_of(&rows, "drops", dropped), nft_counters(b)[1], "{rows:?}");
    assert_eq!(sum_of(&rows, "drops", dropped), 17);
    assert!(sum_of(&rows, "rx_packets", dropped) >= 17, "seen by TC before the rule: {rows:?}");
}
