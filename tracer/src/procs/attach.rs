//! The socket programs of process attribution, attached to the root of the
//! cgroup v2 hierarchy ([`super::cgroup2`]) with BPF links (kernel >= 5.7;
//! `sock_release` needs 5.9), which run beside whatever programs systemd
//! or a container runtime put there. A link closes with
//! the tracer, however it ends, so nothing stays attached. Either all of
//! them attach or none stays: a kernel that refuses one kind leaves the
//! tracer without process fields, never with half of them.
//!
//! `sock_ops` comes in two forms ([`SockOps`]): the one that asks for the
//! current task, and, for kernels whose verifier refuses `sock_ops` the
//! current-task helpers (6.1: "unknown func bpf_get_current_pid_tgid#14"),
//! one without them, loaded only after the first was refused for that.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, Program, ProgramError, SockOps as SockOpsProgram},
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

/// The form of `sock_ops` program that one of [`HOOKS`] stands for when
/// the kernel refuses it the current-task helpers.
const SOCK_OPS_FALLBACK: (&str, HookKind) = (p::SOCK_OPS_NOTASK, HookKind::SockOps);

/// Which `sock_ops` program is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockOps {
    /// `sock_tcp_ops`: listen and connect events carry the task that made
    /// them.
    WithTask,
    /// `sock_ops_notask`, because the kernel refused the other one; the
    /// verifier's line saying so. Listen and connect events carry no task:
    /// the owner stays the one the cgroup programs recorded for the socket.
    WithoutTask(String),
}

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
            let prog: &mut SockOpsProgram = prog.try_into()?;
            prog.load()?;
            prog.attach(root, MODE)?;
        }
    }
    Ok(())
}

/// The verifier's line, when it refused a program for calling one of the
/// current-task helpers (`bpf_get_current_pid_tgid`, `_uid_gid`,
/// `_cgroup_id`, `_comm`, ...) that the program type is not offered.
pub fn task_helpers_refused(e: &ProgramError) -> Option<String> {
    let ProgramError::LoadError { verifier_log, .. } = e else { return None };
    task_helper_line(&verifier_log.to_string())
}

/// The line of a verifier log that refuses a current-task helper.
fn task_helper_line(log: &str) -> Option<String> {
    // 6.1 says "unknown func bpf_get_current_pid_tgid#14"; Debian's 6.12
    // "program of this type cannot use helper bpf_get_current_uid_gid#15".
    let refuses = |l: &str| l.starts_with("unknown func bpf_get_current_") || l.starts_with("program of this type cannot use helper bpf_get_current_");
    let line = log.lines().map(str::trim).find(|l| refuses(l))?;
    Some(crate::sys::text::field(line, crate::sys::text::SENTENCE_MAX).into_owned())
}

/// Loads and attaches `sock_tcp_ops`, else, where the kernel refuses it
/// the current-task helpers, `sock_ops_notask`. Any other refusal is
/// reported as the first program's. `TRACER_SOCK_OPS=notask` takes the
/// second where the kernel would take the first, so that it can be tested
/// on a kernel that offers the helpers.
fn attach_sock_ops(ebpf: &mut Ebpf, dir: &File) -> Result<SockOps, AttachError> {
    let kind = HookKind::SockOps;
    let refused = |program: &'static str, e: &ProgramError| AttachError::Refused { kind: kind.name(), program, detail: describe(e) };
    let why = if std::env::var("TRACER_SOCK_OPS").is_ok_and(|v| v == "notask") {
        "TRACER_SOCK_OPS=notask".to_string()
    } else {
        let prog = ebpf.program_mut(p::SOCK_OPS).ok_or(AttachError::NoProgram(p::SOCK_OPS))?;
        let first = match load_and_attach(prog, kind, dir) {
            Ok(()) => return Ok(SockOps::WithTask),
            Err(e) => e,
        };
        task_helpers_refused(&first).ok_or_else(|| refused(p::SOCK_OPS, &first))?
    };
    let (name, kind) = SOCK_OPS_FALLBACK;
    let prog = ebpf.program_mut(name).ok_or(AttachError::NoProgram(name))?;
    load_and_attach(prog, kind, dir).map_err(|e| refused(name, &e))?;
    Ok(SockOps::WithoutTask(why))
}

