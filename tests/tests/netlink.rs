//! Netlink audit: requests from lab namespaces, decoded and attributed,
//! with their results, on every syscall path a program can send them by.

use std::time::Duration;

use serde_json::Value;
use tracer_tests::{Lab, LabNs, Tracer, pid_and_run, sh, sh_out};

const WAIT: Duration = Duration::from_secs(10);

fn in_ns(ns: &LabNs) -> String {
    format!("ip netns exec {}", ns.name)
}

fn helper() -> String {
    format!("{}/helpers/nlsend.py", env!("CARGO_MANIFEST_DIR"))
}

fn find(t: &Tracer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    t.wait_for(WAIT, pred).unwrap_or_else(|| panic!("no event for {what}; got:\n{}", t.lines().join("\n")))
}

/// Runs nlsend.py inside `ns`: returns (pid, acks with errno 0).
fn nlsend(ns: &LabNs, mode: &str, ifname: &str, base: &str, count: u32) -> (u32, u32) {
    let out = ns.sh(&format!("python3 {} {mode} {ifname} {base} {count}", helper()));
    let mut it = out.lines().map(|l| l.trim().parse::<u32>().expect("number"));
    (it.next().expect("pid"), it.next().expect("acks"))
}

#[test]
fn link_add_and_delete_are_decoded_with_names_and_results() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let (add_pid, out) = pid_and_run(&in_ns(ns), "ip link add trbr0 type bridge");
    assert!(out.status.success());
    let (set_pid, _) = pid_and_run(&in_ns(ns), "ip link set eth0 master trbr0");
    let (del_pid, out) = pid_and_run(&in_ns(ns), "ip link del trbr0");
    assert!(out.status.success());

    let add = find(&t, "link add", |e| e["pid"] == add_pid && e["attrs"]["kind"] == "bridge");
    assert_eq!(add["msg_type"], "RTM_NEWLINK");
    assert_eq!(add["attrs"]["ifname"], "trbr0");
    assert_eq!(add["result"]["errno"], 0);
    assert!(add["flags"].as_array().expect("flags").contains(&Value::from("create")));

    let set = find(&t, "set master", |e| e["pid"] == set_pid && e["attrs"].get("master_index").is_some());
    assert_eq!(set["attrs"]["ifname"], "eth0");
    assert_eq!(set["attrs"]["master"], "trbr0");

    let del = find(&t, "link del", |e| e["pid"] == del_pid && e["msg_type"] == "RTM_DELLINK");
    assert_eq!(del["attrs"]["ifname"], "trbr0", "deleted link named: {del}");
    assert_eq!(del["result"]["errno"], 0);
    assert_eq!(t.stop(), 0);
}

