//! Per-packet process attribution against processes whose pids the tests
//! know: python3 clients and servers in lab namespaces (each renames
//! itself through /proc/self/comm, so two in one namespace are told
//! apart by name as well as pid), busybox in a real Docker container, and
//! pcapng comments read back with tshark.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use aya::programs::SockOps;
use tracer::testing::{LoadOptions, load};
use tracer_common::programs;
use tracer_tests::{Lab, LabNs, Tracer, docker::engine, tracer_run};

/// A python3 process in a lab namespace that names itself `comm`, prints
/// its pid, and then runs `body`; the test talks to it on stdin.
struct Py {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<std::process::ChildStdout>,
    pid: u32,
}

impl Py {
    fn start(ns: &LabNs, comm: &str, body: &str) -> Py {
        let script = format!(
            "import os,socket,sys,time,threading\n\
             open('/proc/self/comm','w').write({comm:?})\n\
             print(os.getpid(), flush=True)\n{body}"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-u", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("pid line");
        let pid = line.trim().parse().unwrap_or_else(|_| panic!("no pid from {comm}: {line:?}"));
        Py { child, stdin, out, pid }
    }

    /// Sends one line to its stdin.
    fn say(&mut self, s: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{s}").expect("write to python");
        stdin.flush().expect("flush");
    }

    /// Waits for one line of its stdout.
    fn hear(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("read from python");
        line.trim().to_string()
    }

    fn wait(mut self) {
        self.stdin.take();
        let st = self.child.wait().expect("wait python");
        assert!(st.success(), "python exited with {st}");
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server in `ns`: echoes UDP on `uport`; on TCP `tport` reads until the
/// peer shuts down, answers `ok`, and closes.
fn server(ns: &LabNs, uport: u16, tport: u16) -> Py {
    let body = format!(
        "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.bind(('',{uport}))\n\
         t=socket.socket(); t.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); t.bind(('',{tport})); t.listen(8)\n\
         def echo():\n    while True:\n        d,a=u.recvfrom(2048); u.sendto(d,a)\n\
         threading.Thread(target=echo,daemon=True).start()\n\
         print('listening', flush=True)\n\
         while True:\n    c,_=t.accept()\n    while c.recv(65536): pass\n    c.sendall(b'ok'); c.close()\n"
    );
    let mut s = Py::start(ns, "srv-proc", &body);
    assert_eq!(s.hear(), "listening");
    s
}

/// Packets of the test's flows (by port), as (namespace inode, ifname, direction, event).
fn flow_packets(events: &[Value], ports: &[u16]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "packet")
        .filter(|e| ports.iter().any(|p| e["sport"] == *p || e["dport"] == *p))
        .cloned()
        .collect()
}

fn on(e: &Value, ns: &LabNs, dir: &str) -> bool {
    e["netns"]["inode"] == ns.inode() && e["ifname"] == "eth0" && e["direction"] == dir
}

fn pid_of(side: &Value) -> Option<u64> {
    side.get("pid").and_then(Value::as_u64)
}

/// UDP and TCP between a client in one namespace and a server in another:
/// every packet on the client's eth0 going out names the client (and the
/// server as its receiver), every packet arriving on the server's eth0
/// names the server as receiver; the answers the other way round.
#[test]
fn udp_and_tcp_name_both_ends_on_both_eth0s() {
    both_ends(5300, 5301, false);
}

/// The same with the `sock_ops` program that asks nothing of the current
/// task, the one kernels that refuse sock_ops the current-task helpers
/// (Debian's 6.1) take, and with the server listening after the start, so
/// that its listen goes through that program: the owners come from the
/// cgroup programs' records alone, and are the same.
#[test]
fn sock_ops_without_the_task_names_both_ends_too() {
    // Tracer::start has no way to set the environment: set it for this process.
    // SAFETY: the tests run one at a time (--test-threads=1).
    unsafe { std::env::set_var("TRACER_SOCK_OPS", "notask") };
    let doctor = Command::new(tracer_tests::tracer_bin()).arg("doctor").output().expect("doctor");
    let doc = String::from_utf8_lossy(&doctor.stdout).into_owned();
    both_ends(5380, 5381, true);
    // SAFETY: as above.
    unsafe { std::env::remove_var("TRACER_SOCK_OPS") };
    let line = doc.lines().find(|l| l.starts_with("processes     yes:")).unwrap_or_else(|| panic!("{doc}"));
    assert!(line.contains("sock_ops without the current task (TRACER_SOCK_OPS=notask)"), "{line}");
}

/// [`udp_and_tcp_name_both_ends_on_both_eth0s`] on UDP port `uport` and
/// TCP port `tport`; the server starts before the tracer, or after it.
fn both_ends(uport: u16, tport: u16, server_after_start: bool) {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let filter = format!("host {} and (port {uport} or port {tport})", b.ip);
    let args = ["packets", "--all", "--json", filter.as_str()];
    let (srv, mut t) = if server_after_start {
        let t = Tracer::start(&args);
        (server(b, uport, tport), t)
    } else {
        let srv = server(b, uport, tport);
        (srv, Tracer::start(&args))
    };
    assert!(!t.stderr().contains("process attribution is off"), "{}", t.stderr());
    let body = format!(
        "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range(5):\n    u.sendto(b'x%d'%i,('{ip}',{uport})); u.recvfrom(100)\n\
         c=socket.create_connection(('{ip}',{tport})); c.sendall(b'hello'*100); c.shutdown(socket.SHUT_WR)\n\
         assert c.recv(10)==b'ok'; c.close(); time.sleep(0.2)\n",
        ip = b.ip
    );
    let cli = Py::start(a, "cli-proc", &body);
    let cli_pid = u64::from(cli.pid);
    cli.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let pk = flow_packets(&t.events(), &[uport, tport]);
    let srv_pid = u64::from(srv.pid);
    let count = |f: &dyn Fn(&Value) -> bool| pk.iter().filter(|e| f(e)).count();
    // Client -> server on the client's eth0: 5 datagrams and the TCP segments.
    let out_a: Vec<&Value> = pk.iter().filter(|e| on(e, a, "egress")).collect();
    let in_b: Vec<&Value> = pk.iter().filter(|e| on(e, b, "ingress")).collect();
    let out_b: Vec<&Value> = pk.iter().filter(|e| on(e, b, "egress")).collect();
    let in_a: Vec<&Value> = pk.iter().filter(|e| on(e, a, "ingress")).collect();
    assert_eq!(out_a.iter().filter(|e| e["proto"] == "udp").count(), 5, "{pk:#?}");
    assert!(out_a.iter().filter(|e| e["proto"] == "tcp").count() >= 4, "SYN, data, FIN, ACKs: {pk:#?}");
    assert!(out_b.iter().filter(|e| e["proto"] == "tcp").count() >= 3, "SYN-ACK, ok, FIN: {pk:#?}");
    for e in &out_a {
        assert_eq!(pid_of(&e["process"]), Some(cli_pid), "client's eth0 out: {e}");
        assert_eq!(e["process"]["comm"], "cli-proc", "{e}");
    }
    for e in &in_b {
        assert_eq!(pid_of(&e["peer_process"]), Some(srv_pid), "server's eth0 in: {e}");
        assert_eq!(e["peer_process"]["comm"], "srv-proc", "{e}");
    }
    for e in &out_b {
        assert_eq!(pid_of(&e["process"]), Some(srv_pid), "server's eth0 out: {e}");
    }
    for e in &in_a {
        assert_eq!(pid_of(&e["peer_process"]), Some(cli_pid), "client's eth0 in: {e}");
    }
    assert_eq!(in_b.len(), out_a.len(), "what left a arrived at b");
    assert_eq!(count(&|e| e["proto"] == "udp" && on(e, b, "egress")), 5, "five echoes");
    // The process fields: pid, tid, comm, uid, the command line.
    let p = &out_a[0]["process"];
    assert_eq!(p["uid"], 0);
    assert!(p["tid"].as_u64().is_some());
    assert!(p["cmdline"].as_str().is_some_and(|c| c.contains("python3 -u -c") && c.contains("cli-proc")), "{p}");
    assert!(p["container"].is_null());
    drop(srv);
}

/// Which `sock_ops` program the kernel takes, loaded directly: the one
/// that asks for the current task where the kernel offers sock_ops those
/// helpers (this machine's 6.18), else, refused with "unknown func
/// bpf_get_current_..." (6.1) or "program of this type cannot use helper
/// bpf_get_current_..." (Debian's 6.12), the one without them. Debian's 6.1 refuses the
/// first (its `sock_ops_func_proto` offers none of the current-task
/// helpers); every kernel takes the second. A failure shows the whole
/// verifier log.
#[test]
fn sock_ops_takes_the_form_the_kernel_offers() {
    let mut l = load(&LoadOptions { ring_bytes: 4096, ..Default::default() }).expect("load the object");
    let mut try_load = |name: &str| -> Result<(), String> {
        let prog: &mut SockOps = l.ebpf.program_mut(name).expect("program").try_into().expect("a sock_ops program");
        prog.load().map_err(|e| match e {
            aya::programs::ProgramError::LoadError { io_error, verifier_log } => format!("{io_error}; verifier log:\n{verifier_log}"),
            e => e.to_string(),
        })
    };
    let v = tracer_tests::kernel_version();
    let full = try_load(programs::SOCK_OPS);
    try_load(programs::SOCK_OPS_NOTASK).unwrap_or_else(|e| panic!("{} refused: {e}", programs::SOCK_OPS_NOTASK));
    match &full {
        Ok(()) => {}
        Err(log) => {
            // 6.1: "unknown func bpf_get_current_pid_tgid#14"; Debian's
            // 6.12: "program of this type cannot use helper bpf_get_current_uid_gid#15".
            let task_helper = |l: &str| {
                l.starts_with("unknown func bpf_get_current_") || l.starts_with("program of this type cannot use helper bpf_get_current_")
            };
            assert!(log.lines().any(task_helper), "refused for another reason: {log}");
            assert!(v < (6, 18), "Linux {}.{} refused {}: {log}", v.0, v.1, programs::SOCK_OPS);
        }
    }
    if v == (6, 1) {
        let log = full.expect_err("6.1 refuses sock_ops the current-task helpers");
        assert!(log.contains("unknown func bpf_get_current_pid_tgid#14"), "{log}");
    }
}

/// A TCP connection made before the tracer started: its sockets are found
/// through sock_diag and /proc/*/fd, on both ends.
#[test]
fn a_connection_made_before_the_start_is_attributed() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let srv = server(b, 5310, 5311);
    let body = format!(
        "c=socket.create_connection(('{ip}',5311)); print('connected', flush=True)\n\
         sys.stdin.readline(); c.sendall(b'late'*50); c.shutdown(socket.SHUT_WR)\n\
         assert c.recv(10)==b'ok'; c.close(); time.sleep(0.2)\n",
        ip = b.ip
    );
    let mut cli = Py::start(a, "early-bird", &body);
    assert_eq!(cli.hear(), "connected");
    let mut t = Tracer::start(&["packets", "--all", "--json", &format!("host {} and tcp port 5311", b.ip)]);
    let cli_pid = u64::from(cli.pid);
    cli.say("go");
    cli.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    assert!(t.stderr().contains("sockets found at start"), "{}", t.stderr());
    let pk = flow_packets(&t.events(), &[5311]);
    let out_a: Vec<&Value> = pk.iter().filter(|e| on(e, a, "egress")).collect();
    assert!(out_a.len() >= 2, "data and FIN at least: {pk:#?}");
    for e in &out_a {
        assert_eq!(pid_of(&e["process"]), Some(cli_pid), "{e}");
        assert_eq!(e["process"]["comm"], "early-bird");
    }
    for e in pk.iter().filter(|e| on(e, b, "ingress")) {
        assert_eq!(pid_of(&e["peer_process"]), Some(u64::from(srv.pid)), "{e}");
    }
}

/// Two processes in one namespace sending to the same server are told
/// apart; `--process PID` and `--comm NAME` keep exactly one's packets, in
/// the kernel.
#[test]
fn two_senders_in_one_namespace_and_process_selection() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let sink = Py::start(b, "sink", "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.bind(('',5320))\nwhile True: u.recvfrom(2048)\n");
    let sender = |comm: &str, n: usize| {
        let body = format!(
            "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nsys.stdin.readline()\n\
             for i in range({n}):\n    u.sendto(b'd%d'%i,('{ip}',5320)); time.sleep(0.01)\n",
            ip = b.ip
        );
        Py::start(a, comm, &body)
    };
    let mut one = sender("sender-one", 7);
    let mut two = sender("sender-two", 11);
    let filter = "udp port 5320";
    let pid1 = one.pid.to_string();
    let mut all = Tracer::start(&["packets", "--json", "--netns", &a.name, filter]);
    let mut by_pid = Tracer::start(&["packets", "--json", "--process", &pid1, filter]);
    let mut by_comm = Tracer::start(&["packets", "--json", "--netns", &a.name, "--comm", "sender-two", filter]);
    one.say("go");
    two.say("go");
    let (p1, p2) = (u64::from(one.pid), u64::from(two.pid));
    one.wait();
    two.wait();
    std::thread::sleep(Duration::from_millis(300));
    for t in [&mut all, &mut by_pid, &mut by_comm] {
        assert_eq!(t.stop(), 0, "{}", t.stderr());
    }
    let pids = |t: &Tracer| -> Vec<Option<u64>> {
        flow_packets(&t.events(), &[5320]).iter().map(|e| pid_of(&e["process"])).collect()
    };
    let all = pids(&all);
    assert_eq!(all.iter().filter(|p| **p == Some(p1)).count(), 7, "{all:?}");
    assert_eq!(all.iter().filter(|p| **p == Some(p2)).count(), 11, "{all:?}");
    assert_eq!(all.len(), 18, "{all:?}");
    assert_eq!(pids(&by_pid), vec![Some(p1); 7]);
    assert_eq!(pids(&by_comm), vec![Some(p2); 11]);
    drop(sink);
}

