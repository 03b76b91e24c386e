//! `tracer drops`: real drops made between lab namespaces, counted by the
//! tracer and by the kernel itself (an nftables rule's counter, the
//! namespace's SNMP counters read with `nstat`), which must agree exactly;
//! and each drop's namespace, interface, ports, reason and function.

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use tracer_tests::{Lab, LabNs, Tracer, nft_counters, nft_input_drops, nstat, nstat_of_pid, quiet, sh, shell_quote, tracer_run, wait_until};

/// Sends `count` datagrams of `size` bytes from `from` (port `sport`) to `to`:`dport`.
fn udp_send(from: &LabNs, to: &str, sport: u16, dport: u16, count: u32, size: usize) {
    let py = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('',{sport}))\n\
         for i in range({count}):\n    s.sendto(b'x'*{size},('{to}',{dport}))\n"
    );
    from.sh(&format!("python3 -c {}", shell_quote(&py)));
}

/// Whether the kernel gives each drop its reason: `skb:kfree_skb` has a
/// `reason` from Linux 5.17 on; before, the tracer reports `reason: null`.
fn kernel_has_reasons() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| tracer_tests::kernel_version() >= (5, 17))
}

/// The kernel function that frees a packet dropped for `reason` on a
/// kernel without reasons: what Debian's 5.10 reported in its guest for
/// these tests' drops.
fn function_without_reasons(reason: &str) -> &'static str {
    match reason {
        "NETFILTER_DROP" => "nf_hook_slow",
        "NO_SOCKET" => "__udp4_lib_rcv",
        "IP_INNOROUTES" => "ip_error",
        _ => panic!("no known function drops for {reason}"),
    }
}

/// Whether `e` is a drop of the kind `reason`: by its reason where the
/// kernel gives reasons; where it gives none, by a null reason and the
/// function that freed the packet (the offset in it left out).
fn is_drop_of(e: &Value, reason: &str) -> bool {
    e["type"] == "drop"
        && if kernel_has_reasons() {
            e["reason"] == reason
        } else {
            e["reason"].is_null() && e["function"].as_str().and_then(|f| f.split('+').next()) == Some(function_without_reasons(reason))
        }
}

fn drops<'a>(events: &'a [Value], reason: &str, dport: u16) -> Vec<&'a Value> {
    events.iter().filter(|e| is_drop_of(e, reason) && e["dport"] == dport).collect()
}

