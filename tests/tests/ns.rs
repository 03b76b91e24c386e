//! `tracer ns` against lab namespaces: names, inodes, interfaces and veth
//! peers as the kernel has them, namespaces held only by a bind mount, and
//! the selectors' errors.

use std::{os::unix::fs::MetadataExt, path::PathBuf};

use serde_json::Value;
use tracer_tests::{ns_json, Lab, sh, sh_out, tracer_run, unique_id};


fn by_inode(list: &[Value], inode: u64) -> Value {
    list.iter().find(|n| n["inode"] == inode).cloned().unwrap_or_else(|| panic!("no namespace {inode} in {list:?}"))
}

fn iface(ns: &Value, name: &str) -> Value {
    ns["interfaces"]
        .as_array()
        .and_then(|v| v.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no interface {name} in {ns}"))
}

fn ifindex(prefix: &str, dev: &str) -> u64 {
    sh(&format!("{prefix} cat /sys/class/net/{dev}/ifindex")).trim().parse().expect("ifindex")
}

fn host_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net").expect("own netns").ino()
}

#[test]
fn lab_namespaces_with_names_interfaces_and_veth_peers() {
    let lab = Lab::new(2);
    let list = ns_json(&[]);
    let host = by_inode(&list, host_inode());
    let mut cookies = vec![host["cookie"].as_u64().expect("host cookie")];
    for ns in &lab.ns {
        let n = by_inode(&list, ns.inode());
        assert!(n["names"].as_array().expect("names").iter().any(|x| x == ns.name.as_str()), "{n}");
        assert_eq!(n["containers"], serde_json::json!([]));
        assert_eq!(n["path"], ns.path().as_str());
        cookies.push(n["cookie"].as_u64().expect("cookie"));

        let eth0 = iface(&n, "eth0");
        let in_ns = format!("ip netns exec {}", ns.name);
        assert_eq!(eth0["kind"], "veth");
        assert_eq!(eth0["up"], true);
        assert_eq!(eth0["ifindex"], ifindex(&in_ns, "eth0"));
        assert_eq!(eth0["peer"]["name"], ns.host_veth.as_str());
        assert_eq!(eth0["peer"]["netns_inode"], host_inode());
        assert_eq!(eth0["peer"]["ifindex"], ifindex("", &ns.host_veth));
        assert_eq!(iface(&n, "lo")["kind"], "loopback");

        let hv = iface(&host, &ns.host_veth);
        assert_eq!(hv["kind"], "veth");
        assert_eq!(hv["master"], lab.bridge.as_str());
        assert_eq!(hv["peer"], serde_json::json!({"netns_inode": ns.inode(), "ifindex": ifindex(&in_ns, "eth0"), "name": "eth0"}));
    }
    assert_eq!(iface(&host, &lab.bridge)["kind"], "bridge");
    cookies.sort();
    cookies.dedup();
    assert_eq!(cookies.len(), 3, "each namespace has its own cookie");

    // --netns keeps one row; the table names the pair too.
    let only = ns_json(&["--netns", &lab.ns[0].name]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["inode"], lab.ns[0].inode());
    let (code, text, _) = tracer_run(&["ns", "--netns", &lab.ns[1].name]);
    assert_eq!(code, 0);
    assert!(text.starts_with("NETNS"), "{text}");
    assert!(text.contains(&format!("eth0(veth)->{}@{}", lab.ns[1].host_veth, host_inode())), "{text}");
}

/// A namespace bind-mounted outside /run/netns, with no process in it.
struct MountedNs {
    dir: PathBuf,
    file: PathBuf,
    veth: String,
}

impl MountedNs {
    fn new() -> Self {
        let id = unique_id();
        let dir = std::env::temp_dir().join(format!("trc-ns-{id}"));
        let file = dir.join("netns");
        let veth = format!("trm{id}");
        let m = MountedNs { dir, file, veth };
        sh(&format!("mkdir -p {0} && touch {1} && unshare --net={1} true", m.dir.display(), m.file.display()));
        // iproute2 takes a path where it takes a namespace name.
        sh(&format!("ip link add {} type veth peer name inner0 netns {}", m.veth, m.file.display()));
        m
    }
}

impl Drop for MountedNs {
    fn drop(&mut self) {
        let _ = sh_out(&format!("ip link del {} 2>/dev/null", self.veth));
        let _ = sh_out(&format!("umount {}", self.file.display()));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn namespace_held_only_by_a_bind_mount_is_found() {
    let m = MountedNs::new();
    let inode = std::fs::metadata(&m.file).expect("mounted ns").ino();
    assert_ne!(inode, host_inode());
    let list = ns_json(&[]);
    let n = by_inode(&list, inode);
    assert_eq!(n["pids"], serde_json::json!([]), "no process lives there");
    assert_eq!(n["names"], serde_json::json!([]), "a mount outside /run/netns gives no name");
    assert!(n["mounts"].as_array().expect("mounts").iter().any(|p| p == m.file.to_str().expect("utf8")), "{n}");
    assert_eq!(n["path"], m.file.to_str().expect("utf8"));
    let inner = iface(&n, "inner0");
    assert_eq!(inner["peer"]["name"], m.veth.as_str());
    assert_eq!(inner["peer"]["netns_inode"], host_inode());
    let host = by_inode(&list, host_inode());
    assert_eq!(iface(&host, &m.veth)["peer"]["netns_inode"], inode);
    // The selectors take the path too.
    let only = ns_json(&["--netns", m.file.to_str().expect("utf8")]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["inode"], inode);
}

#[test]
fn unknown_selectors_are_one_sentence_with_close_matches() {
    let lab = Lab::new(1);
    let typo = format!("{}x", lab.ns[0].name);
    let (code, out, err) = tracer_run(&["ns", "--netns", &typo]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("did you mean {}", lab.ns[0].name)), "{err}");

    for cmd in ["ns", "netlink"] {
        let (code, out, err) = tracer_run(&[cmd, "--container", "trc-no-such-container-xyz"]);
        assert_ne!(code, 0, "{cmd}");
        assert!(out.is_empty(), "{cmd}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{cmd}: {err}");
        assert!(err.contains("no running container \"trc-no-such-container-xyz\""), "{cmd}: {err}");
    }
}
