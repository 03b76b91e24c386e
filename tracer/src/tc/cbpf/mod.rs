//! The whole pcap-filter(7) language in the kernel: libpcap compiles the
//! expression to classic BPF ([`compile`]), [`translate`] turns that into
//! eBPF the verifier accepts, and [`sys`] loads it as a separate
//! `SCHED_CLS` program that the TC capture programs reach by tail call.
//!
//! Why a tail call: aya loads the capture programs from the ELF and has no
//! hook to splice instructions into them before the load, so the filter is
//! its own program in a `BPF_MAP_TYPE_PROG_ARRAY` shared with them. The
//! chain, per packet:
//!
//! ```text
//!   TC hook: capture entry program (aya)
//!     -- bpf_tail_call(PROGS, FILTER_<link>_<dir>) -->  filter (ours)
//!          match:    bpf_tail_call(PROGS, CAPTURE_<dir>) --> capture body (aya)
//!          no match: return TC_ACT_UNSPEC (the packet goes on untouched)
//! ```
//!
//! The entry program must treat a failed tail call into an installed
//! filter slot as "no match", never as "capture" (a slot is empty only when
//! no filter is set), and the capture body must not tail-call the filter
//! again. Two tail calls per packet, far below the kernel's limit of 33.
//! [`layout`] has the slot numbers; [`FilterSet`] loads and installs the
//! four filter programs (Ethernet and raw-IP link types, ingress and
//! egress). Every program the filters return is `TC_ACT_UNSPEC` (-1), or
//! whatever the capture body returns: traffic is never changed.
//!
//! Which link type an interface gets: [`LinkType::Ethernet`] when its
//! frames carry a link-layer header in TC (`ARPHRD_ETHER` and
//! `ARPHRD_LOOPBACK`: veth, bridge, macvlan, vxlan, lo), [`LinkType::RawIp`]
//! when `skb->data` starts at the IP header (`ARPHRD_NONE`: tun, wireguard;
//! `ARPHRD_TUNNEL`/`TUNNEL6`/`SIT`: ipip, ip6tnl, sit), as libpcap itself
//! picks `DLT_EN10MB` or `DLT_RAW` for a live capture on them. libpcap's
//! code depends on it, hence one program per link type.
//!
//! Userspace matching (`tracer packets -r`) uses libpcap's own interpreter:
//! [`matches`] / [`Filter::matches`].

pub mod compile;
pub mod drops;
mod expr;
pub mod insn;
#[cfg(test)]
mod interp;
pub mod sys;
pub mod translate;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

pub use expr::PacketFilter;
pub use compile::{CompileError, Dialect, Filter, LinkType, SNAPLEN, matches};
pub use sys::{BpfError, LoadedProgram};
pub use translate::{Action, Direction, FrameOptions, Options, TranslateError, translate, translate_frame};

/// TC's "no opinion, go on": what the filter returns when a packet does
/// not match (or the capture slot is empty).
pub const TC_ACT_UNSPEC: i32 = -1;

/// Slots of the program array the capture programs and the filters share.
/// (tracer-common's `slots`, which the kernel programs use.)
pub mod layout {
    pub use tracer_common::slots::{
        CAPTURE_EGRESS, CAPTURE_INGRESS, FILTER_ETH_EGRESS, FILTER_ETH_INGRESS, FILTER_RAW_EGRESS, FILTER_RAW_INGRESS, SLOTS,
    };

    /// The filter slot for a link type and direction.
    pub fn filter_slot(link: super::LinkType, dir: super::Direction) -> u32 {
        use super::{Direction::*, LinkType::*};
        match (link, dir) {
            (Ethernet, Ingress) => FILTER_ETH_INGRESS,
            (Ethernet, Egress) => FILTER_ETH_EGRESS,
            (RawIp, Ingress) => FILTER_RAW_INGRESS,
            (RawIp, Egress) => FILTER_RAW_EGRESS,
        }
    }

