//! Process attribution without kprobes: programs on the cgroup v2 root
//! (every process on the host is under it) and `sock_ops`, which see inet
//! sockets being created, bound, connected, used to send unconnected UDP,
//! listened on, accepted and closed. The process-context hooks record the
//! task as the socket's owner in `SOCK_OWNERS` (cookie -> owner) and emit a
//! `SockEvent`; the TC programs only read each packet's socket cookie,
//! and userspace joins. Every program here lets the operation go on
//! (returns 1): they observe, never decide.
//!
//! Design (see tracer-common's `sock` module): the owner of a socket is the
//! task that last created, bound, connected it or sent an unconnected UDP
//! datagram on it; a TCP socket accepted from a listener gets the
//! listener's owner in userspace. TCP and connected UDP sends have no
//! cgroup hook, so a connected socket passed to another process stays its
//! connector's.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_get_current_task, bpf_get_socket_cookie, bpf_probe_read_kernel},
    },
    macros::{cgroup_sock, cgroup_sock_addr, map, sock_ops},
    maps::LruHashMap,
    programs::{SockAddrContext, SockContext, SockOpsContext, TcContext},
};
use tracer_common::{
    EventHeader, EventKind, LostSource,
    packet::{DIR_INGRESS, PacketKey, key_flags},
    sock::{
        ProcConfig, RELEASE_GRACE_NS, SOCK_OWNERS_MAX, SOCK_SEL_PORTS_MAX, SelPort, SockEvent, SockOwner, flags,
        op,
    },
};

use crate::{
    kernel::{EVENTS, count_lost, is_self, kread, kread_or_zero, offsets, task_header},
    tc::device_netns,
};

#[map(name = "SOCK_OWNERS")]
pub static SOCK_OWNERS: LruHashMap<u64, SockOwner> = LruHashMap::with_max_entries(SOCK_OWNERS_MAX, 0);

#[map(name = "SOCK_SEL_PORTS")]
pub static SOCK_SEL_PORTS: LruHashMap<SelPort, u64> = LruHashMap::with_max_entries(SOCK_SEL_PORTS_MAX, 0);

#[unsafe(no_mangle)]
static PROC_CONFIG: ProcConfig = ProcConfig { cookies: 0, select: 0, sel_pid: 0, sel_comm_on: 0, sel_comm: [0; 16] };

#[inline(always)]
pub fn proc_config() -> ProcConfig {
    // SAFETY: a read of a global; volatile so the placeholder is not
    // folded, since userspace rewrites it before loading.
    unsafe { core::ptr::read_volatile(&PROC_CONFIG) }
}

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u8 = 6;

// sock_ops callbacks the kernel makes without being asked for them.
const BPF_SOCK_OPS_TCP_CONNECT_CB: u32 = 3;
const BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: u32 = 5;
const BPF_SOCK_OPS_TCP_LISTEN_CB: u32 = 11;

/// A ring record: the common header, then the payload.
#[repr(C)]
struct Record {
    hdr: EventHeader,
    ev: SockEvent,
}

/// The current task as an owner; `selected` by `--process`/`--comm`.
#[inline(always)]
fn current_owner(hdr: &EventHeader) -> SockOwner {
    let cfg = proc_config();
    let tgid = (hdr.pid_tgid >> 32) as u32;
    let selected = (cfg.sel_pid != 0 && cfg.sel_pid == tgid) || (cfg.sel_comm_on != 0 && cfg.sel_comm == hdr.comm);
    SockOwner {
        tgid,
        tid: hdr.pid_tgid as u32,
        uid: hdr.uid_gid as u32,
        lport: 0,
        selected: selected as u8,
        _pad: 0,
        start_ns: task_start_ns(),
        cgroup_id: hdr.cgroup_id,
        released_ns: 0,
        comm: hdr.comm,
    }
}

/// The current task's `start_boottime`, 0 when unknown.
#[inline(always)]
fn task_start_ns() -> u64 {
    // SAFETY: helper call; the pointer is only read through probe_read.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    kread_or_zero::<u64>(task, offsets().task_start_boottime)
}

/// The socket behind a `bpf_sock_addr` or `bpf_sock_ops` context: the
/// kernel's context structs (`bpf_sock_addr_kern`, `bpf_sock_ops_kern`)
/// both start with `struct sock *sk`.
#[inline(always)]
fn ctx_sk(ctx: *const core::ffi::c_void) -> *const u8 {
    let mut sk: u64 = 0;
    // SAFETY: the helper reads 8 bytes at the context's start into `sk`
    // (zeroed on failure).
    unsafe { bpf_probe_read_kernel(&mut sk as *mut u64 as *mut _, 8, ctx) };
    sk as *const u8
}

