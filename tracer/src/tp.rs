//! What the drop and TCP tracepoint programs need to know about the
//! running kernel, read when loading: where each field sits in the
//! tracepoint records (the tracefs `format` files; layouts differ between
//! 5.10, 6.1, 6.12 and 6.18), the skb, socket and `tcp_sock` offsets (BTF),
//! and the names of the kernel's enums (drop and reset reasons, from BTF:
//! they change between versions, so no table of them is kept here).
//!
//! `tracer doctor` prints [`TRACEPOINTS`] with what this kernel's records
//! carry.

use std::{collections::HashMap, io, path::Path};

use tracer_common::{
    programs as p,
    tp::{MISSING, SkOffsets, TpOffsets},
};

use crate::btf::KernelBtf;

/// One field of a tracepoint record, from its `format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C type as the format file writes it (`void *`, `__u8`, ...).
    pub ty: String,
    pub offset: u32,
    pub size: u32,
}

/// Parses a tracefs `format` file into its fields (common ones included).
/// Lines that are not fields, or fields it cannot read, are skipped.
pub fn parse_format(text: &str) -> Vec<Field> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else { continue };
        let mut decl = None;
        let (mut offset, mut size) = (None, None);
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<u32>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u32>().ok();
            } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else { continue };
        // "unsigned char saddr[4]" -> name "saddr", type "unsigned char".
        let decl = decl.split('[').next().unwrap_or(decl).trim_end();
        let Some(split) = decl.rfind(|c: char| c.is_whitespace() || c == '*') else { continue };
        let name = decl[split + 1..].trim();
        let ty = decl[..=split].trim();
        if name.is_empty() {
            continue;
        }
        out.push(Field { name: name.to_string(), ty: ty.to_string(), offset, size });
    }
    out
}

/// One tracepoint the drop or TCP programs attach to.
#[derive(Clone, Copy, Debug)]
pub struct Tracepoint {
    pub program: &'static str,
    pub category: &'static str,
    pub name: &'static str,
    /// Fields the program cannot do without.
    pub required: &'static [&'static str],
    /// Fields it uses where the kernel has them (newer kernels).
    pub optional: &'static [&'static str],
    /// Which command uses it.
    pub used_by: &'static str,
}

impl Tracepoint {
    pub fn path(&self) -> String {
        format!("{}/{}", self.category, self.name)
    }
}

pub const KFREE_SKB: Tracepoint = Tracepoint {
    program: p::DROP_KFREE_SKB,
    category: "skb",
    name: "kfree_skb",
    required: &["skbaddr", "location"],
    optional: &["reason", "rx_sk"],
    used_by: "drops, top",
};

/// Every tracepoint of `tracer drops` and `tracer tcp`.
pub const TRACEPOINTS: &[Tracepoint] = &[
    KFREE_SKB,
    Tracepoint {
        program: p::TCP_SET_STATE,
        category: "sock",
        name: "inet_sock_set_state",
        required: &["skaddr", "oldstate", "newstate"],
        optional: &["protocol"],
        used_by: "tcp",
    },
    Tracepoint {
        program: p::TCP_RETRANSMIT,
        category: "tcp",
        name: "tcp_retransmit_skb",
        required: &["skaddr"],
        optional: &["skbaddr", "state"],
        used_by: "tcp, top",
    },
    Tracepoint {
        program: p::TCP_SEND_RESET,
        category: "tcp",
        name: "tcp_send_reset",
        required: &["skaddr"],
        optional: &["skbaddr", "reason"],
        used_by: "tcp, top",
    },
    Tracepoint {
        program: p::TCP_RECV_RESET,
        category: "tcp",
        name: "tcp_receive_reset",
        required: &["skaddr"],
        optional: &[],
        used_by: "tcp, top",
    },
    Tracepoint {
        program: p::TCP_PROBE,
        category: "tcp",
        name: "tcp_probe",
        required: &["skaddr"],
        optional: &["srtt", "snd_cwnd"],
        used_by: "tcp (RTT)",
    },
    Tracepoint {
        program: p::TCP_DESTROY,
        category: "tcp",
        name: "tcp_destroy_sock",
        required: &["skaddr"],
        optional: &[],
        used_by: "tcp",
    },
];

/// The TCP tracepoints `top` counts with.
pub const TCP_COUNT_PROGRAMS: &[&str] = &[p::TCP_RETRANSMIT, p::TCP_SEND_RESET, p::TCP_RECV_RESET];

