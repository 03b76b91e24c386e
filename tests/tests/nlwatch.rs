//! The netlink audit against `ip monitor all-nsid link address route`,
//! run at the same time: every change `ip monitor` prints is on the
//! tracer's timeline with the same names and addresses, under the request
//! that caused it or on its own line (kernel-initiated, or with its
//! cause); deleted links are named; moves name the namespace (and the
//! container) they went to. Once with a plain `ip netns` lab (moves by
//! name and by pid), once with the seed's scenario on a real dockerd
//! (network create, two containers that ping each other, teardown).

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{Tracer, docker::engine, sh, unique_id};

/// `ip monitor all-nsid link address route`, its lines collected.
struct IpMonitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl IpMonitor {
    fn start() -> IpMonitor {
        Self::spawn(Command::new("ip").args(["monitor", "all-nsid", "link", "address", "route"]))
    }

    /// `ip monitor link address route` inside the namespace of process
    /// `pid` (a container's), as a person debugging it would run it.
    fn start_in(pid: u32) -> IpMonitor {
        Self::spawn(Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "ip", "monitor", "link", "address", "route"]))
    }

    fn spawn(cmd: &mut Command) -> IpMonitor {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip monitor");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().expect("lock").push(l);
            }
        });
        // ip monitor has no ready line: give it a moment to subscribe.
        std::thread::sleep(Duration::from_millis(300));
        IpMonitor { child, lines }
    }

    /// The changes it printed, continuation lines joined, `[nsid N]` cut,
    /// each with whether it was the host's own (`[nsid current]`).
    fn stop(mut self) -> Vec<(String, bool)> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let mut out: Vec<(String, bool)> = Vec::new();
        for l in self.lines.lock().expect("lock").iter() {
            if l.starts_with(char::is_whitespace) {
                if let Some((last, _)) = out.last_mut() {
                    last.push(' ');
                    last.push_str(l.trim());
                }
                continue;
            }
            let current = !l.starts_with("[nsid ") || l.starts_with("[nsid current]");
            let l = if l.starts_with("[nsid ") { l.split_once(']').map_or(l.as_str(), |(_, r)| r) } else { l.as_str() };
            out.push((l.to_string(), current));
        }
        out
    }
}

impl Drop for IpMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a change is about, the same for `ip monitor`'s line and the
/// tracer's: `link NAME`, `addr DEV ADDRESS/LEN`, or the route up to its
/// device, each prefixed `Deleted ` for a deletion. Without `dev`, the
/// device of addresses and routes is left out: `ip monitor` names the
/// device of another namespace's address or route by the ifindex in its
/// own namespace (a container's `eth0` as the host veth it was made as).
fn key_of(line: &str, dev: bool) -> Option<String> {
    let (del, rest) = match line.strip_prefix("Deleted ") {
        Some(r) => ("Deleted ", r),
        None => ("", line),
    };
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    if let Some(idx) = first.strip_suffix(':')
        && idx.parse::<u32>().is_ok()
    {
        let second = words.next()?;
        if let Some(name) = second.strip_suffix(':') {
            // `19: eth0@if20:` or `19: eth0@NONE:`: the peer aside.
            let name = name.split('@').next()?;
            return Some(format!("{del}link {name}"));
        }
        // `19: eth0    inet 10.0.0.1/24 ...`
        let fam = words.next()?;
        let addr = words.next()?;
        if fam.starts_with("inet") {
            return Some(if dev { format!("{del}addr {second} {addr}") } else { format!("{del}addr {addr}") });
        }
        return None;
    }
    // Routes: everything up to and including `dev NAME`.
    let all: Vec<&str> = rest.split_whitespace().collect();
    let at = all.iter().position(|w| *w == "dev")?;
    let upto = if dev { at + 1 } else { at.checked_sub(1)? };
    Some(format!("{del}route {}", all.get(..=upto)?.join(" ")))
}

fn key(line: &str) -> Option<String> {
    key_of(line, true)
}

