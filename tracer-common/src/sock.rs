//! Process attribution: which process owns the socket a packet was sent
//! from or is delivered to, without kprobes.
//!
//! cgroup programs attached to the cgroup v2 root run in the task that
//! creates, binds, connects or sends on an inet socket, so they know the
//! owner; `sock_ops` programs learn the TCP tuples (listen, connect,
//! accept). Each emits a [`SockEvent`] on the shared ring buffer, keyed by
//! the socket cookie (`bpf_get_socket_cookie`), and keeps the owner in the
//! [`crate::maps::SOCK_OWNERS`] LRU map, which the `sendmsg` hook reads to
//! report an owner only when it changes and the TC programs read for
//! `--process`/`--comm`. The TC programs put the cookie of the packet's
//! socket (`skb->sk`) in [`crate::packet::PacketMeta::sock_cookie`];
//! userspace joins cookies and tuples to owners.

/// Entries of [`crate::maps::SOCK_OWNERS`] (socket cookie -> [`SockOwner`]),
/// an LRU hash: sockets beyond it lose their kernel record, oldest first
/// (userspace keeps its own copy from the events).
pub const SOCK_OWNERS_MAX: u32 = 65_536;
/// Entries of [`crate::maps::SOCK_SEL_PORTS`] (LRU): local ports of the
/// sockets of the process `--process`/`--comm` selects.
pub const SOCK_SEL_PORTS_MAX: u32 = 16_384;

/// What happened to a socket: [`SockEvent::op`].
pub mod op {
    /// `socket()`: the creating task owns it (`cgroup/sock_create`).
    pub const CREATE: u8 = 1;
    /// `bind()`: the local address (`cgroup/post_bind4`, `post_bind6`).
    pub const BIND: u8 = 2;
    /// `connect()` of any inet socket: the remote address and the task
    /// connecting, which becomes the owner (`cgroup/connect4`, `connect6`).
    pub const CONNECT: u8 = 3;
    /// An unconnected UDP send by a task other than the recorded owner, or
    /// from a local port not yet reported: the sender becomes the owner
    /// (`cgroup/sendmsg4`, `sendmsg6`).
    pub const SEND: u8 = 4;
    /// `listen()`: the local address (`sock_ops` TCP_LISTEN_CB).
    pub const LISTEN: u8 = 5;
    /// A TCP connect about to send its SYN: the whole tuple (`sock_ops`
    /// TCP_CONNECT_CB, in the connecting task).
    pub const CONNECTED: u8 = 6;
    /// A TCP connection accepted by a listener: the new socket's cookie
    /// and tuple; no task (softirq). Userspace gives it the listener's owner.
    pub const ACCEPTED: u8 = 7;
    /// The socket's file was closed (`cgroup/sock_release`). TCP may still
    /// send its last segments (FIN, ACK in TIME_WAIT) under the same cookie.
    pub const RELEASE: u8 = 8;
}

/// `SockEvent::flags`.
pub mod flags {
    /// The header's task fields (pid, tid, uid, comm, cgroup) are the
    /// owner's; without it the event came from softirq context.
    pub const TASK: u8 = 1;
    /// The owner matches `--process`/`--comm`.
    pub const SELECTED: u8 = 2;
}

/// Payload of [`crate::EventKind::Sock`]. The header carries the task
/// (pid_tgid, uid_gid, cgroup id, comm) when [`flags::TASK`] is set, and
/// the inode of the socket's network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEvent {
    /// `bpf_get_socket_cookie`: the socket's id for its whole life.
    pub cookie: u64,
    /// The task's `start_boottime` in ns (0 without a task): with the pid,
    /// tells a process from a later one that reuses its pid.
    pub start_ns: u64,
    /// One of [`op`].
    pub op: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u8,
    /// IPPROTO_TCP (6), IPPROTO_UDP (17), ...
    pub protocol: u8,
    /// Local port, host byte order (0: not known at this point).
    pub lport: u16,
    /// Remote port, host byte order (0: none).
    pub rport: u16,
    /// Local address (an IPv4 address in the first 4 bytes), network order.
    pub laddr: [u8; 16],
    /// Remote address, as `laddr`.
    pub raddr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SockEvent>() == 56);

/// The owner of a socket as the kernel keeps it in
/// [`crate::maps::SOCK_OWNERS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOwner {
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    /// Local port last reported to userspace, host byte order.
    pub lport: u16,
    /// Nonzero when the owner matches `--process`/`--comm`.
    pub selected: u8,
    pub _pad: u8,
    pub start_ns: u64,
    pub cgroup_id: u64,
    /// `bpf_ktime_get_ns()` when the socket's file was closed; 0 while open.
    pub released_ns: u64,
    pub comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SockOwner>() == 56);

/// Key of [`crate::maps::SOCK_SEL_PORTS`]: a local port a selected
/// process holds in a namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SelPort {
    pub netns_ino: u32,
    /// Host byte order.
    pub port: u16,
    pub protocol: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<SelPort>() == 8);

/// The `PROC_CONFIG` global, set at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcConfig {
    /// Nonzero: the packet programs read the socket cookie of each packet.
    pub cookies: u32,
    /// Nonzero: the packet programs keep only packets of selected sockets.
    pub select: u32,
    /// `--process PID` (0: none).
    pub sel_pid: u32,
    /// Nonzero when `sel_comm` is set.
    pub sel_comm_on: u32,
    /// `--comm NAME`, NUL-padded as the kernel keeps a comm.
    pub sel_comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<ProcConfig>() == 32);

/// How long after its file was closed a socket still counts as its
/// owner's: TCP's TIME_WAIT (60 s), during which its last segments go out.
pub const RELEASE_GRACE_NS: u64 = 60_000_000_000;
