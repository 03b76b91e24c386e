//! The interface watcher (`tracer::testing::watch`) against the real kernel:
//! lab namespaces, veths, bridges, moves by name and by pid, addresses and
//! routes; the table must name everything at every moment, name deletions
//! from its tombstones, record where moved links went, carry the portid
//! and sequence number of the request behind a change, notice new
//! namespaces at once, never keep a deleted namespace alive, and print
//! everything `ip monitor link address route` prints.

use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tracer::testing::watch::{
    Config, EventKind, Link, LinkState, NsHandle, Place, Watcher,
    testing::{Event, Source, stall},
};
use tracer_tests::{Lab, LabNs, sh, sh_out, unique_id, wait_until};

const WAIT: Duration = Duration::from_secs(5);

/// The watcher and every event it has handed out so far.
struct W {
    w: Watcher,
    rx: tokio::sync::mpsc::Receiver<Event>,
    seen: Vec<Event>,
}

impl W {
    fn start() -> W {
        let (w, rx) = Watcher::start(Config::default()).expect("watcher starts");
        W { w, rx, seen: Vec::new() }
    }

    fn pump(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
    }

    /// A mark: events after it are the ones an action caused.
    fn mark(&mut self) -> usize {
        self.pump();
        self.seen.len()
    }

    /// The first event after `mark` that satisfies `pred`, within `WAIT`.
    fn wait(&mut self, mark: usize, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let start = Instant::now();
        loop {
            self.pump();
            if let Some(e) = self.seen[mark.min(self.seen.len())..].iter().find(|e| pred(e)) {
                return e.clone();
            }
            if start.elapsed() > WAIT {
                let lines: Vec<String> = self.seen[mark.min(self.seen.len())..].iter().map(|e| format!("{} {}", self.w.label(e.ns), self.w.render(e))).collect();
                panic!("no event for {what} within {WAIT:?}; after the mark:\n{}", lines.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn handle(&self, ns: &LabNs) -> NsHandle {
        let ino = ns.inode();
        let mut h = None;
        assert!(wait_until(WAIT, || {
            h = self.w.by_inode(ino);
            h.is_some()
        }), "namespace {} (inode {ino}) is not in the table", ns.name);
        h.expect("handle")
    }

    /// Waits until the table's live links of `h` are exactly what `ip` lists
    /// in that namespace (index and name), and says what differs if not.
    fn agrees(&self, h: NsHandle, ip_prefix: &str) {
        let mut last = String::new();
        let ok = wait_until(WAIT, || {
            let want = ip_links(ip_prefix);
            let got: BTreeSet<(u32, String)> = self.w.links(h).into_iter().map(|l| (l.ifindex, l.name)).collect();
            last = format!("ip: {want:?}\ntable: {got:?}");
            want == got
        });
        assert!(ok, "the table of {} disagrees with `{ip_prefix} link`:\n{last}", self.w.label(h));
    }
}

/// (ifindex, name) of every link `ip` lists.
fn ip_links(prefix: &str) -> BTreeSet<(u32, String)> {
    sh(&format!("{prefix} -o link show"))
        .lines()
        .filter_map(|l| {
            let (idx, rest) = l.split_once(": ")?;
            let name = rest.split([':', '@']).next()?;
            Some((idx.trim().parse().ok()?, name.to_string()))
        })
        .collect()
}

fn ifindex(prefix: &str, dev: &str) -> u32 {
    sh(&format!("{prefix} cat /sys/class/net/{dev}/ifindex")).trim().parse().expect("ifindex")
}

fn host_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net").expect("own netns").ino()
}

fn link_of(e: &Event) -> Option<(&'static str, &Link)> {
    match &e.kind {
        EventKind::LinkAdded(v) => Some(("added", &v.link)),
        EventKind::LinkChanged(v) => Some(("changed", &v.link)),
        EventKind::LinkDeleted(v) => Some(("deleted", &v.link)),
        _ => None,
    }
}

fn is_link(e: &Event, ns: NsHandle, what: &str, name: &str) -> bool {
    e.ns == ns && link_of(e).is_some_and(|(k, l)| k == what && l.name == name)
}

/// Removes what a test made, also when it panics.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in self.0.iter().rev() {
            let _ = sh_out(&format!("{c} 2>/dev/null"));
        }
    }
}

