//! Captured frames, shared by every capability that shows packets (`tracer
//! packets` on TC hooks, `tracer drops` on `skb:kfree_skb`): decoding them
//! ([`decode`]), their header fields as both print them ([`HeaderJson`],
//! [`Headers`]), and writing them as pcapng ([`pcapng`]) to what
//! [`capfile`] opened. It sits below the capabilities so that neither
//! imports the other.

pub mod capfile;
pub mod decode;
pub mod pcapng;
pub mod rotate;

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::sys::contain::contain;

/// The header fields of a decoded frame as the JSON contract names them
/// (DESIGN.md), with the `tcpdump -n`-style `summary`; the extras are left
/// out when unknown. A capability flattens it into its own JSON object.
#[derive(serde::Serialize)]
pub struct HeaderJson {
    pub l3: Option<String>,
    pub proto: Option<String>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<Vec<&'static str>>,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eth_src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eth_dst: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_len: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_op: Option<&'static str>,
}

impl HeaderJson {
    /// The fields of `d`, a frame of wire length `len`.
    pub fn of(d: &decode::Decoded, len: u32) -> Self {
        Self {
            l3: d.l3(),
            proto: d.proto_name(),
            src: d.src,
            dst: d.dst,
            sport: d.sport,
            dport: d.dport,
            tcp_flags: d.tcp_flag_names(),
            summary: decode::summary(d, len),
            eth_src: d.eth_src.as_ref().map(decode::mac_string),
            eth_dst: d.eth_dst.as_ref().map(decode::mac_string),
            vlan: d.vlan,
            ttl: d.ttl,
            ip_id: d.ip_id,
            payload_len: d.payload_len,
            seq: d.tcp.map(|t| t.seq),
            ack: d.tcp.map(|t| t.ack),
            icmp_type: d.icmp.map(|i| i.ty),
            icmp_code: d.icmp.map(|i| i.code),
            arp_op: d.arp.map(|a| match a.op {
                1 => "request",
                2 => "reply",
                _ => "other",
            }),
        }
    }
}

/// The headers of one frame, decoded once: the text summary and the JSON
/// fields (`l3`, `proto`, `src`, `dst`, `sport`, `dport`, `tcp_flags`,
/// `summary`, ...), for a capability that builds its JSON as a map.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    pub summary: String,
    pub fields: Map<String, Value>,
}

impl Headers {
    /// Decodes an Ethernet frame of wire length `len`; a decoder bug costs
    /// this frame its headers only.
    pub fn of_ethernet(frame: &[u8], len: u32) -> Self {
        let d = contain(|| decode::decode(frame, true)).unwrap_or_default();
        let h = HeaderJson::of(&d, len);
        let fields = match serde_json::to_value(&h) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Self { summary: h.summary, fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_a_udp_frame() {
        // Ethernet + IPv4 + UDP 10.0.0.1:5000 -> 10.0.0.2:53, 4 bytes of payload.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        let h = Headers::of_ethernet(&f, f.len() as u32);
        assert_eq!(h.fields["l3"], "ipv4");
        assert_eq!(h.fields["proto"], "udp");
        assert_eq!((h.fields["sport"].as_u64(), h.fields["dport"].as_u64()), (Some(5000), Some(53)));
        assert_eq!(h.fields["summary"], h.summary.as_str());
        assert!(h.summary.contains("10.0.0.1.5000 > 10.0.0.2.53"), "{}", h.summary);
        // Garbage is no panic, and no fields it does not have.
        let h = Headers::of_ethernet(&[0xff; 5], 5);
        assert_eq!(h.fields["l3"], Value::Null);
    }
}