/// An nftables rule in b drops 37 datagrams to one port: the tracer reports
/// exactly as many `NETFILTER_DROP`s as the rule's counter, each in b's
/// namespace, on b's eth0, with the datagram's addresses and ports and a
/// kernel function name; 23 datagrams to a closed port are `NO_SOCKET`,
/// as many as b's `UdpNoPorts` grew. (Before 5.17 each kind is a null
/// reason and its own function: see [`is_drop_of`].)
#[test]
fn nft_drops_and_closed_port_match_the_kernels_counts() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    let no_ports_before = nstat(b, "UdpNoPorts");
    let mut t = Tracer::start(&["drops", "--json", "--netns", &b.name]);
    udp_send(a, &b.ip, 4444, 5555, 37, 20);
    udp_send(a, &b.ip, 4445, 5556, 23, 20);
    let done = wait_until(Duration::from_secs(10), || {
        let ev = t.events();
        drops(&ev, "NETFILTER_DROP", 5555).len() >= 37 && drops(&ev, "NO_SOCKET", 5556).len() >= 23
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(done, "not every drop seen: {:?}\n{}", t.lines(), t.stderr());
    let ev = t.events();
    let nf = drops(&ev, "NETFILTER_DROP", 5555);
    assert_eq!(nf.len() as u64, nft_counters(b)[0], "the rule's counter");
    assert_eq!(nf.len(), 37);
    let ns = drops(&ev, "NO_SOCKET", 5556);
    assert_eq!(ns.len() as u64, nstat(b, "UdpNoPorts") - no_ports_before, "UdpNoPorts");
    assert_eq!(ns.len(), 23);
    for (e, sport) in nf.iter().map(|e| (e, 4444)).chain(ns.iter().map(|e| (e, 4445))) {
        assert_eq!(e["netns"]["inode"], b.inode(), "{e}");
        assert_eq!(e["netns"]["name"], b.name.as_str(), "{e}");
        assert_eq!((e["ifname"].as_str(), e["attributed_by"].as_str()), (Some("eth0"), Some("device")), "{e}");
        assert_eq!((e["src"].as_str(), e["dst"].as_str()), (Some(a.ip.as_str()), Some(b.ip.as_str())), "{e}");
        assert_eq!((e["sport"].as_u64(), e["proto"].as_str(), e["unspecified"].as_bool()), (Some(sport), Some("udp"), Some(!kernel_has_reasons())), "{e}");
        let f = e["function"].as_str().unwrap_or_else(|| panic!("no function: {e}"));
        assert!(f.contains("+0x"), "{e}");
        // Decoded as `tracer packets` decodes: its summary and fields.
        assert!(e["summary"].as_str().is_some_and(|s| s.contains(&format!("{}.{sport} > {}.", a.ip, b.ip)) && s.contains("UDP, length 20")), "{e}");
    }
    // Only b's drops: a's namespace is not selected.
    assert!(ev.iter().filter(|e| e["type"] == "drop").all(|e| e["netns"]["inode"] == b.inode()), "{ev:?}");
    assert!(t.stderr().contains("lost: none"), "{}", t.stderr());
}

/// The filter is libpcap's, as for `tracer packets`: of two flows the same
/// rule drops (31 datagrams from port 4444, 19 from 4446, each carrying its
/// first payload byte), `src port 4444 and udp[8] = 0x61` keeps exactly the
/// first, while the rule counted both; what libpcap refuses is its own
/// sentence and exit 2.
#[test]
fn libpcap_filter_keeps_one_of_two_dropped_flows() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    let mut t = Tracer::start(&["drops", "--json", "--netns", &b.name, "src", "port", "4444", "and", "udp[8]", "=", "0x61"]);
    let send = |sport: u16, byte: char, count: u32| {
        let py = format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('',{sport}))\n\
             for i in range({count}):\n    s.sendto(b'{byte}'*20,('{}',5555))\n",
            b.ip
        );
        a.sh(&format!("python3 -c {}", shell_quote(&py)));
    };
    send(4444, 'a', 31);
    send(4446, 'a', 19);
    // Same flow, other payload: the byte test refuses these.
    send(4444, 'b', 7);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert_eq!(nft_counters(b)[0], 31 + 19 + 7, "the rule dropped all three");
    let ev = t.events();
    let kept: Vec<&Value> = ev.iter().filter(|e| e["type"] == "drop").collect();
    assert_eq!(kept.len(), 31, "{kept:?}");
    assert!(kept.iter().all(|e| e["sport"] == 4444 && e["dport"] == 5555 && is_drop_of(e, "NETFILTER_DROP")), "{kept:?}");
    assert!(t.stderr().contains("lost: none"), "{}", t.stderr());
    // Filtered in the kernel: only the 31 kept came up.
    assert!(t.stderr().contains("(filter in the kernel)"), "{}", t.stderr());
    assert!(t.stderr().contains("31 drop records from the kernel; the filter ran in the kernel"), "{}", t.stderr());
    let (code, out, err) = tracer_run(&["drops", "--all", "udp[8] ="]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("invalid filter") && err.contains("syntax error"), "{err}");
}