#[test]
fn veths_bridges_moves_and_deletes_are_named_at_every_moment() {
    let lab = Lab::new(0);
    let x = lab.extra_ns("x");
    let y = lab.extra_ns("y");
    let id = unique_id();
    let (va, vb, br) = (format!("wva{id}"), format!("wvb{id}"), format!("wbr{id}"));
    let _c = Cleanup(vec![format!("ip link del {br}"), format!("ip link del {va}")]);
    let mut w = W::start();
    let home = w.w.home();
    assert_eq!(w.w.info(home).and_then(|i| i.inode), Some(host_inode()));
    let (hx, hy) = (w.handle(&x), w.handle(&y));
    w.agrees(home, "ip");

    // A veth pair and a bridge at home.
    let m = w.mark();
    sh(&format!("ip link add {va} type veth peer name {vb} && ip link add {br} type bridge && ip link set {va} master {br} up"));
    let e = w.wait(m, "the bridge port", |e| e.ns == home && matches!(&e.kind, EventKind::LinkChanged(v) if v.link.name == va && v.master_name.as_deref() == Some(br.as_str())));
    assert_eq!(e.portid, 0, "link notifications carry no portid on this kernel");
    w.agrees(home, "ip");
    let (ia, ib) = (ifindex("", &va), ifindex("", &vb));
    assert_eq!(w.w.peer(home, ia), Some((home, ib)));
    assert_eq!(w.w.peer(home, ib), Some((home, ia)));

    // Moved into x by name: deleted at home with where it went, added in x.
    let m = w.mark();
    sh(&format!("ip link set {vb} netns {}", x.name));
    let del = w.wait(m, "the move's delete", |e| is_link(e, home, "deleted", &vb));
    let EventKind::LinkDeleted(v) = &del.kind else { unreachable!() };
    let to = v.moved_to.clone().expect("a move says where it went");
    assert_eq!(to.ns, Some(hx), "moved into x: {to:?}");
    let ixb = ifindex(&format!("ip netns exec {}", x.name), &vb);
    assert_eq!(to.ifindex, ixb);
    assert!(w.w.render(&del).contains(&format!("new-netns {}", x.name)), "{}", w.w.render(&del));
    let add = w.wait(m, "the move's add", |e| is_link(e, hx, "added", &vb));
    assert_eq!(link_of(&add).and_then(|(_, l)| l.moved_from.clone()), Some(Place { ns: Some(home), netnsid: None, ifindex: ib }));
    let mv = w.w.moved(home, ib).expect("recorded at home");
    assert_eq!((mv.name.as_str(), mv.to.ns, mv.to.ifindex), (vb.as_str(), Some(hx), ixb));
    assert_eq!(w.w.moved(hx, ixb).map(|m| (m.from.ns, m.from.ifindex)), Some((Some(home), ib)));
    assert_eq!(w.w.name(home, ib).as_deref(), Some(vb.as_str()), "named from its tombstone");
    assert_eq!(w.w.peer(home, ia), Some((hx, ixb)));
    assert_eq!(w.w.peer(hx, ixb), Some((home, ia)));
    w.agrees(home, "ip");
    w.agrees(hx, &format!("ip -n {}", x.name));

    // An address and a route in x, named with the link.
    let m = w.mark();
    sh(&format!("ip -n {n} addr add 10.213.0.2/24 dev {vb} && ip -n {n} link set {vb} up && ip -n {n} route add 10.214.0.0/24 via 10.213.0.1", n = x.name));
    w.wait(m, "the address", |e| e.ns == hx && matches!(&e.kind, EventKind::AddrAdded(a) if a.dev.as_deref() == Some(vb.as_str()) && a.addr.local.to_string() == "10.213.0.2"));
    let r = w.wait(m, "the route", |e| e.ns == hx && matches!(&e.kind, EventKind::RouteAdded(r) if r.route.gateway.is_some_and(|g| g.to_string() == "10.213.0.1")));
    assert_eq!(w.w.render(&r), format!("10.214.0.0/24 via 10.213.0.1 dev {vb}"));
    assert_ne!(r.portid, 0, "a requested route carries the requester's portid");
    assert_eq!(w.w.addresses(hx, ixb).iter().map(|a| format!("{}/{}", a.local, a.prefixlen)).collect::<Vec<_>>(), ["10.213.0.2/24"]);

    // Moved from x into y by the pid of a process in y.
    let mut sleeper = y.spawn("exec sleep 30");
    let m = w.mark();
    sh(&format!("ip -n {} link set {vb} netns {}", x.name, sleeper.id()));
    let del = w.wait(m, "the move by pid", |e| is_link(e, hx, "deleted", &vb));
    let EventKind::LinkDeleted(v) = &del.kind else { unreachable!() };
    let iyb = ifindex(&format!("ip netns exec {}", y.name), &vb);
    assert_eq!(v.moved_to.as_ref().map(|p| (p.ns, p.ifindex)), Some((Some(hy), iyb)), "{v:?}");
    w.wait(m, "the arrival in y", |e| is_link(e, hy, "added", &vb));
    assert_eq!(w.w.moved(hy, iyb).and_then(|m| m.from.ns), Some(hx));
    assert_eq!(w.w.peer(home, ia), Some((hy, iyb)));
    // Its address went with the move: the kernel deleted it in x, named.
    w.wait(m, "the address leaving x", |e| e.ns == hx && matches!(&e.kind, EventKind::AddrDeleted(a) if a.dev.as_deref() == Some(vb.as_str())));
    w.agrees(hx, &format!("ip -n {}", x.name));
    w.agrees(hy, &format!("ip -n {}", y.name));

    // Deleting one end deletes both; each delete is named.
    let m = w.mark();
    sh(&format!("ip -n {} link del {vb}", y.name));
    w.wait(m, "the delete in y", |e| is_link(e, hy, "deleted", &vb));
    let d = w.wait(m, "the peer's delete at home", |e| is_link(e, home, "deleted", &va));
    assert_eq!(d.portid, 0);
    assert_eq!(w.w.name(hy, iyb).as_deref(), Some(vb.as_str()));
    assert_eq!(w.w.name(home, ia).as_deref(), Some(va.as_str()));
    assert!(matches!(w.w.link(home, ia), Some(LinkState::Deleted(_))), "a tombstone, not a live link");
    w.agrees(home, "ip");
    w.agrees(hy, &format!("ip -n {}", y.name));

    // y goes away: signalled, and its links are named afterwards.
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let m = w.mark();
    sh(&format!("ip netns del {}", y.name));
    w.wait(m, "y gone", |e| e.ns == hy && e.kind == EventKind::NamespaceGone);
    assert_eq!(w.w.name(hy, iyb).as_deref(), Some(vb.as_str()));
    let s = w.w.stats();
    assert_eq!((s.events_dropped, s.overruns, s.malformed, s.links_refused), (0, 0, 0, 0), "{s:?}");
}

