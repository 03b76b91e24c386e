//! `tracer drops`: every packet the kernel drops, with its reason (the
//! running kernel's `enum skb_drop_reason`, read from BTF), the function
//! that dropped it (symbolised through /proc/kallsyms), its namespace,
//! container and interface, and its headers decoded as `tracer packets`
//! decodes them; as text, JSON lines or pcapng.
//!
//! Layers, data flowing one way: the `skb:kfree_skb` program (tracer-ebpf
//! drops.rs; selection, reasons and the packet filter, libpcap's code
//! translated by `tc::cbpf::drops`, applied in the kernel) -> the ring buffer ->
//! [`event`] (decode, name, symbolise with [`kallsyms`]; the same filter on
//! the copied bytes of what the kernel sent unfiltered) -> output. Its job ([`DropsJob`]) is validated here, run
//! by the application.

pub mod event;
pub mod kallsyms;

use std::path::PathBuf;

use crate::{
    bpf::tp::EnumNames,
    ns::did_you_mean,
    sys::text,
    tc::{cbpf::PacketFilter, follow::Selection},
};

/// The prefixes the kernel gives its drop reason names, left out as users
/// write them (`NETFILTER_DROP`).
pub const REASON_PREFIXES: &[&str] = &["SKB_DROP_REASON_", "SKB_"];

/// The validated form of `tracer drops`.
#[derive(Clone, Debug)]
pub struct DropsJob {
    /// Namespaces, and `-i` (`None`: every interface, and drops without one).
    pub select: Selection,
    /// `--reason`: the kernel's values of the names given.
    pub reasons: Option<Vec<(String, u32)>>,
    pub snaplen: u32,
    pub write: Option<PathBuf>,
    /// libpcap's, run on the bytes copied of each drop: in the kernel
    /// (`tc::cbpf::drops`), else in userspace; matches everything when no
    /// expression was given.
    pub filter: PacketFilter,
}

impl DropsJob {
    /// Whether a drop passes `-i`: its device's name matches a glob.
    pub fn wants_iface(&self, ifname: Option<&str>) -> bool {
        match (&self.select.iface_globs, ifname) {
            (None, _) => true,
            (Some(globs), Some(n)) => globs.iter().any(|g| crate::sys::glob_match(g, n)),
            (Some(_), None) => false,
        }
    }
}

/// `--reason A,B` against the kernel's names (`names`): an unknown name is
/// refused with close ones named; the sentence is a usage error's.
pub fn parse_reasons(list: &str, names: &EnumNames) -> Result<Vec<(String, u32)>, String> {
    if names.is_empty() {
        return Err("this kernel gives no drop reasons (skb:kfree_skb has them from Linux 5.17 on): --reason cannot select".into());
    }
    let mut out = Vec::new();
    for n in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let n = n.strip_prefix("SKB_DROP_REASON_").unwrap_or(n);
        match names.value(n) {
            // The kernel's reason bitmap has 256 bits.
            Some(v) if v < 256 => out.push((n.to_ascii_uppercase(), v as u32)),
            Some(_) => return Err(format!("drop reason {} cannot be selected in the kernel (value beyond 255)", text::name(n))),
            None => {
                let all = names.names();
                return Err(format!("unknown drop reason {}{}", text::name(n), did_you_mean(all.iter().copied(), &n.to_ascii_uppercase())));
            }
        }
    }
    if out.is_empty() {
        return Err("--reason needs at least one reason name, e.g. NETFILTER_DROP".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_checked_against_the_kernels_names() {
        let names = EnumNames::from_members(
            vec![("SKB_DROP_REASON_NO_SOCKET".into(), 3), ("SKB_DROP_REASON_NETFILTER_DROP".into(), 12), ("SKB_DROP_REASON_HUGE".into(), 300)],
            &["SKB_DROP_REASON_"],
        );
        assert_eq!(parse_reasons("netfilter_drop, NO_SOCKET", &names).expect("ok"), [("NETFILTER_DROP".into(), 12), ("NO_SOCKET".into(), 3)]);
        assert_eq!(parse_reasons("SKB_DROP_REASON_NO_SOCKET", &names).expect("ok"), [("NO_SOCKET".into(), 3)]);
        let m = parse_reasons("NETFILTER_DORP", &names).expect_err("a typo");
        assert!(m.contains("NETFILTER_DROP"), "{m}");
        assert!(parse_reasons(" , ", &names).is_err());
        assert!(parse_reasons("HUGE", &names).is_err());
        assert!(parse_reasons("NO_SOCKET", &EnumNames::default()).expect_err("no reasons").contains("5.17"));
    }

    #[test]
    fn iface_globs_leave_out_drops_without_a_device() {
        let mut job = DropsJob { select: Selection::default(), reasons: None, snaplen: 0, write: None, filter: PacketFilter::match_all() };
        assert!(job.wants_iface(None) && job.wants_iface(Some("eth0")));
        job.select.iface_globs = Some(vec!["veth*".into()]);
        assert!(job.wants_iface(Some("veth1")));
        assert!(!job.wants_iface(Some("eth0")));
        assert!(!job.wants_iface(None));
    }
}
