//! The namespace test lab and helpers for the integration tests.
//!
//! A [`Lab`] is N "containers": network namespaces, each with an `eth0`
//! whose veth peer sits on a bridge in the host namespace, and an address in
//! a private /24. Names are unique per run; everything is removed on drop,
//! also when a test panics. Traffic only ever goes between lab namespaces.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod bench;
pub mod docker;
pub mod flood;
pub mod prom;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short id unique to this process and call, for interface names (<= 15 chars).
pub fn unique_id() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{:04x}{:x}", std::process::id() & 0xffff, n & 0xf)
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("spawn sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its output whatever the status.
pub fn sh_out(cmd: &str) -> Output {
    Command::new("sh").args(["-c", cmd]).output().expect("spawn sh")
}

/// One lab "container": a named network namespace.
#[derive(Debug, Clone)]
pub struct LabNs {
    /// Name under /run/netns.
    pub name: String,
    /// Address of its eth0 (without prefix length).
    pub ip: String,
    /// Name of the host-side veth peer.
    pub host_veth: String,
}

impl LabNs {
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Inode of this namespace.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path()).expect("netns file").ino()
    }

    /// Runs `cmd` with `sh -c` inside the namespace; panics when it fails.
    pub fn sh(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} sh -c {}", self.name, shell_quote(cmd)))
    }

    /// Runs `cmd` inside the namespace, returning the output whatever the status.
    pub fn sh_out(&self, cmd: &str) -> Output {
        sh_out(&format!("ip netns exec {} sh -c {}", self.name, shell_quote(cmd)))
    }

    /// Starts `cmd` inside the namespace in the background.
    pub fn spawn(&self, cmd: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in netns")
    }
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// N namespaces on one bridge.
pub struct Lab {
    pub id: String,
    pub bridge: String,
    pub ns: Vec<LabNs>,
    /// Extra namespaces created by the test, removed with the lab.
    extra_ns: Mutex<Vec<String>>,
}

impl Lab {
    /// Creates `n` namespaces `tr<id>-a`, `-b`... on bridge `trb<id>`,
    /// addressed 10.<x>.<y>.1, .2, ... /24 in a subnet unique to the lab.
    pub fn new(n: usize) -> Lab {
        assert!(n <= 20);
        let id = unique_id();
        let bridge = format!("trb{id}");
        let mut lab = Lab { id: id.clone(), bridge: bridge.clone(), ns: Vec::new(), extra_ns: Mutex::new(Vec::new()) };
        sh(&format!("ip link add {bridge} type bridge && ip link set {bridge} up"));
        let h = u32::from_str_radix(&id, 16).unwrap_or(0);
        let (x, y) = (100 + (h >> 8) % 100, h % 250);
        for i in 0..n {
            let letter = (b'a' + i as u8) as char;
            let name = format!("tr{id}-{letter}");
            let host_veth = format!("trv{id}{letter}");
            let ip = format!("10.{x}.{y}.{}", i + 1);
            lab.ns.push(LabNs { name: name.clone(), ip: ip.clone(), host_veth: host_veth.clone() });
            sh(&format!(
                "ip netns add {name} && \
                 ip link add {host_veth} type veth peer name eth0 netns {name} && \
                 ip link set {host_veth} master {bridge} up && \
                 ip -n {name} addr add {ip}/24 dev eth0 && \
                 ip -n {name} link set eth0 up && ip -n {name} link set lo up"
            ));
        }
        lab
    }

    /// Adds a namespace that is removed with the lab (not attached to the bridge).
    pub fn extra_ns(&self, suffix: &str) -> LabNs {
        let name = format!("tr{}-{suffix}", self.id);
        sh(&format!("ip netns add {name}"));
        self.extra_ns.lock().expect("lock").push(name.clone());
        LabNs { name, ip: String::new(), host_veth: String::new() }
    }

    /// A namespace joined to the lab's bridge after the lab was made, at
    /// `.last_octet` of the lab's subnet (removed with the lab; its veth
    /// goes with it).
    pub fn join_bridge(&self, suffix: &str, last_octet: u8) -> LabNs {
        let mut ns = self.extra_ns(suffix);
        let host_veth = format!("trv{}{suffix}", self.id);
        let ip = format!("{}.{last_octet}", self.subnet_prefix());
        sh(&format!(
            "ip link add {host_veth} type veth peer name eth0 netns {n} && \
             ip link set {host_veth} master {br} up && \
             ip -n {n} addr add {ip}/24 dev eth0 && ip -n {n} link set eth0 up && ip -n {n} link set lo up",
            n = ns.name,
            br = self.bridge
        ));
        ns.ip = ip;
        ns.host_veth = host_veth;
        ns
    }

