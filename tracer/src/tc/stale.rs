//! What a tracer that did not stop cleanly (SIGKILL, the OOM killer, a
//! power cut of the process) left in netlink-tc mode, found and removed
//! by the next run before it attaches anything ([`sweep`]).
//!
//! - Filters: recognised by [`clsact::is_ours`] (fixed handle, our program
//!   names), and stale when no process holds their program open: a live
//!   tracer keeps its programs' descriptors for as long as it runs, so the
//!   filters of another tracer running now are never touched. Programs
//!   loaded after this run's own (a tracer starting at the same moment)
//!   are left alone too: program ids only grow.
//! - clsact qdiscs: a qdisc carries no mark of who added it, so each
//!   tracer writes the ones it adds to a journal ([`super::journal`])
//!   (a tmpfs: it does not outlive a reboot, and neither do qdiscs). A
//!   qdisc is removed only when the journal of a tracer that is gone says
//!   it added it and no filter is left in it; one the user made, or one
//!   that holds anyone's filters, stays.

use std::{collections::HashSet, fs, io};

use super::{
    clsact::{self, TcSock},
    journal::{Claim, DeadJournals},
};
use crate::ns::Netns;

/// The ids of every BPF program some process holds open (a program fd, or
/// a link fd, which holds its program), from /proc/*/fdinfo.
pub fn held_programs() -> HashSet<u32> {
    let mut held = HashSet::new();
    let Ok(procs) = fs::read_dir("/proc") else { return held };
    for p in procs.flatten() {
        if !p.file_name().to_str().is_some_and(|n| n.bytes().all(|c| c.is_ascii_digit())) {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            if !target.as_os_str().as_encoded_bytes().starts_with(b"anon_inode:bpf") {
                continue;
            }
            let Ok(info) = fs::read_to_string(p.path().join("fdinfo").join(fd.file_name())) else { continue };
            if let Some(id) = info.lines().find_map(|l| l.strip_prefix("prog_id:")).and_then(|v| v.trim().parse().ok()) {
                held.insert(id);
            }
        }
    }
    held
}

/// What [`sweep`] removed and kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub filters: usize,
    pub qdiscs: usize,
    pub namespaces: usize,
    /// Empty clsact qdiscs that had stale filters of ours but no journal
    /// entry: perhaps the user's, so they stay.
    pub kept_unclaimed: usize,
}

impl Swept {
    /// The one line that says what was removed, if anything was found.
    pub fn line(&self) -> Option<String> {
        if self.filters + self.qdiscs + self.kept_unclaimed == 0 {
            return None;
        }
        let ns = if self.namespaces == 1 { "namespace" } else { "namespaces" };
        let mut s = format!(
            "tracer: removed {} filter{} and {} clsact qdisc{} that an earlier tracer left behind (in {} {ns})",
            self.filters,
            if self.filters == 1 { "" } else { "s" },
            self.qdiscs,
            if self.qdiscs == 1 { "" } else { "s" },
            self.namespaces,
        );
        if self.kept_unclaimed > 0 {
            s.push_str(&format!("; kept {} empty clsact qdisc(s) that no tracer recorded adding", self.kept_unclaimed));
        }
        Some(s)
    }
}

/// Removes stale filters of ours in every namespace of `namespaces`, and
/// the clsact qdiscs that dead tracers added and that are left empty.
/// `own_first_id`: the lowest id of this run's programs, loaded before the
/// sweep. Stops early (keeping the journals for the next run) when
/// `cancelled`.
pub fn sweep<'a>(namespaces: impl Iterator<Item = &'a Netns>, own_first_id: u32, cancelled: &dyn Fn() -> bool) -> Swept {
    let dead = DeadJournals::read();
    // Claimed qdiscs that hold others' filters: their claims are kept.
    let mut busy: Vec<Claim> = Vec::new();
    let mut held: Option<HashSet<u32>> = None;
    let mut out = Swept::default();
    let mut complete = true;
    for n in namespaces {
        if cancelled() {
            complete = false;
            break;
        }
        let before = (out.filters, out.qdiscs);
        let r = crate::sys::in_netns(&n.path, || -> io::Result<()> {
            clsact::HeldNs::here(n.inode, n.cookie)?;
            let mut sock = TcSock::open()?;
            for ifindex in sock.clsacts()? {
                let listed = sock.all_filters(ifindex)?;
                let stale: Vec<&clsact::Filter> = listed
                    .iter()
                    .filter(|f| clsact::is_ours(f))
                    .filter(|f| f.bpf_id.is_some_and(|id| id < own_first_id && !held.get_or_insert_with(held_programs).contains(&id)))
                    .collect();
                let mut removed = 0;
                for f in &stale {
                    if sock.del_filter(f).is_ok() {
                        removed += 1;
                    }
                }
                out.filters += removed;
                let name = ifname(n, ifindex);
                let claimed = dead.claims(n.inode, n.cookie, ifindex, &name);
                if listed.len() > removed {
                    if claimed {
                        busy.push(Claim { ns_inode: n.inode, ns_cookie: n.cookie, ifindex, ifname: name });
                    }
                } else if claimed {
                    if sock.del_clsact(ifindex).is_ok() {
                        out.qdiscs += 1;
                    }
                } else if removed > 0 {
                    out.kept_unclaimed += 1;
                }
            }
            Ok(())
        });
        if before != (out.filters, out.qdiscs) {
            out.namespaces += 1;
        }
        if !matches!(r, Ok(Ok(()))) {
            // Not looked at (it may be vanishing, taking everything with
            // it): what a dead tracer claims there is kept for next time.
            busy.extend(dead.files.iter().flat_map(|(_, c)| c).filter(|c| c.in_ns(n.inode, n.cookie)).cloned());
        }
    }
    if complete {
        // The busy claims are rewritten as the namespace names them now;
        // they match the dead journal's own entries by `Claim::is_at`.
        let keep: Vec<Claim> =
            dead.files.iter().flat_map(|(_, c)| c).filter(|c| busy.iter().any(|b| c.is_at(b.ns_inode, b.ns_cookie, b.ifindex, &b.ifname))).cloned().collect();
        dead.settle(&keep);
    }
    out
}

/// The name of `ifindex` in `n` as discovery saw it.
fn ifname(n: &Netns, ifindex: u32) -> String {
    n.interfaces.iter().find(|i| i.ifindex == ifindex).map(|i| i.name.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_was_removed() {
        assert_eq!(Swept::default().line(), None);
        let s = Swept { filters: 6, qdiscs: 2, namespaces: 1, ..Default::default() };
        let l = s.line().expect("line");
        assert_eq!(l, "tracer: removed 6 filters and 2 clsact qdiscs that an earlier tracer left behind (in 1 namespace)");
        assert!(!l.contains('\n'));
        let s = Swept { filters: 1, namespaces: 2, kept_unclaimed: 1, ..Default::default() };
        let l = s.line().expect("line");
        assert!(l.starts_with("tracer: removed 1 filter and 0 clsact qdiscs that an earlier tracer left behind (in 2 namespaces); kept 1 empty"), "{l}");
        // Only kept ones found: still worth a line.
        assert!(Swept { kept_unclaimed: 1, ..Default::default() }.line().is_some());
    }
}
