//! What the drop and TCP programs need to know about the running kernel,
//! read when loading, all from its BTF: which argument list each BTF
//! tracepoint has (`btf_trace_<name>`'s prototype: `kfree_skb` gained
//! `reason` in 5.17 and `rx_sk` in 6.11, and so on), hence which of the
//! programs written for each list to load; the skb, socket and `tcp_sock`
//! offsets; and the names of the kernel's enums (drop and reset reasons:
//! they change between versions, so no table of them is kept here).
//! Why BTF tracepoints rather than classic ones: see tracer-common's `tp`.
//!
//! `tracer doctor` prints [`TRACEPOINTS`] with what this kernel's have.

use std::collections::HashMap;

use tracer_common::{programs as p, tp::SkOffsets};

use super::btf::KernelBtf;

/// One BTF tracepoint the drop or TCP programs attach to.
#[derive(Clone, Copy, Debug)]
pub struct Tracepoint {
    pub name: &'static str,
    /// Its arguments as the programs read them, in order.
    pub args: &'static [Arg],
    /// Programs by how many arguments they read; the one with the most the
    /// kernel has is loaded.
    pub variants: &'static [(&'static str, usize)],
    /// Which commands use it.
    pub used_by: &'static str,
}

/// An argument: its name and its type, as C writes it without qualifiers.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub name: &'static str,
    pub ty: &'static str,
}

const fn arg(name: &'static str, ty: &'static str) -> Arg {
    Arg { name, ty }
}

const SK: Arg = arg("sk", "struct sock *");
const SKB: Arg = arg("skb", "struct sk_buff *");

pub const KFREE_SKB: Tracepoint = Tracepoint {
    name: "kfree_skb",
    args: &[SKB, arg("location", "void *"), arg("reason", "enum skb_drop_reason"), arg("rx_sk", "struct sock *")],
    variants: &[(p::DROP_KFREE_SKB, 2), (p::DROP_KFREE_SKB_REASON, 3), (p::DROP_KFREE_SKB_RX_SK, 4)],
    used_by: "drops, top --by reason, serve, the default job",
};

/// Every tracepoint of `tracer drops` and `tracer tcp` (which `top --by
/// reason`, `serve` and the default job use some of).
pub const TRACEPOINTS: &[Tracepoint] = &[
    KFREE_SKB,
    Tracepoint {
        name: "inet_sock_set_state",
        args: &[SK, arg("oldstate", "int"), arg("newstate", "int")],
        variants: &[(p::TCP_SET_STATE, 3)],
        used_by: "tcp",
    },
    Tracepoint {
        name: "tcp_retransmit_skb",
        args: &[SK, SKB, arg("err", "int")],
        variants: &[(p::TCP_RETRANSMIT, 2), (p::TCP_RETRANSMIT_ERR, 3)],
        used_by: "tcp, serve, the default job",
    },
    Tracepoint {
        name: "tcp_send_reset",
        args: &[SK, SKB, arg("reason", "enum sk_rst_reason")],
        variants: &[(p::TCP_SEND_RESET, 2), (p::TCP_SEND_RESET_REASON, 3)],
        used_by: "tcp, serve",
    },
    Tracepoint { name: "tcp_receive_reset", args: &[SK], variants: &[(p::TCP_RECV_RESET, 1)], used_by: "tcp, serve" },
    Tracepoint { name: "tcp_probe", args: &[SK], variants: &[(p::TCP_PROBE, 1)], used_by: "tcp (RTT)" },
    Tracepoint { name: "tcp_destroy_sock", args: &[SK], variants: &[(p::TCP_DESTROY, 1)], used_by: "tcp" },
];

/// What one tracepoint has on this kernel, for `doctor` and loading.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TpCheck {
    pub tracepoint: &'static str,
    pub used_by: &'static str,
    /// The program to load, when one fits.
    pub program: Option<&'static str>,
    /// The arguments the kernel's prototype has, of those the programs use.
    pub present: Vec<&'static str>,
    /// Those it lacks (older kernels).
    pub missing: Vec<&'static str>,
    /// Why no program fits, when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks `t` against a kernel whose prototype has `args` (or none):
/// the program whose argument list is the longest that matches.
pub fn check(t: &Tracepoint, args: Result<Vec<String>, String>) -> TpCheck {
    let mut c = TpCheck { tracepoint: t.name, used_by: t.used_by, program: None, present: vec![], missing: vec![], error: None };
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            c.missing = t.args.iter().map(|a| a.name).collect();
            c.error = Some(e);
            return c;
        }
    };
    // How many of the expected arguments the kernel has, in order and of
    // the expected types.
    let mut fit = 0;
    for (want, have) in t.args.iter().zip(&args) {
        if want.ty != have {
            c.error = Some(format!("argument {} is {have}, not {}", want.name, want.ty));
            break;
        }
        fit += 1;
    }
    c.present = t.args[..fit].iter().map(|a| a.name).collect();
    c.missing = t.args[fit..].iter().map(|a| a.name).collect();
    c.program = t.variants.iter().filter(|(_, n)| *n <= fit).max_by_key(|(_, n)| *n).map(|(p, _)| *p);
    if c.program.is_none() && c.error.is_none() {
        c.error = Some(format!("its arguments lack {}", c.missing.join(", ")));
    }
    if c.program.is_some() {
        c.error = None;
    }
    c
}