/// A process that exits before its connection's last segments: the ACK
/// its kernel sends for the server's FIN, after the exit, still names it.
#[test]
fn a_short_lived_process_is_named_after_it_exits() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    // Closes each connection only when told to.
    let mut srv = Py::start(
        b,
        "lingerer",
        "t=socket.socket(); t.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); t.bind(('',5330)); t.listen(1)\n\
         print('listening', flush=True)\nc,_=t.accept()\nwhile c.recv(100): pass\nsys.stdin.readline(); c.close(); time.sleep(1)\n",
    );
    assert_eq!(srv.hear(), "listening");
    let mut t = Tracer::start(&["packets", "--all", "--json", &format!("host {} and tcp port 5330", b.ip)]);
    let body = format!("c=socket.create_connection(('{ip}',5330)); c.sendall(b'bye'); c.close()\n", ip = b.ip);
    let cli = Py::start(a, "shortlived", &body);
    let pid = u64::from(cli.pid);
    cli.wait();
    // The client is gone; now the server closes, and the client's kernel answers.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the client has exited");
    srv.say("close");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let pk = flow_packets(&t.events(), &[5330]);
    let last_ack = pk.iter().rfind(|e| on(e, a, "egress")).unwrap_or_else(|| panic!("no packet from the client: {pk:#?}"));
    assert_eq!(last_ack["tcp_flags"], serde_json::json!(["ack"]), "the ACK of the server's FIN: {last_ack}");
    assert_eq!(pid_of(&last_ack["process"]), Some(pid), "{last_ack}");
    assert_eq!(last_ack["process"]["comm"], "shortlived");
    // The server's FIN, on its way in to the (closed) client socket.
    let fin = pk.iter().rfind(|e| on(e, a, "ingress")).expect("server's FIN");
    assert_eq!(pid_of(&fin["peer_process"]), Some(pid), "{fin}");
}