#[test]
fn a_change_carries_the_portid_and_sequence_number_of_its_request() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut w = W::start();
    let h = w.handle(ns);
    let helper = format!("{}/helpers/nladdr.py", env!("CARGO_MANIFEST_DIR"));
    let (portid, seq) = (0x7a11_0000 + (std::process::id() & 0xffff), 4242);
    let m = w.mark();
    ns.sh(&format!("python3 {helper} {portid} {seq} eth0 10.215.0.9/24"));
    let e = w.wait(m, "the address", |e| e.ns == h && matches!(&e.kind, EventKind::AddrAdded(a) if a.addr.local.to_string() == "10.215.0.9"));
    assert_eq!((e.portid, e.seq, e.source), (portid, seq, Source::Notification));
    // The kernel's own consequence (the prefix route) is kernel-initiated.
    let r = w.wait(m, "the prefix route", |e| e.ns == h && matches!(&e.kind, EventKind::RouteAdded(r) if r.route.dst.is_some_and(|d| d.to_string() == "10.215.0.0")));
    assert_eq!((r.portid, r.seq), (0, 0));
    assert_eq!(w.w.render(&r), "10.215.0.0/24 dev eth0 proto kernel scope link src 10.215.0.9");
}

#[test]
fn a_namespace_made_after_start_is_signalled_at_once() {
    let lab = Lab::new(0);
    let mut w = W::start();
    let id = unique_id();
    let v = format!("wvn{id}");
    let _c = Cleanup(vec![format!("ip link del {v}")]);
    // A new namespace reached by a veth: the kernel gives it an id at home,
    // and the watcher follows it by itself.
    let n = lab.extra_ns("n");
    let m = w.mark();
    let t0 = Instant::now();
    sh(&format!("ip link add {v} type veth peer name eth0 netns {}", n.name));
    let appeared = w.wait(m, "the new namespace", |e| matches!(e.kind, EventKind::NamespaceAppeared { .. }));
    let took = t0.elapsed();
    let ident = w.wait(m, "its identity", |e| e.ns == appeared.ns && matches!(e.kind, EventKind::NamespaceIdentified { .. }));
    let EventKind::NamespaceIdentified { inode, label, path, .. } = &ident.kind else { unreachable!() };
    assert_eq!(*inode, n.inode());
    assert_eq!(label.as_deref(), Some(n.name.as_str()));
    assert_eq!(path.as_deref(), Some(Path::new(&n.path())), "a file to enter it by, for attaching");
    let identified = t0.elapsed();
    eprintln!("new namespace: appeared after {took:?}, identified after {identified:?}");
    assert!(took < Duration::from_millis(500), "signalled after {took:?}");
    // Its eth0 was announced before home had an id for it: read at once.
    let eth0 = w.wait(m, "its eth0", |e| is_link(e, appeared.ns, "added", "eth0"));
    assert_eq!(eth0.source, Source::Dump);
    let hv = ifindex("", &v);
    let e0 = ifindex(&format!("ip netns exec {}", n.name), "eth0");
    assert_eq!(w.w.peer(appeared.ns, e0), Some((w.w.home(), hv)));

    // A namespace with no link to home: no id, no notification, until
    // watched; then its changes arrive.
    let q = lab.extra_ns("q");
    let info = w.w.watch_path(Path::new(&q.path()), Some(q.name.clone()), WAIT).expect("watch");
    assert_eq!(info.inode, Some(q.inode()));
    assert!(info.nsid.is_some(), "given an id");
    let m = w.mark();
    sh(&format!("ip -n {} link add qa type veth peer name qb", q.name));
    w.wait(m, "a link made inside it", |e| is_link(e, info.handle, "added", "qa"));
    assert_eq!(w.w.peer(info.handle, ifindex(&format!("ip netns exec {}", q.name), "qa")).map(|p| p.0), Some(info.handle));
}