/// A `struct sock *` held in a register the verifier types as a socket or
/// context pointer, turned into a plain number it lets us add offsets to
/// (by copying it through the stack with a helper).
#[inline(always)]
fn sk_scalar(p: *const core::ffi::c_void) -> *const u8 {
    let slot = [p as u64];
    let mut out: u64 = 0;
    // SAFETY: reads 8 bytes of our own stack into `out`.
    unsafe { bpf_probe_read_kernel(&mut out as *mut u64 as *mut _, 8, slot.as_ptr() as *const _) };
    out as *const u8
}

/// Inode of a socket's network namespace: `sk->__sk_common.skc_net->ns.inum`.
#[inline(always)]
fn sk_netns(sk: *const u8) -> u32 {
    let o = offsets();
    let Some(net) = kread::<*const u8>(sk, o.sk_net) else { return 0 };
    kread_or_zero::<u32>(net, o.net_inum)
}

#[inline(always)]
fn emit(mut hdr: EventHeader, ev: SockEvent) {
    hdr.kind = EventKind::Sock as u32;
    hdr.payload_len = core::mem::size_of::<SockEvent>() as u32;
    let rec = Record { hdr, ev };
    // Socket events are few; the reader drains the ring on its own clock.
    if EVENTS.output::<Record>(&rec, BPF_RB_NO_WAKEUP as u64).is_err() {
        count_lost(LostSource::Sock);
    }
}

/// A header with no task in it (softirq context, or a `sock_ops` program
/// the kernel lets call none of the current-task helpers): only the two
/// helpers every program type may call, so it loads everywhere.
#[inline(always)]
fn bare_header(netns_ino: u32) -> EventHeader {
    EventHeader {
        kind: 0,
        // SAFETY: plain helper calls.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid: 0,
        uid_gid: 0,
        cgroup_id: 0,
        netns_ino,
        payload_len: 0,
        comm: [0; 16],
    }
}

/// Notes the local port of a selected socket, so the packet programs
/// keep what arrives for it (`--process`/`--comm`).
#[inline(always)]
fn note_selected_port(cookie: u64, netns_ino: u32, protocol: u8, lport: u16) {
    if proc_config().select == 0 || lport == 0 {
        return;
    }
    let Some(o) = (unsafe { SOCK_OWNERS.get(&cookie) }) else { return };
    if o.selected == 0 {
        return;
    }
    let key = SelPort { netns_ino, port: lport, protocol, _pad: 0 };
    let _ = SOCK_SEL_PORTS.insert(&key, &cookie, BPF_ANY as u64);
}

#[inline(always)]
fn ip4(a: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a.to_ne_bytes());
    out
}

#[inline(always)]
fn ip6(a: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = a[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

// ---- cgroup/sock: create, bind, release -------------------------------

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    if !is_self() {
        on_create(&ctx);
    }
    1
}

#[inline(always)]
fn on_create(ctx: &SockContext) {
    // SAFETY: the context is the kernel's socket, read through bpf_sock.
    let (family, protocol) = unsafe { ((*ctx.sock).family, (*ctx.sock).protocol) };
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock as *mut _) };
    let hdr = task_header(0, sk_netns(sk_scalar(ctx.sock as *const _)), 0);
    let owner = current_owner(&hdr);
    let _ = SOCK_OWNERS.insert(&cookie, &owner, BPF_ANY as u64);
    let ev = SockEvent {
        cookie,
        start_ns: owner.start_ns,
        op: op::CREATE,
        flags: flags::TASK | if owner.selected != 0 { flags::SELECTED } else { 0 },
        family: family as u8,
        protocol: protocol as u8,
        ..SockEvent::default()
    };
    emit(hdr, ev);
}

#[cgroup_sock(post_bind4)]
pub fn sock_bind4(ctx: SockContext) -> i32 {
    if !is_self() {
        on_bind(&ctx, false);
    }
    1
}

#[cgroup_sock(post_bind6)]
pub fn sock_bind6(ctx: SockContext) -> i32 {
    if !is_self() {
        on_bind(&ctx, true);
    }
    1
}