/// pcapng: each packet's comment names both processes; tshark reads them.
#[test]
fn pcapng_comments_carry_the_processes() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let srv = server(b, 5340, 5341);
    let file = std::env::temp_dir().join(format!("tracer-procs-{}.pcapng", lab.id));
    let path = file.to_str().expect("utf-8").to_string();
    let mut t = Tracer::start(&["packets", "--netns", &a.name, "-w", &path, "udp port 5340"]);
    let body = format!("u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(3):\n    u.sendto(b'p',('{}',5340)); u.recvfrom(10)\n", b.ip);
    let cli = Py::start(a, "pcap-cli", &body);
    let cpid = cli.pid;
    cli.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let out = Command::new("tshark").args(["-n", "-r", &path, "-T", "fields", "-e", "udp.dstport", "-e", "frame.comment"]).output().expect("tshark");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 6, "3 requests, 3 echoes: {text}");
    // The echoes' sender, srv-proc in the untraced namespace, is named by
    // its socket's cookie where the kernel keeps the sending socket on a
    // packet that crosses the veths and the bridge into another namespace:
    // Debian's 6.1 does (seen in its guest; its `skb_scrub_packet` does not
    // orphan the skb). This machine's 6.18 delivers it without one, and
    // nothing in the traced namespace holds the server's port: `-`.
    let srv_name = format!("srv-proc[{}]", srv.pid);
    let echo_senders: Vec<String> = match tracer_tests::kernel_version() {
        (6, 1) => vec![srv_name],
        v if v >= (6, 18) => vec!["-".into()],
        _ => vec!["-".into(), srv_name],
    };
    for r in rows {
        let want: Vec<String> = if r.starts_with("5340") {
            vec![format!("process=pcap-cli[{cpid}] peer_process=-")]
        } else {
            echo_senders.iter().map(|s| format!("process={s} peer_process=pcap-cli[{cpid}]")).collect()
        };
        assert!(want.iter().any(|w| r.contains(w.as_str())), "{r}: want {want:?}");
    }
    drop(srv);
}

