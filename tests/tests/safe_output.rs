//! What other users choose must not reach root's terminal or files: a
//! process that renames itself to an escape sequence and makes a link
//! named like one (text output escapes both, JSON keeps them exact), and
//! `-w` targets planted in a shared directory (symbolic links, other
//! users' and hard-linked files), new capture files' mode, `-w -` into a
//! live tshark, and FIFOs with and without a reader.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Read},
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{Lab, LabNs, Tracer, sh, tracer_bin, tracer_run, wait_until};

const WAIT: Duration = Duration::from_secs(10);

/// ESC ] 0 ; ... BEL sets a terminal's title; U+009B (UTF-8 C2 9B) is the
/// one-character CSI. 11 bytes: within TASK_COMM_LEN.
const COMM: &[u8] = b"py\x1b]0;pwn\x07\xc2\x9b";
const COMM_SHOWN: &str = r"py\x1b]0;pwn\x07\x9b";
/// ESC [ 7 m (reverse video), CSI, BEL: a valid interface name (the
/// kernel refuses only '/', ':' and whitespace). 9 bytes.
const IFNAME: &[u8] = b"t\x1b[7m\xc2\x9b\x07";
const IFNAME_SHOWN: &str = r"t\x1b[7m\x9b\x07";

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf-8")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// No terminal control in `s` but line ends.
fn assert_no_controls(what: &str, s: &str) {
    let bad: Vec<char> = s.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "{what} carries raw controls {bad:?}:\n{s}");
}

fn udp_send(from: &LabNs, to: &str, sport: u16, n: usize) {
    let py = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',{sport}))\n\
         for i in range({n}):\n    s.sendto(b'hello',('{to}',5000))\n    time.sleep(0.02)\n"
    );
    from.sh(&format!("python3 -c {}", tracer_tests::shell_quote(&py)));
}