/// `tracer top --by reason` counts in the kernel (no record per drop): per
/// namespace, interface and reason, summed over its reports, exactly the
/// rule's counter (41 `NETFILTER_DROP`) and the closed port's `UdpNoPorts`
/// rise (13 `NO_SOCKET`); before 5.17, with no reasons, the rows of b's
/// eth0 have a null reason and add up to both counts together; a filter is
/// refused with one sentence.
#[test]
fn top_by_reason_counts_what_the_kernel_counted() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    let no_ports_before = nstat(b, "UdpNoPorts");
    let mut t = Tracer::start(&["top", "--by", "reason", "--json", "--interval", "0.3", "--netns", &b.name]);
    udp_send(a, &b.ip, 4444, 5555, 41, 20);
    udp_send(a, &b.ip, 4445, 5556, 13, 20);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let ev = t.events();
    let sum = |reason: Option<&str>| -> u64 {
        ev.iter()
            .filter(|e| e["type"] == "top" && e["by"] == "reason" && e["netns"]["inode"] == b.inode() && e["ifname"] == "eth0")
            .filter(|e| reason.map_or(e["reason"].is_null(), |r| e["reason"] == r))
            .filter_map(|e| e["drops"].as_u64())
            .sum()
    };
    let (rule, closed) = (nft_counters(b)[0], nstat(b, "UdpNoPorts") - no_ports_before);
    if kernel_has_reasons() {
        assert_eq!(sum(Some("NETFILTER_DROP")), rule, "{ev:?}");
        assert_eq!(sum(Some("NETFILTER_DROP")), 41);
        assert_eq!(sum(Some("NO_SOCKET")), closed, "{ev:?}");
        assert_eq!(sum(Some("NO_SOCKET")), 13);
    } else {
        // No reasons before 5.17: one row per namespace and interface, with
        // a null reason, counting both kinds of drop.
        assert!(ev.iter().filter(|e| e["type"] == "top").all(|e| e["reason"].is_null() && e["reason_code"].is_null()), "{ev:?}");
        assert_eq!(sum(None), rule + closed, "{ev:?}");
        assert_eq!((rule, closed), (41, 13));
    }
    // Only b's namespace, and no per-drop records.
    assert!(ev.iter().filter(|e| e["type"] == "top").all(|e| e["netns"]["inode"] == b.inode()), "{ev:?}");
    assert!(!ev.iter().any(|e| e["type"] == "drop"), "{ev:?}");
    assert!(t.stderr().contains("lost: none"), "{}", t.stderr());
    let (code, _, err) = tracer_run(&["top", "--by", "reason", "udp"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a packet filter does not apply") && err.trim().lines().count() == 1, "{err}");
}

/// The default job (`tracer` alone) puts drops on its one timeline with the
/// netlink audit and the packets: the nftables request that added the rule,
/// then the 9 drops it caused (as many as its counter), in that order.
#[test]
fn default_job_shows_the_rule_then_its_drops() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let table = format!("tdrop{}", lab.id);
    let mut t = Tracer::start(&["--json"]);
    b.sh(&format!(
        "nft add table inet {table} && nft add chain inet {table} in '{{ type filter hook input priority 0; }}' && nft add rule inet {table} in udp dport 5555 counter drop"
    ));
    udp_send(a, &b.ip, 4444, 5555, 9, 20);
    let is_drop = |e: &Value| is_drop_of(e, "NETFILTER_DROP") && e["dport"] == 5555 && e["netns"]["inode"] == b.inode();
    let done = wait_until(Duration::from_secs(10), || t.events().iter().filter(|e| is_drop(e)).count() >= 9);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(done, "{}", t.stderr());
    let ev = t.events();
    let rule = ev
        .iter()
        .position(|e| e["type"] == "netlink" && e["msg_type"] == "NFT_MSG_NEWRULE" && e["attrs"]["table"] == table.as_str())
        .unwrap_or_else(|| panic!("no NFT_MSG_NEWRULE for {table}: {:?}", ev.iter().filter(|e| e["type"] == "netlink").collect::<Vec<_>>()));
    let drops: Vec<usize> = ev.iter().enumerate().filter(|(_, e)| is_drop(e)).map(|(i, _)| i).collect();
    let counter: Value = serde_json::from_str(&b.sh(&format!("nft -j list chain inet {table} in"))).expect("nft json");
    let counted = counter["nftables"].as_array().expect("array").iter().find_map(|o| o["rule"]["expr"].as_array()?.iter().find_map(|x| x["counter"]["packets"].as_u64()));
    assert_eq!(Some(drops.len() as u64), counted, "the rule's counter");
    assert_eq!(drops.len(), 9);
    assert!(drops.iter().all(|&i| i > rule), "the rule (line {rule}) comes before its drops {drops:?}");
    // The datagrams themselves are on the timeline too, each before its drop.
    let first_packet = ev.iter().position(|e| e["type"] == "packet" && e["dport"] == 5555 && e["src"] == a.ip.as_str());
    assert!(first_packet.is_some_and(|p| p > rule && p < drops[0]), "packet {first_packet:?}, rule {rule}, drops {drops:?}");
}