#[inline(always)]
fn on_bind(ctx: &SockContext, v6: bool) {
    // SAFETY: the context is the kernel's socket, read through bpf_sock.
    let (family, protocol, lport, laddr) = unsafe {
        let s = &*ctx.sock;
        let a = if v6 { ip6(s.src_ip6) } else { ip4(s.src_ip4) };
        (s.family, s.protocol as u8, s.src_port as u16, a)
    };
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock as *mut _) };
    let netns = sk_netns(sk_scalar(ctx.sock as *const _));
    let hdr = task_header(0, netns, 0);
    let mut owner = current_owner(&hdr);
    owner.lport = lport;
    let _ = SOCK_OWNERS.insert(&cookie, &owner, BPF_ANY as u64);
    note_selected_port(cookie, netns, protocol, lport);
    let ev = SockEvent {
        cookie,
        start_ns: owner.start_ns,
        op: op::BIND,
        flags: flags::TASK | if owner.selected != 0 { flags::SELECTED } else { 0 },
        family: family as u8,
        protocol,
        lport,
        laddr,
        ..SockEvent::default()
    };
    emit(hdr, ev);
}

#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    if !is_self() {
        on_release(&ctx);
    }
    1
}

#[inline(always)]
fn on_release(ctx: &SockContext) {
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock as *mut _) };
    // Kept, marked: TCP sends its last segments after the close, and
    // `--process` must still keep them for the grace period.
    if let Some(o) = SOCK_OWNERS.get_ptr_mut(&cookie) {
        // SAFETY: a value of this map; the field is a plain u64.
        unsafe { (*o).released_ns = bpf_ktime_get_ns() };
    }
    // SAFETY: the context is the kernel's socket, read through bpf_sock.
    let (family, protocol) = unsafe { ((*ctx.sock).family, (*ctx.sock).protocol) };
    let ev = SockEvent { cookie, op: op::RELEASE, family: family as u8, protocol: protocol as u8, ..SockEvent::default() };
    emit(bare_header(0), ev);
}

// ---- cgroup/sock_addr: connect, unconnected UDP send ------------------

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    if !is_self() {
        on_connect(&ctx, false);
    }
    1
}

#[cgroup_sock_addr(connect6)]
pub fn sock_connect6(ctx: SockAddrContext) -> i32 {
    if !is_self() {
        on_connect(&ctx, true);
    }
    1
}

/// The remote address and port (host order) a `connect`/`sendmsg` names.
#[inline(always)]
fn user_addr(ctx: &SockAddrContext, v6: bool) -> ([u8; 16], u16) {
    // SAFETY: fields of the program's own context.
    unsafe {
        let a = &*ctx.sock_addr;
        let addr = if v6 { ip6(a.user_ip6) } else { ip4(a.user_ip4) };
        (addr, u16::from_be(a.user_port as u16))
    }
}

#[inline(always)]
fn on_connect(ctx: &SockAddrContext, v6: bool) {
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
    // SAFETY: fields of the program's own context.
    let (family, protocol) = unsafe { ((*ctx.sock_addr).family, (*ctx.sock_addr).protocol as u8) };
    let (raddr, rport) = user_addr(ctx, v6);
    let netns = sk_netns(ctx_sk(ctx.sock_addr as *const _));
    let hdr = task_header(0, netns, 0);
    let mut owner = current_owner(&hdr);
    if let Some(old) = unsafe { SOCK_OWNERS.get(&cookie) } {
        owner.lport = old.lport;
    }
    let _ = SOCK_OWNERS.insert(&cookie, &owner, BPF_ANY as u64);
    let ev = SockEvent {
        cookie,
        start_ns: owner.start_ns,
        op: op::CONNECT,
        flags: flags::TASK | if owner.selected != 0 { flags::SELECTED } else { 0 },
        family: family as u8,
        protocol,
        rport,
        raddr,
        ..SockEvent::default()
    };
    emit(hdr, ev);
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    if !is_self() {
        on_send(&ctx, false);
    }
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    if !is_self() {
        on_send(&ctx, true);
    }
    1
}