#[test]
fn address_and_route_requests_carry_their_attributes() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.inode().to_string()]);
    let addr = format!("{net}.77");
    let (apid, out) = pid_and_run(&in_ns(ns), &format!("ip addr add {addr}/24 dev eth0"));
    assert!(out.status.success());
    let gw = format!("{net}.2");
    let (rpid, out) = pid_and_run(&in_ns(ns), &format!("ip route add 10.251.0.0/16 via {gw}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A gateway that is not on any link: the kernel refuses, with a reason.
    let (fpid, out) = pid_and_run(&in_ns(ns), "ip route add 10.252.0.0/16 via 192.0.2.1");
    assert!(!out.status.success());

    let a = find(&t, "addr add", |e| e["pid"] == apid && e["msg_type"] == "RTM_NEWADDR");
    assert_eq!(a["attrs"]["address"], addr.as_str());
    assert_eq!(a["attrs"]["prefixlen"], 24);
    assert_eq!(a["attrs"]["ifname"], "eth0");
    assert_eq!(a["attrs"]["family"], "inet");
    assert_eq!(a["result"]["errno"], 0);
    assert_eq!(a["netns"]["name"], ns.name.as_str());

    let r = find(&t, "route add", |e| e["pid"] == rpid && e["msg_type"] == "RTM_NEWROUTE");
    assert_eq!(r["attrs"]["dst"], "10.251.0.0/16");
    assert_eq!(r["attrs"]["gateway"], gw.as_str());
    assert_eq!(r["result"]["errno"], 0);

    let f = find(&t, "failed route", |e| e["pid"] == fpid && e["msg_type"] == "RTM_NEWROUTE");
    let errno = f["result"]["errno"].as_i64().expect("errno");
    assert!(errno == 101 || errno == 22, "ENETUNREACH or EINVAL, got {f}");
    assert!(f["result"]["error"].as_str().is_some_and(|s| !s.is_empty()));
    // The kernel's extended ack explains it.
    assert!(f["result"]["extack"].as_str().is_some_and(|s| s.contains("gateway")), "{f}");
    assert_eq!(t.stop(), 0);
}

#[test]
fn text_output_reads_like_ip_monitor_with_who_and_where() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--netns", &ns.name]);
    let (pid, _) = pid_and_run(&in_ns(ns), "ip link add trbr1 type bridge");
    let (pid2, _) = pid_and_run(&in_ns(ns), "ip link add trbr1 type bridge");
    let start = std::time::Instant::now();
    while t.lines().len() < 2 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(t.stop(), 0);
    let lines = t.lines();
    let ok = lines.iter().find(|l| l.contains(&format!("ip[{pid}]")) && l.contains("create bridge trbr1")).expect("ok line");
    assert!(ok.contains(&format!("netns={}({})", ns.name, ns.inode())), "{ok}");
    assert!(ok.contains("RTM_NEWLINK") && ok.ends_with("-> ok"), "{ok}");
    let fail = lines.iter().find(|l| l.contains(&format!("ip[{pid2}]")) && l.contains("create bridge")).expect("fail line");
    assert!(fail.contains("-> EEXIST: File exists"), "{fail}");
}

#[test]
fn veth_peer_and_moved_link_name_their_target_namespace() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let other = lab.extra_ns("x");
    let mut t = Tracer::start(&["netlink", "--json"]);
    let host_veth = format!("trp{}", lab.id);
    // From the lab namespace, create a veth whose peer goes into `other`.
    let (pid, out) = pid_and_run(&in_ns(ns), &format!("ip link add {host_veth} type veth peer name eth9 netns {}", other.name));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Then move the first end into `other` too.
    let (mpid, out) = pid_and_run(&in_ns(ns), &format!("ip link set dev {host_veth} netns {}", other.name));
    assert!(out.status.success());

    let e = find(&t, "veth add", |e| e["pid"] == pid && e["attrs"]["kind"] == "veth");
    assert_eq!(e["netns"]["inode"], ns.inode());
    assert_eq!(e["attrs"]["ifname"], host_veth.as_str());
    assert_eq!(e["attrs"]["peer"]["ifname"], "eth9");
    assert_eq!(e["target_netns"]["of"], "peer");
    assert_eq!(e["target_netns"]["inode"], other.inode());
    assert_eq!(e["target_netns"]["name"], other.name.as_str());
    assert_eq!(e["result"]["errno"], 0);

    let m = find(&t, "link move", |e| e["pid"] == mpid && e["msg_type"] == "RTM_NEWLINK" && !e["target_netns"].is_null());
    assert_eq!(m["target_netns"]["of"], "link");
    assert_eq!(m["target_netns"]["inode"], other.inode());
    assert_eq!(m["attrs"]["ifname"], host_veth.as_str());
    assert_eq!(t.stop(), 0);
}

