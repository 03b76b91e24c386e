//! The packet filter of `tracer drops` in the kernel. libpcap's code for
//! the expression (the very code userspace matches with: Ethernet, as a
//! capture file gets it) is translated into a tracing program for the
//! `kfree_skb` BTF tracepoint that reads the frame the drop program copied
//! into [`maps::DROP_FRAME`] (`tc::cbpf::translate_frame`). It goes into
//! [`maps::DROP_PROGS`] beside the emitter ([`p::DROP_EMIT`]): the drop
//! program tail-calls it, a match tail-calls the emitter, a miss sends
//! nothing. The kernel lets a tracing program tail-call only programs of
//! the same type, attach type and attach point (`bpf_prog_map_compatible`),
//! which all three are.
//!
//! When any step fails (a kernel that refuses the program or the tail
//! call) the drop program finds the filter slot empty and sends every
//! record, and userspace applies the same code: [`Placement`] says which,
//! for the ready line and `tracer doctor`. Here, below the capabilities,
//! because `drops` runs it and `doctor` tries it.

use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    Ebpf,
    maps::Map,
    programs::{BtfTracePoint, ProgramError},
};
use tracer_common::{
    drops::{DROP_FRAME_MAX, drop_frame, drop_slots},
    maps, programs as p,
};

use super::{Dialect, Filter, FrameOptions, LinkType, LoadedProgram, sys, translate_frame};
use crate::bpf::{btf::KernelBtf, describe};

/// Where the filter of `tracer drops` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the kernel: a program of `insns` eBPF instructions.
    Kernel { insns: usize },
    /// In userspace, on every record the kernel sends; why not in the kernel.
    Userspace(String),
}

impl Placement {
    /// For the ready line: `in the kernel` / `in userspace (why)`.
    pub fn describe(&self) -> String {
        match self {
            Placement::Kernel { .. } => "in the kernel".into(),
            Placement::Userspace(why) => format!("in userspace ({why})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Btf(#[from] crate::bpf::btf::BtfError),
    #[error("the object has no map {0}")]
    NoMap(&'static str),
    #[error("the emitter program: {0}")]
    Emitter(String),
    #[error("cannot translate the filter: {0}")]
    Translate(#[from] super::TranslateError),
    #[error("the kernel refused the filter program: {0}")]
    Load(super::BpfError),
    #[error("the kernel refused the tail call into the filter: {0}")]
    Install(super::BpfError),
}

/// The filter program, installed; the program array holds it too, this
/// keeps the descriptor (and its verifier statistics) while the job runs.
#[derive(Debug)]
pub struct KernelDropFilter {
    _program: LoadedProgram,
    pub insns: usize,
}

fn map_fd<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<BorrowedFd<'a>, InstallError> {
    match ebpf.map(name) {
        Some(Map::ProgramArray(m)) | Some(Map::PerCpuArray(m)) => Ok(m.fd().as_fd()),
        _ => Err(InstallError::NoMap(name)),
    }
}

/// Loads the emitter and the translated `filter` and puts both into
/// [`maps::DROP_PROGS`] of `ebpf` (the object whose drop program runs
/// with `ObsConfig::drop_filter` set). The emitter is loaded once.
pub fn install(ebpf: &mut Ebpf, filter: &Filter) -> Result<KernelDropFilter, InstallError> {
    let btf_id = KernelBtf::open()?.tracepoint_type_id("kfree_skb")?;
    let aya_btf = aya::Btf::from_sys_fs().map_err(|e| InstallError::Emitter(format!("cannot read the kernel's BTF: {e}")))?;
    let emit: &mut BtfTracePoint = ebpf
        .program_mut(p::DROP_EMIT)
        .ok_or_else(|| InstallError::Emitter(format!("no program {}", p::DROP_EMIT)))?
        .try_into()
        .map_err(|e: ProgramError| InstallError::Emitter(describe(&e)))?;
    if emit.fd().is_err() {
        emit.load("kfree_skb", &aya_btf).map_err(|e| InstallError::Emitter(describe(&e)))?;
    }
    let progs = map_fd(ebpf, maps::DROP_PROGS)?;
    let frame = map_fd(ebpf, maps::DROP_FRAME)?;
    let off = |v: usize| v as i16;
    let fo = FrameOptions {
        frame_map_fd: std::os::fd::AsRawFd::as_raw_fd(&frame),
        busy_off: off(drop_frame::BUSY),
        cap_off: off(drop_frame::CAP),
        wire_off: off(drop_frame::WIRE),
        data_off: off(drop_frame::DATA),
        data_max: DROP_FRAME_MAX as u32,
        prog_array_fd: std::os::fd::AsRawFd::as_raw_fd(&progs),
        emit_index: drop_slots::EMIT,
    };
    let insns = translate_frame(filter.instructions(), &fo)?;
    let program = sys::load_btf_tracepoint("drop_filter", &insns, btf_id).map_err(InstallError::Load)?;
    let emit_fd = match ebpf.program(p::DROP_EMIT).map(|p| p.fd()) {
        Some(Ok(fd)) => fd.as_fd(),
        _ => return Err(InstallError::Emitter("not loaded".into())),
    };
    let progs = map_fd(ebpf, maps::DROP_PROGS)?;
    sys::prog_array_set(progs, drop_slots::EMIT, emit_fd).map_err(InstallError::Install)?;
    // The filter last: the drop program tail-calls it from then on.
    sys::prog_array_set(progs, drop_slots::FILTER, program.fd.as_fd()).map_err(InstallError::Install)?;
    Ok(KernelDropFilter { _program: program, insns: insns.len() })
}

/// One line of `e` for the ready line and `doctor`: a verifier log is
/// cut to its last line (what it refused).
pub fn one_line(e: &InstallError) -> String {
    let s = e.to_string();
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().to_string();
    match lines.next_back() {
        Some(last) => format!("{first} {last}"),
        None => first,
    }
}

/// `tracer doctor`: whether this kernel takes the filter, tried for real
/// on `ebpf` (loaded, nothing attached): the drop program this kernel's
/// `kfree_skb` fits (`program`), then the emitter and a filter for `udp`
/// put into its program array, which is where a kernel refuses to mix
/// programs. Nothing stays attached; the programs go with `ebpf`.
pub fn probe(ebpf: &mut Ebpf, program: Option<&'static str>) -> Placement {
    let Some(program) = program else {
        return Placement::Userspace("no drop program fits this kernel's kfree_skb".into());
    };
    let tried = (|| -> Result<KernelDropFilter, InstallError> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| InstallError::Emitter(format!("cannot read the kernel's BTF: {e}")))?;
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(program)
            .ok_or_else(|| InstallError::Emitter(format!("no program {program}")))?
            .try_into()
            .map_err(|e: ProgramError| InstallError::Emitter(describe(&e)))?;
        if prog.fd().is_err() {
            prog.load("kfree_skb", &btf).map_err(|e| InstallError::Emitter(format!("{program}: {}", describe(&e))))?;
        }
        let udp = Filter::compile("udp", LinkType::Ethernet, Dialect::File).map_err(|e| InstallError::Emitter(e.to_string()))?;
        install(ebpf, &udp)
    })();
    match tried {
        Ok(k) => Placement::Kernel { insns: k.insns },
        Err(e) => Placement::Userspace(one_line(&e)),
    }
}
