//! The one table of every hook the tracer uses, and the generic code that
//! loads and attaches them. `tracer doctor` probes the program kinds in it
//! against the running kernel.

use aya::{
    Btf, Ebpf,
    programs::{
        BtfTracePoint, FEntry, FExit, KProbe, Lsm, ProgramError, SchedClassifier, TracePoint,
        tc::{self, NlOptions, TcAttachOptions, TcAttachType},
        links::LinkOrder,
    },
};
use tracer_common::programs as p;

use super::describe;

/// Program kinds the tracer can use, as `tracer doctor` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    Tracepoint,
    TpBtf,
    Tcx,
    NetlinkTc,
    Fentry,
    Fexit,
    Lsm,
    Kprobe,
}

impl ProgramKind {
    pub const ALL: [ProgramKind; 8] = [
        Self::Tracepoint,
        Self::TpBtf,
        Self::Tcx,
        Self::NetlinkTc,
        Self::Fentry,
        Self::Fexit,
        Self::Lsm,
        Self::Kprobe,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::TpBtf => "tp_btf",
            Self::Tcx => "tcx",
            Self::NetlinkTc => "netlink-tc",
            Self::Fentry => "fentry",
            Self::Fexit => "fexit",
            Self::Lsm => "lsm",
            Self::Kprobe => "kprobe",
        }
    }

    /// The first mainline kernel that has it.
    pub const fn min_kernel(self) -> &'static str {
        match self {
            Self::Tracepoint => "4.7",
            Self::TpBtf => "5.5",
            Self::Tcx => "6.6",
            Self::NetlinkTc => "4.1",
            Self::Fentry | Self::Fexit => "5.5",
            Self::Lsm => "5.7",
            Self::Kprobe => "4.1",
        }
    }

    /// The tiny program `doctor` loads to probe this kind.
    pub const fn probe_program(self) -> &'static str {
        match self {
            Self::Tracepoint => p::PROBE_TRACEPOINT,
            Self::TpBtf => p::PROBE_TP_BTF,
            Self::Tcx | Self::NetlinkTc => p::PROBE_TC,
            Self::Fentry => p::PROBE_FENTRY,
            Self::Fexit => p::PROBE_FEXIT,
            Self::Lsm => p::PROBE_LSM,
            Self::Kprobe => p::PROBE_KPROBE,
        }
    }
}

/// What a capability of the tracer needs from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    NetlinkAudit,
    PacketTracing,
    /// `tracer top`: counters per interface and flow.
    Top,
    /// `tracer drops`: `skb:kfree_skb`.
    Drops,
    /// `tracer tcp`: the TCP and socket tracepoints.
    Tcp,
}

impl Capability {
    pub const fn name(self) -> &'static str {
        match self {
            Self::NetlinkAudit => "netlink audit",
            Self::PacketTracing => "packet tracing",
            Self::Top => "top",
            Self::Drops => "drops",
            Self::Tcp => "tcp",
        }
    }

    /// The BTF tracepoints ([`super::tp::TRACEPOINTS`]) it cannot do
    /// without: a kernel whose prototype of one fits none of its programs
    /// cannot run it.
    pub const fn needs_tracepoints(self) -> &'static [&'static str] {
        match self {
            Self::Drops => &["kfree_skb"],
            Self::Tcp => &["inet_sock_set_state", "tcp_retransmit_skb"],
            _ => &[],
        }
    }
}

/// Where a tracepoint hook attaches.
#[derive(Clone, Copy, Debug)]
pub struct TracepointHook {
    pub program: &'static str,
    pub category: &'static str,
    pub name: &'static str,
}

/// Every hook of the netlink audit, loaded and attached by [`attach_tracepoints`].
pub const NETLINK_HOOKS: &[TracepointHook] = &[
    TracepointHook { program: p::NL_SENDMSG, category: "syscalls", name: "sys_enter_sendmsg" },
    TracepointHook { program: p::NL_SENDTO, category: "syscalls", name: "sys_enter_sendto" },
    TracepointHook { program: p::NL_SENDMMSG, category: "syscalls", name: "sys_enter_sendmmsg" },
    TracepointHook { program: p::NL_WRITE, category: "syscalls", name: "sys_enter_write" },
    TracepointHook { program: p::NL_WRITEV, category: "syscalls", name: "sys_enter_writev" },
    TracepointHook { program: p::NL_RECVMSG_ENTER, category: "syscalls", name: "sys_enter_recvmsg" },
    TracepointHook { program: p::NL_RECVMSG_EXIT, category: "syscalls", name: "sys_exit_recvmsg" },
    TracepointHook { program: p::NL_RECVFROM_ENTER, category: "syscalls", name: "sys_enter_recvfrom" },
    TracepointHook { program: p::NL_RECVFROM_EXIT, category: "syscalls", name: "sys_exit_recvfrom" },
];