/// `--reason` selects in the kernel, and the text form names reason,
/// function and packet; an unknown reason is one sentence naming a close one.
/// Before 5.17 (no reasons) the text form has `-` for the reason and the
/// function that dropped, and `--reason` is one sentence saying why not.
#[test]
fn reason_selects_and_text_reads_like_packets() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    // Before 5.17 there is no reason to select by: the same drops picked by
    // a filter, and `--reason` refused.
    let has_reasons = kernel_has_reasons();
    let args: &[&str] = if has_reasons { &["--reason", "no_socket"] } else { &["udp", "dst", "port", "5556"] };
    let mut t = Tracer::start(&[&["drops", "--netns", b.name.as_str()][..], args].concat());
    udp_send(a, &b.ip, 4444, 5555, 5, 20);
    udp_send(a, &b.ip, 4445, 5556, 3, 20);
    let done = wait_until(Duration::from_secs(10), || t.lines().iter().filter(|l| l.contains("5556")).count() >= 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0);
    assert!(done, "{:?}", t.lines());
    let lines = t.lines();
    assert_eq!(lines.len(), 3, "only NO_SOCKET: {lines:?}");
    let want = if has_reasons {
        format!("{}/eth0 drop NO_SOCKET at ", b.name)
    } else {
        format!("{}/eth0 drop - at {}+0x", b.name, function_without_reasons("NO_SOCKET"))
    };
    let pkt = format!(": IP {}.4445 > {}.5556: UDP, length 20", a.ip, b.ip);
    assert!(lines.iter().all(|l| l.contains(&want) && l.ends_with(&pkt)), "{lines:?}");
    let (code, out, err) = tracer_run(&["drops", "--reason", "NETFILTER_DORP"]);
    assert_ne!(code, 0);
    if has_reasons {
        assert!(err.contains("unknown drop reason NETFILTER_DORP") && err.contains("NETFILTER_DROP") && err.lines().count() == 1, "{err}");
    } else {
        for reason in ["NETFILTER_DORP", "no_socket"] {
            let (code, out, err) = tracer_run(&["drops", "--netns", &b.name, "--reason", reason]);
            assert_eq!((code, out.as_str()), (2, ""), "{err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(err.contains("this kernel gives no drop reasons") && err.contains("5.17") && err.contains("--reason cannot select"), "{err}");
        }
    }
    assert!(out.is_empty(), "{out}");
}

