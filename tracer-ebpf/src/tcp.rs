//! `tracer tcp`: TCP state changes (`inet_sock_set_state`),
//! retransmissions, resets sent and received, sampled RTT readings
//! (`tcp_probe`) and destroyed sockets, as BTF tracepoints, each as one
//! [`TcpRecord`] with the connection's addresses, RTT and counters read
//! from its socket (the same fields on every kernel, where the classic
//! tracepoints' records changed shape).
//!
//! `tcp_probe` fires for every segment a connection receives: it leaves
//! after one LRU lookup unless the connection's last reading is older than
//! `rtt_interval_ns`, and remembers a connection it does not want (other
//! namespace) as never due. In `top` mode only
//! retransmissions and resets are counted, per namespace and interface
//! (the one the socket's route goes out of) and per flow, and nothing is
//! sent.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_ns,
    macros::{btf_tracepoint, map},
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuHashMap},
    programs::BtfTracePointContext,
};
use tracer_common::{
    EventKind, LostSource,
    packet::{DIR_EGRESS, PacketKey, key_flags},
    tcp::{AF_INET, AF_INET6, TCP_COUNTS_MAX, TCP_FLOWS_MAX, TCP_RTT_SEEN_MAX, TcpCounts, TcpKey, TcpRecord, flags},
    top::FlowKey,
    tp::{MISSING, mode},
};

use crate::{
    kernel::{EVENTS, atomic_add, count_lost, kread_or_zero, offsets},
    obs::{cfg, header, parse_skb, selected, sk_netns, skb_data, sko, wakeup_flags},
};

#[map(name = "TCP_COUNTS")]
static TCP_COUNTS: PerCpuHashMap<TcpKey, TcpCounts> = PerCpuHashMap::with_max_entries(TCP_COUNTS_MAX, 0);

#[map(name = "TCP_FLOWS")]
static TCP_FLOWS: LruPerCpuHashMap<FlowKey, TcpCounts> = LruPerCpuHashMap::with_max_entries(TCP_FLOWS_MAX, 0);

/// Socket address -> when `tcp_probe` last sent its reading ([`NEVER`]: a
/// socket not wanted).
#[map(name = "TCP_RTT_SEEN")]
static TCP_RTT_SEEN: LruHashMap<u64, u64> = LruHashMap::with_max_entries(TCP_RTT_SEEN_MAX, 0);

const NEVER: u64 = u64::MAX;
const IPPROTO_TCP: u16 = 6;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// Which counter of [`TcpCounts`] an event adds to.
#[derive(Clone, Copy)]
enum Counter {
    Retransmit,
    ResetSent,
    ResetReceived,
}

fn ptr(ctx: &BtfTracePointContext, n: usize) -> *const u8 {
    ctx.arg::<u64>(n) as *const u8
}

/// `inet_sock_set_state(sk, oldstate, newstate)`.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn tcp_set_state(ctx: BtfTracePointContext) -> i32 {
    let _ = try_set_state(ptr(&ctx, 0), ctx.arg::<i32>(1), ctx.arg::<i32>(2));
    0
}

/// `tcp_retransmit_skb(sk, skb)`: Linux < 6.14 (fired for sent ones only).
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_retransmit(ptr(&ctx, 0), ptr(&ctx, 1), 0);
    0
}

/// `tcp_retransmit_skb(sk, skb, err)`: Linux >= 6.14 (fired for failed
/// attempts too).
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_err(ctx: BtfTracePointContext) -> i32 {
    let _ = try_retransmit(ptr(&ctx, 0), ptr(&ctx, 1), ctx.arg::<i32>(2));
    0
}

/// `tcp_send_reset(sk, skb)`: Linux < 6.10.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    let _ = try_send_reset(ptr(&ctx, 0), ptr(&ctx, 1), u32::MAX);
    0
}

/// `tcp_send_reset(sk, skb, reason)`: Linux >= 6.10, `sk` may be NULL.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset_reason(ctx: BtfTracePointContext) -> i32 {
    let _ = try_send_reset(ptr(&ctx, 0), ptr(&ctx, 1), ctx.arg::<u32>(2));
    0
}

/// `tcp_receive_reset(sk)`.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_recv_reset(ctx: BtfTracePointContext) -> i32 {
    let _ = try_recv_reset(ptr(&ctx, 0));
    0
}

/// `tcp_probe(sk, skb)`.
#[btf_tracepoint(function = "tcp_probe")]
pub fn tcp_probe(ctx: BtfTracePointContext) -> i32 {
    let _ = try_probe(ptr(&ctx, 0));
    0
}