/// Which program kinds each capability can run on, in order of preference.
pub const CAPABILITY_KINDS: &[(Capability, &[ProgramKind])] = &[
    (Capability::NetlinkAudit, &[ProgramKind::Tracepoint]),
    (Capability::PacketTracing, &[ProgramKind::Tcx, ProgramKind::NetlinkTc]),
    (Capability::Top, &[ProgramKind::Tcx, ProgramKind::NetlinkTc]),
    (Capability::Drops, &[ProgramKind::TpBtf]),
    (Capability::Tcp, &[ProgramKind::TpBtf]),
];

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("the eBPF object has no program {0}")]
    NoProgram(&'static str),
    #[error("cannot load {program}: {}", load_failure(source))]
    Load { program: &'static str, source: ProgramError },
    #[error("cannot attach {program} to {target}: {source}")]
    Attach { program: &'static str, target: String, source: ProgramError },
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(std::io::Error),
}

/// Why the kernel refused a program. The verifier's log runs to thousands
/// of lines and says why at its end, so its last lines are what a person
/// needs (`bpftool prog load` shows all of it).
fn load_failure(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(VERIFIER_TAIL)..].join(" | ");
            format!("the kernel refused it ({io_error}); the verifier's last lines: {tail}")
        }
        other => other.to_string(),
    }
}

/// Lines of the verifier's log kept in a load error.
const VERIFIER_TAIL: usize = 4;

/// Loads and attaches tracepoint hooks. Links live as long as `ebpf`.
pub fn attach_tracepoints(ebpf: &mut Ebpf, hooks: &[TracepointHook]) -> Result<(), HookError> {
    crate::sys::ensure_tracefs().map_err(HookError::Tracefs)?;
    for h in hooks {
        let prog: &mut TracePoint = ebpf
            .program_mut(h.program)
            .ok_or(HookError::NoProgram(h.program))?
            .try_into()
            .map_err(|source| HookError::Load { program: h.program, source })?;
        prog.load().map_err(|source| HookError::Load { program: h.program, source })?;
        prog.attach(h.category, h.name).map_err(|source| HookError::Attach {
            program: h.program,
            target: format!("{}/{}", h.category, h.name),
            source,
        })?;
    }
    Ok(())
}

/// Loads the BTF tracepoint programs of `hooks` (program, tracepoint)
/// and attaches them. Links live as long as `ebpf`.
pub fn attach_btf_tracepoints(ebpf: &mut Ebpf, btf: &Btf, hooks: &[(&'static str, &'static str)]) -> Result<(), HookError> {
    for &(program, tracepoint) in hooks {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(program)
            .ok_or(HookError::NoProgram(program))?
            .try_into()
            .map_err(|source| HookError::Load { program, source })?;
        prog.load(tracepoint, btf).map_err(|source| HookError::Load { program, source })?;
        prog.attach().map_err(|source| HookError::Attach { program, target: format!("tp_btf/{tracepoint}"), source })?;
    }
    Ok(())
}

/// Result of probing one program kind.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub ok: bool,
    pub detail: String,
}

/// Characters of a refusal's reason shown in doctor's table.
const PROBE_DETAIL_MAX: usize = 160;

/// Loads and attaches the tiny program of `kind`, then detaches it.
pub fn probe(ebpf: &mut Ebpf, btf: Option<&Btf>, kind: ProgramKind) -> ProbeResult {
    let name = kind.probe_program();
    let r = probe_inner(ebpf, btf, kind, name);
    match r {
        Ok(()) => ProbeResult { ok: true, detail: String::new() },
        // One cell of doctor's table.
        Err(detail) => ProbeResult { ok: false, detail: detail.chars().take(PROBE_DETAIL_MAX).collect() },
    }
}