/// Unloads (and so detaches) every socket program that was loaded.
pub fn detach_all(ebpf: &mut Ebpf) {
    for (name, kind) in HOOKS.iter().chain([&SOCK_OPS_FALLBACK]) {
        let Some(prog) = ebpf.program_mut(name) else { continue };
        let _ = match kind {
            HookKind::CgroupSock => <&mut CgroupSock>::try_from(prog).and_then(|p| p.unload()),
            HookKind::CgroupSockAddr => <&mut CgroupSockAddr>::try_from(prog).and_then(|p| p.unload()),
            HookKind::SockOps => <&mut SockOpsProgram>::try_from(prog).and_then(|p| p.unload()),
        };
    }
}

/// Attaches every socket program to the cgroup v2 root; returns the root
/// and the `sock_ops` program chosen. On failure nothing stays attached.
pub fn attach(ebpf: &mut Ebpf) -> Result<(PathBuf, SockOps), AttachError> {
    let root = cgroup2::root().ok_or(AttachError::NoCgroup2)?;
    let ops = attach_at(ebpf, &root)?;
    Ok((root, ops))
}

pub fn attach_at(ebpf: &mut Ebpf, root: &Path) -> Result<SockOps, AttachError> {
    let dir = File::open(root).map_err(|source| AttachError::OpenRoot { path: root.to_path_buf(), source })?;
    let mut ops = SockOps::WithTask;
    for (name, kind) in HOOKS {
        let r = if *kind == HookKind::SockOps {
            attach_sock_ops(ebpf, &dir).map(|o| ops = o)
        } else {
            match ebpf.program_mut(name) {
                Some(prog) => load_and_attach(prog, *kind, &dir)
                    .map_err(|e| AttachError::Refused { kind: kind.name(), program: name, detail: describe(&e) }),
                None => Err(AttachError::NoProgram(name)),
            }
        };
        if let Err(e) = r {
            detach_all(ebpf);
            return Err(e);
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::task_helper_line;

    #[test]
    fn only_a_refused_current_task_helper_falls_back() {
        let log = "0: R1=ctx(off=0,imm=0) R10=fp0\n191: (85) call bpf_get_current_pid_tgid#14\nunknown func bpf_get_current_pid_tgid#14\nprocessed 80 insns\n";
        assert_eq!(task_helper_line(log).as_deref(), Some("unknown func bpf_get_current_pid_tgid#14"));
        assert_eq!(task_helper_line("unknown func bpf_get_current_comm#16\n").as_deref(), Some("unknown func bpf_get_current_comm#16"));
        // How Debian's 6.12 words it.
        let log612 = "0: R1=ctx() R10=fp0\n; program of this type cannot use helper bpf_get_current_uid_gid#15\nprogram of this type cannot use helper bpf_get_current_uid_gid#15\nprocessed 12 insns\n";
        assert_eq!(task_helper_line(log612).as_deref(), Some("program of this type cannot use helper bpf_get_current_uid_gid#15"));
        assert_eq!(task_helper_line("program of this type cannot use helper bpf_sk_storage_get#107\n"), None);
        // Any other refusal is not this one: reported, not worked around.
        assert_eq!(task_helper_line("unknown func bpf_sk_storage_get#107\n"), None);
        assert_eq!(task_helper_line("R1 invalid mem access 'scalar'\nprocessed 3 insns\n"), None);
        assert_eq!(task_helper_line(""), None);
        // A hostile log line stays one printable line.
        let odd = task_helper_line("unknown func bpf_get_current_\x1b[2J#14\n").unwrap_or_default();
        assert!(!odd.contains('\x1b'), "{odd:?}");
    }
}