/// A process in a real Docker container: its host pid and the container's
/// name, on the packets that reach it.
#[test]
fn docker_container_process_has_host_pid_and_container_name() {
    let d = engine();
    let srv = d.run("psrv", &[], &["nc", "-l", "-p", "5350"]);
    let cli = d.run("pcli", &[], &["sleep", "3600"]);
    let srv_ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &srv.name]);
    let mut t = Tracer::start(&["packets", "--json", "--container", &srv.name, "tcp port 5350"]);
    let out = cli.exec(&format!("echo hello | nc -w 1 {srv_ip} 5350"));
    assert!(out.status.success(), "nc: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let pk: Vec<Value> = flow_packets(&t.events(), &[5350]).into_iter().filter(|e| e["direction"] == "ingress").collect();
    assert!(!pk.is_empty(), "{}", t.stderr());
    let name = |p: &Value| p["container"]["name"].as_str().map(String::from);
    for e in &pk {
        let p = &e["peer_process"];
        assert_eq!(pid_of(p), Some(u64::from(srv.pid)), "the host pid of the container's nc: {e}");
        assert_eq!(p["comm"], "nc");
        assert_eq!(name(p).as_deref(), Some(srv.name.as_str()), "{e}");
    }
    // The sender: a short-lived nc in the other container.
    let senders: Vec<Option<String>> = pk.iter().map(|e| name(&e["process"])).collect();
    assert!(senders.iter().all(|n| n.as_deref() == Some(cli.name.as_str())), "{senders:?}");
}

