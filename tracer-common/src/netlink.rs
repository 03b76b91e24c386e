//! Records of the netlink capture programs.
//!
//! A [`NetlinkSend`] is emitted for every buffer a process hands to a netlink
//! socket (sendmsg iov segment, sendto, sendmmsg entry, write, writev
//! segment) and carries up to [`NL_DATA_MAX`] bytes of it. A [`NetlinkAck`]
//! carries the start of an `NLMSG_ERROR` answer the process read back, which
//! is how userspace learns each request's result.

/// Most bytes of one netlink buffer copied into an event (a power of two).
pub const NL_DATA_MAX: usize = 16384;
/// Most bytes of an answer copied: errno, the echoed request header and extack.
pub const NL_ACK_MAX: usize = 1024;
/// iov segments looked at per sendmsg/writev.
pub const NL_MAX_IOV: u32 = 8;
/// mmsghdr entries looked at per sendmmsg.
pub const NL_MAX_MMSG: u32 = 8;
/// Lowest fds searched for open namespace files when an rtnetlink request
/// is sent, so `IFLA_NET_NS_FD` can be resolved after the sender is gone.
pub const NL_NS_SCAN_FDS: u32 = 32;
/// Most namespace fds reported per request.
pub const NL_NS_FDS: usize = 4;

/// The syscall that carried a netlink buffer.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Sendmsg = 1,
    Sendto = 2,
    Sendmmsg = 3,
    Write = 4,
    Writev = 5,
    Recvmsg = 6,
    Recvfrom = 7,
}

impl Syscall {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sendmsg => "sendmsg",
            Self::Sendto => "sendto",
            Self::Sendmmsg => "sendmmsg",
            Self::Write => "write",
            Self::Writev => "writev",
            Self::Recvmsg => "recvmsg",
            Self::Recvfrom => "recvfrom",
        }
    }
}

impl TryFrom<u8> for Syscall {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            1 => Self::Sendmsg,
            2 => Self::Sendto,
            3 => Self::Sendmmsg,
            4 => Self::Write,
            5 => Self::Writev,
            6 => Self::Recvmsg,
            7 => Self::Recvfrom,
            other => return Err(other),
        })
    }
}

/// Payload of [`crate::EventKind::NetlinkSend`]; `data_len` bytes follow.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetlinkSend {
    /// Identifies the sending socket (kernel `struct sock` address, never printed).
    pub sock_id: u64,
    /// Netlink protocol of the socket (`NETLINK_ROUTE` = 0, ...).
    pub protocol: u16,
    /// A [`Syscall`].
    pub syscall: u8,
    /// Nonzero when `total_len > data_len`.
    pub truncated: u8,
    pub fd: u32,
    /// Segment index inside the syscall (iov or mmsghdr entry).
    pub seg: u32,
    /// Length of the buffer the process passed.
    pub total_len: u32,
    /// Bytes copied after this struct.
    pub data_len: u32,
    /// The socket's netlink port id.
    pub portid: u32,
    /// Open nsfs files of the sender (`ns_fds[i]` is a fd, `ns_inos[i]` the
    /// namespace inode); only for rtnetlink, empty slots have inode 0.
    pub ns_fds: [u32; NL_NS_FDS],
    pub ns_inos: [u32; NL_NS_FDS],
}
const _: () = assert!(core::mem::size_of::<NetlinkSend>() == 64);

/// Payload of [`crate::EventKind::NetlinkAck`]; `data_len` bytes follow.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetlinkAck {
    pub sock_id: u64,
    pub protocol: u16,
    pub syscall: u8,
    pub _pad: u8,
    pub fd: u32,
    /// Bytes the receive returned.
    pub total_len: u32,
    pub data_len: u32,
}
const _: () = assert!(core::mem::size_of::<NetlinkAck>() == 24);

/// What a netlink receive's entry saved for its exit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RecvArgs {
    /// `struct user_msghdr *` for recvmsg, the buffer for recvfrom.
    pub ptr: u64,
    pub sock_id: u64,
    pub fd: u32,
    pub flags: u32,
    pub netns_ino: u32,
    pub protocol: u16,
    pub syscall: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<RecvArgs>() == 32);
