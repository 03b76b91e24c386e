//! The correlator without a kernel: requests and answers made by hand, as
//! the kernel programs record them; lookups answered by a fake thread.

use std::{
    mem::offset_of,
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tracer_common::{
    EventHeader, EventKind,
    netlink::{NetlinkAck, NetlinkSend},
};

use super::{ACK_WAIT_NS, Correlator, EVENT_BASE_BYTES, MAX_PENDING, MAX_PENDING_BYTES};
use crate::{
    bpf::event::RawEvent,
    output::Render,
    ns::Container,
    netlink::{
        enrich::Enricher,
        identity::{Identities, Identity, Sender},
        lookup::{Answer, Lookups, Query, Request},
    },
    sys::{self, clock::Clock},
};

const SOCK: u64 = 0xfeed;
const IFLA_IFNAME: u16 = 3;
const RTM_SETLINK: u16 = 19;

fn own_ns() -> u32 {
    sys::ns_inode(Path::new("/proc/self/ns/net")).expect("own netns") as u32
}

fn header(kind: EventKind, ts_ns: u64, payload_len: usize) -> EventHeader {
    let zero = [0u8; size_of::<EventHeader>()];
    let mut h: EventHeader = crate::bpf::event::read_pod(&zero).expect("zeroed header");
    h.kind = kind as u32;
    h.ts_ns = ts_ns;
    let pid = u64::from(std::process::id());
    h.pid_tgid = (pid << 32) | pid;
    h.netns_ino = own_ns();
    h.payload_len = payload_len as u32;
    h.comm[..2].copy_from_slice(b"ip");
    h
}

fn put<const N: usize>(buf: &mut [u8], off: usize, bytes: [u8; N]) {
    buf[off..off + N].copy_from_slice(&bytes);
}

/// One RTM_SETLINK for `index` (0: none) with `name` (if any).
fn setlink(seq: u32, index: i32, name: Option<&str>) -> Vec<u8> {
    let mut body = vec![0u8; 16];
    put(&mut body, 4, index.to_ne_bytes());
    if let Some(n) = name {
        let len = 4 + n.len() + 1;
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        body.extend_from_slice(n.as_bytes());
        body.push(0);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut m = Vec::new();
    m.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_SETLINK.to_ne_bytes());
    m.extend_from_slice(&(1u16 | 4).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&body);
    m
}

fn send(ts_ns: u64, msg: &[u8]) -> RawEvent {
    let mut p = vec![0u8; size_of::<NetlinkSend>()];
    put(&mut p, offset_of!(NetlinkSend, sock_id), SOCK.to_ne_bytes());
    put(&mut p, offset_of!(NetlinkSend, data_len), (msg.len() as u32).to_ne_bytes());
    put(&mut p, offset_of!(NetlinkSend, total_len), (msg.len() as u32).to_ne_bytes());
    p.extend_from_slice(msg);
    RawEvent { header: header(EventKind::NetlinkSend, ts_ns, p.len()), kind: EventKind::NetlinkSend, payload: Bytes::from(p) }
}

fn ack(seq: u32, errno: i32) -> RawEvent {
    ack_on(SOCK, seq, errno)
}

/// The kernel's answer to request `seq` of socket `sock`.
fn ack_on(sock: u64, seq: u32, errno: i32) -> RawEvent {
    answer(sock, seq, errno, &setlink(seq, 0, None)[..16])
}

/// The kernel's answer to request `seq` of socket `sock`, echoing `echo`
/// (a request's header alone, NLM_F_CAPPED, or a whole request).
fn answer(sock: u64, seq: u32, errno: i32, echo: &[u8]) -> RawEvent {
    let capped: u16 = if echo.len() == 16 { 0x100 } else { 0 };
    let mut m = Vec::new();
    m.extend_from_slice(&(20 + echo.len() as u32).to_ne_bytes());
    m.extend_from_slice(&2u16.to_ne_bytes());
    m.extend_from_slice(&capped.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&(-errno).to_ne_bytes());
    m.extend_from_slice(echo);
    let mut p = vec![0u8; size_of::<NetlinkAck>()];
    put(&mut p, offset_of!(NetlinkAck, sock_id), sock.to_ne_bytes());
    put(&mut p, offset_of!(NetlinkAck, data_len), (m.len() as u32).to_ne_bytes());
    p.extend_from_slice(&m);
    RawEvent { header: header(EventKind::NetlinkAck, 0, p.len()), kind: EventKind::NetlinkAck, payload: Bytes::from(p) }
}

/// A correlator whose lookups take `delay` and find `if<N>`.
fn correlator(delay: Duration) -> Correlator {
    let lookups = Lookups::with_resolver(
        64,
        Box::new(move |r: Request| {
            std::thread::sleep(delay);
            match r.query {
                Query::Name(i) => Answer::Name { ino: r.ino, index: i, name: Some(format!("if{i}")) },
                Query::Index(name) => Answer::Index { ino: r.ino, name, index: None },
            }
        }),
    );
    Correlator::with_parts(Clock::new(), Enricher::with_lookups(lookups), Identities::off())
}

#[test]
fn a_sender_that_never_reads_answers_cannot_grow_the_queue() {
    let mut c = correlator(Duration::ZERO);
    let extra = 100;
    for seq in 0..(MAX_PENDING + extra) as u32 {
        c.push(&send(1, &setlink(seq, 0, Some("x"))));
    }
    // Nothing answered, nothing waited long enough: only the cap lets go.
    let out = c.ready(2, false);
    assert_eq!(out.len(), extra);
    assert_eq!(out[0].header.seq, 0, "the oldest go first");
    assert!(out.iter().all(|e| e.result.is_none()));
    assert_eq!(c.pending(), MAX_PENDING);
    assert_eq!(c.stats().flushed_early, extra as u64);
    assert_eq!(c.stats().max_pending, MAX_PENDING + extra);
    // The others still wait for their answers, and get them.
    c.push(&ack(extra as u32, 0));
    let out = c.ready(3, false);
    assert_eq!(out.iter().map(|e| (e.header.seq, e.result)).collect::<Vec<_>>(), vec![(extra as u32, Some(0))]);
    assert_eq!(c.stats().flushed_early, extra as u64, "an answered request is not counted");
}

#[test]
fn large_requests_are_capped_by_their_size() {
    let mut c = correlator(Duration::ZERO);
    let name = "n".repeat(8192);
    let len = setlink(0, 0, Some(&name)).len();
    let per = EVENT_BASE_BYTES + 2 * len + len.min(super::decode::ECHO_KEEP);
    let fits = MAX_PENDING_BYTES / per;
    for seq in 0..(fits + 50) as u32 {
        c.push(&send(1, &setlink(seq, 0, Some(&name))));
    }
    assert_eq!(c.ready(2, false).len(), 50);
    assert_eq!(c.pending(), fits);
}

#[test]
fn answers_find_their_request_as_others_leave_the_queue() {
    let mut c = correlator(Duration::ZERO);
    for seq in [1, 2, 3] {
        c.push(&send(1, &setlink(seq, 0, Some("eth0"))));
    }
    c.push(&ack(1, 0));
    assert_eq!(c.ready(2, false).iter().map(|e| e.header.seq).collect::<Vec<_>>(), vec![1]);
    // 3 is answered but waits behind 2: requests come out in send order.
    c.push(&ack(3, 17));
    assert!(c.ready(2, false).is_empty());
    c.push(&ack(2, 1));
    let out = c.ready(2, false);
    assert_eq!(out.iter().map(|e| (e.header.seq, e.result)).collect::<Vec<_>>(), vec![(2, Some(1)), (3, Some(17))]);
    // A request nobody answers goes after ACK_WAIT_NS, not before.
    c.push(&send(10, &setlink(4, 0, Some("eth0"))));
    assert!(c.ready(10 + ACK_WAIT_NS - 1, false).is_empty());
    assert_eq!(c.ready(10 + ACK_WAIT_NS, false).len(), 1);
    assert_eq!(c.stats().flushed_early, 0);
}

#[test]
fn an_answered_request_is_held_until_its_names_are_looked_up() {
    let mut c = correlator(Duration::from_millis(150));
    c.push(&send(1, &setlink(1, 5, None)));
    c.push(&ack(1, 0));
    let start = Instant::now();
    let mut out = c.ready(2, false);
    while out.is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
        out = c.ready(2, false);
    }
    assert!(start.elapsed() >= Duration::from_millis(100), "held for the lookup: {:?}", start.elapsed());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attrs["ifname"], "if5", "{:?}", out[0].attrs);
}