    /// The first `n` octets shared by the lab's addresses, e.g. `10.123.45`.
    pub fn subnet_prefix(&self) -> String {
        let ip = &self.ns[0].ip;
        ip[..ip.rfind('.').expect("dotted")].to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = sh_out(&format!("ip netns del {}", ns.name));
            let _ = sh_out(&format!("ip link del {} 2>/dev/null", ns.host_veth));
        }
        for name in self.extra_ns.lock().map(|v| v.clone()).unwrap_or_default() {
            let _ = sh_out(&format!("ip netns del {name}"));
        }
        let _ = sh_out(&format!("ip link del {}", self.bridge));
    }
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut it = rel.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Path of the tracer binary under test (`TRACER_BIN`, set by `cargo xtask test`).
pub fn tracer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TRACER_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in ["target/release/tracer", "target/debug/tracer"] {
        let c = root.join(p);
        if c.exists() {
            return c;
        }
    }
    panic!("no tracer binary: run the tests with `cargo xtask test`");
}

/// A running tracer whose stdout lines are collected in the background.
pub struct Tracer {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Tracer {
    /// Starts `tracer ARGS` and waits for its `ready` line on stderr.
    pub fn start(args: &[&str]) -> Tracer {
        Self::start_env(args, &[])
    }

    /// [`Tracer::start`] with environment variables `env` set.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Tracer {
        let mut child = Command::new(tracer_bin())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().expect("lock").push(line);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let e2 = stderr.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut line = String::new();
            let mut sent = false;
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if !sent && line.contains("ready") {
                    let _ = tx.send(());
                    sent = true;
                }
                e2.lock().expect("lock").push_str(&line);
                line.clear();
            }
            let mut rest = String::new();
            let _ = r.read_to_string(&mut rest);
            e2.lock().expect("lock").push_str(&rest);
        });
        let mut t = Tracer { child: Some(child), lines, stderr };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let status = t.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!("tracer {args:?} never said ready (exit: {status:?}); stderr:\n{}", t.stderr());
        }
        t
    }

    /// The tracer's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Stdout lines parsed as JSON (non-JSON lines make the test fail).
    pub fn events(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits until an event satisfies `pred`, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let start = Instant::now();
        loop {
            if let Some(v) = self.events().into_iter().find(|v| pred(v)) {
                return Some(v);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT and waits for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let Some(mut child) = self.child.take() else { return -1 };
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Give the reader threads a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tracer did not stop within 20 s of SIGINT; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the tracer to completion with `args`, returning (status, stdout, stderr).
pub fn tracer_run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tracer_bin()).args(args).output().expect("run tracer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sh -c CMD` printing its own pid first (`exec` keeps the pid), so a
/// test knows the pid a tracer must attribute the command's work to.
pub fn pid_and_run(prefix: &str, cmd: &str) -> (u32, Output) {
    let out = sh_out(&format!("{prefix} sh -c {}", shell_quote(&format!("echo $$; exec {cmd}"))));
    let pid = String::from_utf8_lossy(&out.stdout).lines().next().and_then(|l| l.trim().parse().ok()).expect("pid line");
    (pid, out)
}

/// The TCX programs on `ifname`, in the chain's order (BPF_PROG_QUERY,
/// through aya's `query_tcx`), from inside `netns` (a path) or the current
/// namespace.
pub fn tcx_programs(netns: Option<String>, ifname: &str, ingress: bool) -> Vec<u32> {
    use aya::programs::{SchedClassifier, tc::TcAttachType};
    let ifname = ifname.to_string();
    std::thread::spawn(move || {
        if let Some(p) = netns {
            let f = std::fs::File::open(p).expect("netns file");
            // SAFETY: setns on this short-lived thread only.
            assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) }, 0);
        }
        let ty = if ingress { TcAttachType::Ingress } else { TcAttachType::Egress };
        let (_, progs) = SchedClassifier::query_tcx(&ifname, ty).unwrap_or_else(|e| panic!("query_tcx {ifname}: {e}"));
        progs.iter().map(|p| p.id()).collect()
    })
    .join()
    .expect("query thread")
}