/// Traffic forwarded by b to c, then b's route to c removed under it: the
/// datagrams b can no longer route are `IP_INNOROUTES` drops in b (before
/// 5.17: null reason, freed in `ip_error`), as many as b's own
/// `IpExtInNoRoutes` counter grew, and a filter picks them.
#[test]
fn route_removed_under_traffic() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let c = lab.extra_ns("c");
    let (bc, cb) = (format!("trx{}b", lab.id), format!("trx{}c", lab.id));
    let net = format!("192.0.2.{}", 0);
    sh(&format!(
        "ip link add {bc} netns {b} type veth peer name {cb} netns {c} && \
         ip -n {b} addr add 192.0.2.1/24 dev {bc} && ip -n {b} link set {bc} up && \
         ip -n {c} addr add 192.0.2.2/24 dev {cb} && ip -n {c} link set {cb} up && \
         ip -n {c} route add default via 192.0.2.1",
        b = b.name,
        c = c.name
    ));
    b.sh("sysctl -qw net.ipv4.ip_forward=1");
    a.sh(&format!("ip route add {net}/24 via {}", b.ip));
    let before = nstat(b, "IpExtInNoRoutes");
    let mut t = Tracer::start(&["drops", "--json", "--netns", &b.name, "udp", "port", "7777"]);
    // 1,000 datagrams over about 2 s; the route goes after about 0.5 s.
    let py = "import socket,time\n\
              s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
              for i in range(1000):\n    s.sendto(b'x'*10,('192.0.2.2',7777))\n    time.sleep(0.002)\n";
    let reached_before = nstat(&c, "UdpNoPorts");
    let mut sender = a.spawn(&format!("python3 -c {}", shell_quote(py)));
    // Under traffic: once datagrams are forwarded to c (nothing listens
    // there), and a moment more (a guest under TCG starts python slowly).
    let flowing = wait_until(Duration::from_secs(20), || nstat(&c, "UdpNoPorts") > reached_before);
    std::thread::sleep(Duration::from_millis(200));
    b.sh(&format!("ip route del {net}/24 dev {bc}"));
    assert!(sender.wait().expect("sender").success());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let grown = nstat(b, "IpExtInNoRoutes") - before;
    let ev = t.events();
    let by_reason: BTreeMap<String, usize> = ev.iter().filter(|e| e["type"] == "drop").fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["reason"].as_str().or(e["function"].as_str()).unwrap_or("-").to_string()).or_default() += 1;
        m
    });
    let no_route = drops(&ev, "IP_INNOROUTES", 7777);
    let reached = nstat(&c, "UdpNoPorts") - reached_before;
    assert!(flowing && reached > 0 && grown > 100, "the route was removed under traffic: {reached} forwarded, {grown} unroutable ({by_reason:?})");
    assert_eq!(
        no_route.len() as u64,
        grown,
        "IpExtInNoRoutes; by reason: {by_reason:?}; b's counters and forwarding: {}",
        b.sh("nstat -az | grep -E '^Ip' | grep -v ' 0 '; sysctl net.ipv4.ip_forward net.ipv4.conf.eth0.forwarding net.ipv4.conf.all.rp_filter net.ipv4.conf.eth0.rp_filter; ip route")
    );
    assert!(no_route.iter().all(|e| e["ifname"] == "eth0" && e["netns"]["inode"] == b.inode() && e["dst"] == "192.0.2.2"), "{no_route:?}");
}

