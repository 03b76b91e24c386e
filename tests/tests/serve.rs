//! `tracer serve` scraped by a real Prometheus (Debian's `prometheus`,
//! every second, on loopback): a known number of datagrams between two lab
//! namespaces and between two Docker containers shows up in Prometheus's
//! own query API as exactly that increase in packets and bytes on each
//! interface they cross, labelled with the namespace and the container; a
//! netlink change shows up as a counter with its comm, result and
//! container; process metrics and build info are there; the series of a
//! namespace that goes away are removed after the grace period. And the
//! endpoint's bad input: a port in use, an address no interface has.

use std::{net::SocketAddr, time::Duration};

use tracer_tests::{
    Lab, Tracer,
    docker::{RunningContainer, engine},
    prom::{Prometheus, http_get},
    nft_counters, nft_input_drops, nstat, quiet, sh, shell_quote, tracer_run, wait_until,
};

/// UDP header plus IPv4 plus Ethernet: a datagram of payload P is a frame of P + 42 bytes.
const UDP_OVERHEAD: u64 = 42;
const PORT: u16 = 40123;

/// The address `tracer serve` says it listens on, from its ready line.
fn serve_addr(t: &Tracer) -> SocketAddr {
    // The ready line is seen before it is stored: wait for it.
    wait_until(Duration::from_secs(5), || t.stderr().contains("/metrics"));
    let err = t.stderr();
    let rest = err.split("serving metrics on http://").nth(1).unwrap_or_else(|| panic!("no address in: {err}"));
    rest.split("/metrics").next().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in: {err}"))
}

/// Sends `count` datagrams of `size` bytes to `to`:PORT with the host's
/// python3, inside the network namespace `enter` names (`ip netns exec X`
/// or `nsenter -t PID -n`).
fn udp_send(enter: &str, to: &str, count: u32, size: usize) {
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\np=b'x'*{size}\n\
         for i in range({count}):\n    s.sendto(p,('{to}',{PORT}))\n"
    );
    sh(&format!("{enter} python3 -c {}", shell_quote(&py)));
}

/// The host interface at the other end of a container's eth0 (from sysfs).
fn host_peer(c: &RunningContainer) -> String {
    let idx = String::from_utf8_lossy(&c.exec("cat /sys/class/net/eth0/iflink").stdout).trim().to_string();
    std::fs::read_dir("/sys/class/net")
        .expect("sysfs")
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("ifindex")).is_ok_and(|s| s.trim() == idx))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no host interface {idx}"))
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64()
}