/// The cls_bpf programs on `ifname` (netlink-tc), in the chain's order,
/// from inside the namespace at `netns` (a path) or the current one.
pub fn tc_filter_programs(netns: Option<String>, ifname: &str, ingress: bool) -> Vec<u32> {
    let ns = netns.map(|p| format!("-netns {} ", p.rsplit('/').next().unwrap_or(&p))).unwrap_or_default();
    let dir = if ingress { "ingress" } else { "egress" };
    // No clsact qdisc means no filters: tc says so on stderr.
    let out = sh_out(&format!("tc {ns}filter show dev {ifname} {dir}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" bpf "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.by_ref().find(|t| *t == "id")?;
            w.next()?.parse().ok()
        })
        .collect()
}

/// TCX is in every kernel >= 6.6; before it, the tracer must fall back to
/// netlink-tc by itself.
pub fn kernel_has_tcx() -> bool {
    kernel_version() >= (6, 6)
}

/// The TC programs on `ifname`, first in the chain first: TCX links where
/// the kernel has them, cls_bpf filters (the tracer's fallback) before 6.6.
pub fn attached_programs(netns: Option<String>, ifname: &str, ingress: bool) -> Vec<u32> {
    if kernel_has_tcx() { tcx_programs(netns, ifname, ingress) } else { tc_filter_programs(netns, ifname, ingress) }
}

/// Starts `tracer ARGS` (a TC job that traces every namespace) on a lab of
/// two namespaces and checks what every TC job must do: its two programs
/// (one ingress, one egress) on every traced interface, first in the
/// chain, in the mode the kernel calls for, one clsact qdisc per interface
/// in netlink-tc mode; and once it stopped, nothing of it left: no program
/// attached or loaded, no clsact qdisc.
pub fn assert_tc_job_attaches_first_and_leaves_nothing(args: &[&str]) {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let places = [
        (Some(a.path()), "eth0".to_string()),
        (Some(b.path()), "eth0".to_string()),
        (None, a.host_veth.clone()),
        (None, lab.bridge.clone()),
    ];
    let tcx = kernel_has_tcx();
    let snapshot = || -> std::collections::BTreeSet<u32> {
        places.iter().flat_map(|(ns, i)| [true, false].map(|ing| attached_programs(ns.clone(), i, ing))).flatten().collect()
    };
    let qdiscs = || -> String {
        places
            .iter()
            .map(|(ns, i)| {
                let ns = ns.as_ref().map(|p| format!("-netns {} ", p.rsplit('/').next().unwrap_or(p))).unwrap_or_default();
                sh(&format!("tc {ns}qdisc show dev {i}"))
            })
            .collect()
    };
    let before = snapshot();
    let mut t = Tracer::start(args);
    let mode = if tcx { "(tcx" } else { "(netlink-tc" };
    assert!(
        wait_until(Duration::from_secs(2), || t.stderr().contains(mode)),
        "Linux {:?} calls for {mode}): {}",
        kernel_version(),
        t.stderr()
    );
    let during = snapshot();
    let ours: std::collections::BTreeSet<u32> = during.difference(&before).copied().collect();
    assert_eq!(ours.len(), 2, "{args:?}: expected two programs: before {before:?}, during {during:?}");
    for (ns, i) in &places {
        for ing in [true, false] {
            let ids = attached_programs(ns.clone(), i, ing);
            // First in the chain, so nothing placed before it can hide a packet.
            assert!(ids.first().is_some_and(|id| ours.contains(id)), "{args:?}: {i} ({ns:?}) ingress={ing}: not first: {ids:?}");
        }
    }
    if !tcx {
        assert_eq!(qdiscs().matches("qdisc clsact").count(), places.len(), "one clsact per interface: {}", qdiscs());
    }
    assert_eq!(t.stop(), 0);
    assert!(wait_until(Duration::from_secs(3), || snapshot().is_disjoint(&ours)), "{args:?}: programs still attached: {:?}", snapshot());
    assert!(wait_until(Duration::from_secs(3), || ours.iter().all(|id| !program_exists(*id))), "{args:?}: programs still loaded");
    // The fallback's qdiscs were added by the tracer, so it removes them.
    assert!(!qdiscs().contains("clsact"), "{args:?}: clsact left behind: {}", qdiscs());
}