#[test]
fn a_burst_of_unknown_indexes_does_not_hold_the_loop() {
    // 5,000 requests for as many unknown ifindexes, each lookup 50 ms:
    // taken in turn they would need four minutes.
    let mut c = correlator(Duration::from_millis(50));
    let start = Instant::now();
    for seq in 0..5000u32 {
        c.push(&send(1, &setlink(seq, seq as i32 + 1, None)));
        c.push(&ack(seq, 1));
    }
    let pushing = start.elapsed();
    assert!(pushing < Duration::from_secs(3), "pushing took {pushing:?}");
    // The queue (64), the one on the thread, and those it finished meanwhile.
    let s = c.stats().enrich;
    assert!(s.lookups <= 65 + (pushing.as_millis() / 50) as u64 + 1, "{s:?} in {pushing:?}");
    assert_eq!(s.lookups + s.over_budget, 5000, "{s:?}");
    // Those refused are unknown at once; after the hold every request is
    // out, named where a lookup found it in time, else null.
    let out = c.ready(1 + ACK_WAIT_NS, false);
    assert_eq!((out.len(), c.pending()), (5000, 0));
    let named = out.iter().filter(|e| e.attrs["ifname"].is_string()).count() as u64;
    assert!(named <= s.lookups, "{named}");
    assert!(out.iter().all(|e| e.attrs.contains_key("ifname")));
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
}

