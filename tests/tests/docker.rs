//! Against a real Docker engine (see `tracer_tests::docker`): `tracer ns`
//! finds each container's namespace, id, name, process and host veth;
//! `--container` selects it; netlink events are named after the container
//! that sent them, and dockerd's own changes after dockerd. Identity is
//! truthful: a host-network container does not relabel the host, a
//! look-alike cgroup makes no container, a reused pid inherits none, and a
//! shared namespace is named after the container that made it.

use std::{os::unix::fs::MetadataExt, time::Duration};

use serde_json::{Value, json};
use tracer_tests::{
    Lab, Tracer,
    docker::{HandMadeCgroups, engine, spawn_as_pid},
    ns_json, tracer_run,
};


fn host_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net").expect("own netns").ino()
}

fn iface(ns: &Value, name: &str) -> Value {
    ns["interfaces"]
        .as_array()
        .and_then(|v| v.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no interface {name} in {ns}"))
}

/// The host interface whose ifindex is `idx`, read from sysfs (not from tracer).
fn host_iface_by_index(idx: u64) -> String {
    std::fs::read_dir("/sys/class/net")
        .expect("sysfs")
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("ifindex")).is_ok_and(|s| s.trim().parse::<u64>().ok() == Some(idx)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no host interface {idx}"))
}

#[test]
fn ns_shows_each_container_with_id_name_pid_and_host_veth() {
    let t = std::time::Instant::now();
    let d = engine();
    eprintln!("docker engine ready in {:?} (started here: {})", d.setup_time, d.started);
    let web = d.run("web", &[], &["sleep", "3600"]);
    let db = d.run("db", &[], &["sleep", "3600"]);
    let list = ns_json(&[]);
    let host = list.iter().find(|n| n["inode"] == host_inode()).expect("host namespace").clone();
    for c in [&web, &db] {
        let inode = c.netns_inode();
        assert_ne!(inode, host_inode());
        let n = list.iter().find(|n| n["inode"] == inode).unwrap_or_else(|| panic!("no namespace for {}: {list:?}", c.name));
        assert_eq!(n["containers"], json!([{"runtime": "docker", "id": c.id, "name": c.name}]));
        assert_eq!(c.id.len(), 64);
        assert_eq!(n["names"][0], c.name.as_str());
        assert!(n["pids"].as_array().expect("pids").contains(&json!({"pid": c.pid, "comm": "sleep"})), "{n}");
        // Docker says /var/run/docker/netns/..., mountinfo /run/...: compare the files.
        let key = std::fs::canonicalize(&c.sandbox_key).expect("SandboxKey");
        assert!(
            n["mounts"].as_array().expect("mounts").iter().any(|m| m.as_str().and_then(|m| std::fs::canonicalize(m).ok()) == Some(key.clone())),
            "{n} lacks {}",
            c.sandbox_key
        );

        // eth0's peer, checked against the kernel's own iflink.
        let eth0 = iface(n, "eth0");
        assert_eq!(eth0["kind"], "veth");
        let iflink: u64 = String::from_utf8_lossy(&c.exec("cat /sys/class/net/eth0/iflink").stdout).trim().parse().expect("iflink");
        let host_veth = host_iface_by_index(iflink);
        assert!(host_veth.starts_with("veth"), "{host_veth}");
        assert_eq!(eth0["peer"], json!({"netns_inode": host_inode(), "ifindex": iflink, "name": host_veth}));
        let hv = iface(&host, &host_veth);
        assert_eq!(hv["master"], "docker0");
        assert_eq!(hv["peer"]["netns_inode"], inode);
        assert_eq!(hv["peer"]["name"], "eth0");

        // --container by name and by id prefix: that namespace only.
        for sel in [c.name.as_str(), &c.id[..12]] {
            let only = ns_json(&["--container", sel]);
            assert_eq!(only.len(), 1, "{sel}");
            assert_eq!(only[0]["inode"], inode, "{sel}");
        }
    }
    assert_eq!(iface(&host, "docker0")["kind"], "bridge");
    let (code, text, _) = tracer_run(&["ns", "--container", &web.name]);
    assert_eq!(code, 0);
    assert!(text.contains(&format!("docker:{}", web.name)), "{text}");
    eprintln!("test took {:?}", t.elapsed());
}

#[test]
fn unknown_container_is_one_sentence_listing_close_matches() {
    let d = engine();
    let web = d.run("web", &[], &["sleep", "3600"]);
    let typo = format!("{}x", web.name);
    for cmd in ["ns", "netlink"] {
        let (code, out, err) = tracer_run(&[cmd, "--container", &typo]);
        assert_ne!(code, 0);
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("no running container \"{typo}\"")), "{err}");
        assert!(err.contains("did you mean") && err.contains(&web.name), "{err}");
    }
}