/// `--comm` longer than the kernel keeps, and `--process 0`: one sentence.
#[test]
fn bad_process_selectors_are_one_sentence() {
    let (code, _, err) = tracer_run(&["packets", "--comm", &"x".repeat(16)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("tracer: --comm takes a process name of 1 to 15 bytes"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, err) = tracer_run(&["packets", "--process", "0"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `tracer top --by process`: a row per process, with what it sent and
/// what was delivered to it, exactly.
#[test]
fn top_by_process_counts_what_each_process_sends_and_receives() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let srv = server(b, 5360, 5361);
    let mut t = Tracer::start(&["top", "--by", "process", "--json", "--interval", "0.3", &format!("udp port 5360 and host {}", b.ip)]);
    let body = format!("u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(9):\n    u.sendto(b'q'*10,('{}',5360)); u.recvfrom(100)\n", b.ip);
    let cli = Py::start(a, "top-cli", &body);
    let cpid = u64::from(cli.pid);
    // The filter runs before counting: a sender to another port has no row.
    let other = format!("u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(9):\n    u.sendto(b'q'*10,('{}',5362))\n", b.ip);
    let out = Py::start(a, "top-other", &other);
    let opid = u64::from(out.pid);
    cli.wait();
    out.wait();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
    let rows: Vec<Value> = t.events().into_iter().filter(|r| r["type"] == "top").collect();
    let sum = |pid: u64| -> [u64; 4] {
        let mut s = [0u64; 4];
        for r in rows.iter().filter(|r| pid_of(&r["process"]) == Some(pid)) {
            assert_eq!(r["by"], "process");
            for (i, k) in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"].iter().enumerate() {
                s[i] += r[k].as_u64().expect("count");
            }
        }
        s
    };
    // 10 bytes of data: 52-byte frames.
    assert_eq!(sum(cpid), [9, 9 * 52, 9, 9 * 52], "the client sent 9 and got 9 echoes: {rows:#?}");
    assert_eq!(sum(u64::from(srv.pid)), [9, 9 * 52, 9, 9 * 52], "the server got 9 and echoed 9: {rows:#?}");
    assert_eq!(sum(opid), [0; 4], "the filter keeps port 5360 only: {rows:#?}");
}

/// The BPF program types (`prog_type` of fdinfo) process `pid` holds.
fn prog_types(pid: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo").flatten() {
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Some(t) = info.lines().find_map(|l| l.strip_prefix("prog_type:")).and_then(|v| v.trim().parse().ok()) {
            out.push(t);
        }
    }
    out
}

/// The socket programs (cgroup_sock 9, sock_ops 13, cgroup_sock_addr 18)
/// are loaded only where processes are asked for: `top` without
/// `--by process` and `packets --no-process` run the TC programs alone
/// (`top` costs nothing more than before); `top --by process` and
/// `packets` run both.
#[test]
fn socket_programs_run_only_where_processes_are_asked_for() {
    let lab = Lab::new(1);
    let ns = lab.ns[0].name.as_str();
    let runs: [(&[&str], bool); 5] = [
        (&["top", "--netns", ns], false),
        (&["top", "--netns", ns, "--by", "flow"], false),
        (&["packets", "--netns", ns, "--no-process"], false),
        (&["top", "--netns", ns, "--by", "process"], true),
        (&["packets", "--netns", ns], true),
    ];
    for (args, want) in runs {
        let mut t = Tracer::start(args);
        let types = prog_types(t.pid());
        assert_eq!(t.stop(), 0, "{args:?}: {}", t.stderr());
        assert!(types.contains(&3), "{args:?}: its TC programs: {types:?}");
        let sock: Vec<u64> = types.iter().copied().filter(|t| [9, 13, 18].contains(t)).collect();
        if want {
            for ty in [9, 13, 18] {
                assert!(sock.contains(&ty), "{args:?}: program type {ty} missing: {types:?}");
            }
        } else {
            assert!(sock.is_empty(), "{args:?}: socket programs loaded: {types:?}");
        }
    }
}

/// `tracer ARGS` in a mount namespace of its own where the cgroup v2
/// hierarchy is not mounted (unmounted there only; the host keeps it).
fn without_cgroup2(args: &[&str]) -> Command {
    let root = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .find(|l| l.split(" - ").nth(1).is_some_and(|t| t.starts_with("cgroup2 ")))
        .and_then(|l| l.split(' ').nth(4).map(String::from))
        .expect("this host has a cgroup2 mount");
    let quoted: Vec<String> = args.iter().map(|a| tracer_tests::shell_quote(a)).collect();
    let script = format!("umount -l {root} && exec {} {}", tracer_tests::tracer_bin().display(), quoted.join(" "));
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    c
}

/// No cgroup v2 hierarchy: packets still flow, without process fields,
/// after one line saying why; `--process` and `top --by process` refuse in
/// one sentence; `doctor` says why.
#[test]
fn without_cgroup2_packets_flow_without_process_fields() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let mut child = without_cgroup2(&["packets", "--netns", &a.name, "--json", "-c", "3", "udp port 5370"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare");
    // Datagrams until the tracer has three (bounded: 15 s).
    let start = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() && start.elapsed() < Duration::from_secs(15) {
        a.sh(&format!("python3 -c \"import socket; socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'x',('{}',5370))\"", b.ip));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for e in &lines {
        assert_eq!(e["dport"], 5370, "{e}");
        assert!(e.get("process").is_none() && e.get("peer_process").is_none(), "no process fields: {e}");
    }
    let off: Vec<&str> = stderr.lines().filter(|l| l.contains("process attribution is off")).collect();
    assert_eq!(off.len(), 1, "{stderr}");
    assert!(off[0].contains("cgroup"), "says why: {}", off[0]);
    // What needs it refuses, in one sentence.
    for args in [&["packets", "--netns", &a.name, "--process", "1"][..], &["top", "--netns", &a.name, "--by", "process"][..]] {
        let out = without_cgroup2(args).output().expect("unshare");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains("process attribution") && last.contains("cgroup"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = without_cgroup2(&["doctor"]).output().expect("unshare");
    let doc = String::from_utf8_lossy(&out.stdout);
    assert!(doc.lines().any(|l| l.starts_with("processes     no:")), "{doc}");
    assert!(doc.lines().any(|l| l == "cgroup v2     not mounted"), "{doc}");
}