fn ip_in(ns: &LabNs, args: &[&OsStr]) {
    let out = Command::new("ip").args(["-n", &ns.name]).args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_hostile_comm_and_ifname_are_escaped_in_text_and_exact_in_json() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let mut nl_text = Tracer::start(&["netlink", "--netns", &a.name]);
    let mut nl_json = Tracer::start(&["netlink", "--json", "--netns", &a.name]);
    let mut pk_text = Tracer::start(&["packets", "--netns", &a.name, "udp"]);
    let mut pk_json = Tracer::start(&["packets", "--json", "--netns", &a.name, "udp"]);

    // The renamed process makes the link, and stays for `tracer ns`.
    let helper = format!("{}/helpers/hostile_name.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = a.spawn(&format!("exec python3 {helper} {} {} 60", hex(COMM), hex(IFNAME)));
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let pid: u32 = out.next().and_then(Result::ok).and_then(|l| l.trim().parse().ok()).expect("pid");
    let errno = out.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(errno.trim(), "0", "the kernel refused the link");

    // Traffic through it: eth0 becomes a port of the bridge, which takes the address.
    let name = OsStr::from_bytes(IFNAME);
    let addr = format!("{}/24", a.ip);
    ip_in(a, &["addr".as_ref(), "flush".as_ref(), "dev".as_ref(), "eth0".as_ref()]);
    ip_in(a, &["link".as_ref(), "set".as_ref(), "eth0".as_ref(), "master".as_ref(), name]);
    ip_in(a, &["link".as_ref(), "set".as_ref(), name, "up".as_ref()]);
    ip_in(a, &["addr".as_ref(), "add".as_ref(), addr.as_ref(), "dev".as_ref(), name]);
    // The packet tracers attach to the new bridge within a second (each
    // on its own rescan).
    let on_bridge = |e: &Value| e["ifname"] == text(IFNAME) && e["sport"] == 41900;
    let want = format!("{}/{IFNAME_SHOWN} Out IP {}.41900 > {}.5000: UDP, length 5", a.name, a.ip, b.ip);
    assert!(
        wait_until(WAIT, || {
            udp_send(a, &b.ip, 41900, 1);
            pk_json.events().iter().any(on_bridge) && pk_text.lines().iter().any(|l| l.contains(&want))
        }),
        "no packet on the bridge; text: {:#?}\nstderr:\n{}{}",
        pk_text.lines(),
        pk_json.stderr(),
        pk_text.stderr()
    );

    // tracer ns and tracer top while it all exists.
    let (code, ns_out, ns_err) = tracer_run(&["ns", "--netns", &a.name]);
    assert_eq!(code, 0, "{ns_err}");
    let ns_json = tracer_tests::ns_json(&["--netns", &a.name]);
    let (code, top_out, top_err) = tracer_run(&["top", "-c", "1", "--interval", "0.3", "--by", "iface", "--netns", &a.name]);
    assert_eq!(code, 0, "{top_err}");
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(400));
    for t in [&mut nl_text, &mut nl_json, &mut pk_text, &mut pk_json] {
        assert_eq!(t.stop(), 0);
        assert_no_controls("tracer's stderr", &t.stderr());
    }

    // netlink, text: who and what, escaped.
    let lines = nl_text.lines();
    for l in &lines {
        assert_no_controls("netlink text", l);
    }
    let line = lines.iter().find(|l| l.contains(&format!("[{pid}] "))).unwrap_or_else(|| panic!("no line of {pid}: {lines:#?}"));
    assert!(line.contains(&format!("{COMM_SHOWN}[{pid}] ")), "{line}");
    assert!(line.contains(&format!("RTM_NEWLINK create bridge {IFNAME_SHOWN}  -> ok")), "{line}");
    assert!(lines.iter().any(|l| l.contains(&format!("set eth0 master {IFNAME_SHOWN}"))), "{lines:#?}");
    // netlink, JSON: exact, and the line itself holds no raw control.
    let ev = nl_json.events().into_iter().find(|e| e["pid"] == pid).expect("json event of the helper");
    assert_eq!(ev["comm"], text(COMM));
    assert_eq!(ev["attrs"]["ifname"], text(IFNAME));
    for l in nl_json.lines() {
        assert_no_controls("netlink JSON", &l);
    }

    // packets, text and JSON.
    let lines = pk_text.lines();
    for l in &lines {
        assert_no_controls("packets text", l);
    }
    assert!(lines.iter().any(|l| l.contains(&want)), "no `{want}` in {lines:#?}");
    assert!(pk_json.events().iter().any(on_bridge));
    for l in pk_json.lines() {
        assert_no_controls("packets JSON", &l);
    }

    // ns, text and JSON.
    assert_no_controls("ns text", &ns_out);
    let row = ns_out.lines().find(|l| l.contains(&a.name)).unwrap_or_else(|| panic!("no row for {}: {ns_out}", a.name));
    assert!(row.contains(&format!("{pid}({COMM_SHOWN})")), "{row}");
    assert!(row.contains(&format!("{IFNAME_SHOWN}(bridge)")), "{row}");
    assert!(row.contains(&format!("eth0(veth,master={IFNAME_SHOWN})")), "{row}");
    let n = ns_json.iter().find(|n| n["inode"] == a.inode()).expect("namespace");
    assert!(n["pids"].as_array().expect("pids").iter().any(|p| p["pid"] == pid && p["comm"] == text(COMM)), "{n}");
    assert!(n["interfaces"].as_array().expect("interfaces").iter().any(|i| i["name"] == text(IFNAME)), "{n}");

    // top, text.
    assert_no_controls("top text", &top_out);
    assert!(top_out.lines().any(|l| l.starts_with(&format!("{}/{IFNAME_SHOWN} ", a.name))), "{top_out}");
}

/// A temporary path removed (with what it names) on drop.
struct TmpPath(PathBuf);

