//! clsact + cls_bpf over rtnetlink: the TC attachment of kernels without
//! TCX (before 6.6, or `TRACER_TC=netlink`). Unlike a TCX link, a filter is
//! not tied to the process that made it: it stays after a kill and keeps
//! running a program nobody reads. So everything here is made to be found
//! and removed again, by this run or by the next one ([`super::stale`]):
//!
//! - Filters carry a fixed priority ([`PRIO`]), a handle whose upper half
//!   is [`HANDLE_MAJOR`] (`0x7472`, "tr"), and the program's name;
//!   [`is_ours`] recognises them.
//! - An attachment holds its namespace open (a file descriptor, not a path
//!   such as `/proc/PID/ns/net`, which after PID reuse names another
//!   namespace) and checks the namespace's cookie before it detaches.
//! - A filter is deleted only where the kernel still lists our program at
//!   its priority and handle; a clsact qdisc only when the tracer added it
//!   and no filter is left in it.
//!
//! The route socket here reads only the few fields it needs from the
//! kernel's answers, with checked attribute iteration: the filters of
//! other users (root in any container's namespace) are listed too.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
    sync::Arc,
    time::Duration,
};

use aya::programs::{
    ProgramError, SchedClassifier,
    tc::{self, NlOptions, TcAttachOptions, TcAttachType, TcError, TcHandle},
};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::protocols::NETLINK_ROUTE;
use tracer_common::programs as p;

use super::journal::{Claim, DeadJournals, Journal};
use crate::sys::nlmsg::{self, NlSocket};

/// The priority of the tracer's filters: 1, the first a filter can have,
/// so that no filter before it can redirect or drop a packet unseen.
pub const PRIO: u16 = 1;
/// The upper half of the tracer's filter handles ("tr"); the lower half
/// starts at 1 and is only higher when another live tracer holds 1.
pub const HANDLE_MAJOR: u16 = 0x7472;
/// How many handles are tried before giving up on an interface.
const HANDLE_TRIES: u16 = 16;
/// Every program the tracer attaches as a cls_bpf filter.
pub const PROGRAM_NAMES: [&str; 4] = [p::PKT_INGRESS, p::PKT_EGRESS, p::TOP_INGRESS, p::TOP_EGRESS];