/// `tcp_destroy_sock(sk)`.
#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn tcp_destroy(ctx: BtfTracePointContext) -> i32 {
    let _ = try_destroy(ptr(&ctx, 0));
    0
}

/// A record with the socket's addresses and state.
#[inline(always)]
fn from_sock(sk: *const u8) -> TcpRecord {
    let o = offsets();
    let s = sko();
    let mut r = TcpRecord { skaddr: sk as u64, reason: u32::MAX, ..TcpRecord::default() };
    r.family = kread_or_zero(sk, o.sk_family);
    r.sport = u16::from_be(kread_or_zero(sk, s.inet_sport));
    if r.sport == 0 {
        r.sport = kread_or_zero(sk, s.sk_num);
    }
    r.dport = u16::from_be(kread_or_zero(sk, s.sk_dport));
    r.new_state = kread_or_zero(sk, s.sk_state);
    if r.family == AF_INET {
        r.saddr[..4].copy_from_slice(&kread_or_zero::<[u8; 4]>(sk, s.sk_rcv_saddr));
        r.daddr[..4].copy_from_slice(&kread_or_zero::<[u8; 4]>(sk, s.sk_daddr));
    } else if r.family == AF_INET6 {
        r.saddr = kread_or_zero(sk, s.sk_v6_rcv_saddr);
        r.daddr = kread_or_zero(sk, s.sk_v6_daddr);
    }
    r
}

/// The record's connection as a packet filter key (the socket's own
/// address as source).
#[inline(always)]
fn key_of(r: &TcpRecord) -> PacketKey {
    let mut k = PacketKey { direction: DIR_EGRESS, proto: IPPROTO_TCP as u8, ..PacketKey::default() };
    k.sport = r.sport.to_be_bytes();
    k.dport = r.dport.to_be_bytes();
    k.src = r.saddr;
    k.dst = r.daddr;
    if r.family == AF_INET {
        k.flags = key_flags::IP4 | key_flags::PORTS;
        k.ethertype = ETH_P_IP.to_be_bytes();
    } else {
        k.flags = key_flags::IP6 | key_flags::PORTS;
        k.ethertype = ETH_P_IPV6.to_be_bytes();
    }
    k
}

/// Reads the smoothed RTT (µs) from the `tcp_sock`.
#[inline(always)]
fn read_srtt(sk: *const u8, r: &mut TcpRecord) {
    let off = sko().tp_srtt_us;
    if off != MISSING {
        r.srtt_us = kread_or_zero::<u32>(sk, off) >> 3;
        r.flags |= flags::SRTT;
    }
}

/// Sends a record; a full ring is a loss of `tcp`.
#[inline(never)]
fn send(kind: EventKind, netns: u32, r: &TcpRecord) {
    let Some(mut e) = EVENTS.reserve::<Rec>(0) else {
        count_lost(LostSource::Tcp);
        return;
    };
    let hdr = header(kind, netns, size_of::<TcpRecord>() as u32);
    let p = e.as_mut_ptr();
    // SAFETY: the reserved entry holds a whole Rec; both parts are
    // written before it is submitted.
    unsafe {
        core::ptr::addr_of_mut!((*p).hdr).write(hdr);
        core::ptr::addr_of_mut!((*p).rec).write(*r);
    }
    e.submit(wakeup_flags());
}

#[repr(C)]
struct Rec {
    hdr: tracer_common::EventHeader,
    rec: TcpRecord,
}

/// A socket's event, in events mode: checked against the selection and
/// the filter, then sent.
#[inline(always)]
fn report(kind: EventKind, sk: *const u8, fill: impl FnOnce(&mut TcpRecord)) -> Option<()> {
    if sk.is_null() {
        return None;
    }
    let netns = sk_netns(sk);
    if !selected(netns) {
        return None;
    }
    let mut r = from_sock(sk);
    fill(&mut r);
    send(kind, netns, &r);
    Some(())
}