/// Checks every tracepoint of [`TRACEPOINTS`] against the kernel's BTF.
pub fn checks(btf: &KernelBtf) -> Vec<TpCheck> {
    TRACEPOINTS
        .iter()
        .map(|t| {
            let args = btf.tracepoint_args(t.name).map_err(|_| "no such tracepoint in this kernel".to_string());
            check(t, args)
        })
        .collect()
}

/// The skb, socket and `tcp_sock` offsets from BTF; fields this kernel
/// lacks stay `MISSING` and are named in the second value.
pub fn sk_offsets(btf: &KernelBtf) -> (SkOffsets, Vec<String>) {
    let mut o = SkOffsets::missing();
    let mut missing = Vec::new();
    let mut set = |slot: &mut u32, name: &str, path: &str| match btf.offset_of(name, path) {
        Ok(v) => *slot = v,
        Err(_) => missing.push(format!("{name}.{path}")),
    };
    set(&mut o.skb_head, "sk_buff", "head");
    set(&mut o.skb_tail, "sk_buff", "tail");
    set(&mut o.skb_len, "sk_buff", "len");
    set(&mut o.skb_protocol, "sk_buff", "protocol");
    set(&mut o.skb_network_header, "sk_buff", "network_header");
    set(&mut o.skb_mac_header, "sk_buff", "mac_header");
    set(&mut o.skb_sk, "sk_buff", "sk");
    set(&mut o.skb_cb, "sk_buff", "cb");
    set(&mut o.dev_ifindex, "net_device", "ifindex");
    set(&mut o.sk_state, "sock_common", "skc_state");
    set(&mut o.sk_num, "sock_common", "skc_num");
    set(&mut o.sk_dport, "sock_common", "skc_dport");
    set(&mut o.sk_rcv_saddr, "sock_common", "skc_rcv_saddr");
    set(&mut o.sk_daddr, "sock_common", "skc_daddr");
    set(&mut o.sk_v6_rcv_saddr, "sock_common", "skc_v6_rcv_saddr");
    set(&mut o.sk_v6_daddr, "sock_common", "skc_v6_daddr");
    set(&mut o.tcb_seq, "tcp_skb_cb", "seq");
    set(&mut o.tcb_gso_segs, "tcp_skb_cb", "tcp_gso_segs");
    set(&mut o.tp_srtt_us, "tcp_sock", "srtt_us");
    set(&mut o.tp_snd_cwnd, "tcp_sock", "snd_cwnd");
    set(&mut o.tp_bytes_acked, "tcp_sock", "bytes_acked");
    set(&mut o.tp_bytes_received, "tcp_sock", "bytes_received");
    set(&mut o.tp_total_retrans, "tcp_sock", "total_retrans");
    set(&mut o.inet_sport, "inet_sock", "inet_sport");
    set(&mut o.sk_dst_cache, "sock", "sk_dst_cache");
    set(&mut o.dst_dev, "dst_entry", "dev");
    set(&mut o.skb_data, "sk_buff", "data");
    (o, missing)
}

/// Names of a kernel enum's values, read from BTF at run time.
#[derive(Clone, Debug, Default)]
pub struct EnumNames {
    names: HashMap<u64, String>,
}

impl EnumNames {
    /// `enum name`'s members, each without the first of `prefixes` it
    /// starts with (`SKB_DROP_REASON_NETFILTER_DROP` -> `NETFILTER_DROP`).
    /// Empty when the kernel has no such enum (e.g. no drop reasons before 5.17).
    pub fn from_btf(btf: &KernelBtf, name: &str, prefixes: &[&str]) -> Self {
        let members = btf.enum_members(name).unwrap_or_default();
        Self::from_members(members, prefixes)
    }

    pub fn from_members(members: Vec<(String, u64)>, prefixes: &[&str]) -> Self {
        let names = members
            .into_iter()
            .map(|(n, v)| {
                let short = prefixes.iter().find_map(|p| n.strip_prefix(p)).unwrap_or(&n).to_string();
                (v, short)
            })
            .collect();
        Self { names }
    }

    pub fn name(&self, v: u64) -> Option<&str> {
        self.names.get(&v).map(String::as_str)
    }