/// `tracer doctor` lists the tracepoints of `drops` and `tcp` with the
/// program this kernel gets for each (kfree_skb's with `reason` and
/// `rx_sk`, from 6.11 on), and says both can run.
#[test]
fn doctor_lists_the_tracepoints_and_their_arguments() {
    let (code, out, err) = tracer_run(&["doctor", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let d: Value = serde_json::from_str(out.trim()).expect("doctor json");
    let tps = d["tracepoints"].as_array().expect("tracepoints");
    let names: Vec<&str> = tps.iter().filter_map(|t| t["tracepoint"].as_str()).collect();
    for want in ["kfree_skb", "inet_sock_set_state", "tcp_retransmit_skb", "tcp_send_reset", "tcp_receive_reset", "tcp_probe", "tcp_destroy_sock"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let kfree = tps.iter().find(|t| t["tracepoint"] == "kfree_skb").expect("kfree_skb");
    let present: Vec<&str> = kfree["present"].as_array().expect("present").iter().filter_map(Value::as_str).collect();
    assert!(kfree["program"].is_string(), "{kfree}");
    // `reason` from 5.17 on; before, the two-argument program (5.10's prototype).
    let with_reason = tracer_tests::kernel_version() >= (5, 17);
    assert_eq!(present.contains(&"reason"), with_reason, "{kfree}");
    if tracer_tests::kernel_version() >= (6, 11) {
        assert!(present.contains(&"rx_sk"), "{kfree}");
    }
    for cap in ["drops", "tcp"] {
        let f = d["features"].as_array().expect("features").iter().find(|f| f["capability"] == cap).unwrap_or_else(|| panic!("{cap}: {d}"));
        assert_eq!((f["available"].as_bool(), f["via"].as_str()), (Some(true), Some("tp_btf")), "{f}");
    }
    let (code, text, _) = tracer_run(&["doctor"]);
    assert_eq!(code, 0);
    let args = if with_reason { "skb, location, reason" } else { "skb, location " };
    assert!(text.lines().any(|l| l.starts_with("kfree_skb ") && l.contains(args)), "{text}");
    assert!(text.lines().any(|l| l.starts_with("drops ") && l.contains("yes, with tp_btf")), "{text}");
    // The filter was tried for real (drop program, emitter and filter in
    // one program array): every kernel the tests run on takes it.
    assert_eq!((d["drop_filter"]["runs_in"].as_str(), d["drop_filter"].get("reason")), (Some("kernel"), None), "{}", d["drop_filter"]);
    assert!(text.lines().any(|l| l.starts_with("drop filter ") && l.contains("in the kernel")), "{text}");
}

/// In a real Docker container: datagrams from another container to a
/// closed port of `web` are `NO_SOCKET` drops named after web (container
/// and namespace), exactly as many as web's `UdpNoPorts` grew, and db's
/// namespace is not selected; `tracer tcp --container web` reports the
/// reset web sends to a connection attempt on a closed port.
#[test]
fn container_drops_and_resets_carry_its_identity() {
    let d = tracer_tests::docker::engine();
    let web = d.run("dropweb", &[], &["sleep", "3600"]);
    let db = d.run("dropdb", &[], &["sleep", "3600"]);
    let web_ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &web.name]);
    // The host's python, in db's namespace (the image has none).
    let in_db = |py: &str| sh(&format!("nsenter -t {} -n python3 -c {}", db.pid, shell_quote(py)));
    let before = nstat_of_pid(web.pid, "UdpNoPorts");
    let mut t = Tracer::start(&["drops", "--json", "--container", &web.name]);
    in_db(&format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(17): s.sendto(b'x'*20,('{web_ip}',5999))\n"
    ));
    let done = wait_until(Duration::from_secs(10), || drops(&t.events(), "NO_SOCKET", 5999).len() >= 17);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(done, "{:?}\n{}", t.lines(), t.stderr());
    let ev = t.events();
    let got = drops(&ev, "NO_SOCKET", 5999);
    assert_eq!(got.len() as u64, nstat_of_pid(web.pid, "UdpNoPorts") - before, "web's UdpNoPorts");
    let container = serde_json::json!({"runtime": "docker", "id": web.id, "name": web.name});
    for e in &got {
        assert_eq!(e["container"], container, "{e}");
        assert_eq!(e["netns"], serde_json::json!({"inode": web.netns_inode(), "name": web.name}), "{e}");
        assert_eq!((e["ifname"].as_str(), e["dst"].as_str()), (Some("eth0"), Some(web_ip.as_str())), "{e}");
    }
    assert!(ev.iter().filter(|e| e["type"] == "drop").all(|e| e["netns"]["inode"] == web.netns_inode()), "only web's: {ev:?}");

    let mut t = Tracer::start(&["tcp", "--json", "--container", &web.name]);
    in_db(&format!("import socket\ntry: socket.create_connection(('{web_ip}',5998), timeout=2)\nexcept OSError: pass\n"));
    let sent = t.wait_for(Duration::from_secs(10), |e| e["event"] == "reset_sent");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let sent = sent.unwrap_or_else(|| panic!("no reset: {:?}", t.lines()));
    assert_eq!((sent["sport"].as_u64(), sent["src"].as_str()), (Some(5998), Some(web_ip.as_str())), "{sent}");
    assert_eq!(sent["container"], container, "{sent}");
    // db's side of it (reset_received, its states) is not web's.
    assert!(t.events().iter().filter(|e| e["type"] == "tcp").all(|e| e["netns"]["inode"] == web.netns_inode()), "{:?}", t.lines());
}

/// Whether the ready line has `what` (the line reaches the buffer just
/// after `Tracer::start` saw it).
fn ready_says(t: &Tracer, what: &str) -> bool {
    wait_until(Duration::from_secs(2), || t.stderr().lines().any(|l| l.contains("ready") && l.contains(what)))
}

/// The drop records the kernel sent, from the exit line of a filtered run.
fn records_from_kernel(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.split_once(" drop records from the kernel").and_then(|(n, _)| n.rsplit(' ').next()?.parse().ok()))
        .unwrap_or_else(|| panic!("no record count in:\n{stderr}"))
}