/// `tracer top`: adds `n` to `which` for the key's namespace and
/// interface, and for the flow.
#[inline(never)]
fn count(key: TcpKey, r: &TcpRecord, which: Counter, n: u64) {
    // Atomic: the TCP programs are several, and one may interrupt another
    // (a softirq retransmission during a task's reset) on the same slot.
    let bump = |p: *mut TcpCounts| {
        // SAFETY: a slot of this CPU's value, valid for the program run.
        unsafe {
            match which {
                Counter::Retransmit => atomic_add(core::ptr::addr_of_mut!((*p).retransmits), n),
                Counter::ResetSent => atomic_add(core::ptr::addr_of_mut!((*p).resets_sent), n),
                Counter::ResetReceived => atomic_add(core::ptr::addr_of_mut!((*p).resets_received), n),
            }
        }
    };
    let one = match which {
        Counter::Retransmit => TcpCounts { retransmits: n, ..TcpCounts::default() },
        Counter::ResetSent => TcpCounts { resets_sent: n, ..TcpCounts::default() },
        Counter::ResetReceived => TcpCounts { resets_received: n, ..TcpCounts::default() },
    };
    let fkey = FlowKey { netns_ino: key.netns_ino, ifindex: key.ifindex, pkt: key_of(r) };
    match TCP_FLOWS.get_ptr_mut(&fkey) {
        Some(p) => bump(p),
        None => {
            let _ = TCP_FLOWS.insert(&fkey, &one, 0);
        }
    }
    match TCP_COUNTS.get_ptr_mut(&key) {
        Some(p) => bump(p),
        None => {
            if TCP_COUNTS.insert(&key, &one, BPF_NOEXIST as u64).is_err() {
                // Created by another CPU meanwhile, or the table is full.
                match TCP_COUNTS.get_ptr_mut(&key) {
                    Some(p) => bump(p),
                    None => count_lost(LostSource::TcpStats),
                }
            }
        }
    }
}

/// In `top` mode: counts `n` for the socket when selected and not filtered out.
#[inline(always)]
fn count_sock(sk: *const u8, which: Counter, n: u64) -> Option<()> {
    if sk.is_null() {
        return None;
    }
    let netns = sk_netns(sk);
    if !selected(netns) {
        return None;
    }
    let r = from_sock(sk);
    count(TcpKey { netns_ino: netns, ifindex: route_ifindex(sk, netns, r.new_state) }, &r, which, n);
    Some(())
}

const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;

/// The interface a full socket's cached route goes out of
/// (`sk->sk_dst_cache->dev`), 0 when it has none, the route's device is in
/// another namespace, or the socket is a time-wait or request socket (only
/// `sock_common` is theirs: the field's offset is not in them).
#[inline(always)]
fn route_ifindex(sk: *const u8, netns: u32, state: u8) -> u32 {
    let s = sko();
    if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV || s.sk_dst_cache == MISSING || s.dst_dev == MISSING {
        return 0;
    }
    let dst = kread_or_zero::<u64>(sk, s.sk_dst_cache) as *const u8;
    if dst.is_null() {
        return 0;
    }
    let dev = kread_or_zero::<u64>(dst, s.dst_dev) as *const u8;
    if dev.is_null() || crate::obs::dev_netns(dev) != netns {
        return 0;
    }
    kread_or_zero(dev, s.dev_ifindex)
}

/// Segments in a retransmitted skb (`tcp_skb_pcount`), at least 1.
#[inline(always)]
fn segs_of(skb: *const u8) -> Option<u32> {
    let s = sko();
    if skb.is_null() || s.skb_cb == MISSING || s.tcb_gso_segs == MISSING {
        return None;
    }
    let n = kread_or_zero::<u16>(skb, s.skb_cb + s.tcb_gso_segs) as u32;
    Some(if n == 0 { 1 } else { n })
}

#[inline(always)]
fn try_set_state(sk: *const u8, old: i32, new: i32) -> Option<()> {
    if cfg().tcp != mode::EVENTS || sk.is_null() {
        return None;
    }
    // The tracepoint serves every inet protocol (SCTP, MPTCP too).
    let proto: u16 = kread_or_zero(sk, offsets().sk_protocol);
    if proto != IPPROTO_TCP {
        return None;
    }
    report(EventKind::TcpState, sk, |r| {
        r.old_state = old as u8;
        r.new_state = new as u8;
        read_srtt(sk, r);
    })
}

#[inline(always)]
fn try_retransmit(sk: *const u8, skb: *const u8, err: i32) -> Option<()> {
    let m = cfg().tcp;
    if m == mode::COUNT {
        // Segments sent again, as the kernel's TcpRetransSegs counts them
        // (failed attempts are not retransmissions).
        if err != 0 {
            return None;
        }
        return count_sock(sk, Counter::Retransmit, segs_of(skb).unwrap_or(1) as u64);
    }
    if m != mode::EVENTS {
        return None;
    }
    report(EventKind::TcpRetransmit, sk, |r| {
        let s = sko();
        if !skb.is_null() && s.skb_cb != MISSING && s.tcb_seq != MISSING {
            r.seq = kread_or_zero(skb, s.skb_cb + s.tcb_seq);
            r.flags |= flags::SEQ;
        }
        if let Some(n) = segs_of(skb) {
            r.segs = n;
            r.flags |= flags::SEGS;
        }
        r.err = err;
        if s.tp_total_retrans != MISSING {
            r.total_retrans = kread_or_zero(sk, s.tp_total_retrans);
        }
        read_srtt(sk, r);
    })
}