    /// The value of a name (as [`Self::name`] gives it), case-insensitive.
    pub fn value(&self, name: &str) -> Option<u64> {
        self.names.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(v, _)| *v)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Every name, in value order.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<_> = self.names.iter().collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Vec<String>, String> {
        Ok(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn the_program_follows_each_kernels_arguments() {
        // 6.18: all four.
        let c = check(&KFREE_SKB, args(&["struct sk_buff *", "void *", "enum skb_drop_reason", "struct sock *"]));
        assert_eq!((c.program, c.missing.len(), c.error.as_deref()), (Some(p::DROP_KFREE_SKB_RX_SK), 0, None));
        // 6.1: no rx_sk.
        let c = check(&KFREE_SKB, args(&["struct sk_buff *", "void *", "enum skb_drop_reason"]));
        assert_eq!((c.program, c.missing.clone()), (Some(p::DROP_KFREE_SKB_REASON), vec!["rx_sk"]));
        // 5.10: no reason either.
        let c = check(&KFREE_SKB, args(&["struct sk_buff *", "void *"]));
        assert_eq!((c.program, c.missing.clone()), (Some(p::DROP_KFREE_SKB), vec!["reason", "rx_sk"]));
        // An argument of another type stops the match there, and says so.
        let c = check(&KFREE_SKB, args(&["struct sk_buff *", "void *", "int"]));
        assert_eq!(c.program, Some(p::DROP_KFREE_SKB));
        let c = check(&KFREE_SKB, args(&["struct sk_buff *"]));
        assert_eq!((c.program, c.error.as_deref()), (None, Some("its arguments lack location, reason, rx_sk")));
        let c = check(&KFREE_SKB, args(&["int", "void *"]));
        assert_eq!((c.program, c.error.as_deref()), (None, Some("argument skb is int, not struct sk_buff *")));
        let c = check(&KFREE_SKB, Err("no such tracepoint in this kernel".into()));
        assert_eq!((c.program, c.missing.len()), (None, 4));
        // More arguments than any program reads: the longest program.
        let retrans = TRACEPOINTS.iter().find(|t| t.name == "tcp_retransmit_skb").expect("retrans");
        let c = check(retrans, args(&["struct sock *", "struct sk_buff *", "int", "int"]));
        assert_eq!(c.program, Some(p::TCP_RETRANSMIT_ERR));
    }

    // The running kernel's own BTF (6.18 here): every tracepoint fits,
    // with every argument the programs can use.
    #[test]
    fn this_kernels_tracepoints_and_offsets() {
        let btf = KernelBtf::open().expect("kernel BTF");
        for c in checks(&btf) {
            assert!(c.program.is_some() && c.missing.is_empty(), "{c:?}");
        }
        assert_eq!(
            btf.tracepoint_args("kfree_skb").expect("kfree_skb"),
            ["struct sk_buff *", "void *", "enum skb_drop_reason", "struct sock *"]
        );
        let (o, missing) = sk_offsets(&btf);
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(o.skb_head, btf.offset_of("sk_buff", "head").expect("head"));
        // sk_buff.protocol sits inside the `headers` struct group, found through it.
        assert!(o.skb_protocol > o.skb_len);
        // tcp_gso_segs is in an anonymous union after seq and end_seq.
        assert_eq!(o.tcb_gso_segs, 8);
    }

    #[test]
    fn this_kernels_drop_reasons() {
        let btf = KernelBtf::open().expect("kernel BTF");
        let reasons = EnumNames::from_btf(&btf, "skb_drop_reason", &["SKB_DROP_REASON_", "SKB_"]);
        // As the kernel's own tracepoint prints them.
        let nf = reasons.value("NETFILTER_DROP").expect("NETFILTER_DROP");
        assert_eq!(reasons.name(nf), Some("NETFILTER_DROP"));
        assert_eq!(reasons.name(reasons.value("no_socket").expect("NO_SOCKET")), Some("NO_SOCKET"));
        assert_eq!(reasons.value("NOT_SPECIFIED"), Some(2));
        assert_eq!(reasons.value("CONSUMED"), Some(1));
        assert!(reasons.len() > 60, "{}", reasons.len());
        assert!(reasons.value("NO_SUCH_REASON").is_none());
        // Against the kernel's own table, where tracefs shows it: every
        // `{ N, "NAME" }` of kfree_skb's print format is named alike.
        if let Ok(fmt) = std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/format") {
            let mut n = 0;
            for part in fmt.split("{ ").skip(1) {
                let Some((v, rest)) = part.split_once(", \"") else { continue };
                let (Ok(v), Some(name)) = (v.trim().parse::<u64>(), rest.split('"').next()) else { continue };
                assert_eq!(reasons.name(v), Some(name), "value {v}");
                n += 1;
            }
            assert!(n > 60, "{n} names compared");
        }
        let rst = EnumNames::from_btf(&btf, "sk_rst_reason", &["SK_RST_REASON_"]);
        assert_eq!(rst.name(0), Some("NOT_SPECIFIED"));
        assert!(EnumNames::from_btf(&btf, "no_such_enum_xyz", &[]).is_empty());
    }

    #[test]
    fn enum_names_strip_the_first_matching_prefix() {
        let e = EnumNames::from_members(
            vec![("SKB_NOT_DROPPED_YET".into(), 0), ("SKB_DROP_REASON_NO_SOCKET".into(), 3), ("OTHER".into(), 9)],
            &["SKB_DROP_REASON_", "SKB_"],
        );
        assert_eq!(e.names(), ["NOT_DROPPED_YET", "NO_SOCKET", "OTHER"]);
        assert_eq!(e.value("no_socket"), Some(3));
    }
}