/// The fields of one tracepoint on this kernel, `None` when it has no
/// such tracepoint (or tracefs cannot be read).
pub fn read_fields(tracefs: &Path, t: &Tracepoint) -> io::Result<HashMap<String, Field>> {
    let text = std::fs::read_to_string(tracefs.join("events").join(t.category).join(t.name).join("format"))?;
    Ok(parse_format(&text).into_iter().map(|f| (f.name.clone(), f)).collect())
}

/// What one tracepoint's record carries here, for `doctor` and loading.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TpCheck {
    pub tracepoint: String,
    pub used_by: &'static str,
    /// The tracepoint exists and has every required field.
    pub usable: bool,
    pub present: Vec<&'static str>,
    pub missing: Vec<&'static str>,
    /// Why not usable, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks every tracepoint of [`TRACEPOINTS`] against `tracefs`, and
/// fills the record offsets the programs get.
pub fn tp_offsets(tracefs: &Path) -> (TpOffsets, Vec<TpCheck>) {
    let mut o = TpOffsets::missing();
    let mut checks = Vec::new();
    for t in TRACEPOINTS {
        let fields = read_fields(tracefs, t);
        let mut check = TpCheck { tracepoint: t.path(), used_by: t.used_by, usable: false, present: vec![], missing: vec![], error: None };
        let fields = match fields {
            Ok(f) => f,
            Err(e) => {
                check.error = Some(if e.kind() == io::ErrorKind::NotFound { "no such tracepoint in this kernel".into() } else { e.to_string() });
                check.missing = t.required.iter().chain(t.optional).copied().collect();
                checks.push(check);
                continue;
            }
        };
        for f in t.required.iter().chain(t.optional) {
            if fields.contains_key(*f) {
                check.present.push(f);
            } else {
                check.missing.push(f);
            }
        }
        check.usable = t.required.iter().all(|f| fields.contains_key(*f));
        if !check.usable {
            check.error = Some(format!("its record lacks {}", t.required.iter().filter(|f| !fields.contains_key(**f)).copied().collect::<Vec<_>>().join(", ")));
        }
        // An offset is handed over only with the size the program reads.
        let at = |name: &str, size: u32| fields.get(name).filter(|f| f.size == size).map_or(MISSING, |f| f.offset);
        if check.usable {
            match t.program {
                p::DROP_KFREE_SKB => {
                    o.kfree_skbaddr = at("skbaddr", 8);
                    o.kfree_location = at("location", 8);
                    o.kfree_rx_sk = at("rx_sk", 8);
                    o.kfree_reason = at("reason", 4);
                }
                p::TCP_SET_STATE => {
                    o.state_skaddr = at("skaddr", 8);
                    o.state_old = at("oldstate", 4);
                    o.state_new = at("newstate", 4);
                    o.state_protocol = at("protocol", 2);
                }
                p::TCP_RETRANSMIT => {
                    o.retrans_skaddr = at("skaddr", 8);
                    o.retrans_skbaddr = at("skbaddr", 8);
                    o.retrans_state = at("state", 4);
                }
                p::TCP_SEND_RESET => {
                    o.send_reset_skaddr = at("skaddr", 8);
                    o.send_reset_skbaddr = at("skbaddr", 8);
                    o.send_reset_reason = at("reason", 4);
                }
                p::TCP_RECV_RESET => o.recv_reset_skaddr = at("skaddr", 8),
                p::TCP_PROBE => {
                    o.probe_skaddr = at("skaddr", 8);
                    o.probe_srtt = at("srtt", 4);
                    o.probe_snd_cwnd = at("snd_cwnd", 4);
                }
                p::TCP_DESTROY => o.destroy_skaddr = at("skaddr", 8),
                _ => {}
            }
        }
        checks.push(check);
    }
    (o, checks)
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
    set(&mut o.tp_srtt_us, "tcp_sock", "srtt_us");
    set(&mut o.tp_bytes_acked, "tcp_sock", "bytes_acked");
    set(&mut o.tp_bytes_received, "tcp_sock", "bytes_received");
    set(&mut o.tp_total_retrans, "tcp_sock", "total_retrans");
    set(&mut o.tcb_gso_segs, "tcp_skb_cb", "tcp_gso_segs");
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

    const KFREE_6_18: &str = "name: kfree_skb
ID: 2310
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;

print fmt: \"skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s\", REC->skbaddr
";

    // 5.10's record: no reason, no rx_sk, protocol after location.
    const KFREE_5_10: &str = "name: kfree_skb
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;
";

    #[test]
    fn parses_format_fields() {
        let f = parse_format(KFREE_6_18);
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["common_type", "common_flags", "common_preempt_count", "common_pid", "skbaddr", "location", "rx_sk", "protocol", "reason"]);
        let reason = f.iter().find(|f| f.name == "reason").expect("reason");
        assert_eq!((reason.ty.as_str(), reason.offset, reason.size), ("enum skb_drop_reason", 36, 4));
        let skb = f.iter().find(|f| f.name == "skbaddr").expect("skbaddr");
        assert_eq!((skb.ty.as_str(), skb.offset, skb.size), ("void *", 8, 8));
        let arr = parse_format("\tfield:__u8 saddr_v6[16];\toffset:42;\tsize:16;\tsigned:0;\n");
        assert_eq!(arr, [Field { name: "saddr_v6".into(), ty: "__u8".into(), offset: 42, size: 16 }]);
        // Garbage and half lines are skipped, not guessed.
        assert!(parse_format("field:int x;\toffset:zz;\tsize:4;\nfield:;offset:1;size:1;\nrandom").is_empty());
    }

    fn tracefs_with(kfree: &str) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        let p = d.path.join("events/skb/kfree_skb");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("format"), kfree).expect("write");
        d
    }

    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!("tracer-tp-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
                std::fs::create_dir_all(&path).expect("mkdir");
                Self { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[test]
    fn offsets_follow_each_kernels_layout() {
        let d = tracefs_with(KFREE_6_18);
        let (o, checks) = tp_offsets(&d.path);
        assert_eq!((o.kfree_skbaddr, o.kfree_location, o.kfree_rx_sk, o.kfree_reason), (8, 16, 24, 36));
        let k = &checks[0];
        assert!(k.usable && k.missing.is_empty(), "{k:?}");
        // The TCP tracepoints are absent from this fake tracefs: unusable, said why.
        assert!(checks[1..].iter().all(|c| !c.usable && c.error.as_deref() == Some("no such tracepoint in this kernel")));
        assert_eq!(o.state_skaddr, MISSING);

        let d = tracefs_with(KFREE_5_10);
        let (o, checks) = tp_offsets(&d.path);
        assert_eq!((o.kfree_skbaddr, o.kfree_location, o.kfree_rx_sk, o.kfree_reason), (8, 16, MISSING, MISSING));
        assert!(checks[0].usable);
        assert_eq!(checks[0].missing, ["reason", "rx_sk"]);

        // A field of an unexpected size is not handed to the program.
        let d = tracefs_with(&KFREE_6_18.replace("reason;\toffset:36;\tsize:4", "reason;\toffset:36;\tsize:2"));
        assert_eq!(tp_offsets(&d.path).0.kfree_reason, MISSING);
        // A record without a required field is refused, with the field named.
        let d = tracefs_with(KFREE_5_10.replace("location", "where").as_str());
        let (o, checks) = tp_offsets(&d.path);
        assert_eq!(o.kfree_skbaddr, MISSING);
        assert_eq!(checks[0].error.as_deref(), Some("its record lacks location"));
    }

    // The running kernel's own files: every supported kernel has tracefs
    // and these tracepoints, so absence is a failure.
    #[test]
    fn this_kernels_tracepoints_are_read() {
        let tracefs = Path::new(crate::sys::TRACEFS);
        if !tracefs.join("events").exists() {
            // tracefs is not mounted for an unprivileged test run; the root
            // integration tests (doctor) cover the real files.
            return;
        }
        let (o, checks) = tp_offsets(tracefs);
        assert!(checks.iter().all(|c| c.usable), "{checks:?}");
        assert_ne!(o.kfree_skbaddr, MISSING);
        assert_ne!(o.state_new, MISSING);
    }

    #[test]
    fn this_kernels_btf_has_the_offsets_and_the_drop_reasons() {
        let btf = KernelBtf::open().expect("kernel BTF");
        let (o, missing) = sk_offsets(&btf);
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(o.skb_head, btf.offset_of("sk_buff", "head").expect("head"));
        // sk_buff.protocol sits inside the `headers` struct group, found through it.
        assert!(o.skb_protocol > o.skb_len);
        let reasons = EnumNames::from_btf(&btf, "skb_drop_reason", &["SKB_DROP_REASON_", "SKB_"]);
        // As the kernel's own tracepoint prints them (this machine: 6.18).
        let nf = reasons.value("NETFILTER_DROP").expect("NETFILTER_DROP");
        assert_eq!(reasons.name(nf), Some("NETFILTER_DROP"));
        assert_eq!(reasons.name(reasons.value("no_socket").expect("NO_SOCKET")), Some("NO_SOCKET"));
        assert_eq!(reasons.value("NOT_SPECIFIED"), Some(2));
        assert_eq!(reasons.value("CONSUMED"), Some(1));
        assert!(reasons.len() > 60, "{}", reasons.len());
        assert!(reasons.value("NO_SUCH_REASON").is_none());
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
