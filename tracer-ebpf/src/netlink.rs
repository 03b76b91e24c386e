//! Netlink capture: the syscall tracepoints of every path a process can send
//! a netlink message by (sendmsg, sendto, sendmmsg, write, writev), and the
//! receives that bring back the kernel's `NLMSG_ERROR` answers.
//!
//! Each program first checks, through the task's fd table, that the fd is a
//! netlink socket, so the cost on other fds is a handful of kernel reads.
//!
//! Wherever a program gives up on a buffer it should have reported (user
//! memory it cannot read, segments beyond its loop bounds, a full in-flight
//! table, an answer longer than it copies), it counts a loss with its
//! [`LostSource`], so userspace can say what it did not see.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_probe_read_user as raw_read_user},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use tracer_common::{
    EventKind, LostSource,
    netlink::{
        NL_ACK_MAX, NL_DATA_MAX, NL_MAX_IOV, NL_MAX_MMSG, NL_NS_FDS, NL_NS_SCAN_FDS, NetlinkAck,
        NetlinkSend, RecvArgs, Syscall,
    },
};

use crate::kernel::{
    HDR, SCRATCH, count_lost, count_lost_n, is_self, kread, kread_or_zero, offsets, output, ring_admits_sender,
    task_header,
};

const AF_NETLINK: u16 = 16;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const MSG_PEEK: u32 = 2;
const NLMSG_ERROR: u16 = 2;

/// Offsets of syscall arguments in a `syscalls/sys_enter_*` record (stable ABI).
const fn arg(n: usize) -> usize {
    16 + 8 * n
}
/// Offset of the return value in a `syscalls/sys_exit_*` record.
const RET: usize = 16;

// struct user_msghdr and struct iovec: UAPI layouts.
const MSGHDR_IOV: usize = 16;
const MSGHDR_IOVLEN: usize = 24;
const MMSGHDR_SIZE: usize = 64;
/// Most iovecs the kernel takes in one call (`UIO_MAXIOV`); sendmsg and
/// writev fail with more, sendmmsg sends at most this many messages.
const UIO_MAXIOV: u64 = 1024;

#[map(name = "NL_RECV_ARGS")]
static NL_RECV_ARGS: HashMap<u64, RecvArgs> = HashMap::with_max_entries(4096, 0);

#[derive(Clone, Copy)]
struct NlSock {
    sk: u64,
    netns: u32,
    protocol: u16,
    portid: u32,
    /// The task's fd array and its size, for [`scan_ns_fds`].
    fds: u64,
    max_fds: u32,
}

const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Finds open namespace files among the sender's lowest fds, so userspace
/// can resolve `IFLA_NET_NS_FD` even after the sender has exited.
#[inline(always)]
fn scan_ns_fds(nl: &NlSock) -> ([u32; NL_NS_FDS], [u32; NL_NS_FDS]) {
    let mut fds = [0u32; NL_NS_FDS];
    let mut inos = [0u32; NL_NS_FDS];
    if nl.protocol != 0 {
        return (fds, inos);
    }
    let o = offsets();
    let mut n = 0usize;
    for fd in 0..NL_NS_SCAN_FDS {
        if fd >= nl.max_fds || n >= NL_NS_FDS {
            break;
        }
        let Some(file) = kread::<*const u8>(nl.fds as *const u8, fd * 8) else { continue };
        let Some(inode) = kread::<*const u8>(file, o.file_inode) else { continue };
        let Some(sb) = kread::<*const u8>(inode, o.inode_sb) else { continue };
        if kread::<u64>(sb, o.sb_magic) != Some(NSFS_MAGIC) {
            continue;
        }
        let Some(ino) = kread::<u64>(inode, o.inode_ino) else { continue };
        if n < NL_NS_FDS {
            fds[n] = fd;
            inos[n] = ino as u32;
        }
        n += 1;
    }
    (fds, inos)
}