/// One series of a traffic family.
fn sel(family: &str, netns: &str, container: &str, iface: &str, dir: &str) -> String {
    format!(r#"tracer_{family}_total{{netns="{netns}",container="{container}",interface="{iface}",direction="{dir}"}}"#)
}

#[test]
fn prometheus_sees_exact_packet_byte_and_netlink_counts() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let d = engine();
    let web = d.run("web", &["--cap-add", "NET_ADMIN"], &["sleep", "3600"]);
    let db = d.run("db", &[], &["sleep", "3600"]);
    let db_ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &db.name]);
    let filter = format!("udp port {PORT}");
    let mut t = Tracer::start(&["serve", "--listen", "127.0.0.1:0", "--grace", "3", &filter]);
    let addr = serve_addr(&t);
    assert!(addr.ip().is_loopback());
    let prom = Prometheus::start(&[addr]);

    let h = "host";
    // (series, packets, bytes) expected for each datagram count.
    let (n_lab, size_lab, n_dock, size_dock) = (50u64, 100usize, 30u64, 333usize);
    let lab_bytes = n_lab * (size_lab as u64 + UDP_OVERHEAD);
    let dock_bytes = n_dock * (size_dock as u64 + UDP_OVERHEAD);
    let (wv, dv) = (host_peer(&web), host_peer(&db));
    let expect: Vec<(String, String, String, String, u64, u64)> = vec![
        (a.name.clone(), String::new(), "eth0".into(), "egress".into(), n_lab, lab_bytes),
        (h.into(), String::new(), a.host_veth.clone(), "ingress".into(), n_lab, lab_bytes),
        (h.into(), String::new(), b.host_veth.clone(), "egress".into(), n_lab, lab_bytes),
        (b.name.clone(), String::new(), "eth0".into(), "ingress".into(), n_lab, lab_bytes),
        (web.name.clone(), web.name.clone(), "eth0".into(), "egress".into(), n_dock, dock_bytes),
        (h.into(), String::new(), wv.clone(), "ingress".into(), n_dock, dock_bytes),
        (h.into(), String::new(), dv.clone(), "egress".into(), n_dock, dock_bytes),
        (db.name.clone(), db.name.clone(), "eth0".into(), "ingress".into(), n_dock, dock_bytes),
    ];
    // Every series is scraped at 0 before any traffic: the increase is
    // then the value.
    let all_there = || {
        expect.iter().all(|(ns, c, i, dir, _, _)| prom.value(&sel("packets", ns, c, i, dir), None) == Some(0.0))
    };
    assert!(
        wait_until(Duration::from_secs(30), all_there),
        "not every series at 0 in prometheus; tracer's /metrics:\n{}\nprometheus log:\n{}",
        http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default(),
        prom.log()
    );
    // Scrapes more, so that the zeros are stored well before the traffic.
    std::thread::sleep(Duration::from_secs(3));
    let before = now();
    // Neighbours first (ARP is not counted: the filter is UDP to PORT).
    a.sh(&format!("ping -c1 -W2 {} >/dev/null || true", b.ip));
    udp_send(&format!("ip netns exec {}", a.name), &b.ip, n_lab as u32, size_lab);
    udp_send(&format!("nsenter -t {} -n", web.pid), &db_ip, n_dock as u32, size_dock);

    let settled = || {
        expect.iter().all(|(ns, c, i, dir, p, by)| {
            prom.value(&sel("packets", ns, c, i, dir), None) == Some(*p as f64) && prom.value(&sel("bytes", ns, c, i, dir), None) == Some(*by as f64)
        })
    };
    let ok = wait_until(Duration::from_secs(20), settled);
    let report: Vec<String> = expect
        .iter()
        .map(|(ns, c, i, dir, p, by)| {
            format!(
                "{ns}/{i} {dir}: packets {:?} (want {p}) bytes {:?} (want {by})",
                prom.value(&sel("packets", ns, c, i, dir), None),
                prom.value(&sel("bytes", ns, c, i, dir), None)
            )
        })
        .collect();
    assert!(ok, "prometheus does not show the datagrams exactly:\n{}", report.join("\n"));
    // The increase over the window, asked of Prometheus as a user would,
    // starts from the 0 stored before the traffic.
    for (ns, c, i, dir, p, by) in &expect {
        assert_eq!(prom.value(&sel("packets", ns, c, i, dir), Some(before)), Some(0.0), "{ns}/{i} {dir} before the traffic");
        // From a second before the traffic (when every series was at 0).
        let window = (now() - before).ceil() as u64 + 1;
        let inc = |f: &str| prom.value(&format!("{} - {} offset {window}s", sel(f, ns, c, i, dir), sel(f, ns, c, i, dir)), None);
        assert_eq!((inc("packets"), inc("bytes")), (Some(*p as f64), Some(*by as f64)), "{ns}/{i} {dir}");
    }
    // The container's series say which runtime.
    let r = prom.query(&format!(r#"tracer_packets_total{{container="{}",interface="eth0",direction="egress"}}"#, web.name), None);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["metric"]["runtime"], "docker");

    // Netlink: an address added twice in a lab namespace (ok, then
    // EEXIST), and one added from inside the container.
    a.sh("ip addr add 10.254.254.1/32 dev lo");
    let again = a.sh_out("ip addr add 10.254.254.1/32 dev lo");
    assert!(!again.status.success(), "the second add must fail");
    let out = web.exec("ip addr add 10.254.254.2/32 dev lo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let nl = |result: &str, container: &str| {
        prom.value(&format!(r#"tracer_netlink_requests_total{{msg_type="RTM_NEWADDR",comm="ip",result="{result}",container="{container}"}}"#), None)
    };
    let web_name = web.name.clone();
    assert!(
        wait_until(Duration::from_secs(15), || nl("ok", "") == Some(1.0) && nl("EEXIST", "") == Some(1.0) && nl("ok", &web_name) == Some(1.0)),
        "netlink counters: ok {:?}, EEXIST {:?}, ok in {web_name} {:?}; /metrics:\n{}",
        nl("ok", ""),
        nl("EEXIST", ""),
        nl("ok", &web_name),
        http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default()
    );

    // The tracer's own process metrics and build info.
    assert!(prom.value("tracer_process_resident_memory_bytes", None).is_some_and(|v| v > 1e6));
    assert!(prom.value("tracer_process_open_fds", None).is_some_and(|v| v > 3.0));
    assert!(prom.value("tracer_process_cpu_seconds_total", None).is_some());
    let info = prom.query("tracer_build_info", None);
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(info[0]["metric"]["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(prom.value(r#"tracer_lost_events_total{source="netlink"}"#, None), Some(0.0));

    // A namespace that goes away: its series leave /metrics after the
    // grace period (3 s), not before.
    let c = lab.join_bridge("c", 9);
    let metrics = || http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default();
    let has_c = |m: &str| m.contains(&format!(r#"netns="{}""#, c.name));
    assert!(wait_until(Duration::from_secs(10), || has_c(&metrics())), "{} never appeared", c.name);
    sh(&format!("ip netns del {}", c.name));
    let gone_at = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    assert!(has_c(&metrics()), "removed before the grace period ended");
    assert!(wait_until(Duration::from_secs(15), || !has_c(&metrics())), "still there after the grace period");
    eprintln!("series of the deleted namespace gone {:?} after it", gone_at.elapsed());

    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let err = t.stderr();
    assert_eq!(err.lines().filter(|l| l.contains("ready")).count(), 1, "{err}");
    assert!(t.lines().is_empty(), "serve prints nothing on stdout: {:?}", t.lines());
}

#[test]
fn endpoint_serves_metrics_and_healthz_only() {
    // A namespace of the test's own, so that the traffic families have a
    // series on a machine that has no other namespace (an empty family is
    // not written, as Prometheus's own client libraries do).
    let lab = Lab::new(1);
    let mut t = Tracer::start(&["serve", "--listen", "127.0.0.1:0"]);
    let addr = serve_addr(&t);
    let has_lab = |b: &str| b.contains(&format!(r#"netns="{}""#, lab.ns[0].name));
    assert!(
        wait_until(Duration::from_secs(10), || http_get(addr, "/metrics", "*/*").is_some_and(|r| has_lab(&r.2))),
        "{} never appeared",
        lab.ns[0].name
    );
    let (status, head, body) = http_get(addr, "/metrics", "*/*").expect("answers");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("# TYPE tracer_packets_total counter") && body.contains("tracer_build_info{"), "{body}");
    // Prometheus's own parser and linter (promtool, from the same package)
    // takes the 0.0.4 text as it is.
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), body.as_bytes()).expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{body}");
    let (_, head, body) = http_get(addr, "/metrics", "application/openmetrics-text;version=1.0.0").expect("answers");
    assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(http_get(addr, "/healthz", "*/*").map(|r| (r.0, r.2)), Some((200, "ok\n".to_string())));
    for path in ["/", "/api/v1/query", "/metricsx", "/debug/pprof"] {
        assert_eq!(http_get(addr, path, "*/*").map(|r| r.0), Some(404), "{path}");
    }
    assert_eq!(t.stop(), 0);
}

#[test]
fn a_port_in_use_or_an_address_not_here_is_one_sentence() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{port}");
    let (code, out, err) = tracer_run(&["serve", "--listen", &listen]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {listen}: the port is in use")), "{err}");
    let (code, _, err) = tracer_run(&["serve", "--listen", "192.0.2.1:9464"]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot listen on 192.0.2.1:9464: no interface of this host has that address"), "{err}");
    let (code, _, err) = tracer_run(&["serve", "--listen", "localhost"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--listen needs an address and a port"), "{err}");
    drop(taken);
}

/// The value of the one series of `/metrics` text whose name and labels
/// contain all of `parts` (0 when there is none).
fn series_value(body: &str, name: &str, parts: &[String]) -> u64 {
    let found: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && parts.iter().all(|p| l.contains(p.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok().map(|v| v as u64))
        .collect();
    assert!(found.len() <= 1, "{name} {parts:?}: {found:?}");
    found.first().copied().unwrap_or(0)
}

/// Drops by reason and TCP resets per namespace, counted by the tracepoint
/// programs in the kernel: an nftables rule in b drops 23 datagrams
/// (`tracer_drops_total{reason="NETFILTER_DROP",interface="eth0"}` of b is
/// 23, the rule's counter), and a connection from a to a closed port of b
/// is one reset received in a and (from 6.10, when the kernel traces a
/// reset with no socket) one sent in b, as b's `TcpOutRsts` grew.
#[test]
fn drops_and_tcp_resets_are_counted_per_namespace() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    let rsts_before = nstat(b, "TcpOutRsts");
    let mut t = Tracer::start(&["serve", "--listen", "127.0.0.1:0"]);
    let addr = serve_addr(&t);
    let py = format!("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(23):\n    s.sendto(b'x'*20,('{}',5555))\n", b.ip);
    a.sh(&format!("python3 -c {}", shell_quote(&py)));
    let out = a.sh_out(&format!("python3 -c {}", shell_quote(&format!("import socket\nsocket.create_connection(('{}',7778))", b.ip))));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ConnectionRefusedError"), "{out:?}");
    let ns = |n: &str| format!(r#"netns="{n}""#);
    let drop_sel = [ns(&b.name), r#"interface="eth0""#.to_string(), r#"reason="NETFILTER_DROP""#.to_string()];
    let body = || http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default();
    let sent_traced = tracer_tests::kernel_version() >= (6, 10);
    let done = wait_until(Duration::from_secs(10), || {
        let m = body();
        series_value(&m, "tracer_drops_total", &drop_sel) >= 23
            && series_value(&m, "tracer_tcp_resets_received_total", &[ns(&a.name)]) >= 1
            && (!sent_traced || series_value(&m, "tracer_tcp_resets_sent_total", &[ns(&b.name)]) >= 1)
    });
    // One more read interval: nothing more may come.
    std::thread::sleep(Duration::from_millis(1200));
    let m = body();
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(done, "{m}");
    assert_eq!(vec![series_value(&m, "tracer_drops_total", &drop_sel)], nft_counters(b), "the rule's counter");
    assert_eq!(series_value(&m, "tracer_drops_total", &drop_sel), 23);
    assert_eq!(series_value(&m, "tracer_tcp_resets_received_total", &[ns(&a.name)]), 1, "{m}");
    assert_eq!(nstat(b, "TcpOutRsts") - rsts_before, 1);
    if sent_traced {
        assert_eq!(series_value(&m, "tracer_tcp_resets_sent_total", &[ns(&b.name)]), 1, "{m}");
    }
    assert_eq!(series_value(&m, "tracer_tcp_retransmits_total", &[ns(&a.name)]), 0, "{m}");
    assert!(m.contains("# TYPE tracer_drops_total counter"), "{m}");
}

/// The drop and TCP series cover what the traffic series cover: with
/// `--netns b -i eth0`, b's 19 datagrams dropped by a rule on eth0 are 19
/// (what the rule counted on eth0), while a's 11 dropped datagrams, the
/// reset a receives from b's closed port, and the 7 datagrams b's rule
/// dropped over its loopback (not a selected interface) make no series. Without the selection the
/// exporter followed every namespace and every interface.
#[test]
fn drop_and_tcp_series_follow_the_selection() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["udp dport 5555"]);
    nft_input_drops(a, &["udp dport 5555"]);
    let mut t = Tracer::start(&["serve", "--listen", "127.0.0.1:0", "--netns", &b.name, "-i", "eth0"]);
    let addr = serve_addr(&t);
    let send = |from: &tracer_tests::LabNs, to: &str, count: u32| {
        let py = format!("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range({count}):\n    s.sendto(b'x'*20,('{to}',5555))\n");
        from.sh(&format!("python3 -c {}", shell_quote(&py)));
    };
    send(a, &b.ip, 19);
    send(b, &a.ip, 11);
    send(b, "127.0.0.1", 7);
    let out = a.sh_out(&format!("python3 -c {}", shell_quote(&format!("import socket\nsocket.create_connection(('{}',7778))", b.ip))));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ConnectionRefusedError"), "{out:?}");
    let drop_sel = [format!(r#"netns="{}""#, b.name), r#"interface="eth0""#.to_string(), r#"reason="NETFILTER_DROP""#.to_string()];
    let body = || http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default();
    let done = wait_until(Duration::from_secs(10), || series_value(&body(), "tracer_drops_total", &drop_sel) >= 19);
    // One more read interval: nothing more may come.
    std::thread::sleep(Duration::from_millis(1200));
    let m = body();
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(done, "{m}");
    // b's rule also dropped the 7 it sent itself over its loopback.
    assert_eq!((nft_counters(b), nft_counters(a)), (vec![19 + 7], vec![11]), "the rules' counters");
    assert_eq!(series_value(&m, "tracer_drops_total", &drop_sel), 19, "{m}");
    let lines = |name: &str| -> Vec<&str> { m.lines().filter(|l| l.starts_with(&format!("{name}{{"))).collect() };
    let drops = lines("tracer_drops_total");
    assert!(drops.iter().all(|l| l.contains(&format!(r#"netns="{}""#, b.name)) && l.contains(r#"interface="eth0""#)), "{drops:?}");
    for family in ["tracer_tcp_retransmits_total", "tracer_tcp_resets_sent_total", "tracer_tcp_resets_received_total"] {
        assert!(lines(family).iter().all(|l| !l.contains(&format!(r#"netns="{}""#, a.name))), "{m}");
    }
}
