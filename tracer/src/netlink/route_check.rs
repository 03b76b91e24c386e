//! Checks on an rtnetlink payload before netlink-packet-route parses it:
//! the shapes on which that library (0.34, the newest) panics or recurses
//! without bound instead of returning an error, each found by fuzzing
//! (`cargo xtask fuzz netlink_route`) and kept as a regression input in
//! `fuzz/regressions/netlink_route`. A payload that fails a check is
//! reported as malformed with the reason; the panic containment around
//! every decode (`crate::sys::contain`) stays as the net for what is not known.

use crate::sys::nlmsg::attrs;

const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// `struct ifinfomsg`, before a link's attributes (a veth peer's too).
const IFINFOMSG_LEN: usize = 16;

/// A veth peer may describe a veth with a peer, and so on: the library
/// recurses once per level, about 3 KiB of stack each in a release build
/// (700 levels, 28 KB of message, overflowed a 2 MiB thread stack here;
/// a stack overflow aborts, no containment helps). The kernel reads one.
const MAX_PEER_DEPTH: usize = 2;

/// Attributes of link kinds (`IFLA_INFO_DATA`) that the library reads with
/// a fixed size without checking it: (kind, attribute, size).
const FIXED_SIZE: &[(&str, u16, usize)] = &[
    // IFLA_BAREUDP_SRCPORT_MIN: `copy_from_slice` into a [u8; 2].
    ("bareudp", 3, 2),
];

/// Whether netlink-packet-route can be given `body` (a message of
/// `msg_type`): `Err` says why not.
pub fn check(msg_type: u16, body: &[u8]) -> Result<(), String> {
    match msg_type {
        // RTM_NEWLINK, DELLINK, GETLINK, SETLINK
        16..=19 => link(body, 0),
        _ => Ok(()),
    }
}

/// An `ifinfomsg` and its attributes.
fn link(body: &[u8], depth: usize) -> Result<(), String> {
    let Some(link_attrs) = body.get(IFINFOMSG_LEN..) else { return Ok(()) };
    for (ty, payload) in attrs(link_attrs) {
        if ty == IFLA_LINKINFO {
            link_info(payload, depth)?;
        }
    }
    Ok(())
}

/// `IFLA_LINKINFO`: the kind, then the kind's own attributes.
fn link_info(b: &[u8], depth: usize) -> Result<(), String> {
    let mut kind: Option<&[u8]> = None;
    for (ty, payload) in attrs(b) {
        match ty {
            IFLA_INFO_KIND => kind = Some(payload.split(|&c| c == 0).next().unwrap_or_default()),
            IFLA_INFO_DATA => {
                // The library reads the kind first; data before any kind is refused by it.
                let Some(k) = kind else { continue };
                let name = String::from_utf8_lossy(k);
                for (aty, ap) in attrs(payload) {
                    if let Some((_, _, size)) = FIXED_SIZE.iter().find(|(kn, t, _)| *kn == name && *t == aty)
                        && ap.len() != *size
                    {
                        return Err(format!("{name} attribute {aty} has {} bytes, not {size}", ap.len()));
                    }
                    if name == "veth" && aty == VETH_INFO_PEER {
                        if depth >= MAX_PEER_DEPTH {
                            return Err(format!("veth peers nested more than {MAX_PEER_DEPTH} deep"));
                        }
                        link(ap, depth + 1)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        netlink::decode::tests::{BAREUDP_PANIC, unhex},
        sys::nlmsg::build::attr,
    };

    #[test]
    fn the_bareudp_message_fails_the_check() {
        let m = unhex(BAREUDP_PANIC);
        let e = check(16, &m[16..]).expect_err("refused");
        assert_eq!(e, "bareudp attribute 3 has 1 bytes, not 2");
        // The same attribute with its two bytes passes.
        let mut ok = m.clone();
        ok[52] = 6; // nla_len 4 + 2
        assert_eq!(check(16, &ok[16..]), Ok(()));
    }

    /// A veth whose peer is a veth whose peer is... `depth` levels.
    fn nested_veth(depth: usize) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        for _ in 0..depth {
            let mut info = attr(IFLA_INFO_KIND, b"veth\0");
            info.extend(attr(IFLA_INFO_DATA, &attr(VETH_INFO_PEER, &body)));
            let mut b = vec![0u8; IFINFOMSG_LEN];
            b.extend(attr(IFLA_LINKINFO, &info));
            body = b;
        }
        body
    }

    #[test]
    fn veth_peers_nested_deeper_than_the_kernel_reads_are_refused() {
        assert_eq!(check(16, &nested_veth(1)), Ok(()), "ip link add ... type veth peer ...");
        assert_eq!(check(16, &nested_veth(MAX_PEER_DEPTH)), Ok(()));
        assert!(check(16, &nested_veth(MAX_PEER_DEPTH + 1)).is_err());
        let deep = nested_veth(400);
        assert!(deep.len() < 16384, "fits in one capture");
        assert_eq!(check(16, &deep), Err("veth peers nested more than 2 deep".to_string()));
        assert!(crate::netlink::route::decode(16, &deep).is_err());
    }

    #[test]
    fn attributes_that_do_not_fit_end_the_walk() {
        assert_eq!(attrs(&[8, 0, 1, 0, 1, 2]).count(), 0);
        assert_eq!(attrs(&[3, 0, 1, 0, 0, 0, 0, 0]).count(), 0, "length below the header");
        let v: Vec<_> = attrs(&[5, 0, 0x01, 0x80, 9, 0, 0, 0, 4, 0, 2, 0]).collect();
        assert_eq!(v, vec![(1, &[9u8][..]), (2, &[][..])], "flags masked, padding skipped");
    }
}
