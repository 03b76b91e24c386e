use super::*;

fn netns(inode: u64, name: Option<&str>, owner: Option<Container>) -> NetnsId {
    NetnsId { inode, name: name.map(String::from), owner, host: false }
}

fn web() -> Container {
    Container { pod: None, runtime: "docker".into(), id: "c0ffee".repeat(10), name: Some("web".into()) }
}

fn render(e: &Exporter, f: Format) -> String {
    encode(&e.registry(), f).expect("encodes")
}

fn t<'a>(n: &'a NetnsId, interface: &'a str, ingress: bool, packets: u64, bytes: u64) -> Traffic<'a> {
    Traffic { netns: n, interface, ingress, packets, bytes }
}

#[test]
fn traffic_adds_up_per_namespace_interface_and_direction() {
    let mut e = Exporter::new(Duration::from_secs(60));
    let now = Instant::now();
    let c = netns(7, Some("web"), Some(web()));
    let lab = netns(8, Some("lab-a"), None);
    e.traffic(t(&c, "eth0", true, 3, 300), now);
    e.traffic(t(&c, "eth0", true, 2, 200), now);
    e.traffic(t(&lab, "veth1", false, 0, 0), now);
    let text = render(&e, Format::Prometheus);
    assert!(
        text.contains(r#"tracer_packets_total{netns="web",container="web",runtime="docker",pod="",pod_namespace="",interface="eth0",direction="ingress"} 5"#),
        "{text}"
    );
    assert!(text.contains(r#"tracer_bytes_total{netns="web",container="web",runtime="docker",pod="",pod_namespace="",interface="eth0",direction="ingress"} 500"#));
    // Traced but silent: there, at 0, so a scraper sees its first increase.
    assert!(text.contains(r#"tracer_packets_total{netns="lab-a",container="",runtime="",pod="",pod_namespace="",interface="veth1",direction="egress"} 0"#));
    assert!(text.contains("# TYPE tracer_packets_total counter"), "the 0.0.4 format names counters with _total: {text}");
    assert!(!text.contains("# EOF"));
    let om = render(&e, Format::OpenMetrics);
    assert!(om.contains("# TYPE tracer_packets counter") && om.ends_with("# EOF\n"), "{om}");
}

#[test]
fn a_pod_s_containers_carry_its_name_and_namespace() {
    let mut e = Exporter::new(Duration::from_secs(60));
    let pod = crate::ns::Pod { name: "web-1".into(), namespace: "shop".into(), container: None };
    let c = Container { runtime: "containerd".into(), id: "x".into(), name: Some("web-1".into()), pod: Some(pod) };
    let n = netns(3, Some("web-1"), Some(c.clone()));
    e.traffic(t(&n, "eth0", false, 1, 60), Instant::now());
    e.request(Request { msg_type: "RTM_NEWLINK", result: "ok", comm: "ip", container: Some(&c) }, Instant::now());
    let text = render(&e, Format::Prometheus);
    assert!(text.contains(r#"container="web-1",runtime="containerd",pod="web-1",pod_namespace="shop",interface="eth0""#), "{text}");
    assert!(text.contains(r#"container="web-1",pod="web-1",pod_namespace="shop"} 1"#), "{text}");
}

#[test]
fn hostile_names_are_escaped_and_cut() {
    let mut e = Exporter::new(Duration::from_secs(60));
    let evil = Container { pod: None, runtime: "docker".into(), id: "1".into(), name: Some(format!("a\"b\\c\nd\u{1b}[31m{}", "x".repeat(500))) };
    let n = netns(9, None, Some(evil));
    e.traffic(t(&n, "e\"th\n0", false, 1, 1), Instant::now());
    e.request(Request { msg_type: "RTM_NEWLINK", result: "ok", comm: "ip\u{7f}\u{202e}", container: n.owner.as_ref() }, Instant::now());
    for f in [Format::Prometheus, Format::OpenMetrics] {
        let text = render(&e, f);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7f}') && !text.contains('\u{202e}'), "{text}");
        // One line per sample: control characters as text shows them
        // (`\x0a`), then quotes and backslashes as the format escapes them.
        let line = text.lines().find(|l| l.starts_with("tracer_packets_total{")).expect("sample");
        assert!(line.contains(r#"container="a\"b\\c\\x0ad\\x1b[31m"#), "{line}");
        assert!(line.contains(r#"interface="e\"th\\x0a0""#), "{line}");
        assert!(line.contains("..."), "cut: {line}");
        assert!(line.len() < 400, "{line}");
        let nl = text.lines().find(|l| l.starts_with("tracer_netlink_requests_total{")).expect("netlink sample");
        assert!(nl.contains(r#"comm="ip\\x7f\\u{202e}""#), "{nl}");
    }
}

#[test]
fn netlink_requests_count_by_type_result_comm_and_container() {
    let mut e = Exporter::new(Duration::from_secs(60));
    let now = Instant::now();
    let c = web();
    for _ in 0..3 {
        e.request(Request { msg_type: "RTM_NEWADDR", result: "ok", comm: "ip", container: None }, now);
    }
    e.request(Request { msg_type: "RTM_NEWROUTE", result: "EEXIST", comm: "ip", container: Some(&c) }, now);
    let text = render(&e, Format::Prometheus);
    assert!(text.contains(r#"tracer_netlink_requests_total{msg_type="RTM_NEWADDR",result="ok",comm="ip",container="",pod="",pod_namespace=""} 3"#), "{text}");
    assert!(text.contains(r#"tracer_netlink_requests_total{msg_type="RTM_NEWROUTE",result="EEXIST",comm="ip",container="web",pod="",pod_namespace=""} 1"#));
}

#[test]
fn series_of_vanished_interfaces_go_after_the_grace_period() {
    let mut e = Exporter::new(Duration::from_secs(10));
    let start = Instant::now();
    let a = netns(1, Some("a"), None);
    let b = netns(2, Some("b"), None);
    e.traffic(t(&a, "eth0", true, 1, 1), start);
    e.traffic(t(&b, "eth0", true, 1, 1), start);
    // b stays traced (seen at 0), a went away.
    e.traffic(t(&b, "eth0", true, 0, 0), start + Duration::from_secs(8));
    assert_eq!(e.sweep(start + Duration::from_secs(9)), 0, "within the grace period");
    assert_eq!(e.sweep(start + Duration::from_secs(11)), 1);
    let text = render(&e, Format::Prometheus);
    assert!(!text.contains(r#"netns="a""#) && text.contains(r#"netns="b""#), "{text}");
    assert_eq!(e.series(), (1, 0));
    // Netlink series idle for an hour go too.
    e.request(Request { msg_type: "RTM_NEWLINK", result: "ok", comm: "ip", container: None }, start);
    assert_eq!(e.sweep(start + Duration::from_secs(60)), 1, "b's, unseen for 52 s; netlink's stays");
    assert_eq!(e.series(), (0, 1));
    assert_eq!(e.sweep(start + NETLINK_IDLE + Duration::from_secs(1)), 1);
    assert!(!render(&e, Format::Prometheus).contains("tracer_netlink_requests_total{"));
}

#[test]
fn a_churning_host_cannot_grow_the_endpoint_past_the_cap() {
    let mut e = Exporter::new(Duration::from_secs(60));
    let now = Instant::now();
    for i in 0..TRAFFIC_SERIES_MAX as u64 + 10 {
        let n = netns(i, None, None);
        e.traffic(t(&n, "eth0", true, 1, 1), now);
    }
    for i in 0..NETLINK_SERIES_MAX + 5 {
        e.request(Request { msg_type: "RTM_NEWLINK", result: "ok", comm: &format!("c{i}"), container: None }, now);
    }
    assert_eq!(e.series(), (TRAFFIC_SERIES_MAX, NETLINK_SERIES_MAX));
    let text = render(&e, Format::Prometheus);
    assert!(text.contains(r#"tracer_series_refused_total{family="traffic"} 10"#), "refusals counted");
    assert!(text.contains(r#"tracer_series_refused_total{family="netlink"} 5"#));
    // A series already there still counts at the cap.
    let n = netns(0, None, None);
    e.traffic(t(&n, "eth0", true, 1, 1), now);
    assert!(render(&e, Format::Prometheus).contains(r#"tracer_packets_total{netns="0",container="",runtime="",pod="",pod_namespace="",interface="eth0",direction="ingress"} 2"#));
}

#[test]
fn lost_process_and_build_info_families() {
    let e = Exporter::new(Duration::from_secs(60));
    e.lost("netlink", 0);
    e.lost("stats", 4);
    let text = render(&e, Format::Prometheus);
    for want in [
        r#"tracer_lost_events_total{source="netlink"} 0"#,
        r#"tracer_lost_events_total{source="stats"} 4"#,
        "tracer_process_cpu_seconds_total ",
        "tracer_process_resident_memory_bytes ",
        "tracer_process_open_fds ",
        "tracer_process_start_time_seconds ",
        &format!(r#"tracer_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION")),
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
}

#[test]
fn accept_picks_the_format() {
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
    assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
    assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::from_accept(None), Format::Prometheus);
}