#[test]
fn watching_never_keeps_a_deleted_namespace_alive() {
    let lab = Lab::new(1);
    let ns = lab.ns[0].clone();
    let mut w = W::start();
    let h = w.handle(&ns);
    let hv = ifindex("", &ns.host_veth);
    let e0 = ifindex(&format!("ip netns exec {}", ns.name), "eth0");
    let m = w.mark();
    sh(&format!("ip netns del {}", ns.name));
    // The namespace's destruction takes its veth pair with it: the host end
    // must go (a socket inside the namespace would keep both alive).
    let home = w.w.home();
    let gone = w.wait(m, "the host end's delete", |e| is_link(e, home, "deleted", &ns.host_veth));
    assert_eq!(gone.portid, 0, "kernel-initiated");
    w.wait(m, "the namespace gone", |e| e.ns == h && e.kind == EventKind::NamespaceGone);
    assert!(!Path::new(&format!("/sys/class/net/{}", ns.host_veth)).exists());
    assert_eq!(w.w.name(home, hv).as_deref(), Some(ns.host_veth.as_str()), "named from its tombstone");
    assert_eq!(w.w.name(h, e0).as_deref(), Some("eth0"), "the gone namespace's links too");
}

#[test]
fn a_hostile_link_name_is_in_the_table_and_escaped_in_text() {
    let lab = Lab::new(1);
    let ns = &lab.ns[0];
    let mut w = W::start();
    let h = w.handle(ns);
    // Not UTF-8, with a terminal escape and a C1 control: any byte but `/`,
    // `:` and white space is a valid interface name.
    let raw: &[u8] = b"e\x1b[2J\xff\xc2\x9b";
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let helper = format!("{}/helpers/hostile_name.py", env!("CARGO_MANIFEST_DIR"));
    let m = w.mark();
    let out = ns.sh(&format!("python3 {helper} 78 {hex} 0"));
    assert_eq!(out.lines().nth(1).map(str::trim), Some("0"), "the kernel refused the link: {out}");
    let want = String::from_utf8_lossy(raw).into_owned();
    let e = w.wait(m, "the hostile link", |e| e.ns == h && link_of(e).is_some_and(|(k, l)| k == "added" && l.name == want));
    let text = w.w.render(&e);
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.contains("e\\x1b[2J\u{fffd}\\x9b: "), "{text}");
    let idx = link_of(&e).map(|(_, l)| l.ifindex).expect("link");
    assert_eq!(w.w.index(h, &want), Some(idx));
    w.agrees(h, &format!("ip -n {}", ns.name));
}