#[test]
fn netlink_events_carry_the_sending_container() {
    let d = engine();
    let web = d.run("web", &["--cap-add", "NET_ADMIN"], &["sleep", "3600"]);
    let db = d.run("db", &["--cap-add", "NET_ADMIN"], &["sleep", "3600"]);
    let mut t = Tracer::start(&["netlink", "--json", "--container", &web.name]);
    for c in [&db, &web] {
        let out = c.exec("ip link add trcbr0 type bridge");
        assert!(out.status.success(), "{}: {}", c.name, String::from_utf8_lossy(&out.stderr));
    }
    let ev = t
        .wait_for(Duration::from_secs(10), |e| e["msg_type"] == "RTM_NEWLINK" && e["comm"] == "ip")
        .unwrap_or_else(|| panic!("no RTM_NEWLINK from {}: {:?}", web.name, t.lines()));
    // db's request came first; give it time to show up if it wrongly would.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.stop(), 0);
    assert_eq!(ev["netns"], json!({"inode": web.netns_inode(), "name": web.name}));
    assert_eq!(ev["container"], json!({"runtime": "docker", "id": web.id, "name": web.name}));
    assert_eq!(ev["result"]["errno"], 0);
    let events = t.events();
    assert!(events.iter().all(|e| e["netns"]["inode"] == web.netns_inode()), "--container leaked: {events:?}");
}

#[test]
fn netlink_names_dockerd_for_network_create_and_rm() {
    let d = engine();
    let name = format!("trc-{}-net", tracer_tests::unique_id());
    let mut t = Tracer::start(&["netlink", "--json", "--type", "RTM_NEWLINK,RTM_DELLINK,RTM_NEWADDR"]);
    let id = d.docker(&["network", "create", &name]);
    let bridge = format!("br-{}", &id[..12]);
    let ifindex: u64 = std::fs::read_to_string(format!("/sys/class/net/{bridge}/ifindex"))
        .unwrap_or_else(|e| panic!("no bridge {bridge} for {name}: {e}"))
        .trim()
        .parse()
        .expect("ifindex");
    d.docker(&["network", "rm", &name]);
    let about = |ty: &'static str, bridge: String| move |e: &Value| e["msg_type"] == ty && e["comm"] == "dockerd" && e["attrs"]["ifname"] == bridge.as_str();
    let created = t
        .wait_for(Duration::from_secs(10), |e| about("RTM_NEWLINK", bridge.clone())(e) && e["flags"].as_array().is_some_and(|f| f.contains(&json!("create"))))
        .unwrap_or_else(|| panic!("no RTM_NEWLINK create of {bridge} from dockerd: {:?}", t.lines()));
    let address = t
        .wait_for(Duration::from_secs(10), about("RTM_NEWADDR", bridge.clone()))
        .unwrap_or_else(|| panic!("no RTM_NEWADDR on {bridge} from dockerd: {:?}", t.lines()));
    // dockerd deletes by index; the tracer names it from what it learnt at creation.
    let removed = t
        .wait_for(Duration::from_secs(10), |e| e["msg_type"] == "RTM_DELLINK" && e["comm"] == "dockerd" && e["attrs"]["ifindex"] == ifindex)
        .unwrap_or_else(|| panic!("no RTM_DELLINK of {bridge} ({ifindex}) from dockerd: {:?}", t.lines()));
    assert_eq!(removed["attrs"]["ifname"], bridge.as_str(), "{removed}");
    assert_eq!(created["attrs"]["kind"], "bridge", "{created}");
    assert!(address["attrs"]["address"].as_str().is_some_and(|a| a.starts_with("172.") || a.starts_with("192.168.") || a.starts_with("10.")), "{address}");
    assert_eq!(t.stop(), 0);
    let dockerd_pid: u64 = tracer_tests::sh("pidof dockerd").split_whitespace().next().and_then(|p| p.parse().ok()).expect("dockerd pid");
    for e in [&created, &address, &removed] {
        assert_eq!(e["pid"], dockerd_pid, "{e}");
        assert_eq!(e["container"], Value::Null);
        assert_eq!(e["netns"]["inode"], host_inode());
        assert_eq!(e["result"]["errno"], 0, "{e}");
    }
}

