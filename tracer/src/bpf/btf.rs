//! Kernel struct offsets read from the running kernel's BTF.
//!
//! The programs read a few kernel structs (`task_struct`, `file`, `sock`,
//! `sk_buff`, ...) with `bpf_probe_read_kernel`. Their layouts change between
//! kernels and configurations, so every offset is looked up here by name,
//! through anonymous unions and structs, and handed to the programs as the
//! `OFFSETS` global. Nothing about one kernel's layout is hard-coded.

use std::path::Path;

use btf_rs::{Btf, Type};
use tracer_common::offsets::KernelOffsets;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read the kernel's BTF at {path}: {source}; tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    Open { path: String, source: btf_rs::Error },
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("the kernel's BTF has no field {0}")]
    NoField(String),
    #[error("the kernel's BTF is malformed: {0}")]
    Malformed(#[from] btf_rs::Error),
}

/// The kernel's type information, opened once.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn open() -> Result<Self, BtfError> {
        Self::open_path(Path::new(VMLINUX))
    }

    pub fn open_path(path: &Path) -> Result<Self, BtfError> {
        let btf = Btf::from_file(path)
            .map_err(|source| BtfError::Open { path: path.display().to_string(), source })?;
        Ok(Self { btf })
    }

    /// Byte offset of `path` (dot-separated members, e.g. `__sk_common.skc_family`)
    /// inside `struct name`. Anonymous members are searched transparently.
    pub fn offset_of(&self, name: &str, path: &str) -> Result<u32, BtfError> {
        let mut ty = self.struct_named(name)?;
        let mut total_bits = 0u32;
        let full = || format!("{name}.{path}");
        for field in path.split('.') {
            let (bits, member_ty) =
                self.find_member(&ty, field)?.ok_or_else(|| BtfError::NoField(full()))?;
            total_bits += bits;
            ty = member_ty;
        }
        if !total_bits.is_multiple_of(8) {
            return Err(BtfError::NoField(format!("{} (a bitfield)", full())));
        }
        Ok(total_bits / 8)
    }

    fn struct_named(&self, name: &str) -> Result<Type, BtfError> {
        let types = self.btf.resolve_types_by_name(name).unwrap_or_default();
        types
            .into_iter()
            .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut ty: Type) -> Result<Type, BtfError> {
        for _ in 0..16 {
            match ty {
                Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                    let bt = ty.as_btf_type().ok_or_else(|| BtfError::NoField("qualifier".into()))?;
                    ty = self.btf.resolve_chained_type(bt)?;
                }
                _ => return Ok(ty),
            }
        }
        Ok(ty)
    }

    /// Finds `field` in a struct or union, descending into anonymous members.
    /// Returns its bit offset and (stripped) type.
    fn find_member(&self, ty: &Type, field: &str) -> Result<Option<(u32, Type)>, BtfError> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => return Ok(None),
        };
        for m in members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let mty = self.strip(self.btf.resolve_chained_type(m)?)?;
            if name == field {
                return Ok(Some((m.bit_offset(), mty)));
            }
            if name.is_empty()
                && let Some((bits, t)) = self.find_member(&mty, field)? {
                    return Ok(Some((m.bit_offset() + bits, t)));
                }
        }
        Ok(None)
    }

    /// The members of `enum name` as this kernel numbers them, in BTF
    /// order: what `tracer drops` names drop reasons by (the enum changes
    /// between kernels, so no table of it is kept anywhere else).
    pub fn enum_members(&self, name: &str) -> Result<Vec<(String, u64)>, BtfError> {
        let types = self.btf.resolve_types_by_name(name).unwrap_or_default();
        for t in types {
            match t {
                Type::Enum(e) if !e.members.is_empty() => {
                    return Ok(e.members.iter().map(|m| (self.btf.resolve_name(m).unwrap_or_default(), u64::from(m.val()))).collect());
                }
                Type::Enum64(e) if !e.members.is_empty() => {
                    return Ok(e.members.iter().map(|m| (self.btf.resolve_name(m).unwrap_or_default(), m.val())).collect());
                }
                _ => {}
            }
        }
        Err(BtfError::NoStruct(format!("enum {name}")))
    }

    /// The argument types of a BTF tracepoint (`btf_trace_<name>`'s
    /// prototype without its leading `void *__data`), written as C
    /// without qualifiers: `struct sk_buff *`, `void *`,
    /// `enum skb_drop_reason`, `int`.
    pub fn tracepoint_args(&self, name: &str) -> Result<Vec<String>, BtfError> {
        let typedef = format!("btf_trace_{name}");
        let types = self.btf.resolve_types_by_name(&typedef).unwrap_or_default();
        let t = types.into_iter().next().ok_or_else(|| BtfError::NoStruct(typedef.clone()))?;
        let mut ty = t;
        for _ in 0..4 {
            match &ty {
                Type::FuncProto(fp) => {
                    let mut out = Vec::new();
                    for p in fp.parameters.iter().skip(1) {
                        out.push(self.describe(self.btf.resolve_chained_type(p)?, 0));
                    }
                    return Ok(out);
                }
                Type::Typedef(_) | Type::Ptr(_) => {
                    let bt = ty.as_btf_type().ok_or_else(|| BtfError::NoField(typedef.clone()))?;
                    ty = self.btf.resolve_chained_type(bt)?;
                }
                _ => break,
            }
        }
        Err(BtfError::NoField(format!("{typedef} (not a function prototype)")))
    }

    /// The BTF id of tracepoint `name`'s `btf_trace_<name>` typedef: what a
    /// BTF tracepoint program is loaded for (`attach_btf_id`).
    pub fn tracepoint_type_id(&self, name: &str) -> Result<u32, BtfError> {
        let typedef = format!("btf_trace_{name}");
        let ids = self.btf.resolve_ids_by_name(&typedef).unwrap_or_default();
        ids.into_iter()
            .find(|id| matches!(self.btf.resolve_type_by_id(*id), Ok(Type::Typedef(_))))
            .ok_or(BtfError::NoStruct(typedef))
    }

    /// A type as C writes it, without qualifiers.
    fn describe(&self, ty: Type, depth: u32) -> String {
        if depth > 8 {
            return "?".into();
        }
        let name = |t: &Type| t.as_btf_type().and_then(|b| self.btf.resolve_name(b).ok()).unwrap_or_default();
        match &ty {
            Type::Void => "void".into(),
            Type::Ptr(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                let inner = ty
                    .as_btf_type()
                    .and_then(|b| self.btf.resolve_chained_type(b).ok())
                    .map(|t| self.describe(t, depth + 1))
                    .unwrap_or_else(|| "void".into());
                if matches!(ty, Type::Ptr(_)) { format!("{inner} *") } else { inner }
            }
            Type::Struct(_) => format!("struct {}", name(&ty)),
            Type::Union(_) => format!("union {}", name(&ty)),
            Type::Enum(_) | Type::Enum64(_) => format!("enum {}", name(&ty)),
            _ => name(&ty),
        }
    }

    /// All offsets the programs use. A field this kernel lacks is left
    /// `MISSING`, and the programs needing it stay silent; `missing()` names them.
    pub fn kernel_offsets(&self) -> (KernelOffsets, Vec<String>) {
        let mut o = KernelOffsets::missing();
        let mut missing = Vec::new();
        let mut set = |slot: &mut u32, name: &str, path: &str| match self.offset_of(name, path) {
            Ok(v) => *slot = v,
            Err(_) => missing.push(format!("{name}.{path}")),
        };
        set(&mut o.task_files, "task_struct", "files");
        set(&mut o.files_fdt, "files_struct", "fdt");
        set(&mut o.fdt_max_fds, "fdtable", "max_fds");
        set(&mut o.fdt_fd, "fdtable", "fd");
        set(&mut o.file_inode, "file", "f_inode");
        set(&mut o.file_private_data, "file", "private_data");
        set(&mut o.inode_mode, "inode", "i_mode");
        set(&mut o.socket_sk, "socket", "sk");
        set(&mut o.sk_family, "sock", "__sk_common.skc_family");
        set(&mut o.sk_protocol, "sock", "sk_protocol");
        set(&mut o.sk_net, "sock", "__sk_common.skc_net.net");
        set(&mut o.net_inum, "net", "ns.inum");
        set(&mut o.skb_dev, "sk_buff", "dev");
        set(&mut o.dev_nd_net, "net_device", "nd_net.net");
        set(&mut o.nlk_portid, "netlink_sock", "portid");
        set(&mut o.inode_ino, "inode", "i_ino");
        set(&mut o.inode_sb, "inode", "i_sb");
        set(&mut o.sb_magic, "super_block", "s_magic");
        set(&mut o.dev_type, "net_device", "type");
        // Optional: without it process attribution reports no start time
        // (and cannot tell a pid's process from a later one), nothing else.
        o.task_start_boottime = self
            .offset_of("task_struct", "start_boottime")
            .or_else(|_| self.offset_of("task_struct", "real_start_time"))
            .unwrap_or(KernelOffsets::MISSING);
        (o, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // These read the BTF of the machine running the tests; every Linux the
    // tracer supports has it, so a missing file is a test failure.
    #[test]
    fn resolves_nested_and_anonymous_fields() {
        let btf = KernelBtf::open().expect("kernel BTF");
        let (o, missing) = btf.kernel_offsets();
        assert!(missing.is_empty(), "missing: {missing:?}");
        // skc_family sits inside struct sock_common, the first member of sock.
        assert_eq!(o.sk_family, btf.offset_of("sock_common", "skc_family").expect("skc_family"));
        // sk_buff.dev is inside an anonymous union/struct: found through it.
        assert!(o.skb_dev > 0 && o.skb_dev < 64);
        assert!(matches!(btf.offset_of("sock", "no_such_field"), Err(BtfError::NoField(_))));
        assert!(matches!(btf.offset_of("no_such_struct_xyz", "a"), Err(BtfError::NoStruct(_))));
    }
}