impl TmpPath {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tracer-safe-{}-{name}", tracer_tests::unique_id()));
        let _ = std::fs::remove_file(&p);
        TmpPath(p)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `tracer packets -w PATH` that must fail at once, before loading anything:
/// returns its one-sentence error.
fn refused(ns: &LabNs, path: &str) -> String {
    let (code, out, err) = tracer_run(&["packets", "--netns", &ns.name, "-w", path, "--duration", "2"]);
    assert_ne!(code, 0, "-w {path} succeeded: {err}");
    assert!(out.is_empty(), "{out}");
    assert!(!err.contains("ready") && !err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

#[test]
fn w_never_follows_a_symlink_nor_overwrites_what_is_not_the_tracers() {
    let lab = Lab::new(1);
    let a = &lab.ns[0];
    let target = TmpPath::new("target");
    std::fs::write(&target.0, b"precious").expect("write");
    let link = TmpPath::new("link");
    std::os::unix::fs::symlink(&target.0, &link.0).expect("symlink");
    let err = refused(a, link.arg());
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&target.0).expect("target"), b"precious");
    // A dangling link: nothing is created where it points.
    let missing = TmpPath::new("missing");
    let dangling = TmpPath::new("dangling");
    std::os::unix::fs::symlink(&missing.0, &dangling.0).expect("symlink");
    assert!(refused(a, dangling.arg()).contains("symbolic link"));
    assert!(!missing.0.exists());

    // A file another user planted: it would keep its owner, who could read the capture.
    let theirs = TmpPath::new("theirs");
    std::fs::write(&theirs.0, b"theirs").expect("write");
    sh(&format!("chown 65534:65534 {} && chmod 0666 {}", theirs.arg(), theirs.arg()));
    let err = refused(a, theirs.arg());
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert_eq!(std::fs::read(&theirs.0).expect("theirs"), b"theirs");

    // A second name of a file: truncating one would empty the other.
    let first = TmpPath::new("first");
    std::fs::write(&first.0, b"linked").expect("write");
    let second = TmpPath::new("second");
    std::fs::hard_link(&first.0, &second.0).expect("link");
    assert!(refused(a, second.arg()).contains("hard links"));
    assert_eq!(std::fs::read(&first.0).expect("first"), b"linked");
}

/// Packets read back from a pcapng file by tcpdump, as `SPORT` per line.
fn tcpdump_sports(path: &Path) -> Vec<String> {
    let out = Command::new("tcpdump").args(["-n", "-r"]).arg(path).arg("udp").output().expect("tcpdump");
    assert!(out.status.success(), "tcpdump -r: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(" > ").next()?.rsplit('.').next().map(String::from))
        .collect()
}

#[test]
fn w_makes_new_files_0600_and_rewrites_an_own_file_keeping_its_mode() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    // SAFETY: umask of this test process (tests run one at a time); the
    // tracer inherits it.
    let old = unsafe { libc::umask(0o022) };
    let new = TmpPath::new("new.pcapng");
    let own = TmpPath::new("own.pcapng");
    std::fs::write(&own.0, vec![b'x'; 100_000]).expect("write");
    sh(&format!("chmod 0640 {}", own.arg()));
    let mut t1 = Tracer::start(&["packets", "--netns", &a.name, "-w", new.arg(), "udp"]);
    let mut t2 = Tracer::start(&["packets", "--netns", &a.name, "-w", own.arg(), "udp"]);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    udp_send(a, &b.ip, 41920, 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t1.stop(), 0, "{}", t1.stderr());
    assert_eq!(t2.stop(), 0, "{}", t2.stderr());
    let m = std::fs::metadata(&new.0).expect("new file");
    assert_eq!(m.mode() & 0o777, 0o600, "a new capture file must not be readable by others");
    assert_eq!(tcpdump_sports(&new.0), vec!["41920"; 3]);
    let m = std::fs::metadata(&own.0).expect("own file");
    assert_eq!(m.mode() & 0o777, 0o640, "an existing file keeps its mode");
    assert!(m.len() < 100_000, "truncated first: {} bytes", m.len());
    assert_eq!(tcpdump_sports(&own.0), vec!["41920"; 3]);
}

/// A child whose stderr is collected in the background.
struct Proc {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, e2) = (child.stderr.take().expect("stderr"), stderr.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e2.lock().expect("lock").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    fn wait_stderr(&self, what: &str) -> bool {
        wait_until(WAIT, || self.stderr().contains(what))
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Exit code within `WAIT`, else kills it and panics.
    fn exit_code(&mut self) -> i32 {
        if wait_until(WAIT, || matches!(self.child.try_wait(), Ok(Some(_)))) {
            std::thread::sleep(Duration::from_millis(100));
            return self.child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("did not exit; stderr:\n{}", self.stderr());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tshark -l -r INPUT`, printing `IFACE|SPORT` per UDP packet, its stdout
/// lines collected in the background.
fn tshark(input: &str, stdin: Stdio) -> (Proc, Arc<Mutex<Vec<String>>>) {
    let mut cmd = Command::new("tshark");
    cmd.args(["-l", "-n", "-r", input, "-Y", "udp", "-T", "fields", "-E", "separator=|"])
        .args(["-e", "frame.interface_name", "-e", "udp.srcport"])
        .stdin(stdin)
        .stdout(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (out, l2) = (p.child.stdout.take().expect("stdout"), lines.clone());
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            l2.lock().expect("lock").push(l);
        }
    });
    (p, lines)
}

fn count(lines: &Mutex<Vec<String>>, want: &str) -> usize {
    lines.lock().expect("lock").iter().filter(|l| l.as_str() == want).count()
}

#[test]
fn w_dash_streams_pcapng_into_tshark_live_and_stops_when_it_goes() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let mut cmd = Command::new(tracer_bin());
    cmd.args(["packets", "--netns", &a.name, "-w", "-", "udp"]).stdout(Stdio::piped());
    let mut tracer = Proc::spawn(cmd);
    let pipe = tracer.child.stdout.take().expect("stdout");
    let (mut reader, lines) = tshark("-", Stdio::from(pipe));
    assert!(tracer.wait_stderr("ready"), "{}", tracer.stderr());
    udp_send(a, &b.ip, 41930, 3);
    // Live: tshark has them while the tracer still runs.
    let want = format!("{}/eth0|41930", a.name);
    assert!(wait_until(WAIT, || count(&lines, &want) == 3), "tshark read {:?}; {}", lines.lock().expect("lock"), reader.stderr());
    assert!(tracer.child.try_wait().expect("wait").is_none(), "the tracer still runs");
    // tshark goes away: the next packet ends the tracer, cleanly.
    reader.signal(libc::SIGKILL);
    let _ = reader.exit_code();
    let _ = wait_until(WAIT, || {
        udp_send(a, &b.ip, 41931, 1);
        matches!(tracer.child.try_wait(), Ok(Some(_)))
    });
    assert_eq!(tracer.exit_code(), 0, "{}", tracer.stderr());
    let err = tracer.stderr();
    assert!(err.contains("the reader of standard output closed it; stopping"), "{err}");
    assert!(err.contains("packets written to standard output"), "{err}");

    // Onto a terminal it is refused (`script` gives the command a pty).
    let cmd = format!("{} packets --netns {} -w - --duration 2", tracer_bin().display(), a.name);
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("refusing to write pcapng to a terminal"), "{text}");
    assert!(!text.contains("ready"), "{text}");
}

#[test]
fn w_onto_a_fifo_waits_for_its_reader_then_streams() {
    let lab = Lab::new(2);
    let (a, b) = (&lab.ns[0], &lab.ns[1]);
    let fifo = TmpPath::new("fifo");
    sh(&format!("mkfifo -m 0600 {}", fifo.arg()));
    let start = || {
        let mut cmd = Command::new(tracer_bin());
        cmd.args(["packets", "--netns", &a.name, "-w", fifo.arg(), "udp"]).stdout(Stdio::null());
        Proc::spawn(cmd)
    };
    // No reader: it says so, waits, and a signal still stops it.
    let mut t = start();
    assert!(t.wait_stderr("no reader yet"), "{}", t.stderr());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!t.stderr().contains("ready"), "{}", t.stderr());
    t.signal(libc::SIGINT);
    assert_eq!(t.exit_code(), 0, "{}", t.stderr());

    // With a reader coming later, it starts and streams.
    let mut t = start();
    assert!(t.wait_stderr("no reader yet"), "{}", t.stderr());
    let (mut reader, lines) = tshark(fifo.arg(), Stdio::null());
    assert!(t.wait_stderr("ready"), "{}", t.stderr());
    udp_send(a, &b.ip, 41940, 3);
    let want = format!("{}/eth0|41940", a.name);
    assert!(wait_until(WAIT, || count(&lines, &want) == 3), "tshark read {:?}; {}", lines.lock().expect("lock"), reader.stderr());
    t.signal(libc::SIGINT);
    assert_eq!(t.exit_code(), 0, "{}", t.stderr());
    assert_eq!(reader.exit_code(), 0, "tshark: {}", reader.stderr());
    assert!(std::fs::symlink_metadata(&fifo.0).expect("fifo").file_type().is_fifo(), "still a FIFO");
}