#[test]
fn container_started_while_tracing_is_named_on_its_first_events() {
    let d = engine();
    let mut t = Tracer::start(&["netlink", "--json", "--type", "RTM_NEWLINK"]);
    let late = d.run("late", &["--cap-add", "NET_ADMIN"], &["sleep", "3600"]);
    let out = late.exec("ip link add trcbr0 type bridge");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inode = late.netns_inode();
    let ev = t
        .wait_for(Duration::from_secs(10), |e| e["comm"] == "ip" && e["netns"]["inode"] == inode)
        .unwrap_or_else(|| panic!("no RTM_NEWLINK from {}: {:?}", late.name, t.lines()));
    assert_eq!(t.stop(), 0);
    assert_eq!(ev["netns"]["name"], late.name.as_str());
    assert_eq!(ev["container"], json!({"runtime": "docker", "id": late.id, "name": late.name}));
}

/// Issue #15: a container that pings another at once has its first ARP
/// and ICMP lines named after it, in `tracer packets --all` and in the
/// default job: its namespace is attached from the notifications of its
/// veth (before it runs), and a line decoded before its name was known is
/// named when it is printed (the hold), not `INODE/ifNNN`.
#[test]
fn a_containers_first_packets_carry_its_name() {
    let d = engine();
    let peer = d.run("peer", &[], &["sleep", "3600"]);
    let peer_ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &peer.name]);
    for (i, args) in [&["packets", "--all"][..], &[][..]].iter().enumerate() {
        let mut t = Tracer::start(args);
        let pinger = d.run(&format!("pinger{i}"), &[], &["sh", "-c", &format!("ping -c 3 {peer_ip}; sleep 3600")]);
        let ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &pinger.name]);
        let inode = pinger.netns_inode();
        std::thread::sleep(Duration::from_millis(2800));
        assert_eq!(t.stop(), 0, "{}", t.stderr());
        let lines = t.lines();
        let all = || format!("tracer {args:?}:\n{}\n{}", lines.join("\n"), t.stderr());
        let own = format!(" {}/eth0 ", pinger.name);
        // Its first ARP request and ping are printed; on whichever interface
        // each was first seen (its eth0's programs may still be attaching,
        // one RCU grace period per hook, when it starts), named.
        let first_arp = lines.iter().find(|l| l.contains(&format!("who-has {peer_ip} tell {ip}")));
        assert!(first_arp.is_some(), "its first ARP request is not printed\n{}", all());
        let first_echo = lines.iter().find(|l| l.contains(&format!("{ip} > {peer_ip}: ICMP echo request")));
        assert!(first_echo.is_some_and(|l| l.contains("seq 0,")), "its first ping (seq 0) is not printed: {first_echo:?}\n{}", all());
        assert!(
            lines.iter().any(|l| l.contains(&own) && l.contains(&format!("{ip} > {peer_ip}: ICMP echo request"))),
            "no ping on {own}\n{}",
            all()
        );
        let ifnnn = |l: &str| l.match_indices("/if").any(|(i, _)| l[i + 3..].starts_with(|c: char| c.is_ascii_digit()));
        // Packet lines: `TIME NS/IF In|Out ...` (the netlink audit's are
        // `netns=X ...`, their effects indented). They wait for the name
        // once dockerd mounted the sandbox (see packets.rs's sandbox
        // test); the default job's drop lines, `NS/IF drop REASON`, can
        // also come from before that (runc's `lo`), when nothing says a
        // container is starting there.
        let packet = |l: &&String| !l.starts_with(' ') && matches!(l.split_whitespace().nth(2), Some("In" | "Out"));
        let unnamed: Vec<&String> = lines.iter().filter(packet).filter(|l| l.contains(&inode.to_string()) || ifnnn(l)).collect();
        assert!(unnamed.is_empty(), "packet lines without names: {unnamed:?}\n{}", all());
    }
}

