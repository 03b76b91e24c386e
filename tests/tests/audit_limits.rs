//! What a sender can do against an audit on system-call tracepoints, and
//! what the tracer does about it (README, "Audit limits"). The tracepoint
//! copies a request at the call's entry; the kernel copies it again a
//! little later. A second thread of the sender that rewrites the buffer in
//! between makes the kernel act on other bytes than the audit captured:
//! the kernel's answer echoes what it acted on, and the tracer flags the
//! request when that echo differs from its capture.

use std::{
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tracer_tests::{Lab, Tracer};

const RTM_SETLINK: u16 = 19;
const NLM_F_REQUEST_ACK: u16 = 1 | 4;
const IFLA_IFNAME: u16 = 3;

/// RTM_SETLINK by name for an interface that does not exist (the kernel
/// answers ENODEV with the whole request echoed; nothing changes).
fn request(seq: u32) -> Vec<u8> {
    let name = b"trc-race-a\0";
    let attr_len = 4 + name.len();
    let len = 16 + 16 + attr_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_SETLINK.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0u8; 16]);
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    m.extend_from_slice(name);
    m.resize(len, 0);
    m
}

/// Offset of the name's last letter (`a`) in [`request`].
const FLIPPED: usize = 16 + 16 + 4 + 9;

/// Sends `count` requests from inside namespace `ns_path`, reading each
/// answer; with `flip`, another thread keeps switching the name's last
/// letter between `a` and `b` while they are sent. Returns the sender's
/// thread id (the `tid` of its events).
fn send(ns_path: &str, count: u32, flip: bool) -> u32 {
    let ns_path = ns_path.to_string();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).expect("netns file");
        // SAFETY: setns on this thread only, with a namespace file we opened.
        assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        // SAFETY: plain socket(2); the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "netlink socket");
        let first = request(1);
        let buf: Arc<Vec<AtomicU8>> = Arc::new(first.iter().map(|b| AtomicU8::new(*b)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = flip.then(|| {
            let (buf, stop) = (buf.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    buf[FLIPPED].fetch_xor(b'a' ^ b'b', Ordering::Relaxed);
                }
            })
        });
        let mut answer = [0u8; 4096];
        for seq in 1..=count {
            for (i, b) in seq.to_ne_bytes().iter().enumerate() {
                buf[8 + i].store(*b, Ordering::Relaxed);
            }
            // SAFETY: AtomicU8 has the layout of u8; the kernel reads
            // `buf.len()` bytes of it (racing the flipper is the point).
            let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
            assert_eq!(n, buf.len() as isize, "send");
            // SAFETY: recv into a buffer we own, of its length.
            let n = unsafe { libc::recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0) };
            assert!(n > 0, "recv");
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(f) = flipper {
            f.join().expect("flipper");
        }
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() as u32 }
    })
    .join()
    .expect("sender thread")
}

fn mine(events: &[Value], tid: u32) -> Vec<&Value> {
    events.iter().filter(|e| e["type"] == "netlink" && e["tid"] == tid && e["msg_type"] == "RTM_SETLINK").collect()
}

#[test]
fn a_request_rewritten_during_the_call_is_flagged_and_an_untouched_one_is_not() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut t = Tracer::start(&["netlink", "--json", "--netns", &ns.name]);
    const N: u32 = 3000;
    let quiet = send(&ns.path(), N, false);
    let raced = send(&ns.path(), N, true);
    std::thread::sleep(Duration::from_secs(2));
    t.stop();
    let events = t.events();

    // Without a second thread, the echo always matches: never flagged.
    let calm = mine(&events, quiet);
    // (A ring buffer overflow on a busy machine may cost some: counted on
    // stderr, and not what this test is about.)
    assert!(calm.len() >= N as usize / 2, "{} of {N} requests of the quiet sender printed; stderr:\n{}", calm.len(), t.stderr());
    assert!(calm.iter().all(|e| e["result"]["errno"] == 19 && e.get("echo_mismatch").is_none()), "{calm:?}");

    // With one, some requests reach the kernel with the other letter.
    let raced = mine(&events, raced);
    assert!(raced.len() >= N as usize / 2, "{} of {N} raced requests printed; stderr:\n{}", raced.len(), t.stderr());
    let flagged: Vec<_> = raced.iter().filter(|e| e["echo_mismatch"] == true).collect();
    assert!(!flagged.is_empty(), "none of {N} raced requests was flagged");
    // Each flagged one is answered (the echo is what it is compared with),
    // and the header the kernel echoed is the request's own.
    for e in &flagged {
        assert_eq!(e["result"]["errno"], 19, "{e}");
        assert_eq!(e["echoed"]["msg_type"], "RTM_SETLINK", "{e}");
        assert_eq!(e["echoed"]["seq"], e["seq"], "{e}");
    }
    eprintln!("{} of {N} raced requests flagged as changed during the call", flagged.len());
    // The exit summary counts them.
    let stderr = t.stderr();
    assert!(stderr.contains(&format!("{} changed during the call", flagged.len())), "{stderr}");
}

#[test]
fn doctor_says_whether_io_uring_can_bypass_the_audit() {
    let (code, out, err) = tracer_tests::tracer_run(&["doctor", "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(out.trim()).expect("doctor --json");
    let want = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(doc["io_uring_disabled"].as_u64(), want, "{doc}");
    let (code, out, err) = tracer_tests::tracer_run(&["doctor"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("io_uring ")).unwrap_or_else(|| panic!("no io_uring line:\n{out}"));
    match want {
        Some(2) => assert!(line.contains("disabled"), "{line}"),
        _ => assert!(line.contains("not audited"), "{line}"),
    }
}
