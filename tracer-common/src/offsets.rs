//! Kernel struct offsets the programs need, resolved from the running
//! kernel's BTF when loading (aya-ebpf has no CO-RE relocations for Rust).
//!
//! Userspace fills a [`KernelOffsets`] and sets it as the `OFFSETS` global.
//! A field the running kernel lacks is [`KernelOffsets::MISSING`]; programs
//! that need it then do nothing rather than read garbage.

/// Byte offsets of fields inside kernel structs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.files`
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdt_max_fds: u32,
    /// `fdtable.fd`
    pub fdt_fd: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `file.private_data`
    pub file_private_data: u32,
    /// `inode.i_mode`
    pub inode_mode: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock.__sk_common.skc_family`
    pub sk_family: u32,
    /// `sock.sk_protocol`
    pub sk_protocol: u32,
    /// `sock.__sk_common.skc_net.net`
    pub sk_net: u32,
    /// `net.ns.inum`
    pub net_inum: u32,
    /// `sk_buff.dev`
    pub skb_dev: u32,
    /// `net_device.nd_net.net`
    pub dev_nd_net: u32,
    /// `netlink_sock.portid`
    pub nlk_portid: u32,
    /// `inode.i_ino`
    pub inode_ino: u32,
    /// `inode.i_sb`
    pub inode_sb: u32,
    /// `super_block.s_magic`
    pub sb_magic: u32,
    /// `net_device.type` (an `ARPHRD_*`): which link type's filter applies.
    pub dev_type: u32,
    /// `task_struct.start_boottime` (process attribution: tells a pid's
    /// process from a later one; optional, see `tracer::btf`).
    pub task_start_boottime: u32,
}
// Twenty u32 fields, no padding: the size both sides of the ABI agree on.
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 80);

impl KernelOffsets {
    pub const MISSING: u32 = u32::MAX;

    /// Every offset missing: what the programs see until userspace sets them.
    pub const fn missing() -> Self {
        let m = Self::MISSING;
        Self {
            task_files: m,
            files_fdt: m,
            fdt_max_fds: m,
            fdt_fd: m,
            file_inode: m,
            file_private_data: m,
            inode_mode: m,
            socket_sk: m,
            sk_family: m,
            sk_protocol: m,
            sk_net: m,
            net_inum: m,
            skb_dev: m,
            dev_nd_net: m,
            nlk_portid: m,
            inode_ino: m,
            inode_sb: m,
            sb_magic: m,
            dev_type: m,
            task_start_boottime: m,
        }
    }
}