fn probe_inner(ebpf: &mut Ebpf, btf: Option<&Btf>, kind: ProgramKind, name: &str) -> Result<(), String> {
    let prog = ebpf.program_mut(name).ok_or_else(|| format!("no program {name} in the object"))?;
    let need_btf = || btf.ok_or_else(|| "the kernel has no BTF".to_string());
    match kind {
        ProgramKind::Tracepoint => {
            crate::sys::ensure_tracefs().map_err(|e| format!("tracefs: {e}"))?;
            let prog: &mut TracePoint = prog.try_into().map_err(|e| describe(&e))?;
            prog.load().map_err(|e| describe(&e))?;
            let link = prog.attach("syscalls", "sys_enter_getppid").map_err(|e| describe(&e))?;
            prog.detach(link).map_err(|e| describe(&e))?;
        }
        ProgramKind::TpBtf => {
            let prog: &mut BtfTracePoint = prog.try_into().map_err(|e| describe(&e))?;
            prog.load("sys_enter", need_btf()?).map_err(|e| describe(&e))?;
            let link = prog.attach().map_err(|e| describe(&e))?;
            prog.detach(link).map_err(|e| describe(&e))?;
        }
        ProgramKind::Fentry => {
            let prog: &mut FEntry = prog.try_into().map_err(|e| describe(&e))?;
            prog.load("netlink_sendmsg", need_btf()?).map_err(|e| describe(&e))?;
            let link = prog.attach().map_err(|e| describe(&e))?;
            prog.detach(link).map_err(|e| describe(&e))?;
        }
        ProgramKind::Fexit => {
            let prog: &mut FExit = prog.try_into().map_err(|e| describe(&e))?;
            prog.load("netlink_sendmsg", need_btf()?).map_err(|e| describe(&e))?;
            let link = prog.attach().map_err(|e| describe(&e))?;
            prog.detach(link).map_err(|e| describe(&e))?;
        }
        ProgramKind::Lsm => {
            let prog: &mut Lsm = prog.try_into().map_err(|e| describe(&e))?;
            prog.load("socket_create", need_btf()?).map_err(|e| describe(&e))?;
            let link = prog.attach().map_err(|e| describe(&e))?;
            prog.detach(link).map_err(|e| describe(&e))?;
            // Kernels built with BPF LSM but booted without it in their LSM
            // list (Debian's 5.10) accept the program and never run it.
            if let Some(lsms) = crate::sys::active_lsms()
                && !lsms.iter().any(|l| l == "bpf")
            {
                return Err(format!("attaches but never runs: bpf is not among the active LSMs ({}); boot with lsm=...,bpf", lsms.join(",")));
            }
        }
        ProgramKind::Kprobe => {
            let prog: &mut KProbe = prog.try_into().map_err(|e| describe(&e))?;
            prog.load().map_err(|e| describe(&e))?;
            let link = prog.attach("netlink_sendmsg", 0).map_err(|e| describe(&e))?;
            prog.detach(link).map_err(|e| describe(&e))?;
        }
        ProgramKind::Tcx | ProgramKind::NetlinkTc => {
            let prog: &mut SchedClassifier = prog.try_into().map_err(|e| describe(&e))?;
            if prog.fd().is_err() {
                prog.load().map_err(|e| describe(&e))?;
            }
            probe_tc_in_scratch_netns(prog, kind)?;
        }
    }
    Ok(())
}

/// Attaches a TC program to `lo` of a throwaway network namespace, which
/// disappears with the thread, so the probe touches nothing of the host.
fn probe_tc_in_scratch_netns(prog: &mut SchedClassifier, kind: ProgramKind) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects only this thread, which exits afterwards.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
            }
            let opts = match kind {
                ProgramKind::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                _ => {
                    tc::qdisc_add_clsact("lo").map_err(|e| format!("adding clsact qdisc: {e}"))?;
                    TcAttachOptions::Netlink(NlOptions::default())
                }
            };
            let link = prog
                .attach_with_options("lo", TcAttachType::Ingress, opts)
                .map_err(|e| describe(&e))?;
            prog.detach(link).map_err(|e| describe(&e))?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err("probe thread panicked".into()))
    })
}