/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)` and `..._EGRESS`.
pub const PARENT_INGRESS: u32 = 0xFFFF_FFF2;
pub const PARENT_EGRESS: u32 = 0xFFFF_FFF3;
/// The clsact qdisc: parent `TC_H_CLSACT`, handle `ffff:`.
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const CLSACT_HANDLE: u32 = 0xFFFF_0000;

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const RTM_GETTFILTER: u16 = 46;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_CHAIN: u16 = 11;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
/// Answers must come quickly: a namespace being torn down must not hang us.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One tc filter as the kernel lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub ifindex: u32,
    pub parent: u32,
    pub prio: u16,
    /// Host byte order (`ETH_P_ALL` is 3).
    pub protocol: u16,
    pub handle: u32,
    pub chain: u32,
    pub kind: String,
    /// cls_bpf only: `TCA_BPF_NAME` and `TCA_BPF_ID`.
    pub bpf_name: Option<String>,
    pub bpf_id: Option<u32>,
}

/// Whether a filter is one the tracer attaches: cls_bpf, our handle, our
/// program's name. Whether it is stale is a separate question (whether
/// any live process holds its program).
pub fn is_ours(f: &Filter) -> bool {
    f.kind == "bpf" && (f.handle >> 16) as u16 == HANDLE_MAJOR && f.bpf_name.as_deref().is_some_and(|n| PROGRAM_NAMES.contains(&n))
}

/// The fixed part of a request or answer (`struct tcmsg`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tcm {
    ifindex: u32,
    handle: u32,
    parent: u32,
    info: u32,
}

const TCM_LEN: usize = 20;

/// A request: `nlmsghdr`, `tcmsg`, then string or u32 attributes.
fn encode(ty: u16, flags: u16, seq: u32, tcm: Tcm, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&[0; 4]); // length, set below
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    b.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    for v in [tcm.ifindex, tcm.handle, tcm.parent, tcm.info] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    for (kind, value) in attrs {
        let len = 4 + value.len();
        b.extend_from_slice(&(len as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        b.resize(b.len().next_multiple_of(4), 0);
    }
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_ne_bytes());
    b
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The `tcmsg` of an answer and its attributes: kind, options, chain.
fn parse_tc(payload: &[u8]) -> Option<(Tcm, Filter)> {
    let tcm = Tcm {
        ifindex: u32_at(payload, 4)?,
        handle: u32_at(payload, 8)?,
        parent: u32_at(payload, 12)?,
        info: u32_at(payload, 16)?,
    };
    let mut f = Filter {
        ifindex: tcm.ifindex,
        parent: tcm.parent,
        prio: (tcm.info >> 16) as u16,
        protocol: u16::from_be(tcm.info as u16),
        handle: tcm.handle,
        ..Default::default()
    };
    for (ty, v) in nlmsg::attrs(payload.get(TCM_LEN..)?) {
        match ty {
            TCA_KIND => f.kind = nlmsg::attr_str(v),
            TCA_CHAIN => f.chain = u32_at(v, 0).unwrap_or(0),
            TCA_OPTIONS => {
                for (ty, v) in nlmsg::attrs(v) {
                    match ty {
                        TCA_BPF_NAME => f.bpf_name = Some(nlmsg::attr_str(v)),
                        TCA_BPF_ID => f.bpf_id = u32_at(v, 0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((tcm, f))
}

/// A route socket for tc, answering for the namespace the thread was in
/// when it was opened.
pub struct TcSock {
    sock: NlSocket,
}

impl TcSock {
    pub fn open() -> io::Result<Self> {
        Ok(Self { sock: NlSocket::open(NETLINK_ROUTE, TIMEOUT)? })
    }

    /// The namespace's cookie; `None` before Linux 5.14.
    pub fn cookie(&self) -> Option<u64> {
        self.sock.cookie()
    }

    /// Sends a request and returns the payloads of the answers of type
    /// `answer` (all of a dump; none for a plain request, which ends with
    /// its ack).
    fn request(&mut self, ty: u16, flags: u16, tcm: Tcm, attrs: &[(u16, &[u8])], answer: u16) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.sock.next_seq();
        let mut out = Vec::new();
        self.sock.exchange(&encode(ty, flags, seq, tcm, attrs), seq, flags & NLM_F_DUMP == NLM_F_DUMP, |m| {
            if m.header.msg_type == answer {
                out.push(m.payload.to_vec());
            }
        })?;
        Ok(out)
    }

    /// Interfaces (ifindex) that have a clsact qdisc.
    pub fn clsacts(&mut self) -> io::Result<Vec<u32>> {
        let msgs = self.request(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, Tcm::default(), &[], RTM_NEWQDISC)?;
        Ok(msgs
            .iter()
            .filter_map(|m| parse_tc(m))
            .filter(|(tcm, f)| f.kind == "clsact" && tcm.parent == TC_H_CLSACT)
            .map(|(tcm, _)| tcm.ifindex)
            .collect())
    }

    /// The filters on one side of an interface's clsact, every chain.
    /// The entry the kernel lists for a priority itself (handle 0) is left out.
    pub fn filters(&mut self, ifindex: u32, parent: u32) -> io::Result<Vec<Filter>> {
        let tcm = Tcm { ifindex, parent, ..Default::default() };
        let msgs = self.request(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP, tcm, &[], RTM_NEWTFILTER)?;
        Ok(msgs.iter().filter_map(|m| parse_tc(m)).map(|(_, f)| f).filter(|f| f.handle != 0).collect())
    }

    /// Every filter on both sides of an interface's clsact.
    pub fn all_filters(&mut self, ifindex: u32) -> io::Result<Vec<Filter>> {
        let mut v = self.filters(ifindex, PARENT_INGRESS)?;
        v.extend(self.filters(ifindex, PARENT_EGRESS)?);
        Ok(v)
    }

    /// Deletes one filter, named by everything the kernel listed it with
    /// (its kind included, so a filter of another kind is never hit).
    pub fn del_filter(&mut self, f: &Filter) -> io::Result<()> {
        let tcm = Tcm { ifindex: f.ifindex, handle: f.handle, parent: f.parent, info: (u32::from(f.prio) << 16) | u32::from(f.protocol.to_be()) };
        let chain = f.chain.to_ne_bytes();
        let mut kind = f.kind.clone().into_bytes();
        kind.push(0);
        let mut attrs: Vec<(u16, &[u8])> = vec![(TCA_KIND, &kind)];
        if f.chain != 0 {
            attrs.push((TCA_CHAIN, &chain));
        }
        self.request(RTM_DELTFILTER, NLM_F_REQUEST | NLM_F_ACK, tcm, &attrs, 0).map(|_| ())
    }

    /// Removes the clsact qdisc of `ifindex`, and with it any filter in it.
    pub fn del_clsact(&mut self, ifindex: u32) -> io::Result<()> {
        let tcm = Tcm { ifindex, handle: CLSACT_HANDLE, parent: TC_H_CLSACT, info: 0 };
        self.request(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, tcm, &[(TCA_KIND, b"clsact\0")], 0).map(|_| ())
    }
}

/// The namespace the thread is in, held open, once it is known to be the
/// one that was meant.
#[derive(Clone, Debug)]
pub struct HeldNs {
    fd: Arc<OwnedFd>,
    pub inode: u64,
    pub cookie: Option<u64>,
}

impl HeldNs {
    /// Opens the thread's namespace and checks it is `inode` (and has
    /// `cookie`, when known): a path such as `/proc/PID/ns/net` may name
    /// another namespace by the time it is entered.
    pub fn here(inode: u64, cookie: Option<u64>) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let f = File::open("/proc/thread-self/ns/net")?;
        if f.metadata()?.ino() != inode {
            return Err(io::Error::other("the namespace was replaced"));
        }
        let cookie = match (cookie, TcSock::open()?.cookie()) {
            (Some(want), Some(got)) if want != got => return Err(io::Error::other("the namespace was replaced")),
            (want, got) => got.or(want),
        };
        Ok(Self { fd: Arc::new(f.into()), inode, cookie })
    }

    /// Runs `f` inside this namespace, entered by its descriptor; fails,
    /// without running `f`, if its cookie is not the one recorded.
    pub fn enter<T>(&self, f: impl FnOnce(&mut TcSock) -> io::Result<T>) -> io::Result<T> {
        let path = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        crate::sys::in_netns(Path::new(&path), || {
            let mut sock = TcSock::open()?;
            if let (Some(want), Some(got)) = (self.cookie, sock.cookie())
                && want != got
            {
                return Err(io::Error::other("namespace cookie mismatch: not detaching"));
            }
            f(&mut sock)
        })?
    }
}

/// One filter the tracer attached.
#[derive(Clone, Copy, Debug)]
struct Placed {
    parent: u32,
    prio: u16,
    handle: u32,
    /// The program's kernel id (0 when the kernel cannot tell it).
    prog_id: u32,
    name: &'static str,
}

impl Placed {
    fn is(&self, f: &Filter) -> bool {
        f.kind == "bpf"
            && f.parent == self.parent
            && f.prio == self.prio
            && f.handle == self.handle
            && if self.prog_id != 0 { f.bpf_id == Some(self.prog_id) } else { f.bpf_name.as_deref() == Some(self.name) }
    }
}

/// The two filters on one interface, and the clsact qdisc if we added it.
#[derive(Debug)]
pub struct NlAttachment {
    ns: HeldNs,
    ifindex: u32,
    ifname: String,
    placed: Vec<Placed>,
    /// The clsact qdisc was added by the tracer (and is in the journal).
    claim: Option<Claim>,
}

/// A program to attach: the program, its name and kernel id.
pub struct Prog<'a> {
    pub prog: &'a mut SchedClassifier,
    pub name: &'static str,
    pub id: u32,
}

fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::TcError(TcError::NetlinkError(e)) => e.raw_os_error(),
        ProgramError::TcError(TcError::IoError(e)) => e.raw_os_error(),
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

/// Attaches one program with our priority and the first free handle of ours.
fn attach_filter(p: &mut Prog<'_>, ifname: &str, ty: TcAttachType, parent: u32) -> Result<Placed, ProgramError> {
    let (mut prio, mut minor) = (PRIO, 1);
    loop {
        let opts = NlOptions { priority: prio, handle: TcHandle::new(HANDLE_MAJOR, minor), ..Default::default() };
        let r = p.prog.attach_with_options(ifname, ty, TcAttachOptions::Netlink(opts)).and_then(|id| p.prog.take_link(id));
        match r {
            Ok(link) => {
                let placed = Placed { parent, prio: link.priority()?, handle: u32::from(link.handle()?), prog_id: p.id, name: p.name };
                // Dropping the link would detach it by ifindex in whatever
                // namespace the thread is in then; `release` does it with
                // checks instead. It holds no descriptor.
                std::mem::forget(link);
                return Ok(placed);
            }
            // Another live tracer holds this handle.
            Err(e) if errno(&e) == Some(libc::EEXIST) && minor < HANDLE_TRIES => minor += 1,
            // Priority 1 holds filters of another kind or protocol: let the
            // kernel choose (the handle and name still tell ours).
            Err(e) if errno(&e) == Some(libc::EINVAL) && prio == PRIO => prio = 0,
            Err(e) => return Err(e),
        }
    }
}

/// Attaches ingress and egress to `ifname`, from inside its namespace
/// (`ns`, the thread's), adding a clsact qdisc when there is none.
pub fn attach(ns: &HeldNs, ingress: Prog<'_>, egress: Prog<'_>, ifname: &str, journal: &mut Journal) -> Result<NlAttachment, ProgramError> {
    let ifindex = crate::sys::netns::ifindex_of(ifname).map_err(|e| ProgramError::TcError(TcError::IoError(e)))?;
    let mut att = NlAttachment { ns: ns.clone(), ifindex, ifname: ifname.to_string(), placed: Vec::with_capacity(2), claim: None };
    match tc::qdisc_add_clsact(ifname) {
        Ok(()) => {
            // Recorded before any filter goes in, so that a kill from now on
            // leaves a qdisc the next run knows to be the tracer's.
            let c = Claim { ns_inode: ns.inode, ns_cookie: ns.cookie, ifindex, ifname: ifname.to_string() };
            journal.add(&c);
            att.claim = Some(c);
        }
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    for (mut p, ty, parent) in [(ingress, TcAttachType::Ingress, PARENT_INGRESS), (egress, TcAttachType::Egress, PARENT_EGRESS)] {
        match attach_filter(&mut p, ifname, ty, parent) {
            Ok(placed) => att.placed.push(placed),
            Err(e) => {
                // Undo the half that worked, still inside the namespace.
                if let Ok(mut sock) = TcSock::open() {
                    let _ = att.detach_here(&mut sock, journal, false);
                }
                return Err(e);
            }
        }
    }
    Ok(att)
}

/// What [`NlAttachment::release`] did with the clsact qdisc.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// It was ours and is gone.
    pub qdisc_removed: bool,
    /// It was ours but now holds filters of others, so it stays.
    pub qdisc_kept: bool,
}

impl NlAttachment {
    /// Detaches both filters and removes the clsact qdisc if it was ours
    /// (or `claimed_by_dead`: a tracer that is gone added it) and is empty,
    /// entering the namespace by its descriptor.
    pub fn release(mut self, journal: &mut Journal, claimed_by_dead: bool) -> io::Result<Released> {
        let ns = self.ns.clone();
        ns.enter(|sock| self.detach_here(sock, journal, claimed_by_dead))
    }

    /// The same, in the thread's namespace, which must be this one's.
    fn detach_here(&mut self, sock: &mut TcSock, journal: &mut Journal, claimed_by_dead: bool) -> io::Result<Released> {
        let mut out = Released::default();
        for p in std::mem::take(&mut self.placed) {
            let listed = match sock.filters(self.ifindex, p.parent) {
                Ok(v) => v,
                // The interface (and everything on it) is gone.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::EINVAL | libc::ENOENT)) => return Ok(out),
                Err(e) => return Err(e),
            };
            if let Some(f) = listed.iter().find(|f| p.is(f)) {
                match sock.del_filter(f) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if self.claim.is_none() && !claimed_by_dead {
            return Ok(out);
        }
        let left = match sock.all_filters(self.ifindex) {
            Ok(v) => v.len(),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::EINVAL | libc::ENOENT)) => 0,
            Err(e) => return Err(e),
        };
        if left == 0 {
            match sock.del_clsact(self.ifindex) {
                Ok(()) => out.qdisc_removed = true,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::EINVAL | libc::ENOENT)) => {}
                Err(e) => return Err(e),
            }
            if let Some(c) = self.claim.take() {
                journal.del(&c);
            }
        } else {
            // Someone else's filters went into our qdisc: it is theirs now.
            // The journal keeps the claim, so that it goes once empty.
            out.qdisc_kept = true;
        }
        Ok(out)
    }

    /// The journal entry of the qdisc we added, if we did.
    pub fn claim(&self) -> Option<&Claim> {
        self.claim.as_ref()
    }

    /// Whether the journal of a tracer that is gone says it added this
    /// interface's clsact qdisc.
    pub fn is_claimed_by(&self, dead: &DeadJournals) -> bool {
        dead.claims(self.ns.inode, self.ns.cookie, self.ifindex, &self.ifname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWTFILTER answer as the kernel writes it for a cls_bpf filter.
    fn filter_msg(handle: u32, prio: u16, name: &str, id: u32) -> Vec<u8> {
        let mut opts = Vec::new();
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        for (k, v) in [(TCA_BPF_NAME, name), (TCA_BPF_ID, id.to_ne_bytes().to_vec())] {
            opts.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            opts.extend_from_slice(&k.to_ne_bytes());
            opts.extend_from_slice(&v);
            opts.resize(opts.len().next_multiple_of(4), 0);
        }
        let tcm = Tcm { ifindex: 2, handle, parent: PARENT_INGRESS, info: (u32::from(prio) << 16) | u32::from(3u16.to_be()) };
        let msg = encode(RTM_NEWTFILTER, 0, 1, tcm, &[(TCA_KIND, b"bpf\0"), (TCA_CHAIN, &0u32.to_ne_bytes()), (TCA_OPTIONS, &opts)]);
        msg[16..].to_vec()
    }

    #[test]
    fn a_filter_answer_parses_and_ours_are_recognised() {
        let (_, f) = parse_tc(&filter_msg(0x7472_0001, 1, "pkt_ingress", 42)).expect("parses");
        assert_eq!((f.ifindex, f.parent, f.prio, f.protocol, f.handle), (2, PARENT_INGRESS, 1, 3, 0x7472_0001));
        assert_eq!((f.kind.as_str(), f.bpf_name.as_deref(), f.bpf_id), ("bpf", Some("pkt_ingress"), Some(42)));
        assert!(is_ours(&f));
        // Another handle, another name, another kind: not ours.
        assert!(!is_ours(&parse_tc(&filter_msg(1, 1, "pkt_ingress", 42)).expect("parses").1));
        assert!(!is_ours(&parse_tc(&filter_msg(0x7472_0001, 1, "cil_from_container", 42)).expect("parses").1));
        assert!(!is_ours(&Filter { kind: "u32".into(), ..f.clone() }));
        let placed = Placed { parent: PARENT_INGRESS, prio: 1, handle: 0x7472_0001, prog_id: 42, name: "pkt_ingress" };
        assert!(placed.is(&f));
        assert!(!Placed { prog_id: 43, ..placed }.is(&f), "same place, another program");
        assert!(Placed { prog_id: 0, ..placed }.is(&f), "by name when the id is unknown");
    }

    #[test]
    fn broken_answers_give_partial_results_not_panics() {
        let good = filter_msg(0x7472_0001, 1, "pkt_ingress", 42);
        for cut in 0..good.len() {
            let _ = parse_tc(&good[..cut]);
        }
        let mut bad = good.clone();
        // An attribute claiming more bytes than there are.
        bad[TCM_LEN] = 0xff;
        let (_, f) = parse_tc(&bad).expect("header still parses");
        assert!(!is_ours(&f));
    }

    #[test]
    fn requests_are_aligned_and_sized() {
        let m = encode(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, 7, Tcm { ifindex: 3, handle: CLSACT_HANDLE, parent: TC_H_CLSACT, info: 0 }, &[(TCA_KIND, b"clsact\0")]);
        assert_eq!(m.len(), 16 + TCM_LEN + 12);
        assert_eq!(u32_at(&m, 0), Some(m.len() as u32));
        let walked: Vec<_> = nlmsg::messages(&m).map(|x| (x.header.msg_type, x.header.seq, x.is_whole())).collect();
        assert_eq!(walked, vec![(RTM_DELQDISC, 7, true)]);
    }
}