/// Runs on every unconnected UDP send: one map lookup, and an event only
/// when the sending process or the local port differs from what was
/// reported (the port is bound by then: `inet_sendmsg` autobinds first).
#[inline(always)]
fn on_send(ctx: &SockAddrContext, v6: bool) {
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: `sk` of a sock_addr context is never null for these hooks;
    // checked all the same, as the verifier wants.
    let lport = unsafe {
        let sk = (*ctx.sock_addr).__bindgen_anon_1.sk;
        if sk.is_null() { 0 } else { (*sk).src_port as u16 }
    };
    // SAFETY: a value of this map, read as plain integers.
    if let Some(o) = unsafe { SOCK_OWNERS.get(&cookie) }
        && o.tgid == tgid
        && o.lport == lport
    {
        return;
    }
    // SAFETY: fields of the program's own context.
    let (family, protocol) = unsafe { ((*ctx.sock_addr).family, (*ctx.sock_addr).protocol as u8) };
    let (raddr, rport) = user_addr(ctx, v6);
    let netns = sk_netns(ctx_sk(ctx.sock_addr as *const _));
    let hdr = task_header(0, netns, 0);
    let mut owner = current_owner(&hdr);
    owner.lport = lport;
    let _ = SOCK_OWNERS.insert(&cookie, &owner, BPF_ANY as u64);
    note_selected_port(cookie, netns, protocol, lport);
    let ev = SockEvent {
        cookie,
        start_ns: owner.start_ns,
        op: op::SEND,
        flags: flags::TASK | if owner.selected != 0 { flags::SELECTED } else { 0 },
        family: family as u8,
        protocol,
        lport,
        rport,
        raddr,
        ..SockEvent::default()
    };
    emit(hdr, ev);
}

// ---- sock_ops: TCP listen, connect, accept -----------------------------

/// Where the kernel offers `sock_ops` programs the current-task helpers
/// (`bpf_get_current_pid_tgid`, `_uid_gid`, `_cgroup_id`, `_comm`): this
/// machine's 6.18 does. Userspace loads it first.
#[sock_ops]
pub fn sock_tcp_ops(ctx: SockOpsContext) -> u32 {
    let o = ctx.op();
    if o == BPF_SOCK_OPS_TCP_LISTEN_CB || o == BPF_SOCK_OPS_TCP_CONNECT_CB || o == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        on_tcp::<true>(&ctx, o);
    }
    1
}

/// The same without the current-task helpers, for kernels that refuse them
/// to `sock_ops` (6.1's `sock_ops_func_proto` offers none of them, and its
/// verifier stops at the first call: "unknown func
/// bpf_get_current_pid_tgid#14"). Its listen and connect events carry no
/// task: the owner stays the one the cgroup programs recorded for the
/// socket at create, bind or connect, in the same process context.
/// Userspace loads it only when the kernel refuses [`sock_tcp_ops`] for
/// that reason.
#[sock_ops]
pub fn sock_ops_notask(ctx: SockOpsContext) -> u32 {
    let o = ctx.op();
    if o == BPF_SOCK_OPS_TCP_LISTEN_CB || o == BPF_SOCK_OPS_TCP_CONNECT_CB || o == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        on_tcp::<false>(&ctx, o);
    }
    1
}

/// Reads a context field with one load at a constant offset: the verifier
/// refuses a load through a context pointer the compiler moved first.
macro_rules! ctx_field {
    ($ctx:expr, $field:ident) => {
        // SAFETY: a field of the program's own context.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$ctx).$field)) }
    };
}