#[test]
fn only_accepted_requests_teach_names() {
    let mut c = correlator(Duration::ZERO);
    let ino = u64::from(own_ns());
    c.push(&send(1, &setlink(1, 9, Some("evil"))));
    c.push(&ack(1, 1));
    c.push(&send(1, &setlink(2, 8, Some(&"good".repeat(1000)))));
    c.push(&ack(2, 0));
    assert_eq!(c.ready(2, false).len(), 2);
    assert_eq!(c.enricher.cached_name(ino, 9), None, "EPERM: the kernel took no name");
    assert_eq!(c.enricher.cached_name(ino, 8).as_deref(), Some("goodgoodgoodgoo"), "cut to IFNAMSIZ");
}

#[test]
fn a_request_is_held_until_the_registry_says_who_sent_it() {
    let ids = Identities::with_resolver(
        8,
        Box::new(|who: Sender| {
            std::thread::sleep(Duration::from_millis(150));
            let c = Container { pod: None, runtime: "docker".into(), id: "c0ffee".into(), name: Some("web".into()) };
            (who, Identity { netns_name: Some("web".into()), owner: Some(c.clone()), container: Some(c), starting: false })
        }),
    );
    let lookups = Lookups::with_resolver(8, Box::new(|r: Request| Answer::Name { ino: r.ino, index: 0, name: None }));
    let mut c = Correlator::with_parts(Clock::new(), Enricher::with_lookups(lookups), ids);
    c.push(&send(1, &setlink(1, 0, Some("eth0"))));
    c.push(&ack(1, 0));
    let start = Instant::now();
    let mut out = c.ready(2, false);
    while out.is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
        out = c.ready(2, false);
    }
    assert!(start.elapsed() >= Duration::from_millis(100), "held for the registry: {:?}", start.elapsed());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].netns.name.as_deref(), Some("web"));
    assert_eq!(out[0].container.as_ref().and_then(|c| c.name.as_deref()), Some("web"));
    assert_eq!(out[0].netns.label(), "web");
    assert_eq!(c.identities.counts(), (1, 0));
}