/// containerd without Docker's naming: a task started with `ctr` in its own
/// containerd namespace, on the containerd that dockerd runs.
#[test]
fn containerd_task_is_found_by_its_cgroup() {
    let d = engine();
    let ctr = tracer_tests::docker::Ctr::new(d);
    let task = ctr.run("task", &["sleep", "3600"]);
    let inode = task.netns_inode();
    let list = ns_json(&[]);
    let n = list.iter().find(|n| n["inode"] == inode).unwrap_or_else(|| panic!("no namespace {inode}: {list:?}"));
    assert_eq!(n["containers"], json!([{"runtime": "containerd", "id": task.id, "name": null}]));
    assert!(n["pids"].as_array().expect("pids").contains(&json!({"pid": task.pid, "comm": "sleep"})), "{n}");
    assert_eq!(iface(n, "lo")["kind"], "loopback");
    let only = ns_json(&["--container", &task.id]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["inode"], inode);
}

/// `tracer top --by container`: each container's row carries its identity
/// and counts exactly its own pings (ICMP only, so nothing else counts);
/// `--container` restricts the count to one.
#[test]
fn top_counts_each_containers_traffic_under_its_name() {
    let d = engine();
    let web = d.run("web", &[], &["sleep", "3600"]);
    let db = d.run("db", &[], &["sleep", "3600"]);
    let db_ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &db.name]);
    let mut all = Tracer::start(&["top", "--by", "container", "--json", "--interval", "0.3", "icmp"]);
    let mut one = Tracer::start(&["top", "--by", "iface", "--json", "--interval", "0.3", "--container", &web.name, "icmp"]);
    // 100 bytes of data: 142-byte frames (Ethernet, IPv4, ICMP header).
    let out = web.exec(&format!("ping -c 3 -s 100 {db_ip}"));
    assert!(out.status.success(), "ping: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(all.stop(), 0, "{}", all.stderr());
    assert_eq!(one.stop(), 0, "{}", one.stderr());
    let sum = |rows: &[Value], inode: u64| -> [u64; 4] {
        let mut s = [0u64; 4];
        for r in rows.iter().filter(|r| r["type"] == "top" && r["netns"]["inode"] == inode) {
            for (i, k) in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"].iter().enumerate() {
                s[i] += r[k].as_u64().expect("count");
            }
        }
        s
    };
    let rows = all.events();
    for c in [&web, &db] {
        let row = rows
            .iter()
            .find(|r| r["type"] == "top" && r["netns"]["inode"] == c.netns_inode())
            .unwrap_or_else(|| panic!("no row of {}: {rows:?}", c.name));
        assert_eq!(row["by"], "container");
        assert_eq!(row["container"], json!({"runtime": "docker", "id": c.id, "name": c.name}));
        assert_eq!(row["netns"]["name"], c.name.as_str());
        assert_eq!(row["interfaces"], 1, "eth0 (lo is not traced by default)");
        assert_eq!(sum(&rows, c.netns_inode()), [3, 3 * 142, 3, 3 * 142], "{}: three requests and three replies", c.name);
    }
    let rows = one.events();
    assert!(rows.iter().filter(|r| r["type"] == "top").all(|r| r["netns"]["inode"] == web.netns_inode() && r["ifname"] == "eth0"), "{rows:?}");
    assert_eq!(sum(&rows, web.netns_inode()), [3, 3 * 142, 3, 3 * 142]);
}