/// A filter that keeps nothing costs no record: 3000 datagrams dropped by
/// the rule (its counter says so) under `udp port 9`, and the kernel sent
/// not one drop record (the tracer counts what it receives). The same run
/// with the filter forced into userspace (`TRACER_DROP_FILTER=userspace`,
/// what every kernel did before) receives all 3000 and says so in its
/// ready line; both print nothing.
#[test]
fn a_filter_that_keeps_nothing_makes_the_kernel_send_nothing() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    let args = ["drops", "--json", "--netns", b.name.as_str(), "udp", "port", "9"];
    let mut before = 0;
    for (env, in_kernel) in [(&[][..], true), (&[("TRACER_DROP_FILTER", "userspace")][..], false)] {
        let mut t = Tracer::start_env(&args, env);
        let where_ = if in_kernel { "in the kernel" } else { "in userspace (TRACER_DROP_FILTER=userspace)" };
        assert!(ready_says(&t, &format!("(filter {where_})")), "{}", t.stderr());
        udp_send(a, &b.ip, 4444, 5555, 3000, 20);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(t.stop(), 0, "{}", t.stderr());
        let counted = nft_counters(b)[0];
        assert_eq!(counted - before, 3000, "the rule dropped them all");
        before = counted;
        assert!(t.lines().is_empty(), "{:?}", t.lines());
        let got = records_from_kernel(&t.stderr());
        if in_kernel {
            assert_eq!(got, 0, "{}", t.stderr());
        } else {
            assert!(got >= 3000, "{}", t.stderr());
        }
        assert!(t.stderr().contains(&format!("the filter ran {where_}")), "{}", t.stderr());
        assert!(t.stderr().contains("lost: none"), "{}", t.stderr());
    }
}

/// The packets of a capture file as tcpdump reads them (hex, no time),
/// sorted: a multiset to compare.
fn tcpdump_frames(file: &str, expr: &str) -> Vec<String> {
    let out = std::process::Command::new("tcpdump").args(["-r", file, "-n", "-t", "-xx", "-q", expr]).output().expect("tcpdump -r");
    assert!(out.status.success(), "tcpdump -r {file} {expr}: {}", String::from_utf8_lossy(&out.stderr));
    let mut frames: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.trim_start().strip_prefix("0x").and_then(|l| l.split_once(':')) {
            Some((_, hex)) => frames.last_mut().expect("a packet line first").push_str(&hex.split_whitespace().collect::<String>()),
            None => frames.push(String::new()),
        }
    }
    frames.retain(|f| !f.is_empty());
    frames.sort();
    frames
}