#[test]
fn batch_of_many_messages_in_one_sendmsg_is_reported_whole() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let (pid, acks) = nlsend(ns, "sendmsg-batch", "eth0", &format!("{net}.100"), 60);
    assert_eq!(acks, 60, "the kernel accepted all 60");
    let start = std::time::Instant::now();
    let batch = |t: &Tracer| t.events().into_iter().filter(|e| e["pid"] == pid && e["msg_type"] == "RTM_NEWADDR").collect::<Vec<_>>();
    while batch(&t).len() < 60 && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(t.stop(), 0);
    let evs = batch(&t);
    assert_eq!(evs.len(), 60, "one event per message");
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["syscall"], "sendmsg");
        assert_eq!(e["seq"], 1000 + i as u64);
        assert_eq!(e["attrs"]["address"], format!("{net}.{}", 100 + i).as_str());
        assert_eq!(e["result"]["errno"], 0, "{e}");
    }
}

#[test]
fn write_writev_sendto_and_sendmmsg_paths_are_seen() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let mut expected = Vec::new();
    for (i, mode) in ["write", "writev", "sendto", "sendmmsg"].iter().enumerate() {
        let base = format!("{net}.{}", 10 + i * 10);
        let (pid, acks) = nlsend(ns, mode, "eth0", &base, 3);
        assert_eq!(acks, 3, "{mode}");
        expected.push((pid, *mode, base));
    }
    for (pid, mode, base) in &expected {
        let e = find(&t, mode, |e| e["pid"] == *pid && e["attrs"]["address"] == base.as_str());
        assert_eq!(e["syscall"], *mode, "{e}");
        assert_eq!(e["result"]["errno"], 0);
        let n = t.events().iter().filter(|e| e["pid"] == *pid && e["msg_type"] == "RTM_NEWADDR").count();
        assert_eq!(n, 3, "{mode}: all three messages");
    }
    assert_eq!(t.stop(), 0);
}

#[test]
fn gets_are_hidden_unless_asked_and_own_traffic_never_shows() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut quiet = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    let mut all = Tracer::start(&["netlink", "--json", "--include-get"]);
    let (pid, _) = pid_and_run(&in_ns(ns), "ip link show");
    // A change after the GET, so we know the quiet tracer has caught up.
    let (pid2, _) = pid_and_run(&in_ns(ns), "ip link add trbr2 type bridge");
    find(&quiet, "marker", |e| e["pid"] == pid2);
    let get = find(&all, "get", |e| e["pid"] == pid && e["msg_type"] == "RTM_GETLINK");
    // `ip link show` dumps: NLM_F_REQUEST | NLM_F_DUMP, which is ROOT | MATCH.
    let flags = get["flags"].as_array().expect("flags");
    for f in ["request", "root", "match"] {
        assert!(flags.contains(&Value::from(f)), "{f} missing from {flags:?}");
    }
    assert!(!flags.contains(&Value::from("create")), "a GET's 0x400 is atomic, not create: {flags:?}");
    find(&all, "marker", |e| e["pid"] == pid2);
    // (`ip` also sends an empty RTM_NEWLINK to probe the kernel: not a GET.)
    assert!(
        quiet.events().iter().all(|e| !(e["pid"] == pid && e["msg_type"].as_str().is_some_and(|t| t.starts_with("RTM_GET")))),
        "GET shown without --include-get"
    );
    // Both tracers look interface names up over netlink (on their lookup
    // thread, `tracer-lookup`). Each sees the other's lookups (so they are
    // real, visible requests)...
    let qpid = u64::from(quiet.pid());
    let apid = u64::from(all.pid());
    find(&all, "the other tracer's lookup", |e| e["pid"] == qpid && e["comm"].as_str().is_some_and(|c| c.starts_with("tracer")));
    // ...but never its own.
    assert!(all.events().iter().all(|e| e["pid"] != apid), "own traffic reported");
    assert!(quiet.events().iter().all(|e| e["pid"] != qpid), "own traffic reported");
    assert_eq!(quiet.stop(), 0);
    assert_eq!(all.stop(), 0);
}