/// One listen, connect or accept. `TASK`: whether this program may ask
/// for the current task (see [`sock_ops_notask`] for where it may not).
#[inline(always)]
fn on_tcp<const TASK: bool>(ctx: &SockOpsContext, cb: u32) {
    let ops = ctx.ops;
    let family = ctx_field!(ops, family);
    // local_port is in host byte order; remote_port in network order, in
    // the upper 16 bits on little-endian hosts (the kernel loads skc_dport
    // and shifts it left by 16), the lower ones elsewhere.
    let lport = ctx_field!(ops, local_port) as u16;
    let rp = ctx_field!(ops, remote_port);
    let rport = u16::from_be(if rp > 0xffff { (rp >> 16) as u16 } else { rp as u16 });
    let (laddr, raddr) = match family {
        AF_INET => (ip4(ctx_field!(ops, local_ip4)), ip4(ctx_field!(ops, remote_ip4))),
        AF_INET6 => (ip6(read_ip6(ops, true)), ip6(read_ip6(ops, false))),
        _ => return,
    };
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops as *mut _) };
    let netns = sk_netns(ctx_sk(ctx.ops as *const _));
    let (kind, hdr) = match cb {
        BPF_SOCK_OPS_TCP_LISTEN_CB if TASK => (op::LISTEN, task_header(0, netns, 0)),
        BPF_SOCK_OPS_TCP_CONNECT_CB if TASK => (op::CONNECTED, task_header(0, netns, 0)),
        BPF_SOCK_OPS_TCP_LISTEN_CB => (op::LISTEN, bare_header(netns)),
        BPF_SOCK_OPS_TCP_CONNECT_CB => (op::CONNECTED, bare_header(netns)),
        _ => (op::ACCEPTED, bare_header(netns)),
    };
    // Without the task, the tracer's own sockets are those the cgroup
    // programs (which skip the tracer) left without an owner; so are
    // sockets older than the tracer, whose events userspace still wants
    // (its sock_diag scan knows their owners): they go out without a task.
    if TASK && kind != op::ACCEPTED && is_self() {
        return;
    }
    let mut start_ns = 0;
    let mut fl = 0;
    if kind != op::ACCEPTED {
        // The owner recorded at create/connect stands; only the port is new.
        if let Some(o) = SOCK_OWNERS.get_ptr_mut(&cookie) {
            // SAFETY: a value of this map, plain integers.
            unsafe {
                (*o).lport = lport;
                start_ns = (*o).start_ns;
                if (*o).selected != 0 {
                    fl |= flags::SELECTED;
                }
            }
        }
        if TASK {
            fl |= flags::TASK;
        }
        note_selected_port(cookie, netns, IPPROTO_TCP, lport);
    }
    let ev = SockEvent {
        cookie,
        start_ns,
        op: kind,
        flags: fl,
        family: family as u8,
        protocol: IPPROTO_TCP,
        lport,
        rport: if kind == op::LISTEN { 0 } else { rport },
        laddr,
        raddr: if kind == op::LISTEN { [0; 16] } else { raddr },
    };
    emit(hdr, ev);
}

/// `local_ip6` or `remote_ip6` of a sock_ops context, word by word (each
/// a load at a constant offset, as the verifier wants).
#[inline(always)]
fn read_ip6(ops: *mut aya_ebpf::bindings::bpf_sock_ops, local: bool) -> [u32; 4] {
    // SAFETY: fields of the program's own context.
    unsafe {
        if local {
            [
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[0])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[1])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[2])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).local_ip6[3])),
            ]
        } else {
            [
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).remote_ip6[0])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).remote_ip6[1])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).remote_ip6[2])),
                core::ptr::read_volatile(core::ptr::addr_of!((*ops).remote_ip6[3])),
            ]
        }
    }
}

// ---- what the TC programs ask --------------------------------------------

/// Whether a selected owner still holds its socket (or closed it less
/// than the grace period ago).
#[inline(always)]
fn selected_owner(cookie: u64) -> bool {
    if cookie == 0 {
        return false;
    }
    // SAFETY: a value of this map, plain integers.
    match unsafe { SOCK_OWNERS.get(&cookie) } {
        Some(o) if o.selected != 0 => {
            // SAFETY: helper call.
            o.released_ns == 0 || unsafe { bpf_ktime_get_ns() }.saturating_sub(o.released_ns) < RELEASE_GRACE_NS
        }
        _ => false,
    }
}

/// `--process`/`--comm`: whether a packet belongs to a selected socket,
/// by the socket that sent it (`sock_cookie`), else by the local port a
/// selected socket holds in the device's namespace (the destination port
/// of what arrives, the source port of what leaves: this also catches a
/// listener's SYN-ACKs, sent by a request socket of its own).
#[inline(always)]
pub fn packet_selected(ctx: &TcContext, direction: u8, sock_cookie: u64) -> bool {
    if selected_owner(sock_cookie) {
        return true;
    }
    let mut key_slot = core::mem::MaybeUninit::<PacketKey>::uninit();
    let key = crate::kernel::zero(&mut key_slot);
    key.direction = direction;
    crate::filter::parse(ctx, key);
    if key.flags & key_flags::PORTS == 0 {
        return false;
    }
    let port = if direction == DIR_INGRESS { key.dport } else { key.sport };
    let sp = SelPort { netns_ino: device_netns(ctx), port: u16::from_be_bytes(port), protocol: key.proto, _pad: 0 };
    // SAFETY: a value of this map, a plain u64.
    match unsafe { SOCK_SEL_PORTS.get(&sp) } {
        Some(c) => selected_owner(*c),
        None => false,
    }
}