#[test]
fn an_answer_pairs_with_its_socket_and_sequence_number_only() {
    let mut c = correlator(Duration::ZERO);
    c.push(&send(1, &setlink(7, 0, Some("eth0"))));
    // Another socket's answer to its own request 7 is not this one's.
    c.push(&ack_on(SOCK + 1, 7, 1));
    assert!(c.ready(2, false).is_empty(), "still waiting for its own answer");
    c.push(&ack(7, 17));
    // A second answer with the same number does not replace the first.
    c.push(&ack(7, 0));
    let out = c.ready(2, false);
    assert_eq!(out.iter().map(|e| (e.header.seq, e.result)).collect::<Vec<_>>(), vec![(7, Some(17))]);
    assert!(c.ready(10 * ACK_WAIT_NS, true).is_empty(), "the stray answers made no request");
}

#[test]
fn at_the_end_everything_comes_out_and_late_answers_find_nothing() {
    let mut c = correlator(Duration::ZERO);
    for seq in 1..=3 {
        c.push(&send(1, &setlink(seq, 0, Some("eth0"))));
    }
    c.push(&ack(2, 0));
    // Not waited long enough, but the job is ending: all of them, in order,
    // the unanswered ones without a result.
    let out = c.ready(2, true);
    assert_eq!(out.iter().map(|e| (e.header.seq, e.result)).collect::<Vec<_>>(), vec![(1, None), (2, Some(0)), (3, None)]);
    assert_eq!(c.pending(), 0);
    // An answer after its request went out pairs with nothing, not with a
    // later request of the same number.
    c.push(&ack(1, 0));
    c.push(&send(5, &setlink(1, 0, Some("eth1"))));
    assert!(c.ready(6, false).is_empty(), "the new request 1 still waits for its own answer");
    assert_eq!(c.ready(5 + ACK_WAIT_NS, false).iter().map(|e| e.result).collect::<Vec<_>>(), vec![None]);
}

#[test]
fn the_tracers_own_namespace_is_host_in_text_and_an_inode_in_json() {
    let mut c = correlator(Duration::ZERO);
    c.push(&send(1, &setlink(1, 0, Some("eth0"))));
    c.push(&ack(1, 0));
    let out = c.ready(2, false);
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert!(e.netns.host && e.netns.name.is_none());
    let ino = u64::from(own_ns());
    assert!(e.text().contains(&format!(" netns=host({ino}) container=- ")), "{}", e.text());
    assert_eq!(e.json()["netns"], serde_json::json!({"inode": ino, "name": null}));
}

#[test]
fn undecodable_messages_are_counted_and_still_paired() {
    let mut c = correlator(Duration::ZERO);
    // A length shorter than a header: malformed, with its bytes.
    let mut bad = setlink(9, 0, None);
    bad[..4].copy_from_slice(&8u32.to_ne_bytes());
    c.push(&send(1, &bad));
    c.push(&send(1, &setlink(10, 0, Some("eth0"))));
    c.push(&ack(10, 0));
    let out = c.ready(1 + ACK_WAIT_NS, false);
    assert_eq!(c.malformed, 1);
    assert_eq!(out.len(), 2);
    assert!(out[0].is_malformed() && out[0].result.is_none());
    assert_eq!((out[1].header.seq, out[1].result), (10, Some(0)));
}