#[test]
fn duration_and_count_stop_cleanly() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let start = std::time::Instant::now();
    let (code, _, err) = tracer_tests::tracer_run(&["netlink", "--duration", "1.5", "--netns", &ns.name]);
    assert_eq!(code, 0, "{err}");
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert!(err.contains("lost:"), "summary at exit: {err}");

    let mut child = std::process::Command::new(tracer_tests::tracer_bin())
        .args(["netlink", "--json", "-c", "2", "--netns", &ns.name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Loading takes seconds on a slow (emulated) machine: wait for `ready`.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("-c 2 never said ready");
    for i in 0..4 {
        let _ = sh_out(&format!("ip -n {} link add trc{i} type bridge", ns.name));
    }
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "-c 2 did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    assert_eq!(out.lines().count(), 2, "{out}");
    let _ = sh("true");
}

#[test]
fn nftables_batches_name_tables_and_chains() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name, "--protocol", "netfilter"]);
    let (p1, out) = pid_and_run(&in_ns(ns), "nft add table inet trt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (p2, _) = pid_and_run(&in_ns(ns), "nft add chain inet trt input '{ type filter hook input priority 0; }'");
    let (p3, out) = pid_and_run(&in_ns(ns), "nft delete table inet no_such_table");
    assert!(!out.status.success());
    let table = find(&t, "newtable", |e| e["pid"] == p1 && e["msg_type"] == "NFT_MSG_NEWTABLE");
    assert_eq!(table["protocol"], "netfilter");
    assert_eq!(table["attrs"]["table"], "trt");
    assert_eq!(table["attrs"]["family"], "inet");
    let chain = find(&t, "newchain", |e| e["pid"] == p2 && e["msg_type"] == "NFT_MSG_NEWCHAIN");
    assert_eq!(chain["attrs"]["chain"], "input");
    assert_eq!(chain["attrs"]["table"], "trt");
    let del = find(&t, "deltable", |e| e["pid"] == p3 && e["msg_type"] == "NFT_MSG_DELTABLE");
    assert_eq!(del["result"]["errno"], 2, "ENOENT: {del}");
    assert_eq!(t.stop(), 0);
    // Batch markers frame the batch but change nothing: hidden by default.
    assert!(t.events().iter().all(|e| !e["msg_type"].as_str().unwrap_or("").starts_with("NFNL_MSG_BATCH")));
    // --protocol netfilter: no rtnetlink.
    assert!(t.events().iter().all(|e| e["protocol"] == "netfilter"));
}

/// With a tiny ring buffer, records that cannot fit are lost: every lost
/// request is counted and reported, so reported + lost is exactly what was
/// sent. Half the requests are larger than the whole ring, so at least that
/// half is lost whatever the reader's speed; the other half may be too.
#[test]
fn lost_events_are_counted_exactly() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let net = lab.subnet_prefix();
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name, "--buffer-size", "4"]);
    let n = 400u32;
    // Requests fired without waiting (and without asking for answers).
    let (pid, _) = nlsend(ns, "fire-big", "eth0", &format!("{net}.1"), n);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(t.stop(), 0);
    let events = t.events();
    let seen = events.iter().filter(|e| e["pid"] == pid && e["type"] == "netlink").count() as u64;
    let lost: u64 = events.iter().filter(|e| e["type"] == "lost" && e["source"] == "netlink").map(|e| e["count"].as_u64().unwrap_or(0)).sum();
    assert!(lost >= u64::from(n / 2), "the {} requests larger than the ring are all lost (lost {lost}, seen {seen})", n / 2);
    assert!(seen > 0, "small requests fit");
    assert_eq!(seen + lost, u64::from(n), "seen {seen} + lost {lost}");
    for e in events.iter().filter(|e| e["type"] == "lost") {
        assert!(e["time"].as_str().is_some_and(|s| s.ends_with('Z')));
    }
    let summary = t.stderr();
    assert!(summary.contains(&format!("netlink={lost}")), "stderr summary: {summary}");
}