/// The filter in the kernel keeps exactly what tcpdump keeps: B's rules
/// drop datagrams of two flows and two sizes, TCP SYNs, and datagrams B
/// itself sends (dropped in its output chain, before any link header:
/// copied from the network header, a made-up Ethernet header in front).
/// One unfiltered tracer writes every drop to a file; one tracer per
/// expression writes what its kernel filter kept; tcpdump reads the whole
/// file with each expression, and the two sets of packets are equal, byte
/// for byte.
#[test]
fn the_kernel_filter_keeps_what_tcpdump_keeps() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    b.sh(
        "nft add table inet t && nft add chain inet t in '{ type filter hook input priority 0; }' && \
         nft add rule inet t in udp dport 5555 counter drop && nft add rule inet t in tcp dport 7777 drop && \
         nft add chain inet t out '{ type filter hook output priority 0; }' && nft add rule inet t out udp dport 6666 drop",
    );
    let dir = std::env::temp_dir().join(format!("tracer-dropfilter-{}", tracer_tests::unique_id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = |n: usize| dir.join(format!("{n}.pcapng")).display().to_string();
    // Three tracers with a filter and one without: more did not all start
    // within a minute in a 2-CPU kernel guest under TCG.
    let exprs = [
        "(src port 4444 and udp[8] = 0x61) or tcp[tcpflags] & tcp-syn != 0",
        "greater 200 or udp[240] = 0x62 or ip[2:2] = 12345",
        "(ether src 00:00:00:00:00:00 and ether proto 0x0800 and udp dst port 6666) or (len >= 60 and len <= 100 and not tcp)",
    ];
    let all = file(0);
    let mut tracers = vec![Tracer::start(&["drops", "--netns", &b.name, "-w", &all])];
    for (i, e) in exprs.iter().enumerate() {
        let out = file(i + 1);
        let mut args = vec!["drops", "--netns", b.name.as_str(), "-w", out.as_str()];
        args.push(e);
        let t = Tracer::start(&args);
        assert!(ready_says(&t, "(filter in the kernel)"), "{e}: {}", t.stderr());
        tracers.push(t);
    }
    let send = |sport: u16, byte: char, count: u32, size: usize| {
        let py = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',{sport}))\n\
             for i in range({count}):\n    s.sendto(b'{byte}'*{size},('{}',5555))\n",
            b.ip
        );
        a.sh(&format!("python3 -c {}", shell_quote(&py)));
    };
    send(4444, 'a', 13, 20);
    send(4444, 'b', 7, 300);
    send(4446, 'a', 11, 250);
    // B's own datagrams, refused by its output chain (sendto fails: EPERM).
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',4447))\n\
         for i in range(9):\n    try: s.sendto(b'c'*40,('{}',6666))\n    except OSError: pass\n",
        a.ip
    );
    b.sh(&format!("python3 -c {}", shell_quote(&py)));
    // Two connection attempts to the dropped port (their SYNs, and retries).
    let py = format!(
        "import socket\nfor i in range(2):\n    s=socket.socket()\n    s.settimeout(1.2)\n    try: s.connect(('{}',7777))\n    except OSError: pass\n",
        b.ip
    );
    a.sh(&format!("python3 -c {}", shell_quote(&py)));
    std::thread::sleep(Duration::from_millis(600));
    for t in &mut tracers {
        assert_eq!(t.stop(), 0, "{}", t.stderr());
        assert!(t.stderr().contains("lost: none"), "{}", t.stderr());
    }
    let whole = tcpdump_frames(&all, "");
    let summary = || sh(&format!("tcpdump -r {all} -n -t -q 2>&1"));
    assert!(whole.len() >= 13 + 7 + 11 + 9 + 2, "{} drops in the file:\n{}\n{}", whole.len(), summary(), tracers[0].stderr());
    let mut failures = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        let (want, got) = (tcpdump_frames(&all, e), tcpdump_frames(&file(i + 1), ""));
        if want != got {
            failures.push(format!("{e:?}: tcpdump keeps {}, the kernel filter kept {}", want.len(), got.len()));
        }
        let sent = records_from_kernel(&tracers[i + 1].stderr()) as usize;
        assert_eq!(sent, got.len(), "{e:?}: the kernel sent only what it kept");
    }
    // What each kept of the parts tested: the 13 'a' datagrams from 4444
    // and the SYNs; the 7 + 11 long ones (udp[240] is past the 256 bytes
    // copied: no match, as tcpdump on the file); B's 9 own datagrams (the
    // made-up header) and the 13 short ones (62 bytes).
    let kept: Vec<usize> = (1..=exprs.len()).map(|i| tcpdump_frames(&file(i), "").len()).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(kept[0] >= 13 + 2 && kept[0] < whole.len(), "{kept:?}");
    assert_eq!(kept[1], 7 + 11, "{kept:?}");
    assert_eq!(kept[2], 9 + 13, "{kept:?}");
}

/// The answers to a netlink flood that its sender never reads are freed
/// unread (`netlink_attachskb`): no packets, so no drops. They were
/// reported as one unattributed drop each (19,744 for 20,000 requests),
/// decoded as nonsense IP.
#[test]
fn the_unread_answers_of_a_netlink_flood_are_no_drops() {
    let mut t = Tracer::start(&["drops", "--all", "--json"]);
    let helper = format!("{}/helpers/nlflood.py", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3").args([helper.as_str(), "5000", "64", "--as-nobody"]).output().expect("nlflood.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let netlink: Vec<Value> = t.events().into_iter().filter(|e| e["type"] == "drop" && e["function"].as_str().is_some_and(|f| f.starts_with("netlink_"))).collect();
    assert!(netlink.is_empty(), "{} drops in netlink functions, e.g. {}", netlink.len(), netlink[0]);
    assert!(t.stderr().contains("lost: none"), "{}", t.stderr());
}
