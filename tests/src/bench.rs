//! What the benchmarks share: a veth pair between two lab namespaces, UDP
//! and TCP loads from python3 sockets, and a watched tool (its CPU, its
//! stderr) per run. Benchmarks print figures; they assert nothing.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{Lab, LabNs, sh, shell_quote, tracer_bin};

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// (busy, total) ticks of all CPUs, from /proc/stat.
pub fn system_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// A process watched during a run: its CPU and, at the end, its stderr.
pub struct Watched {
    child: Child,
    errs: mpsc::Receiver<String>,
}

impl Watched {
    /// Starts `cmd` and waits for a stderr line containing `ready_word`.
    pub fn start(mut cmd: Command, ready_word: &str) -> Watched {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let l = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("process ready");
            if l.contains(ready_word) {
                break;
            }
        }
        Watched { child, errs: rx }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, wait, and the stderr lines printed since it was ready.
    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.errs.try_iter().collect()
    }
}

#[derive(Clone, Copy)]
pub enum Load {
    /// 64-byte datagrams on one flow.
    Udp,
    /// 64-byte datagrams, each to the next of 50,000 ports: a new flow for
    /// almost every packet (the receiver answers some with ICMP errors).
    UdpSpread,
    /// One bulk TCP stream.
    Tcp,
}

pub struct Result_ {
    pub rate: f64,
    pub unit: &'static str,
    pub delivered: f64,
    pub sys_cpu: f64,
    pub tool_cpu: Option<f64>,
    pub note: String,
    /// Mean run time of the tool's TC programs, when [`ProgramStats`] are on.
    pub prog_ns: Option<f64>,
}

pub fn rx_packets(ns: &LabNs, ifname: &str) -> u64 {
    ns.sh(&format!("cat /sys/class/net/{ifname}/statistics/rx_packets")).trim().parse().unwrap_or(0)
}