/// Every change on the tracer's timeline: requests' effects and lines of
/// their own, as (key, the JSON it came in).
fn tracer_changes(events: &[Value]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in events {
        match e["type"].as_str() {
            Some("netlink") => {
                for c in e["effects"].as_array().into_iter().flatten() {
                    for dev in [true, false] {
                        if let Some(k) = c["text"].as_str().and_then(|t| key_of(t, dev)) {
                            out.push((k, e.clone()));
                        }
                    }
                }
            }
            Some("change") => {
                for dev in [true, false] {
                    if let Some(k) = e["text"].as_str().and_then(|t| key_of(t, dev)) {
                        out.push((k, e.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Asserts that every change `ip monitor` printed is on the tracer's
/// timeline; returns the tracer's changes.
fn assert_superset(mon: &[(String, bool)], events: &[Value]) -> Vec<(String, Value)> {
    let ours = tracer_changes(events);
    let keys: BTreeSet<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
    let theirs: Vec<(String, &String)> = mon.iter().filter_map(|(l, current)| key_of(l, *current).map(|k| (k, l))).collect();
    assert!(!theirs.is_empty(), "ip monitor printed nothing usable: {mon:?}");
    let missing: Vec<&(String, &String)> = theirs.iter().filter(|(k, _)| !keys.contains(k.as_str())).collect();
    assert!(missing.is_empty(), "ip monitor printed changes the tracer lacks:\n{missing:#?}\ntracer has: {keys:#?}");
    ours
}

/// No interface by number, no unresolved namespace, nothing unnamed.
fn assert_everything_named(events: &[Value], lines_of: &str) {
    for e in events.iter().filter(|e| e["type"] == "netlink") {
        for (idx, name) in [("ifindex", "ifname"), ("master_index", "master"), ("oif_index", "oif")] {
            if e["attrs"][idx].as_u64().is_some_and(|i| i != 0) {
                assert!(e["attrs"][name].is_string(), "{idx} unnamed: {e}");
            }
        }
        if !e["target_netns"].is_null() {
            assert!(e["target_netns"]["inode"].is_u64(), "target namespace unresolved: {e}");
        }
        // A request that asked for an answer got one (the others are
        // answered only when they fail).
        if e["flags"].as_array().is_some_and(|f| f.contains(&Value::from("ack"))) {
            assert!(e["result"].is_object(), "no answer: {e}");
        }
    }
    // The same in text: the request lines, without `?` or `ifNNN`.
    for l in lines_of.lines().filter(|l| l.contains(" -> ")) {
        assert!(!l.contains(" ?") && !l.contains("netns ?"), "{l}");
        assert!(!l.split_whitespace().any(|w| w.strip_prefix("if").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))), "{l}");
    }
    // Effects and changes (the watcher's `ip monitor` text): every
    // namespace they mention by its name, not `nsid:N` or `inode N`.
    for l in lines_of.lines().filter(|l| l.starts_with("    = ") || l.contains(" kernel netns=")) {
        assert!(!l.contains("nsid:") && !l.contains("netns ?") && !l.contains("inode "), "a namespace unnamed: {l}");
    }
}

/// The lab's namespaces and the process holding one, removed on drop.
struct LabGuard {
    holder: Child,
    cleanup: String,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = Command::new("sh").arg("-c").arg(&self.cleanup).status();
    }
}

/// The plain `ip netns` lab: a veth made in the host, one end moved by
/// namespace name, the other by pid, addressed, brought up, deleted.
#[test]
fn ip_netns_lab_matches_ip_monitor_and_names_moves() {
    let id = unique_id();
    let (a, b) = (format!("tw{id}a"), format!("tw{id}b"));
    let (va, vb) = (format!("tw{}a", &id[id.len().saturating_sub(6)..]), format!("tw{}b", &id[id.len().saturating_sub(6)..]));
    sh(&format!("ip netns add {a} && ip netns add {b}"));
    let holder = Command::new("ip").args(["netns", "exec", &b, "sleep", "60"]).spawn().expect("sleep in b");
    let _lab = LabGuard { holder, cleanup: format!("ip link del {va} 2>/dev/null; ip netns del {a}; ip netns del {b}") };
    std::thread::sleep(Duration::from_millis(200));
    let mut t = Tracer::start(&["netlink", "--json"]);
    let mut text = Tracer::start(&["netlink"]);
    let mon = IpMonitor::start();
    let pid = _lab.holder.id();
    sh(&format!(
        "ip link add {va} type veth peer name {vb} && ip link set {vb} netns {a} && ip link set {va} netns {pid} && \
         ip -n {a} addr add 10.231.7.1/24 dev {vb} && ip -n {a} link set {vb} up && ip -n {b} link set {va} up && \
         ip -n {b} addr add 10.231.7.2/24 dev {va}"
    ));
    std::thread::sleep(Duration::from_millis(300));
    sh(&format!("ip -n {a} link del {vb}"));
    std::thread::sleep(Duration::from_millis(800));
    let mon = mon.stop();
    assert_eq!(t.stop(), 0);
    assert_eq!(text.stop(), 0);
    let events = t.events();
    let ours = assert_superset(&mon, &events);
    assert_everything_named(&events, &text.lines().join("\n"));

    // The moves: by name and by pid, each naming where the link went.
    let moved = |dev: &str| {
        events
            .iter()
            .find(|e| e["msg_type"] == "RTM_NEWLINK" && e["attrs"]["ifname"] == dev && e["target_netns"]["of"] == "link")
            .unwrap_or_else(|| panic!("no move of {dev}: {events:#?}"))
            .clone()
    };
    let by_name = moved(&vb);
    assert_eq!(by_name["target_netns"]["name"], a.as_str(), "{by_name}");
    let by_pid = moved(&va);
    assert_eq!(by_pid["target_netns"]["pid"], pid, "{by_pid}");
    assert_eq!(by_pid["target_netns"]["name"], b.as_str(), "{by_pid}");
    // Each move's effects: gone from the host, there in the new namespace.
    for (m, ns) in [(&by_name, &a), (&by_pid, &b)] {
        let fx = m["effects"].as_array().unwrap_or_else(|| panic!("no effects: {m}"));
        assert!(fx.iter().any(|c| c["action"] == "delete" && c["netns"]["inode"] == by_name["netns"]["inode"]), "{m}");
        assert!(fx.iter().any(|c| c["action"] == "new" && c["netns"]["name"] == ns.as_str()), "{m}");
    }
    // The delete: named although the link is gone, with its peer's deletion
    // (in the other namespace) and its address under it.
    let del = events.iter().find(|e| e["msg_type"] == "RTM_DELLINK").unwrap_or_else(|| panic!("no RTM_DELLINK: {events:#?}"));
    assert_eq!(del["attrs"]["ifname"], vb.as_str(), "{del}");
    let fx: Vec<String> = del["effects"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str().and_then(key)).collect();
    for want in [format!("Deleted link {vb}"), format!("Deleted link {va}"), format!("Deleted addr {vb} 10.231.7.1/24")] {
        assert!(fx.contains(&want), "{want} not under the delete: {fx:?}");
    }
    // The address request's own notifications come by portid/seq.
    let addr = events.iter().find(|e| e["msg_type"] == "RTM_NEWADDR" && e["attrs"]["address"] == "10.231.7.1").expect("RTM_NEWADDR");
    assert!(addr["effects"].as_array().is_some_and(|f| f.iter().any(|c| c["object"] == "addr" && c["seq"] == addr["seq"])), "{addr}");
    // Every change is either under a request or on its own line, which
    // says what caused it or that the kernel did.
    for (_, e) in &ours {
        assert!(e["type"] == "netlink" || e["caused_by"].is_object() || e["caused_by"].is_null(), "{e}");
    }
    let text = text.lines().join("\n");
    assert!(text.contains(&format!("set {vb} netns {a}")), "{text}");
    assert!(text.contains(&format!("set {va} netns {b}")), "{text}");
    assert!(text.contains(&format!("delete {vb}  -> ok")), "{text}");
    assert!(text.contains(&format!("    = netns={b} Deleted")), "{text}");
}

/// The seed's scenario on a real dockerd: `docker network create`, two
/// containers on it ping each other, 15 s pass, the containers are
/// removed, `docker network rm`; the default job (netlink and packets).
#[test]
fn docker_network_scenario_matches_ip_monitor() {
    let d = engine();
    let net = format!("trc-{}-net", unique_id());
    let mut t = Tracer::start(&["--json"]);
    let mut text = Tracer::start(&["netlink"]);
    let mon = IpMonitor::start();
    let id = d.docker(&["network", "create", &net]);
    let bridge = format!("br-{}", &id[..12]);
    let a = d.run("wa", &["--network", &net], &["sleep", "3600"]);
    let b = d.run("wb", &["--network", &net], &["sleep", "3600"]);
    let ip_b = d.docker(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"), &b.name]);
    // And inside the first container, as the seed's method does it.
    let mon_a = IpMonitor::start_in(a.pid);
    let ping = a.exec(&format!("ping -c 3 -W 2 {ip_b}"));
    assert!(ping.status.success(), "ping {ip_b}: {}", String::from_utf8_lossy(&ping.stdout));
    let (ino_a, ino_b) = (a.netns_inode(), b.netns_inode());
    // Docker's names for the two sandboxes (`/run/docker/netns/ID`).
    let sandboxes: Vec<String> = [&a.name, &b.name]
        .iter()
        .map(|n| d.docker(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", n]).rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert!(sandboxes.iter().all(|s| s.len() >= 12), "sandbox keys: {sandboxes:?}");
    std::thread::sleep(Duration::from_secs(15));
    let (name_a, name_b) = (a.name.clone(), b.name.clone());
    let a_name = name_a.clone();
    drop(a);
    drop(b);
    d.docker(&["network", "rm", &net]);
    std::thread::sleep(Duration::from_millis(800));
    let mon = mon.stop();
    let mon_a = mon_a.stop();
    assert_eq!(t.stop(), 0);
    assert_eq!(text.stop(), 0);
    let events = t.events();
    let text = text.lines().join("\n");
    // For a person to read (the README shows it): TRACER_SCENARIO_OUT=FILE.
    if let Some(p) = std::env::var_os("TRACER_SCENARIO_OUT") {
        let _ = std::fs::write(p, format!("{text}\n--- ip monitor ---\n{}\n", mon.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>().join("\n")));
    }
    let ours = assert_superset(&mon, &events);
    // What `ip monitor` printed inside the container is on the timeline
    // too (its lines name the container's own devices).
    assert!(mon_a.iter().any(|(l, _)| l.starts_with("Deleted")), "ip monitor in {} saw no deletion: {mon_a:?}", a_name);
    // Compared without the device's name: ip keeps a cache of names, and
    // dockerd renames eth0 back to its veth name before moving it out, so
    // ip prints the address's deletion under the old name.
    let mon_a: Vec<(String, bool)> = mon_a.into_iter().map(|(l, _)| (l, false)).collect();
    assert_superset(&mon_a, &events);
    assert_everything_named(&events, &text);
    assert!(ours.iter().any(|(k, _)| *k == format!("Deleted link {bridge}")), "bridge deletion missing");

    // dockerd moves each container's veth into its namespace by fd:
    // the move names the container.
    for (name, ino) in [(&name_a, ino_a), (&name_b, ino_b)] {
        let mv = events
            .iter()
            .find(|e| (e["msg_type"] == "RTM_NEWLINK" || e["msg_type"] == "RTM_SETLINK") && e["target_netns"]["of"] == "link" && e["target_netns"]["inode"] == ino)
            .unwrap_or_else(|| panic!("no move into {name}'s namespace {ino}: {}", text));
        // Named by the container, not by Docker's sandbox id: the
        // container does not run yet when its veth is moved in, so the
        // request waits (briefly) until its runtime names it.
        assert_eq!(mv["target_netns"]["name"], name.as_str(), "{mv}");
        assert_eq!(mv["comm"], "dockerd", "{mv}");
        assert!(text.lines().any(|l| l.contains("dockerd") && l.contains(&format!(" netns {name}"))), "no move into {name} in text:\n{text}");
        // So are dockerd's other requests into the sandbox while it sets
        // it up: eth0 named, its address added.
        let setup: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "netlink" && e["comm"] == "dockerd" && e["netns"]["inode"] == ino)
            .filter(|e| e["msg_type"] == "RTM_NEWADDR" || (e["msg_type"] == "RTM_NEWLINK" || e["msg_type"] == "RTM_SETLINK") && e["attrs"]["ifname"] == "eth0")
            .collect();
        assert!(!setup.is_empty(), "no request of dockerd's in {name}'s namespace: {text}");
        for e in setup {
            assert_eq!(e["netns"]["name"], name.as_str(), "{e}");
        }
    }
    // Nor is any namespace of theirs named by Docker's sandbox id: not
    // while the container starts (the move waits for its name), not after
    // it stopped (Docker takes the network down after the container).
    for l in text.lines() {
        assert!(!sandboxes.iter().any(|s| l.contains(s.as_str())), "a sandbox id {sandboxes:?} where the container's name belongs: {l}");
    }
    // No change is printed with a namespace by number only.
    for l in text.lines().filter(|l| l.contains(" kernel netns=")) {
        assert!(!l.contains(" kernel netns=0 "), "{l}");
    }
    // The bridge's deletion by dockerd is named and carries its notification.
    let del = events
        .iter()
        .find(|e| e["msg_type"] == "RTM_DELLINK" && e["attrs"]["ifname"] == bridge.as_str())
        .unwrap_or_else(|| panic!("no named RTM_DELLINK of {bridge}: {text}"));
    assert_eq!(del["comm"], "dockerd");
    assert!(del["effects"].as_array().is_some_and(|f| f.iter().any(|c| c["action"] == "delete" && c["ifname"] == bridge.as_str())), "{del}");
    // Changes in a container's namespace are named, by the container.
    let mut by_container = 0;
    for (k, e) in &ours {
        let fx: Vec<&Value> = if e["type"] == "change" { vec![e] } else { e["effects"].as_array().into_iter().flatten().collect() };
        for c in fx.iter().filter(|c| c["netns"]["inode"] == ino_a) {
            assert!(c["netns"]["name"].is_string(), "{k}: {c}");
            if c["container"]["name"] == name_a.as_str() {
                by_container += 1;
            }
        }
    }
    assert!(by_container > 0, "no change in {name_a}'s namespace names the container");
    // GETs (iptables' nft_compat revision lookups among them) are hidden.
    assert!(!events.iter().any(|e| e["type"] == "netlink" && e["msg_type"].as_str().is_some_and(|m| m.contains("nft_compat"))), "nft_compat lookups shown");
    assert!(!text.contains("-> ?"), "{text}");
    // A container's first packets carry its name: tests/docker.rs
    // (`a_containers_first_packets_carry_its_name`).
}
