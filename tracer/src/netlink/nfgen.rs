//! Netfilter (nfnetlink/nftables) messages by subsystem and message type,
//! with table/chain/set names; generic netlink families resolved to names
//! by asking the kernel's controller once (family ids are global).

use std::{collections::HashMap, time::Duration};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_generic::{
    GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::protocols::NETLINK_GENERIC;
use serde_json::{Map, Value, json};

use crate::sys::nlmsg::{NlSocket, attr_str, find_attr};

/// How long the controller may take to list the families.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

const SUBSYS: &[&str] = &[
    "none", "ctnetlink", "ctnetlink_exp", "queue", "ulog", "osf", "ipset", "acct",
    "ctnetlink_timeout", "cthelper", "nftables", "nft_compat", "hook",
];

const NFT_MSGS: &[&str] = &[
    "NEWTABLE", "GETTABLE", "DELTABLE", "NEWCHAIN", "GETCHAIN", "DELCHAIN", "NEWRULE",
    "GETRULE", "DELRULE", "NEWSET", "GETSET", "DELSET", "NEWSETELEM", "GETSETELEM",
    "DELSETELEM", "NEWGEN", "GETGEN", "TRACE", "NEWOBJ", "GETOBJ", "DELOBJ", "GETOBJ_RESET",
    "NEWFLOWTABLE", "GETFLOWTABLE", "DELFLOWTABLE", "GETRULE_RESET", "DESTROYTABLE",
    "DESTROYCHAIN", "DESTROYRULE", "DESTROYSET", "DESTROYSETELEM", "DESTROYOBJ",
    "DESTROYFLOWTABLE", "GETSETELEM_RESET",
];

const CT_MSGS: &[&str] = &["NEW", "GET", "DELETE", "GET_CTRZERO", "GET_STATS_CPU", "GET_STATS", "GET_DYING", "GET_UNCONFIRMED"];

/// `NFT_MSG_NEWTABLE`, `NFNL_MSG_BATCH_BEGIN`, `IPCTNL_MSG_CT_NEW`, or `netfilter:<subsys>:<n>`.
pub fn nf_type_name(ty: u16) -> String {
    let (subsys, msg) = ((ty >> 8) as usize, (ty & 0xff) as usize);
    match (subsys, msg) {
        (0, 0x10) => "NFNL_MSG_BATCH_BEGIN".into(),
        (0, 0x11) => "NFNL_MSG_BATCH_END".into(),
        (10, m) if m < NFT_MSGS.len() => format!("NFT_MSG_{}", NFT_MSGS[m]),
        (1, m) if m < CT_MSGS.len() => format!("IPCTNL_MSG_CT_{}", CT_MSGS[m]),
        (s, m) => format!("netfilter:{}:{m}", SUBSYS.get(s).copied().unwrap_or("?")),
    }
}

/// nftables GET requests are dumps: hidden from the audit like rtnetlink GETs.
pub fn nf_is_get(ty: u16) -> bool {
    let (subsys, msg) = ((ty >> 8) as usize, (ty & 0xff) as usize);
    match subsys {
        10 => NFT_MSGS.get(msg).is_some_and(|m| m.starts_with("GET")),
        1 | 2 => msg == 1 || msg >= 3,
        // nft_compat: NFNL_MSG_COMPAT_GET, iptables-nft's revision lookups.
        11 => msg == 0,
        _ => false,
    }
}

/// Attributes of an nfnetlink message: family, and names for nftables objects.
pub fn nf_attrs(ty: u16, body: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    let (subsys, msg) = ((ty >> 8) as usize, (ty & 0xff) as usize);
    m.insert("subsystem".into(), json!(SUBSYS.get(subsys).copied().unwrap_or("?")));
    let Some(&fam) = body.first() else { return m };
    m.insert(
        "family".into(),
        json!(match fam {
            0 => "unspec",
            1 => "inet",
            2 => "ip",
            3 => "arp",
            5 => "netdev",
            7 => "bridge",
            10 => "ip6",
            _ => "other",
        }),
    );
    let attrs = body.get(4..).unwrap_or_default();
    let s = |k: u16| find_attr(attrs, k).map(attr_str);
    if subsys == 10 {
        // NFTA_*_TABLE is attribute 1 in tables, chains, rules, sets, objects.
        let obj = NFT_MSGS.get(msg).copied().unwrap_or("");
        if obj.ends_with("TABLE") {
            if let Some(t) = s(1) {
                m.insert("table".into(), json!(t));
            }
        } else {
            if let Some(t) = s(1) {
                m.insert("table".into(), json!(t));
            }
            // NFTA_CHAIN_NAME is 3; NFTA_RULE_CHAIN and NFTA_SET_NAME are 2.
            let name_attr = if obj.ends_with("CHAIN") {
                Some(3)
            } else if obj.ends_with("RULE") || obj.ends_with("SET") || obj.ends_with("SETELEM") {
                Some(2)
            } else {
                None
            };
            let key = if obj.ends_with("RULE") || obj.ends_with("CHAIN") { "chain" } else { "name" };
            if let Some(v) = name_attr.and_then(s) {
                m.insert(key.into(), json!(v));
            }
        }
    }
    m
}

/// Generic netlink family ids -> names, read once from the kernel.
#[derive(Debug, Default, Clone)]
pub struct GenlFamilies {
    names: HashMap<u16, String>,
}

impl GenlFamilies {
    pub fn load() -> Self {
        Self { names: query_families().unwrap_or_default() }
    }

    pub fn name(&self, id: u16) -> Option<&str> {
        if id == 0x10 {
            return Some("nlctrl");
        }
        self.names.get(&id).map(String::as_str)
    }
}

fn query_families() -> std::io::Result<HashMap<u16, String>> {
    let mut sock = NlSocket::open(NETLINK_GENERIC, QUERY_TIMEOUT)?;
    let seq = sock.next_seq();
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let genl = GenlMessage::from_payload(GenlCtrl { cmd: GenlCtrlCmd::GetFamily, nlas: vec![] });
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(genl));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    let mut out = HashMap::new();
    sock.exchange(&buf, seq, true, |m| {
        // A family the library cannot read is left unnamed.
        let Ok(m) = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(m.bytes) else { return };
        let NetlinkPayload::InnerMessage(g) = m.payload else { return };
        let (mut id, mut name) = (None, None);
        for a in g.payload.nlas {
            match a {
                GenlCtrlAttrs::FamilyId(i) => id = Some(i),
                GenlCtrlAttrs::FamilyName(n) => name = Some(n),
                _ => {}
            }
        }
        if let (Some(i), Some(n)) = (id, name) {
            out.insert(i, n);
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_compat_revision_lookups_are_gets() {
        // NFNL_SUBSYS_NFT_COMPAT (11) << 8 | NFNL_MSG_COMPAT_GET (0).
        assert!(nf_is_get(0x0b00));
        assert!(!nf_is_get(0x0a00), "NFT_MSG_NEWTABLE");
        assert!(crate::netlink::decode::is_get(crate::netlink::decode::NETLINK_NETFILTER, 0x0b00, 1));
    }

    #[test]
    fn nf_names() {
        assert_eq!(nf_type_name(0x10), "NFNL_MSG_BATCH_BEGIN");
        assert_eq!(nf_type_name(10 << 8), "NFT_MSG_NEWTABLE");
        assert_eq!(nf_type_name((10 << 8) | 6), "NFT_MSG_NEWRULE");
        assert_eq!(nf_type_name(1 << 8), "IPCTNL_MSG_CT_NEW");
        assert_eq!(nf_type_name((12 << 8) | 200), "netfilter:hook:200");
        assert!(nf_is_get((10 << 8) | 1));
        assert!(!nf_is_get(10 << 8));
    }

    #[test]
    fn nf_table_and_chain_names() {
        // nfgenmsg (inet) + NFTA_CHAIN_TABLE "filter" + NFTA_CHAIN_NAME "input"
        let mut b = vec![1u8, 0, 0, 0];
        for (ty, s) in [(1u16, "filter"), (3, "input")] {
            let v = format!("{s}\0");
            let len = (4 + v.len()) as u16;
            b.extend_from_slice(&len.to_ne_bytes());
            b.extend_from_slice(&ty.to_ne_bytes());
            b.extend_from_slice(v.as_bytes());
            while b.len() % 4 != 0 {
                b.push(0);
            }
        }
        let m = nf_attrs((10 << 8) | 3, &b);
        assert_eq!(m["table"], "filter");
        assert_eq!(m["chain"], "input");
        assert_eq!(m["family"], "inet");
        // Garbage never panics.
        let _ = nf_attrs((10 << 8) | 3, &[1, 2]);
        let _ = nf_attrs(0xffff, &[]);
    }

    #[test]
    fn genl_families_from_kernel() {
        // The kernel's controller lists itself: nlctrl, id 0x10 (GENL_ID_CTRL),
        // in the dump, not only in the fallback name() keeps for it.
        let f = GenlFamilies::load();
        assert_eq!(f.names.get(&0x10).map(String::as_str), Some("nlctrl"), "{:?}", f.names);
        assert!(f.names.keys().all(|id| *id >= 0x10), "family ids start at GENL_ID_CTRL: {:?}", f.names);
        let unknown = (0x10..=u16::MAX).find(|id| !f.names.contains_key(id)).expect("a free id");
        assert_eq!(f.name(unknown), None);
    }
}