/// Runs one load for `secs`, returns (rate, delivered pps at the receiver's interface).
pub fn push(load: Load, a: &LabNs, b: &LabNs, b_if: &str, secs: f64) -> (f64, &'static str, f64) {
    let rx0 = rx_packets(b, b_if);
    let start = Instant::now();
    let rate = match load {
        Load::Udp => {
            // A bound socket nobody reads: datagrams are delivered, then
            // dropped at the full receive buffer, and no ICMP comes back.
            let mut sink = b.spawn(&format!(
                "exec python3 -c {}",
                shell_quote(&format!("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{}',9999))\ntime.sleep({})\n", b.ip, secs + 3.0))
            ));
            std::thread::sleep(Duration::from_millis(200));
            let py = format!(
                "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.connect(('{}',9999))\n\
                 p=b'x'*64; n=0; end=time.time()+{secs}\n\
                 while time.time()<end:\n    for i in range(200):\n        s.send(p)\n    n+=200\nprint(n)\n",
                b.ip
            );
            let n: f64 = a.sh(&format!("python3 -c {}", shell_quote(&py))).trim().parse().unwrap_or(0.0);
            let _ = sink.kill();
            let _ = sink.wait();
            (n / secs, "datagrams/s")
        }
        Load::UdpSpread => {
            let py = format!(
                "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                 p=b'x'*64; n=0; end=time.time()+{secs}; ip='{}'\n\
                 while time.time()<end:\n    for i in range(200):\n        s.sendto(p,(ip,10000+(n+i)%50000))\n    n+=200\nprint(n)\n",
                b.ip
            );
            let n: f64 = a.sh(&format!("python3 -c {}", shell_quote(&py))).trim().parse().unwrap_or(0.0);
            (n / secs, "datagrams/s")
        }
        Load::Tcp => {
            let server = format!(
                "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 s.bind(('{}',9998)); s.listen(1); c,_=s.accept(); b=bytearray(1<<20); n=0\n\
                 while True:\n    k=c.recv_into(b)\n    if not k: break\n    n+=k\nprint(n)\n",
                b.ip
            );
            let srv = b.spawn(&format!("exec python3 -c {}", shell_quote(&server)));
            let client = format!(
                "import socket,time\n\
                 for i in range(100):\n    try:\n        c=socket.create_connection(('{}',9998)); break\n    except OSError: time.sleep(0.05)\n\
                 d=b'y'*(1<<20); end=time.time()+{secs}\n\
                 while time.time()<end:\n    c.sendall(d)\nc.close()\n",
                b.ip
            );
            a.sh(&format!("python3 -c {}", shell_quote(&client)));
            let out = srv.wait_with_output().expect("server");
            let bytes: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0);
            (bytes * 8.0 / 1e9 / secs, "Gbit/s")
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = (rx_packets(b, b_if) - rx0) as f64 / elapsed;
    (rate.0, rate.1, delivered)
}

pub fn run(label: &str, load: Load, a: &LabNs, b: &LabNs, b_if: &str, secs: f64, tool: Option<(Command, &str)>) -> Result_ {
    let watched = tool.map(|(cmd, ready)| Watched::start(cmd, ready));
    let tool_cpu0 = watched.as_ref().map(|w| cpu_ticks(w.pid()));
    let sys0 = system_ticks();
    let t0 = Instant::now();
    let (rate, unit, delivered) = push(load, a, b, b_if, secs);
    // Let the tool catch up with what is queued before its CPU is read.
    std::thread::sleep(Duration::from_millis(500));
    let wall = t0.elapsed().as_secs_f64();
    let sys1 = system_ticks();
    let sys_cpu = (sys1.0 - sys0.0) as f64 / (sys1.1 - sys0.1).max(1) as f64 * 100.0 * num_cpus();
    let tool_cpu = match (&watched, tool_cpu0) {
        (Some(w), Some(c0)) => Some((cpu_ticks(w.pid()) - c0) as f64 / ticks_per_sec() / wall * 100.0),
        _ => None,
    };
    let prog_ns = watched.as_ref().map(|w| prog_run_time(w.pid())).and_then(|(n, ns)| (n > 0).then(|| ns as f64 / n as f64));
    let note = watched
        .map(|w| {
            let errs = w.stop();
            errs.iter()
                .filter(|l| l.contains("lost") || l.contains("hops:") || l.contains("dropped") || l.contains("captured") || l.contains("received by filter"))
                .map(|l| l.trim_start_matches("tracer: ").to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    println!(
        "  {label:<34} {rate:>10.2} {unit:<12} rx {delivered:>9.0} pkt/s  system CPU {sys_cpu:>5.1}%  tool CPU {}{}  {note}",
        tool_cpu.map(|c| format!("{c:>5.1}%")).unwrap_or_else(|| "    -".into()),
        prog_ns.map(|ns| format!("  program {ns:>4.0} ns/run")).unwrap_or_default()
    );
    Result_ { rate, unit, delivered, sys_cpu, tool_cpu, note, prog_ns }
}

pub fn num_cpus() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).max(1) as f64
}

pub fn tracer(args: &[&str]) -> (Command, &'static str) {
    let mut c = Command::new(tracer_bin());
    c.args(args);
    (c, "ready")
}

pub fn which(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Two namespaces of `lab` joined by a plain veth pair (10.250.0.1 and
/// .2), named so that a glob picks both ends only: (a, b, a's end, b's end).
pub fn veth_pair(lab: &Lab) -> (LabNs, LabNs, String, String) {
    let mut a = lab.extra_ns("pa");
    let mut b = lab.extra_ns("pb");
    let (ia, ib) = (format!("bpa{}", lab.id), format!("bpb{}", lab.id));
    a.ip = "10.250.0.1".into();
    b.ip = "10.250.0.2".into();
    sh(&format!(
        "ip -n {na} link add {ia} type veth peer name {ib} netns {nb} && \
         ip -n {na} addr add {ipa}/24 dev {ia} && ip -n {nb} addr add {ipb}/24 dev {ib} && \
         ip -n {na} link set {ia} up && ip -n {nb} link set {ib} up && \
         ip -n {na} link set lo up && ip -n {nb} link set lo up",
        na = a.name,
        nb = b.name,
        ipa = a.ip,
        ipb = b.ip
    ));
    (a, b, ia, ib)
}

/// The kernel's run-time statistics of BPF programs, on while this lives
/// (`BPF_ENABLE_STATS`: turned off again when its fd closes, even if the
/// benchmark dies).
pub struct ProgramStats {
    _fd: std::os::fd::OwnedFd,
}

impl ProgramStats {
    pub fn enable() -> Option<ProgramStats> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        let mut attr = [0u64; 2];
        // BPF_STATS_RUN_TIME is 0: the zeroed attr asks for it.
        // SAFETY: bpf(2) with a zeroed attr for BPF_ENABLE_STATS.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_mut_ptr(), 16) };
        // SAFETY: a new fd the kernel just returned, owned from here on.
        (fd >= 0).then(|| ProgramStats { _fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) } })
    }
}

/// (runs, total ns) of the TC programs (`prog_type` 3) `pid` holds open;
/// zero runs unless [`ProgramStats`] are on.
pub fn prog_run_time(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return total };
    for e in dir.flatten() {
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
        if field("prog_type:") == Some(3) {
            total.0 += field("run_cnt:").unwrap_or(0);
            total.1 += field("run_time_ns:").unwrap_or(0);
        }
    }
    total
}
