//! The kernel's own counters of each traced interface (`IFLA_STATS_LINK_64`,
//! what `ip -s link` shows), read for `tracer top` by interface or
//! container without a filter: the kernel counts every packet anyway, so
//! reading those costs the packets nothing, where a TC program on each
//! interface costs every packet a few hundred nanoseconds.
//!
//! A route socket answers for the namespace it was opened in, so one is
//! kept per namespace (opened from inside it, checked by cookie) and asked
//! for every link's counters once per report. A socket holds its namespace
//! alive: each is closed as soon as its namespace is no longer covered.

use std::{
    collections::{BTreeMap, HashMap, HashSet, hash_map::Entry},
    path::PathBuf,
};

use tracer_common::{
    packet::{DIR_EGRESS, DIR_INGRESS},
    top::IfaceKey,
};

use super::counters::Total;
use crate::ns::rtnl::Rtnl;

/// One route socket per covered namespace, by inode, with the cookie of
/// the namespace it was opened in.
#[derive(Default)]
pub struct IfaceStats {
    socks: HashMap<u64, (Option<u64>, Rtnl)>,
}

impl IfaceStats {
    /// The running totals of every `tracked` (namespace, ifindex): received
    /// as ingress, sent as egress, as the programs would key them.
    /// `entry`: how to enter each namespace. A namespace that cannot be
    /// entered or asked (it is going away) is skipped this time.
    pub fn read(&mut self, entry: &BTreeMap<u64, (PathBuf, Option<u64>)>, tracked: &HashSet<(u64, u32)>) -> Vec<(IfaceKey, Total)> {
        let namespaces: HashSet<u64> = tracked.iter().map(|(ns, _)| *ns).collect();
        // Sockets of namespaces no longer covered (or entered anew under a
        // reused inode) go first: they keep their namespace alive.
        self.socks.retain(|ino, (cookie, _)| namespaces.contains(ino) && entry.get(ino).is_some_and(|(_, c)| c == cookie));
        let mut out = Vec::with_capacity(tracked.len() * 2);
        for ino in namespaces {
            let Some((path, cookie)) = entry.get(&ino) else { continue };
            let sock = match self.socks.entry(ino) {
                Entry::Occupied(e) => &mut e.into_mut().1,
                Entry::Vacant(e) => {
                    let Ok(Ok(sock)) = crate::sys::in_netns(path, Rtnl::open) else { continue };
                    // The path may name another namespace by now.
                    if cookie.is_some() && sock.cookie() != *cookie {
                        continue;
                    }
                    &mut e.insert((*cookie, sock)).1
                }
            };
            let Ok(stats) = sock.stats() else {
                self.socks.remove(&ino);
                continue;
            };
            for s in stats.into_iter().filter(|s| tracked.contains(&(ino, s.ifindex))) {
                let key = |direction| IfaceKey { netns_ino: ino as u32, ifindex: s.ifindex, direction, _pad: [0; 7] };
                out.push((key(DIR_INGRESS), Total { packets: s.rx_packets, bytes: s.rx_bytes, created_ns: 0 }));
                out.push((key(DIR_EGRESS), Total { packets: s.tx_packets, bytes: s.tx_bytes, created_ns: 0 }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_loopback_counters_are_read_and_sockets_follow_the_namespaces() {
        // The own namespace needs no privilege to be asked.
        let path = PathBuf::from("/proc/thread-self/ns/net");
        let probe = crate::sys::in_netns(&path, Rtnl::open).expect("enter own namespace").expect("route socket");
        let cookie = probe.cookie();
        let ino = std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("own namespace");
        let entry = BTreeMap::from([(ino, (path, cookie))]);
        let mut s = IfaceStats::default();
        let got = s.read(&entry, &HashSet::from([(ino, 1u32)]));
        let dirs: Vec<u8> = got.iter().map(|(k, _)| k.direction).collect();
        assert_eq!(dirs, vec![DIR_INGRESS, DIR_EGRESS], "lo, both directions: {got:?}");
        assert!(got.iter().all(|(k, _)| k.ifindex == 1 && u64::from(k.netns_ino) == ino & 0xffff_ffff));
        assert_eq!(s.socks.len(), 1);
        // An interface that is not tracked is not reported; a namespace
        // with nothing tracked loses its socket.
        assert!(s.read(&entry, &HashSet::new()).is_empty());
        assert!(s.socks.is_empty());
    }
}