fn count_dir(p: &str) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn an_overrun_is_counted_and_the_table_reads_everything_again() {
    let id = unique_id();
    let n = 100;
    let file = |verb: &str| {
        let cmds: String = (0..n)
            .map(|i| if verb == "add" { format!("link add wo{id}{i:03} type veth peer name wp{id}{i:03}\n") } else { format!("link del wo{id}{i:03}\n") })
            .collect();
        let f = std::env::temp_dir().join(format!("watch-batch-{id}-{verb}"));
        std::fs::write(&f, cmds).expect("batch file");
        f.display().to_string()
    };
    let (add, del) = (file("add"), file("del"));
    let _c = Cleanup(vec![format!("rm -f {add} {del}"), format!("ip -force -batch {del}")]);
    // A receive buffer far too small for a burst, and a reader that holds
    // the table while the burst happens: the kernel must drop notifications.
    let cfg = Config { rcvbuf: 4096, channel: 64, ..Config::default() };
    let (w, _rx) = Watcher::start(cfg).expect("watcher starts");
    let home = w.home();
    std::thread::scope(|s| {
        s.spawn(|| stall(&w, Duration::from_millis(1500)));
        std::thread::sleep(Duration::from_millis(100));
        sh(&format!("ip -force -batch {add}"));
    });
    assert!(wait_until(WAIT, || w.stats().overruns > 0), "no overrun: {:?}", w.stats());
    // After the re-read (spaced out, so it may come a moment later) every
    // link is there, by name.
    let all_there = |there: bool| (0..n).all(|i| ["wo", "wp"].iter().all(|p| w.index(home, &format!("{p}{id}{i:03}")).is_some() == there));
    let ok = wait_until(WAIT, || w.stats().resyncs > 0 && all_there(true));
    assert!(ok, "links missing after the overrun: {:?}", w.stats());
    // The re-read fills the table first and hands its events out after, so
    // the count of events the full channel dropped may come a moment later.
    assert!(wait_until(WAIT, || w.stats().events_dropped > 0), "{:?}", w.stats());
    // Deleted in another burst: gone from the live table, still named.
    let ia = w.index(home, &format!("wo{id}000")).expect("live");
    std::thread::scope(|s| {
        s.spawn(|| stall(&w, Duration::from_millis(1500)));
        std::thread::sleep(Duration::from_millis(100));
        sh(&format!("ip -force -batch {del}"));
    });
    assert!(wait_until(WAIT, || w.stats().overruns >= 2 && all_there(false)), "{:?}", w.stats());
    assert_eq!(w.name(home, ia), Some(format!("wo{id}000")), "named from the tombstone the re-read made");
}

