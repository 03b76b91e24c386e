//! The socket programs of process attribution, attached to the root of the
//! cgroup v2 hierarchy ([`super::cgroup2`]) with BPF links (kernel >= 5.7;
//! `sock_release` needs 5.9), which run beside whatever programs systemd
//! or a container runtime put there. A link closes with
//! the tracer, however it ends, so nothing stays attached. Either all of
//! them attach or none stays: a kernel that refuses one kind leaves the
//! tracer without process fields, never with half of them.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, Program, ProgramError, SockOps},
};
use tracer_common::programs as p;

use super::cgroup2;
use crate::bpf::describe;

/// Flags 0: the kernel refuses any flag on a cgroup BPF link (EINVAL) and
/// runs linked programs as `BPF_F_ALLOW_MULTI` anyway, beside the others
/// attached there. (aya attaches with links from 5.7 on; `sock_release`
/// needs 5.9, so the exclusive pre-link attachment never happens.)
const MODE: CgroupAttachMode = CgroupAttachMode::Single;

/// The program types, as `tracer doctor` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    CgroupSock,
    CgroupSockAddr,
    SockOps,
}

impl HookKind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::CgroupSock => "cgroup_sock",
            Self::CgroupSockAddr => "cgroup_sock_addr",
            Self::SockOps => "sock_ops",
        }
    }
}

/// Every program, in the order they attach: the owner records first
/// (creation), then what refines them, release last.
pub const HOOKS: &[(&str, HookKind)] = &[
    (p::SOCK_CREATE, HookKind::CgroupSock),
    (p::SOCK_BIND4, HookKind::CgroupSock),
    (p::SOCK_BIND6, HookKind::CgroupSock),
    (p::SOCK_CONNECT4, HookKind::CgroupSockAddr),
    (p::SOCK_CONNECT6, HookKind::CgroupSockAddr),
    (p::SOCK_SENDMSG4, HookKind::CgroupSockAddr),
    (p::SOCK_SENDMSG6, HookKind::CgroupSockAddr),
    (p::SOCK_OPS, HookKind::SockOps),
    (p::SOCK_RELEASE, HookKind::CgroupSock),
];

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo); mount one, e.g. mount -t cgroup2 none /sys/fs/cgroup/unified")]
    NoCgroup2,
    #[error("cannot open the cgroup v2 root {path}: {source}")]
    OpenRoot { path: PathBuf, source: std::io::Error },
    #[error("the eBPF object has no program {0}")]
    NoProgram(&'static str),
    #[error("the kernel refused the {kind} program {program}: {detail}")]
    Refused { kind: &'static str, program: &'static str, detail: String },
}

impl AttachError {
    /// The program kind refused, if that is what happened.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Self::Refused { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

fn load_and_attach(prog: &mut Program, kind: HookKind, root: &File) -> Result<(), ProgramError> {
    match kind {
        HookKind::CgroupSock => {
            let prog: &mut CgroupSock = prog.try_into()?;
            prog.load()?;
            prog.attach(root, MODE)?;
        }
        HookKind::CgroupSockAddr => {
            let prog: &mut CgroupSockAddr = prog.try_into()?;
            prog.load()?;
            prog.attach(root, MODE)?;
        }
        HookKind::SockOps => {
            let prog: &mut SockOps = prog.try_into()?;
            prog.load()?;
            prog.attach(root, MODE)?;
        }
    }
    Ok(())
}

/// Unloads (and so detaches) every socket program that was loaded.
pub fn detach_all(ebpf: &mut Ebpf) {
    for (name, kind) in HOOKS {
        let Some(prog) = ebpf.program_mut(name) else { continue };
        let _ = match kind {
            HookKind::CgroupSock => <&mut CgroupSock>::try_from(prog).and_then(|p| p.unload()),
            HookKind::CgroupSockAddr => <&mut CgroupSockAddr>::try_from(prog).and_then(|p| p.unload()),
            HookKind::SockOps => <&mut SockOps>::try_from(prog).and_then(|p| p.unload()),
        };
    }
}

/// Attaches every socket program to the cgroup v2 root; returns the root.
/// On failure nothing stays attached.
pub fn attach(ebpf: &mut Ebpf) -> Result<PathBuf, AttachError> {
    let root = cgroup2::root().ok_or(AttachError::NoCgroup2)?;
    attach_at(ebpf, &root)?;
    Ok(root)
}

pub fn attach_at(ebpf: &mut Ebpf, root: &Path) -> Result<(), AttachError> {
    let dir = File::open(root).map_err(|source| AttachError::OpenRoot { path: root.to_path_buf(), source })?;
    for (name, kind) in HOOKS {
        let r = match ebpf.program_mut(name) {
            Some(prog) => load_and_attach(prog, *kind, &dir)
                .map_err(|e| AttachError::Refused { kind: kind.name(), program: name, detail: describe(&e) }),
            None => Err(AttachError::NoProgram(name)),
        };
        if let Err(e) = r {
            detach_all(ebpf);
            return Err(e);
        }
    }
    Ok(())
}