#[test]
fn a_request_changed_during_the_call_is_flagged_by_the_kernels_echo() {
    let mut c = correlator(Duration::ZERO);
    // Answered with the bytes that were captured: not flagged.
    let sent = setlink(1, 0, Some("eth0"));
    c.push(&send(1, &sent));
    c.push(&answer(SOCK, 1, 0, &sent[..16]));
    // The kernel acted on another name than the capture holds (another
    // thread rewrote the buffer): its error echo carries the whole request.
    let sent = setlink(2, 0, Some("eth0"));
    c.push(&send(1, &sent));
    c.push(&answer(SOCK, 2, 19, &setlink(2, 0, Some("evil"))));
    // And another type (the header differs, seen in a capped echo too).
    let sent = setlink(3, 0, Some("eth0"));
    c.push(&send(1, &sent));
    let mut acted = sent.clone();
    acted[4] = 17;
    c.push(&answer(SOCK, 3, 0, &acted[..16]));
    // Two waiting requests with one seq: an echo cannot say whose it is.
    c.push(&send(1, &setlink(4, 0, Some("a"))));
    c.push(&send(1, &setlink(4, 0, Some("bb"))));
    c.push(&answer(SOCK, 4, 0, &setlink(4, 0, Some("a"))[..16]));
    let out = c.ready(2, true);
    let flagged: Vec<_> = out.iter().map(|e| (e.header.seq, e.echo_mismatch.map(|h| h.msg_type))).collect();
    assert_eq!(flagged, vec![(1, None), (2, Some(RTM_SETLINK)), (3, Some(17)), (4, None), (4, None)]);
    assert_eq!(c.stats().echo_mismatch, 2);
    let text = out[2].text();
    assert!(text.contains("[changed during the call: the kernel's echo is RTM_DELLINK len 44 seq 3]"), "{text}");
    let j = out[1].json();
    assert_eq!(j["echo_mismatch"], true);
    assert_eq!(j["echoed"]["msg_type"], "RTM_SETLINK");
    assert_eq!(out[0].json().get("echo_mismatch"), None);
}

/// A request from a container that does not run yet (its runtime has no
/// record saying so: runc's first requests, dockerd's into the sandbox)
/// waits, asking the registry again, until the container is named; one
/// whose container never comes goes out after `SANDBOX_WAIT_NS` with the
/// name it has. Meanwhile it holds the merged timeline back.
#[test]
fn a_request_from_a_starting_container_waits_for_its_name() {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };
    let starting = |runs: u32| {
        let asked = Arc::new(AtomicU32::new(0));
        let n = asked.clone();
        let ids = Identities::with_resolver(
            8,
            Box::new(move |who: Sender| {
                if n.fetch_add(1, Ordering::Relaxed) < runs {
                    return (who, Identity { netns_name: Some("6d74c40dc64b".into()), owner: None, container: None, starting: true });
                }
                let c = Container { pod: None, runtime: "docker".into(), id: "c0ffee".into(), name: Some("web".into()) };
                (who, Identity { netns_name: Some("web".into()), owner: Some(c.clone()), container: Some(c), starting: false })
            }),
        );
        let lookups = Lookups::with_resolver(8, Box::new(|r: Request| Answer::Name { ino: r.ino, index: 0, name: None }));
        let mut c = Correlator::with_parts(Clock::new(), Enricher::with_lookups(lookups), ids);
        // The sender's namespace as a container's, not the host's.
        c.host = None;
        c.push(&send(1, &setlink(1, 0, Some("eth0"))));
        c.push(&ack(1, 0));
        (c, asked)
    };
    // Named on the third answer, though answered and past its ack wait.
    let (mut c, asked) = starting(2);
    let start = Instant::now();
    let now = ACK_WAIT_NS * 2;
    let mut out = c.ready(now, false);
    while out.is_empty() && start.elapsed() < Duration::from_secs(5) {
        assert!(c.oldest_waiting_wall_ns().is_some(), "the timeline is held back meanwhile");
        std::thread::sleep(Duration::from_millis(10));
        out = c.ready(now, false);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].netns.label(), "web");
    assert!(asked.load(Ordering::Relaxed) >= 3, "asked again while starting");
    assert_eq!(c.oldest_waiting_wall_ns(), None);
    // Never named: out after the longest wait, with the sandbox's name.
    let (mut c, asked) = starting(u32::MAX);
    let t = Instant::now();
    while asked.load(Ordering::Relaxed) < 3 && t.elapsed() < Duration::from_secs(5) {
        assert!(c.ready(now, false).is_empty(), "held while starting");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(asked.load(Ordering::Relaxed) >= 3 && c.ready(now, false).is_empty(), "held while starting");
    let out = c.ready(super::SANDBOX_WAIT_NS + 2, false);
    assert_eq!(out.iter().map(|e| e.netns.label().to_string()).collect::<Vec<_>>(), ["6d74c40dc64b"]);
}