#[test]
fn a_burst_is_followed_without_loss() {
    let id = unique_id();
    let n = 200;
    let file = |verb: &str| {
        let cmds: String = (0..n).map(|i| format!("link {verb} wq{id}{i:03}{}\n", if verb == "add" { format!(" type veth peer name wr{id}{i:03}") } else { String::new() })).collect();
        let f = std::env::temp_dir().join(format!("watch-burst-{id}-{verb}"));
        std::fs::write(&f, cmds).expect("batch file");
        f.display().to_string()
    };
    let (add, del) = (file("add"), file("del"));
    let _c = Cleanup(vec![format!("rm -f {add} {del}"), format!("ip -force -batch {del}")]);
    let mut w = W::start();
    let home = w.w.home();
    // One link: from `ip` returning to the event.
    let m = w.mark();
    let t0 = Instant::now();
    sh(&format!("ip link add wq{id}x type veth peer name wr{id}x && ip link del wq{id}x"));
    let sh_done = t0.elapsed();
    w.wait(m, "one delete", |e| is_link(e, home, "deleted", &format!("wr{id}x")));
    let one = t0.elapsed();
    // 200 veth pairs at once, then deleted at once.
    let m = w.mark();
    let t0 = Instant::now();
    sh(&format!("ip -force -batch {add}"));
    let made = t0.elapsed();
    assert!(wait_until(WAIT, || (0..n).all(|i| w.w.index(home, &format!("wr{id}{i:03}")).is_some())));
    let listed = t0.elapsed();
    let t1 = Instant::now();
    sh(&format!("ip -force -batch {del}"));
    let deleted_in = t1.elapsed();
    let last = format!("wr{id}{:03}", n - 1);
    w.wait(m, "the last delete", |e| is_link(e, home, "deleted", &last));
    let all = t1.elapsed();
    let events = w.mark() - m;
    let s = w.w.stats();
    eprintln!(
        "one veth pair add+del: ip took {sh_done:?}, its last event read after {one:?}; {n} pairs: made in {made:?}, all in the table \
         after {listed:?}; deleted in {deleted_in:?}, last delete read after {all:?}; {events} events; stats {s:?}"
    );
    assert_eq!((s.overruns, s.events_dropped, s.links_refused), (0, 0, 0), "{s:?}");
    let added = w.seen[m..].iter().filter(|e| e.ns == home && matches!(&e.kind, EventKind::LinkAdded(v) if v.link.name.starts_with(&format!("wr{id}")))).count();
    let deleted = w.seen[m..].iter().filter(|e| e.ns == home && matches!(&e.kind, EventKind::LinkDeleted(v) if v.link.name.starts_with(&format!("wr{id}")))).count();
    assert_eq!((added, deleted), (n, n), "every add and delete, once");
}

#[test]
fn stopping_leaves_no_thread_and_no_fd() {
    let tasks = count_dir("/proc/self/task");
    let fds = count_dir("/proc/self/fd");
    for _ in 0..3 {
        let (w, rx) = Watcher::start(Config::default()).expect("watcher starts");
        assert_eq!(count_dir("/proc/self/task"), tasks + 1);
        drop(w);
        drop(rx);
    }
    assert_eq!(count_dir("/proc/self/task"), tasks);
    assert_eq!(count_dir("/proc/self/fd"), fds);
}

/// `ip monitor` in one namespace: its lines, once stopped.
struct Monitor(Child, std::path::PathBuf);

impl Monitor {
    fn start(netns: Option<&str>, id: &str) -> Monitor {
        let out = std::env::temp_dir().join(format!("watch-monitor-{id}-{}", netns.unwrap_or("host")));
        let f = std::fs::File::create(&out).expect("monitor output");
        let mut c = Command::new("ip");
        if let Some(n) = netns {
            c.args(["-n", n]);
        }
        let child = c.args(["monitor", "link", "address", "route"]).stdout(f).stderr(Stdio::null()).spawn().expect("ip monitor");
        Monitor(child, out)
    }

    fn stop(mut self) -> Vec<String> {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let text = std::fs::read_to_string(&self.1).unwrap_or_default();
        let _ = std::fs::remove_file(&self.1);
        // Continuation lines (link/ether ..., valid_lft ...) are indented.
        text.lines().filter(|l| !l.starts_with(char::is_whitespace) && !l.is_empty()).map(str::to_string).collect()
    }
}