#[inline(always)]
fn try_send_reset(sk: *const u8, skb: *const u8, reason: u32) -> Option<()> {
    let m = cfg().tcp;
    if m == mode::OFF {
        return None;
    }
    if !sk.is_null() {
        if m == mode::COUNT {
            return count_sock(sk, Counter::ResetSent, 1);
        }
        return report(EventKind::TcpResetSent, sk, |r| r.reason = reason);
    }
    // No socket (Linux >= 6.10): a reset answering a segment no socket
    // took. Its namespace is the segment's device's, its addresses the
    // segment's, turned around.
    if skb.is_null() {
        return None;
    }
    let dev = kread_or_zero::<u64>(skb, offsets().skb_dev) as *const u8;
    let netns = crate::obs::dev_netns(dev);
    if !selected(netns) {
        return None;
    }
    let mut key = PacketKey::default();
    parse_skb(&skb_data(skb), &mut key);
    if key.flags & key_flags::PORTS == 0 || key.proto != IPPROTO_TCP as u8 {
        return None;
    }
    let v4 = key.flags & key_flags::IP4 != 0;
    let r = TcpRecord {
        skaddr: 0,
        saddr: key.dst,
        daddr: key.src,
        sport: u16::from_be_bytes(key.dport),
        dport: u16::from_be_bytes(key.sport),
        family: if v4 { AF_INET } else { AF_INET6 },
        reason,
        flags: flags::NO_SOCK,
        ..TcpRecord::default()
    };
    if m == mode::COUNT {
        let key = TcpKey { netns_ino: netns, ifindex: kread_or_zero(dev, sko().dev_ifindex) };
        count(key, &r, Counter::ResetSent, 1);
    } else {
        send(EventKind::TcpResetSent, netns, &r);
    }
    Some(())
}

#[inline(always)]
fn try_recv_reset(sk: *const u8) -> Option<()> {
    let m = cfg().tcp;
    if m == mode::COUNT {
        return count_sock(sk, Counter::ResetReceived, 1);
    }
    if m != mode::EVENTS {
        return None;
    }
    report(EventKind::TcpResetReceived, sk, |r| read_srtt(sk, r))
}

#[inline(always)]
fn try_probe(sk: *const u8) -> Option<()> {
    let c = cfg();
    if c.tcp != mode::EVENTS || sk.is_null() {
        return None;
    }
    let skaddr = sk as u64;
    // SAFETY: helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a lookup; the value is copied out at once.
    if let Some(last) = unsafe { TCP_RTT_SEEN.get(&skaddr) }.copied()
        && (last == NEVER || now.wrapping_sub(last) < c.rtt_interval_ns)
    {
        return None;
    }
    let netns = sk_netns(sk);
    let mut r = from_sock(sk);
    if !selected(netns) {
        let _ = TCP_RTT_SEEN.insert(&skaddr, &NEVER, 0);
        return None;
    }
    let _ = TCP_RTT_SEEN.insert(&skaddr, &now, 0);
    read_srtt(sk, &mut r);
    let s = sko();
    if s.tp_snd_cwnd != MISSING {
        r.snd_cwnd = kread_or_zero(sk, s.tp_snd_cwnd);
    }
    send(EventKind::TcpRtt, netns, &r);
    Some(())
}

#[inline(always)]
fn try_destroy(sk: *const u8) -> Option<()> {
    if cfg().tcp != mode::EVENTS || sk.is_null() {
        return None;
    }
    // The address may serve a new socket next: its sampling starts over.
    let _ = TCP_RTT_SEEN.remove(&(sk as u64));
    report(EventKind::TcpDestroy, sk, |r| {
        let s = sko();
        read_srtt(sk, r);
        if s.tp_bytes_acked != MISSING && s.tp_bytes_received != MISSING && s.tp_total_retrans != MISSING {
            r.bytes_acked = kread_or_zero(sk, s.tp_bytes_acked);
            r.bytes_received = kread_or_zero(sk, s.tp_bytes_received);
            r.total_retrans = kread_or_zero(sk, s.tp_total_retrans);
            r.flags |= flags::BYTES;
        }
    })
}