/// Whether a BPF program with this id still exists.
pub fn program_exists(id: u32) -> bool {
    let mut attr = [0u64; 16];
    attr[0] = id as u64;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    // SAFETY: bpf(2) with a zeroed attr holding the id.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, attr.as_mut_ptr(), 128) };
    if fd >= 0 {
        // SAFETY: closing the fd we were just given.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    false
}

/// Calls `f` every 50 ms until it holds or `timeout` passes; the last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// `tracer ns --json ARGS`, which must succeed, as parsed lines.
pub fn ns_json(args: &[&str]) -> Vec<Value> {
    let mut a = vec!["ns", "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = tracer_run(&a);
    assert_eq!(code, 0, "tracer {a:?} failed: {err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// No IPv6 in the lab's namespaces, on its bridge and host veths: no
/// router solicitations, neighbour discovery or MLD reports (dropped too,
/// with other reasons) that would make counts vary from run to run.
pub fn quiet(lab: &Lab) {
    for ns in &lab.ns {
        ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
        sh(&format!("sysctl -qw net.ipv6.conf.{}.disable_ipv6=1", ns.host_veth));
    }
    sh(&format!("sysctl -qw net.ipv6.conf.{}.disable_ipv6=1", lab.bridge));
}

/// The namespace's kernel counter `name` (`nstat -az`, absolute).
pub fn nstat(ns: &LabNs, name: &str) -> u64 {
    nstat_value(&ns.sh(&format!("nstat -az {name}")), name)
}

/// The counter `name` of the network namespace of process `pid` (a
/// container's, say), absolute.
pub fn nstat_of_pid(pid: u32, name: &str) -> u64 {
    nstat_value(&sh(&format!("nsenter -t {pid} -n nstat -az {name}")), name)
}

fn nstat_value(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().and_then(|v| v.parse().ok())).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in nstat output: {out}"))
}

/// Adds to `ns` a table `inet t` whose input chain `in` drops, with a
/// counter, what each of `matches` (nft expressions) matches: one rule each.
pub fn nft_input_drops(ns: &LabNs, matches: &[&str]) {
    let mut cmd = "nft add table inet t && nft add chain inet t in '{ type filter hook input priority 0; }'".to_string();
    for m in matches {
        cmd.push_str(&format!(" && nft add rule inet t in {m} counter drop"));
    }
    ns.sh(&cmd);
}

/// The packets counted by each rule of [`nft_input_drops`]' chain, in order.
pub fn nft_counters(ns: &LabNs) -> Vec<u64> {
    let j: Value = serde_json::from_str(&ns.sh("nft -j list chain inet t in")).expect("nft json");
    j["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o["rule"]["expr"].as_array()?.iter().find_map(|x| x["counter"]["packets"].as_u64()))
        .collect()
}

/// Streams `writes` times 4000 bytes over TCP from `from` to a server in
/// `to` on `port`, and waits for the close; the bytes the server got.
pub fn tcp_stream(from: &LabNs, to: &LabNs, port: u16, writes: u32) -> u64 {
    let server = format!(
        "import socket\n\
         l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); l.bind(('{}',{port})); l.listen()\n\
         c,_=l.accept()\n\
         n=0\n\
         while True:\n    d=c.recv(65536)\n    if not d: break\n    n+=len(d)\n\
         c.close(); print(n)\n",
        to.ip
    );
    let srv = to.spawn(&format!("python3 -c {}", shell_quote(&server)));
    assert!(wait_until(Duration::from_secs(5), || to.sh("ss -ltn").contains(&format!(":{port}"))), "server listening");
    let client = format!(
        "import socket\n\
         s=socket.create_connection(('{}',{port}))\n\
         b=b'x'*4000\n\
         for i in range({writes}): s.sendall(b)\n\
         s.shutdown(socket.SHUT_WR); s.recv(1); s.close()\n",
        to.ip
    );
    from.sh(&format!("python3 -c {}", shell_quote(&client)));
    let out = srv.wait_with_output().expect("server");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the server's byte count")
}