/// Resolves `fd` of the current task to a netlink socket, or `None`.
#[inline(always)]
fn netlink_sock(fd: u64) -> Option<NlSock> {
    let o = offsets();
    // SAFETY: returns the current task pointer, read only through probe reads.
    let task = unsafe { aya_ebpf::helpers::bpf_get_current_task() } as *const u8;
    let files: *const u8 = kread(task, o.task_files)?;
    let fdt: *const u8 = kread(files, o.files_fdt)?;
    let max_fds: u32 = kread(fdt, o.fdt_max_fds)?;
    if fd >= max_fds as u64 {
        return None;
    }
    let fds: *const u8 = kread(fdt, o.fdt_fd)?;
    let file: *const u8 = kread(fds, (fd as u32).wrapping_mul(8))?;
    let inode: *const u8 = kread(file, o.file_inode)?;
    let mode: u16 = kread(inode, o.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: *const u8 = kread(file, o.file_private_data)?;
    let sk: *const u8 = kread(socket, o.socket_sk)?;
    let family: u16 = kread(sk, o.sk_family)?;
    if family != AF_NETLINK {
        return None;
    }
    let protocol: u16 = kread(sk, o.sk_protocol)?;
    let net: *const u8 = kread(sk, o.sk_net)?;
    let netns: u32 = kread_or_zero(net, o.net_inum);
    let portid: u32 = kread_or_zero(sk, o.nlk_portid);
    Some(NlSock { sk: sk as u64, netns, protocol, portid, fds: fds as u64, max_fds })
}

/// `n` (already at most `max`, a power of two) as a copy size the verifier
/// can bound. LLVM drops a mask or a comparison it can prove redundant, and
/// may spill the unclamped value to the stack before the clamp; 6.1 and
/// 5.10 forget the bounds of an unbounded scalar spilled to the stack, so
/// the size reloaded for the helper call is unbounded there (6.18 keeps
/// them). A volatile read hides the value from LLVM: the mask and the check
/// are then real instructions, next to the call.
#[inline(always)]
fn verifier_bounded(n: usize, max: usize) -> Option<u32> {
    // SAFETY: reads a local.
    let n = unsafe { core::ptr::read_volatile(&n) } & (max * 2 - 1);
    if n > max { None } else { Some(n as u32) }
}

/// Copies one user buffer sent to a netlink socket into a `NetlinkSend` record.
#[inline(always)]
fn emit_send(nl: &NlSock, ns: &NsFds, syscall: Syscall, fd: u64, seg: u32, ubuf: u64, ulen: u64) {
    if !ring_admits_sender() {
        return;
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return };
    let mut n = ulen as usize;
    if n > NL_DATA_MAX {
        n = NL_DATA_MAX;
    }
    let meta_len = core::mem::size_of::<NetlinkSend>();
    let hdr = task_header(EventKind::NetlinkSend as u32, nl.netns, (meta_len + n) as u32);
    let meta = NetlinkSend {
        sock_id: nl.sk,
        protocol: nl.protocol,
        syscall: syscall as u8,
        truncated: (ulen as usize > n) as u8,
        fd: fd as u32,
        seg,
        total_len: ulen as u32,
        data_len: n as u32,
        portid: nl.portid,
        ns_fds: ns.0,
        ns_inos: ns.1,
    };
    // SAFETY: scratch is a valid per-CPU map value large enough for all three parts.
    unsafe {
        let base = (*scratch).buf.as_mut_ptr();
        core::ptr::write_unaligned(base as *mut _, hdr);
        core::ptr::write_unaligned(base.add(HDR) as *mut _, meta);
        let data = base.add(HDR + meta_len);
        let Some(n) = verifier_bounded(n, NL_DATA_MAX) else { return };
        if raw_read_user(data as *mut _, n, ubuf as *const _) != 0 {
            count_lost(LostSource::NetlinkRead);
            return;
        }
        output(scratch, HDR + meta_len + n as usize, LostSource::Netlink);
    }
}

#[inline(always)]
fn sock_for(ctx: &TracePointContext) -> Option<(u64, NlSock)> {
    if is_self() {
        return None;
    }
    // SAFETY: reads inside the tracepoint record.
    let fd: u64 = unsafe { ctx.read_at(arg(0)) }.ok()?;
    let nl = netlink_sock(fd)?;
    let want = crate::kernel::config().nl_netns;
    if want != 0 && nl.netns != want {
        return None;
    }
    Some((fd, nl))
}

type NsFds = ([u32; NL_NS_FDS], [u32; NL_NS_FDS]);

/// Counts the `n - limit` segments (iovecs or mmsghdrs) a loop bounded by
/// `limit` did not look at; none when the kernel refuses that many (a
/// sendmsg or writev with more than `UIO_MAXIOV` iovecs fails, and
/// sendmmsg clamps its count, so pass that clamped).
#[inline(always)]
fn count_beyond(n: u64, limit: u32) {
    if n > limit as u64 && n <= UIO_MAXIOV {
        count_lost_n(LostSource::NetlinkIov, n - limit as u64);
    }
}

/// Walks an iovec array in user memory, one record per segment.
#[inline(always)]
fn emit_iov(nl: &NlSock, syscall: Syscall, fd: u64, iov: u64, iovlen: u64) {
    let ns = scan_ns_fds(nl);
    for i in 0..NL_MAX_IOV {
        if i as u64 >= iovlen {
            break;
        }
        let entry = iov + 16 * i as u64;
        // SAFETY: bpf_probe_read_user validates the address.
        let base: u64 = match unsafe { bpf_probe_read_user(entry as *const u64) } {
            Ok(v) => v,
            Err(_) => return count_lost(LostSource::NetlinkRead),
        };
        let len: u64 = match unsafe { bpf_probe_read_user((entry + 8) as *const u64) } {
            Ok(v) => v,
            Err(_) => return count_lost(LostSource::NetlinkRead),
        };
        if len > 0 {
            emit_send(nl, &ns, syscall, fd, i, base, len);
        }
    }
    count_beyond(iovlen, NL_MAX_IOV);
}

#[tracepoint]
pub fn nl_sendmsg(ctx: TracePointContext) -> u32 {
    let Some((fd, nl)) = sock_for(&ctx) else { return 0 };
    // SAFETY: reads inside the tracepoint record and user memory by helper.
    unsafe {
        let Ok(msg) = ctx.read_at::<u64>(arg(1)) else { return 0 };
        let Ok(iov) = bpf_probe_read_user((msg + MSGHDR_IOV as u64) as *const u64) else { return lost_read() };
        let Ok(iovlen) = bpf_probe_read_user((msg + MSGHDR_IOVLEN as u64) as *const u64) else { return lost_read() };
        emit_iov(&nl, Syscall::Sendmsg, fd, iov, iovlen);
    }
    0
}

/// Counts a send whose description could not be read; the program's result.
#[inline(always)]
fn lost_read() -> u32 {
    count_lost(LostSource::NetlinkRead);
    0
}

#[tracepoint]
pub fn nl_writev(ctx: TracePointContext) -> u32 {
    let Some((fd, nl)) = sock_for(&ctx) else { return 0 };
    // SAFETY: reads inside the tracepoint record.
    unsafe {
        let Ok(iov) = ctx.read_at::<u64>(arg(1)) else { return 0 };
        let Ok(iovlen) = ctx.read_at::<u64>(arg(2)) else { return 0 };
        emit_iov(&nl, Syscall::Writev, fd, iov, iovlen);
    }
    0
}

#[tracepoint]
pub fn nl_sendto(ctx: TracePointContext) -> u32 {
    send_buf(&ctx, Syscall::Sendto)
}

#[tracepoint]
pub fn nl_write(ctx: TracePointContext) -> u32 {
    send_buf(&ctx, Syscall::Write)
}

/// sendto(fd, buf, len, ...) and write(fd, buf, count) share a layout.
#[inline(always)]
fn send_buf(ctx: &TracePointContext, syscall: Syscall) -> u32 {
    let Some((fd, nl)) = sock_for(ctx) else { return 0 };
    // SAFETY: reads inside the tracepoint record.
    unsafe {
        let Ok(buf) = ctx.read_at::<u64>(arg(1)) else { return 0 };
        let Ok(len) = ctx.read_at::<u64>(arg(2)) else { return 0 };
        emit_send(&nl, &scan_ns_fds(&nl), syscall, fd, 0, buf, len);
    }
    0
}

#[tracepoint]
pub fn nl_sendmmsg(ctx: TracePointContext) -> u32 {
    let Some((fd, nl)) = sock_for(&ctx) else { return 0 };
    // SAFETY: reads inside the tracepoint record and user memory by helper.
    unsafe {
        let Ok(vec) = ctx.read_at::<u64>(arg(1)) else { return 0 };
        let Ok(vlen) = ctx.read_at::<u64>(arg(2)) else { return 0 };
        let ns = scan_ns_fds(&nl);
        for i in 0..NL_MAX_MMSG {
            if i as u64 >= vlen {
                break;
            }
            let msg = vec + (MMSGHDR_SIZE as u64) * i as u64;
            let Ok(iov) = bpf_probe_read_user((msg + MSGHDR_IOV as u64) as *const u64) else { return lost_read() };
            let Ok(iovlen) = bpf_probe_read_user((msg + MSGHDR_IOVLEN as u64) as *const u64) else { return lost_read() };
            if iovlen == 0 {
                continue;
            }
            // One segment per message keeps the program small; nobody
            // splits a netlink message over several iovs in a sendmmsg
            // (and whoever does has the rest counted as lost).
            let Ok(base) = bpf_probe_read_user(iov as *const u64) else { return lost_read() };
            let Ok(len) = bpf_probe_read_user((iov + 8) as *const u64) else { return lost_read() };
            emit_send(&nl, &ns, Syscall::Sendmmsg, fd, i, base, len);
            count_beyond(iovlen, 1);
        }
        // The kernel sends at most UIO_MAXIOV messages of a longer vector.
        count_beyond(if vlen > UIO_MAXIOV { UIO_MAXIOV } else { vlen }, NL_MAX_MMSG);
    }
    0
}

fn save_recv(ctx: &TracePointContext, syscall: Syscall) -> u32 {
    let Some((fd, nl)) = sock_for(ctx) else { return 0 };
    // SAFETY: reads inside the tracepoint record.
    let (ptr, flags) = unsafe {
        let Ok(ptr) = ctx.read_at::<u64>(arg(1)) else { return 0 };
        let flag_arg = if syscall == Syscall::Recvmsg { arg(2) } else { arg(3) };
        let Ok(flags) = ctx.read_at::<u64>(flag_arg) else { return 0 };
        (ptr, flags as u32)
    };
    if flags & MSG_PEEK != 0 {
        return 0;
    }
    let args = RecvArgs {
        ptr,
        sock_id: nl.sk,
        fd: fd as u32,
        flags,
        netns_ino: nl.netns,
        protocol: nl.protocol,
        syscall: syscall as u8,
        _pad: 0,
    };
    if NL_RECV_ARGS.insert(bpf_get_current_pid_tgid(), args, 0).is_err() {
        // Full: one entry per thread inside a netlink receive.
        count_lost(LostSource::NetlinkRecvArgs);
    }
    0
}

fn finish_recv(ctx: &TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(args) = (unsafe { NL_RECV_ARGS.get(key) }).copied() else { return 0 };
    let _ = NL_RECV_ARGS.remove(key);
    // SAFETY: reads inside the tracepoint record.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(RET) }) else { return 0 };
    if ret < 20 {
        return 0;
    }
    let buf = if args.syscall == Syscall::Recvmsg as u8 {
        // SAFETY: user memory read by helper.
        unsafe {
            let Ok(iov) = bpf_probe_read_user((args.ptr + MSGHDR_IOV as u64) as *const u64) else { return lost_ack_read() };
            let Ok(base) = bpf_probe_read_user(iov as *const u64) else { return lost_ack_read() };
            base
        }
    } else {
        args.ptr
    };
    // Only answers matter here: the first message must be NLMSG_ERROR.
    // SAFETY: user memory read by helper.
    let Ok(ty) = (unsafe { bpf_probe_read_user((buf + 4) as *const u16) }) else { return lost_ack_read() };
    if ty != NLMSG_ERROR || !ring_admits_sender() {
        return 0;
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return 0 };
    let mut n = ret as usize;
    if n > NL_ACK_MAX {
        n = NL_ACK_MAX;
    }
    let meta_len = core::mem::size_of::<NetlinkAck>();
    let hdr = task_header(EventKind::NetlinkAck as u32, args.netns_ino, (meta_len + n) as u32);
    let meta = NetlinkAck {
        sock_id: args.sock_id,
        protocol: args.protocol,
        syscall: args.syscall,
        _pad: 0,
        fd: args.fd,
        total_len: ret as u32,
        data_len: n as u32,
    };
    // SAFETY: scratch is large enough for all three parts.
    unsafe {
        let base = (*scratch).buf.as_mut_ptr();
        core::ptr::write_unaligned(base as *mut _, hdr);
        core::ptr::write_unaligned(base.add(HDR) as *mut _, meta);
        let Some(n) = verifier_bounded(n, NL_ACK_MAX) else { return 0 };
        if raw_read_user(base.add(HDR + meta_len) as *mut _, n, buf as *const _) != 0 {
            return lost_ack_read();
        }
        // Counted only once the answer is in the ring: one that is not is
        // a `netlink_ack` loss, whatever its length.
        if output(scratch, HDR + meta_len + n as usize, LostSource::NetlinkAck) && ret as usize > NL_ACK_MAX {
            count_lost(LostSource::NetlinkAckTruncated);
        }
    }
    0
}

/// Counts a receive whose data could not be read back; the program's result.
#[inline(always)]
fn lost_ack_read() -> u32 {
    count_lost(LostSource::NetlinkAckRead);
    0
}

#[tracepoint]
pub fn nl_recvmsg_enter(ctx: TracePointContext) -> u32 {
    save_recv(&ctx, Syscall::Recvmsg)
}

#[tracepoint]
pub fn nl_recvmsg_exit(ctx: TracePointContext) -> u32 {
    finish_recv(&ctx)
}

#[tracepoint]
pub fn nl_recvfrom_enter(ctx: TracePointContext) -> u32 {
    save_recv(&ctx, Syscall::Recvfrom)
}

#[tracepoint]
pub fn nl_recvfrom_exit(ctx: TracePointContext) -> u32 {
    finish_recv(&ctx)
}
