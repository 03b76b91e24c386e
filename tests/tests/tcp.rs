//! `tracer tcp`: a real TCP stream between lab namespaces, made to lose
//! segments by an nftables rule: the retransmissions the tracer reports
//! must add up to the sender's own `TcpRetransSegs` counter, the
//! connection's states must come in order, and its close must carry the
//! summary; a connection to a closed port must show the reset both ways.

use std::time::Duration;

use serde_json::Value;
use tracer_tests::{Lab, Tracer, nft_input_drops, nstat, nstat_of_pid, quiet, sh, shell_quote, tcp_stream, wait_until};

fn tcp_events<'a>(ev: &'a [Value], what: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["type"] == "tcp" && e["event"] == what).collect()
}

/// A 4 MB stream from a to b through a rule in b that drops one data
/// segment in 20 at random: every retransmission is reported, their
/// segments add up to the growth of a's `TcpRetransSegs`, the client's
/// states come in order, and the close carries the same count.
#[test]
fn retransmissions_match_tcp_retrans_segs_and_states_come_in_order() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    nft_input_drops(b, &["tcp dport 7777 meta length gt 200 numgen random mod 20 == 0"]);
    let retrans_before = nstat(a, "TcpRetransSegs");
    let mut t = Tracer::start(&["tcp", "--json", "port", "7777"]);
    assert_eq!(tcp_stream(a, b, 7777, 1000), 4_000_000, "the server got every byte");
    let closed = wait_until(Duration::from_secs(10), || !tcp_events(&t.events(), "close").is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(closed, "no close: {:?}", t.lines());
    let grown = nstat(a, "TcpRetransSegs") - retrans_before;
    let ev = t.events();
    let retrans: Vec<&Value> =
        tcp_events(&ev, "retransmit").into_iter().filter(|e| e["failed"] == false && e["netns"]["inode"] == a.inode()).collect();
    let segs: u64 = retrans.iter().map(|e| e["segs"].as_u64().expect("segs")).sum();
    assert!(grown > 0, "the rule made retransmissions ({})", b.sh("nft list ruleset"));
    assert_eq!(segs, grown, "TcpRetransSegs grew by {grown}; events: {retrans:?}");
    assert!(retrans.iter().all(|e| e["dport"] == 7777 && e["seq"].is_u64()), "{retrans:?}");
    // Both ends are traced: each names the other's namespace.
    assert!(retrans.iter().all(|e| e["peer"]["netns"] == b.inode()), "{retrans:?}");
    // The client's socket: one connection, its states in order.
    let client_socket = retrans[0]["socket"].clone();
    let states: Vec<(String, String)> = tcp_events(&ev, "state")
        .iter()
        .filter(|e| e["socket"] == client_socket)
        .map(|e| (e["old_state"].as_str().expect("old").into(), e["new_state"].as_str().expect("new").into()))
        .collect();
    let want: Vec<(String, String)> = [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"), ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(states, want);
    let close = tcp_events(&ev, "close").into_iter().find(|e| e["socket"] == client_socket).expect("the client's close");
    assert_eq!(close["retransmitted_segs"].as_u64(), Some(grown), "{close}");
    assert_eq!(close["retransmits"].as_u64(), Some(retrans.len() as u64), "{close}");
    assert_eq!(close["total_retrans"].as_u64(), Some(grown), "the kernel's own count for the socket: {close}");
    assert_eq!(close["seen_from_start"], true);
    assert_eq!(close["states"], serde_json::json!(["CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]));
    assert!(close["bytes_acked"].as_u64().is_some_and(|n| n >= 4_000_000), "{close}");
    let rtt = &close["rtt_us"];
    assert!(rtt["min"].as_u64().is_some_and(|lo| lo > 0 && lo <= rtt["avg"].as_u64().unwrap_or(0)), "{close}");
    // The server's socket is the one whose close names the client's port
    // (before 6.2 or so its SYN_RECV comes before the kernel fills in the
    // peer's address and port, so they cannot pick it).
    let server_close = tcp_events(&ev, "close")
        .into_iter()
        .find(|e| e["netns"]["inode"] == b.inode() && e["sport"] == 7777 && e["dport"] == close["sport"])
        .expect("the server's close");
    let server_states: Vec<&str> = tcp_events(&ev, "state")
        .iter()
        .filter(|e| e["socket"] == server_close["socket"])
        .filter_map(|e| e["new_state"].as_str())
        .collect();
    assert_eq!(server_states, ["SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE"], "{ev:?}");
    assert!(tcp_events(&ev, "state").iter().filter(|e| e["netns"]["inode"] == b.inode() && e["new_state"] == "ESTABLISHED").all(|e| e["peer"]["netns"] == a.inode()));
    assert!(t.stderr().contains("lost: none"), "{}", t.stderr());
}

/// A connection to a closed port: b sends the reset (no socket), a
/// receives it in SYN_SENT, and b's `TcpOutRsts` grew by one.
#[test]
fn closed_port_reports_the_reset_both_ways() {
    let lab = Lab::new(2);
    quiet(&lab);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let rsts_before = nstat(b, "TcpOutRsts");
    let mut t = Tracer::start(&["tcp", "--json", "port", "7778"]);
    let out = a.sh_out(&format!("python3 -c {}", shell_quote(&format!("import socket\nsocket.create_connection(('{}',7778))", b.ip))));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ConnectionRefusedError"), "{out:?}");
    // Before 6.10 `tcp_send_reset` does not fire for a reset that answers
    // a segment no socket took: only the receiving end can be seen there.
    let no_socket_resets = tracer_tests::kernel_version() >= (6, 10);
    let seen = wait_until(Duration::from_secs(10), || {
        let ev = t.events();
        (!no_socket_resets || !tcp_events(&ev, "reset_sent").is_empty()) && !tcp_events(&ev, "reset_received").is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(seen, "{:?}", t.lines());
    assert_eq!(nstat(b, "TcpOutRsts") - rsts_before, 1);
    let ev = t.events();
    let sent = tcp_events(&ev, "reset_sent");
    if no_socket_resets {
        assert_eq!(sent.len(), 1, "{sent:?}");
        let s = sent[0];
        assert_eq!((s["netns"]["inode"].as_u64(), s["src"].as_str(), s["sport"].as_u64()), (Some(b.inode()), Some(b.ip.as_str()), Some(7778)), "{s}");
        assert_eq!(s["dst"], a.ip.as_str());
        assert_eq!((s["reason"].as_str(), s["no_socket"].as_bool()), (Some("NO_SOCKET"), Some(true)), "{s}");
    } else {
        assert!(sent.is_empty(), "{sent:?}");
    }
    let got = tcp_events(&ev, "reset_received");
    assert_eq!(got.len(), 1, "{got:?}");
    let r = got[0];
    assert_eq!((r["netns"]["inode"].as_u64(), r["state"].as_str(), r["dport"].as_u64()), (Some(a.inode()), Some("SYN_SENT"), Some(7778)), "{r}");
    // The client's side: SYN_SENT, then CLOSE after the reset.
    let states: Vec<&str> = tcp_events(&ev, "state").iter().filter(|e| e["socket"] == r["socket"]).filter_map(|e| e["new_state"].as_str()).collect();
    assert_eq!(states, ["SYN_SENT", "CLOSE"]);
}

/// In real Docker containers: a 4 MB stream from `tcpsend` to `tcprecv`
/// through a rule in the receiver's namespace dropping one data segment in
/// 20; `tracer tcp --container tcpsend` reports retransmissions (named
/// after the container) adding up to exactly the sender container's own
/// `TcpRetransSegs` growth.
#[test]
fn container_retransmissions_match_its_tcp_retrans_segs() {
    let d = tracer_tests::docker::engine();
    let recv = d.run("tcprecv", &[], &["sleep", "3600"]);
    let send = d.run("tcpsend", &[], &["sleep", "3600"]);
    let recv_ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &recv.name]);
    sh(&format!(
        "nsenter -t {} -n sh -c \"nft add table inet t && nft add chain inet t in '{{ type filter hook input priority 0; }}' && \
         nft add rule inet t in tcp dport 7777 meta length gt 200 numgen random mod 20 == 0 counter drop\"",
        recv.pid
    ));
    // The host's python, in each container's namespace (the image has none).
    let server = "import socket\n\
                  l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); l.bind(('',7777)); l.listen()\n\
                  c,_=l.accept()\n\
                  n=0\n\
                  while True:\n    d=c.recv(65536)\n    if not d: break\n    n+=len(d)\n\
                  c.close(); print(n)\n";
    let srv = std::process::Command::new("nsenter")
        .args(["-t", &recv.pid.to_string(), "-n", "python3", "-c", server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server");
    assert!(
        wait_until(Duration::from_secs(5), || sh(&format!("nsenter -t {} -n ss -ltn", recv.pid)).contains(":7777")),
        "server listening"
    );
    let before = nstat_of_pid(send.pid, "TcpRetransSegs");
    let mut t = Tracer::start(&["tcp", "--json", "--container", &send.name, "port", "7777"]);
    let client = format!(
        "import socket\ns=socket.create_connection(('{recv_ip}',7777))\nb=b'x'*4000\nfor i in range(1000): s.sendall(b)\n\
         s.shutdown(socket.SHUT_WR); s.recv(1); s.close()\n"
    );
    sh(&format!("nsenter -t {} -n python3 -c {}", send.pid, shell_quote(&client)));
    let out = srv.wait_with_output().expect("server");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4000000", "the receiver got every byte");
    let closed = wait_until(Duration::from_secs(10), || !tcp_events(&t.events(), "close").is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(closed, "no close: {:?}", t.lines());
    let grown = nstat_of_pid(send.pid, "TcpRetransSegs") - before;
    let ev = t.events();
    let retrans: Vec<&Value> = tcp_events(&ev, "retransmit").into_iter().filter(|e| e["failed"] == false).collect();
    let segs: u64 = retrans.iter().map(|e| e["segs"].as_u64().expect("segs")).sum();
    assert!(grown > 0, "the rule made retransmissions");
    assert_eq!(segs, grown, "the sender's TcpRetransSegs grew by {grown}; events: {retrans:?}");
    let container = serde_json::json!({"runtime": "docker", "id": send.id, "name": send.name});
    assert!(retrans.iter().all(|e| e["container"] == container && e["netns"]["inode"] == send.netns_inode() && e["dport"] == 7777), "{retrans:?}");
    eprintln!("{} retransmitted segments, {} events", grown, retrans.len());
}