/// `docker run --network host`: the container is listed with the host's
/// namespace, which keeps its own identity: no container, no name, in
/// `tracer ns` and on every netlink and packet line of the host namespace;
/// only the container's own process is reported as the container.
#[test]
fn host_network_container_does_not_relabel_the_host() {
    let d = engine();
    let hn = d.run("hn", &["--network", "host"], &["sleep", "3600"]);
    assert_eq!(hn.netns_inode(), host_inode());
    let hn_json = json!({"runtime": "docker", "id": hn.id, "name": hn.name});

    let list = ns_json(&[]);
    let host = list.iter().find(|n| n["inode"] == host_inode()).expect("host namespace");
    assert_eq!(host["container"], Value::Null, "{host}");
    assert_eq!(host["containers"], json!([]), "{host}");
    assert!(!host["names"].as_array().expect("names").contains(&json!(hn.name)), "{host}");
    assert_eq!(host["host_containers"], json!([hn_json]), "{host}");
    for n in list.iter().filter(|n| n["inode"] != host_inode()) {
        assert!(!n.to_string().contains(&hn.id), "{n}");
    }
    let (code, text, _) = tracer_run(&["ns"]);
    assert_eq!(code, 0);
    let row = text.lines().find(|l| l.starts_with(&format!("{} ", host_inode()))).unwrap_or_else(|| panic!("no host row: {text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2], "-", "NAMES of the host: {row}");
    assert_eq!(cols[3], format!("docker:{}(host-network)", hn.name), "{row}");
    // --container still finds it: in the host's namespace.
    let only = ns_json(&["--container", &hn.name]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["inode"], host_inode());

    // Traffic and changes in the host namespace: a lab's bridge and host
    // veths live there.
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let mut json = Tracer::start(&["--json"]);
    let mut text = Tracer::start(&[]);
    let mut gets = Tracer::start(&["netlink", "--json", "--include-get", "--type", "RTM_GETLINK"]);
    let late = lab.join_bridge("c", 3);
    a.sh(&format!("ping -c 2 -i 0.2 -W 2 {}", b.ip));
    // Read-only requests from the host namespace: one by a host process,
    // one by the host-network container's.
    let (host_pid, out) = tracer_tests::pid_and_run("", "ip link show lo");
    assert!(out.status.success());
    let out = hn.exec("ip link show lo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let in_host = |e: &Value| e["netns"]["inode"] == host_inode();
    json.wait_for(Duration::from_secs(10), |e| e["type"] == "packet" && in_host(e) && e["ifname"] == a.host_veth.as_str())
        .unwrap_or_else(|| panic!("no packet on host/{}: {}", a.host_veth, json.stderr()));
    json.wait_for(Duration::from_secs(10), |e| e["type"] == "netlink" && in_host(e) && e["attrs"]["ifname"] == late.host_veth.as_str())
        .unwrap_or_else(|| panic!("no RTM_NEWLINK of {} from the host namespace: {:?}", late.host_veth, json.lines()));
    let host_get = gets
        .wait_for(Duration::from_secs(10), |e| e["pid"] == host_pid)
        .unwrap_or_else(|| panic!("no RTM_GETLINK from pid {host_pid}: {:?}", gets.lines()));
    let hn_get = gets
        .wait_for(Duration::from_secs(10), |e| e["container"]["id"] == hn.id.as_str())
        .unwrap_or_else(|| panic!("no RTM_GETLINK from {}: {:?}", hn.name, gets.lines()));
    let seen = tracer_tests::wait_until(Duration::from_secs(10), || text.lines().iter().any(|l| l.contains(&format!("host/{} ", a.host_veth))));
    assert!(seen, "no text line of host/{}: {:?}", a.host_veth, text.lines());
    for t in [&mut json, &mut text, &mut gets] {
        assert_eq!(t.stop(), 0, "{}", t.stderr());
    }

    assert_eq!(host_get["netns"], json!({"inode": host_inode(), "name": null}), "{host_get}");
    assert_eq!(host_get["container"], Value::Null, "{host_get}");
    // The container's own process is the container's, in the host's namespace.
    assert_eq!(hn_get["netns"], json!({"inode": host_inode(), "name": null}), "{hn_get}");
    assert_eq!(hn_get["container"], hn_json, "{hn_get}");
    let events = json.events();
    let host_events: Vec<&Value> = events.iter().filter(|e| in_host(e)).collect();
    assert!(host_events.iter().any(|e| e["type"] == "packet") && host_events.iter().any(|e| e["type"] == "netlink"));
    for e in &host_events {
        assert_eq!(e["netns"]["name"], Value::Null, "{e}");
        assert_eq!(e["container"], Value::Null, "{e}");
    }
    let lines = text.lines();
    assert!(lines.iter().any(|l| l.contains(&format!("host/{} ", a.host_veth))), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains(&hn.name)), "{lines:?}");
}

/// A cgroup anyone with a delegated subtree could make, named like
/// Docker's (`docker-<64 hex>.scope` under a user slice), even after a real
/// running container: a process in it is in no container, and its namespace
/// is nobody's.
#[test]
fn look_alike_cgroup_makes_no_container() {
    let d = engine();
    let web = d.run("web", &[], &["sleep", "3600"]);
    let lab = Lab::new(2);
    let made_up: String = format!("{:0>64}", tracer_tests::unique_id());
    let groups = HandMadeCgroups::new(&[
        &format!("user.slice/user-1000.slice/docker-{made_up}.scope"),
        &format!("user.slice/user-1000.slice/user@1000.service/app.slice/docker-{}.scope", web.id),
    ]);
    let mut sleepers = Vec::new();
    for (i, ns) in lab.ns.iter().enumerate() {
        let child = ns.spawn("exec sleep 3600");
        groups.add(i, child.id());
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).expect("cgroup");
        assert!(cg.contains("docker-"), "{cg}");
        sleepers.push(Sleeper(child));
    }
    let list = ns_json(&[]);
    for ns in &lab.ns {
        let n = list.iter().find(|n| n["inode"] == ns.inode()).unwrap_or_else(|| panic!("no {}: {list:?}", ns.name));
        assert_eq!(n["container"], Value::Null, "{n}");
        assert_eq!(n["containers"], json!([]), "{n}");
        assert_eq!(n["names"], json!([ns.name]), "{n}");
    }
    // The real container is still itself, and only itself.
    let own = list.iter().find(|n| n["inode"] == web.netns_inode()).expect("web");
    assert_eq!(own["container"]["id"], web.id.as_str());
    assert!(list.iter().filter(|n| n.to_string().contains(&web.id)).count() == 1, "{list:?}");

    // A request sent from inside the look-alike: no container either.
    let mut t = Tracer::start(&["netlink", "--json", "--type", "RTM_NEWLINK"]);
    let join = groups.procs_files(1).iter().map(|f| format!("echo $$ > {f}; ")).collect::<String>();
    let (pid, out) = tracer_tests::pid_and_run(&format!("ip netns exec {}", lab.ns[1].name), &format!("sh -c {}", tracer_tests::shell_quote(&format!("{join}exec ip link add trclk0 type bridge"))));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ev = t
        .wait_for(Duration::from_secs(10), |e| e["pid"] == pid && e["attrs"]["ifname"] == "trclk0")
        .unwrap_or_else(|| panic!("no RTM_NEWLINK from {pid}: {:?}", t.lines()));
    assert_eq!(t.stop(), 0);
    assert_eq!(ev["container"], Value::Null, "{ev}");
    assert_eq!(ev["netns"], json!({"inode": lab.ns[1].inode(), "name": lab.ns[1].name}), "{ev}");
}

/// A process of a container, cached by a running tracer, exits and its pid
/// goes to a process outside any container (forced with
/// `kernel.ns_last_pid`): that process's request carries no container.
#[test]
fn reused_pid_does_not_inherit_a_container() {
    let d = engine();
    let web = d.run("web", &[], &["sleep", "3600"]);
    let lab = Lab::new(1);
    d.docker(&["exec", "-d", &web.name, "sleep", "1001"]);
    let mut pid = None;
    assert!(
        tracer_tests::wait_until(Duration::from_secs(5), || {
            pid = find_process(&web.id, "sleep\x001001\x00");
            pid.is_some()
        }),
        "no `sleep 1001` in {}",
        web.name
    );
    let pid = pid.expect("pid");
    // The tracer reads every process's container when it starts.
    let mut t = Tracer::start(&["netlink", "--json", "--type", "RTM_NEWLINK"]);
    // SAFETY: killing the container's sleep, by the pid just found.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(tracer_tests::wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    let ns = lab.ns[0].name.clone();
    let child = spawn_as_pid(pid, Duration::from_secs(20), || {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns, "ip", "-batch", "-"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
        c
    });
    let Some(mut child) = child else { panic!("could not get pid {pid} again within 20 s") };
    let mut stdin = child.stdin.take().expect("stdin");
    use std::io::Write as _;
    writeln!(stdin, "link add trcre0 type bridge").expect("write");
    stdin.flush().expect("flush");
    // Alive while the tracer names it: its start time, not its pid, tells it apart.
    let ev = t.wait_for(Duration::from_secs(10), |e| e["pid"] == pid && e["attrs"]["ifname"] == "trcre0");
    drop(stdin);
    let _ = child.wait();
    assert_eq!(t.stop(), 0);
    let ev = ev.unwrap_or_else(|| panic!("no RTM_NEWLINK from {pid}: {:?}", t.lines()));
    assert_eq!(ev["container"], Value::Null, "{ev}");
    assert_eq!(ev["netns"]["inode"], lab.ns[0].inode(), "{ev}");
}

/// The pid of the process in container `id` whose command line is `cmdline`
/// (NUL-separated, as in /proc/PID/cmdline).
fn find_process(id: &str, cmdline: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cg = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        (cg.contains(id) && cmd == cmdline.as_bytes()).then_some(pid)
    })
}

/// A background process, killed and reaped on drop.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `docker run --network container:web`: the namespace is web's (it made
/// it), and `tracer ns` says the other shares it.
#[test]
fn shared_namespace_is_named_after_its_owner() {
    let d = engine();
    let web = d.run("web", &[], &["sleep", "3600"]);
    let side = d.run("side", &["--network", &format!("container:{}", web.name)], &["sleep", "3600"]);
    assert_eq!(side.netns_inode(), web.netns_inode());
    let list = ns_json(&[]);
    let n = list.iter().find(|n| n["inode"] == web.netns_inode()).unwrap_or_else(|| panic!("no namespace of {}: {list:?}", web.name));
    let as_json = |c: &tracer_tests::docker::RunningContainer| json!({"runtime": "docker", "id": c.id, "name": c.name});
    assert_eq!(n["container"], as_json(&web), "{n}");
    assert_eq!(n["containers"], json!([as_json(&web), as_json(&side)]), "{n}");
    assert_eq!(n["names"], json!([web.name]), "{n}");
    let (code, text, _) = tracer_run(&["ns", "--container", &side.name]);
    assert_eq!(code, 0);
    assert!(text.contains(&format!("docker:{},docker:{}(shared)", web.name, side.name)), "{text}");
}