    pub fn capture_slot(dir: super::Direction) -> u32 {
        match dir {
            super::Direction::Ingress => CAPTURE_INGRESS,
            super::Direction::Egress => CAPTURE_EGRESS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// libpcap refused the expression: a usage error (exit 2).
    #[error("{0}")]
    Compile(#[from] CompileError),
    #[error("cannot translate the filter for the kernel: {0}")]
    Translate(#[from] TranslateError),
    #[error("cannot load the filter program: {0}")]
    Load(#[from] BpfError),
}

/// One translated and loaded filter program.
#[derive(Debug)]
pub struct KernelFilter {
    pub link: LinkType,
    pub direction: Direction,
    /// libpcap's program (`None` when libpcap has no code for this link
    /// type, e.g. `ether host` on raw IP: the program then never matches).
    pub cbpf: Option<Filter>,
    /// Why libpcap had no code for this link type.
    pub unavailable: Option<String>,
    pub ebpf_len: usize,
    pub program: LoadedProgram,
}

impl KernelFilter {
    /// Compiles, translates and loads `expr` for one link type and hook;
    /// a match tail-calls `prog_array[capture_index]`.
    pub fn load(expr: &str, link: LinkType, direction: Direction, prog_array: BorrowedFd<'_>, capture_index: u32) -> Result<Self, FilterError> {
        let (cbpf, unavailable) = compile_for(expr, link)?;
        Self::from_filter(cbpf, unavailable, link, direction, prog_array, capture_index)
    }

    fn from_filter(
        cbpf: Option<Filter>,
        unavailable: Option<String>,
        link: LinkType,
        direction: Direction,
        prog_array: BorrowedFd<'_>,
        capture_index: u32,
    ) -> Result<Self, FilterError> {
        let never = [insn::CbpfInsn { code: insn::c::RET | insn::c::K, jt: 0, jf: 0, k: 0 }];
        let code = cbpf.as_ref().map_or(&never[..], |f| f.instructions());
        let opts = Options {
            direction: Some(direction),
            on_match: Action::TailCall { prog_array_fd: prog_array.as_raw_fd(), index: capture_index, fallback: TC_ACT_UNSPEC },
            on_no_match: Action::Return(TC_ACT_UNSPEC),
        };
        let ebpf = translate(code, &opts)?;
        let program = sys::load_sched_cls("pcap_filter", &ebpf)?;
        Ok(KernelFilter { link, direction, cbpf, unavailable, ebpf_len: ebpf.len(), program })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.program.fd.as_fd()
    }
}

/// libpcap's kernel code for `expr` on `link`, or why there is none for a
/// raw-IP link (an Ethernet-only expression such as `ether host`: no
/// packet of such a device can match it, as `tcpdump -i tun0` would refuse it).
fn compile_for(expr: &str, link: LinkType) -> Result<(Option<Filter>, Option<String>), CompileError> {
    match Filter::compile(expr, link, Dialect::Kernel) {
        Ok(f) => Ok((Some(f), None)),
        Err(CompileError::Expression(why)) if link == LinkType::RawIp => Ok((None, Some(why))),
        Err(e) => Err(e),
    }
}

/// The four filter programs of one expression, installed in their slots.
/// Keep it alive while the capture runs; the program array holds its own
/// references, and the programs go when it and this are both gone.
#[derive(Debug)]
pub struct FilterSet {
    pub filters: Vec<KernelFilter>,
}

impl FilterSet {
    /// Loads the filter for every link type and direction and puts each in
    /// its [`layout`] slot of `prog_array`; matches continue into
    /// [`layout::CAPTURE_INGRESS`] / [`layout::CAPTURE_EGRESS`].
    /// An expression libpcap refuses gives [`FilterError::Compile`].
    pub fn install(expr: &str, prog_array: BorrowedFd<'_>) -> Result<Self, FilterError> {
        let mut filters = Vec::with_capacity(4);
        for link in [LinkType::Ethernet, LinkType::RawIp] {
            let (cbpf, unavailable) = compile_for(expr, link)?;
            for dir in [Direction::Ingress, Direction::Egress] {
                let capture = layout::capture_slot(dir);
                let f = KernelFilter::from_filter(cbpf.clone(), unavailable.clone(), link, dir, prog_array, capture)?;
                sys::prog_array_set(prog_array, layout::filter_slot(link, dir), f.fd())?;
                filters.push(f);
            }
        }
        Ok(FilterSet { filters })
    }
}