/// What a line is about, the same for `ip monitor`'s lines and the
/// watcher's: links by index and name, addresses by index, device and
/// address, routes by type, destination, device and table.
fn key(line: &str) -> String {
    let (del, rest) = match line.strip_prefix("Deleted ") {
        Some(r) => ("Deleted ", r),
        None => ("", line),
    };
    if let Some((idx, body)) = rest.split_once(": ")
        && idx.chars().all(|c| c.is_ascii_digit())
    {
        if body.contains(": <") {
            let name = body.split(['@', ':']).next().unwrap_or("");
            return format!("{del}link {idx} {name}");
        }
        let mut t = body.split_whitespace();
        let dev = t.next().unwrap_or("");
        let fam = t.next().unwrap_or("");
        let addr = t.next().unwrap_or("");
        return format!("{del}addr {idx} {dev} {fam} {addr}");
    }
    let t: Vec<&str> = rest.split_whitespace().collect();
    let after = |w: &str| t.iter().position(|x| *x == w).and_then(|i| t.get(i + 1)).copied().unwrap_or("-");
    let typed = ["local", "broadcast", "anycast", "multicast", "blackhole", "unreachable", "prohibit", "throw", "nat"].contains(&t.first().copied().unwrap_or(""));
    let (ty, dst) = if typed { (t[0], t.get(1).copied().unwrap_or("")) } else { ("unicast", t.first().copied().unwrap_or("")) };
    format!("{del}route {ty} {dst} dev {} table {}", after("dev"), after("table"))
}

#[test]
fn every_line_ip_monitor_prints_has_its_event() {
    let lab = Lab::new(0);
    let x = lab.extra_ns("m");
    let id = unique_id();
    let (v, br) = (format!("wmv{id}"), format!("wmb{id}"));
    let _c = Cleanup(vec![format!("ip link del {v}"), format!("ip link del {br}")]);
    let mut w = W::start();
    let hx = w.handle(&x);
    let home = w.w.home();
    let mon_host = Monitor::start(None, &id);
    let mon_x = Monitor::start(Some(&x.name), &id);
    std::thread::sleep(Duration::from_millis(300));
    let m = w.mark();
    let n = &x.name;
    sh(&format!(
        "ip link add {br} type bridge && ip link set {br} up && \
         ip link add {v} type veth peer name eth0 netns {n} && ip link set {v} master {br} up && \
         ip -n {n} addr add 10.216.0.2/24 dev eth0 && ip -n {n} link set eth0 up && ip -n {n} link set lo up && \
         ip -n {n} route add default via 10.216.0.1 && ip addr add 10.216.0.1/24 dev {br} && \
         ip -n {n} link add tmp0 type veth peer name tmp1 && ip -n {n} link set tmp1 netns {me} && ip link del tmp1 && \
         ip -n {n} addr del 10.216.0.2/24 dev eth0 && ip link set {v} nomaster && ip link del {v} && ip link del {br}",
        me = std::process::id()
    ));
    std::thread::sleep(Duration::from_millis(700));
    let (host_lines, x_lines) = (mon_host.stop(), mon_x.stop());
    w.pump();
    let ours = |h: NsHandle| -> Vec<String> { w.seen[m..].iter().filter(|e| e.ns == h).map(|e| key(&w.w.render(e))).collect() };
    let mut checked = 0;
    for (label, h, lines) in [("host", home, &host_lines), (x.name.as_str(), hx, &x_lines)] {
        let mut pool = ours(h);
        let mut missing = Vec::new();
        for l in lines.iter() {
            let k = key(l);
            match pool.iter().position(|p| *p == k) {
                Some(i) => {
                    pool.remove(i);
                    checked += 1;
                }
                None => missing.push(format!("{l}\n    key: {k}")),
            }
        }
        let all: Vec<String> = w.seen[m..].iter().filter(|e| e.ns == h).map(|e| w.w.render(e)).collect();
        assert!(missing.is_empty(), "in {label}, ip monitor printed lines with no event:\n{}\nthe watcher's:\n{}", missing.join("\n"), all.join("\n"));
    }
    eprintln!("ip monitor: {} host lines, {} {} lines, all {checked} matched", host_lines.len(), x_lines.len(), x.name);
    assert!(host_lines.iter().any(|l| l.starts_with("Deleted ") && l.contains(&v)), "the scenario's delete was seen: {host_lines:?}");
    assert!(x_lines.iter().any(|l| l.contains("inet 10.216.0.2/24")), "{x_lines:?}");
    assert!(checked >= 20, "only {checked} lines compared");
}
