//! `tracer ns` as a table: one row per namespace. Names (of namespaces,
//! containers, processes, interfaces) are cut and every cell is escaped
//! before the columns are measured (see [`crate::sys::text`]).

use super::{Container, Iface, Netns, registry};

/// `tracer ns` as a table: one row per namespace. Names (of namespaces,
/// containers, processes, interfaces) are cut and every cell is escaped
/// before the columns are measured (see [`crate::sys::text`]).
pub fn write_table(list: &[Netns], w: &mut impl std::io::Write) -> std::io::Result<()> {
    use crate::sys::text::{escape, name};
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|n| {
            let containers = containers_text(n);
            let names: Vec<String> = n.names.iter().map(|x| name(x).into_owned()).collect();
            [
                n.inode.to_string(),
                n.cookie.map_or("-".into(), |c| c.to_string()),
                if names.is_empty() { "-".into() } else { names.join(",") },
                if containers.is_empty() { "-".into() } else { containers.join(",") },
                if n.pids.is_empty() { "-".into() } else { registry::pid_list(&n.pids, 3) },
                n.error.clone().unwrap_or_else(|| n.interfaces.iter().map(iface_text).collect::<Vec<_>>().join(" ")),
            ]
            .map(|cell| escape(&cell).into_owned())
        })
        .collect();
    let head = ["NETNS", "COOKIE", "NAMES", "CONTAINERS", "PIDS", "INTERFACES"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The owner as `docker:web`, then the containers sharing it as
/// `docker:side(shared)`, or those on the host network as
/// `docker:hn(host-network)`; a pod's as `containerd:app[pod=shop/web-1]`.
fn containers_text(n: &Netns) -> Vec<String> {
    use crate::sys::text::name;
    let text = |c: &Container, how: &str| {
        let pod = c.pod.as_ref().map(|p| format!("[pod={}]", name(&p.label()))).unwrap_or_default();
        format!("{}:{}{pod}{how}", name(&c.runtime), name(c.label()))
    };
    let shared = n.containers.iter().map(|c| if n.container.as_ref() == Some(c) { text(c, "") } else { text(c, "(shared)") });
    shared.chain(n.host_containers.iter().map(|c| text(c, "(host-network)"))).collect()
}

/// `eth0(veth,up)->veth1a2b@4026531840`, `docker0(bridge)`, `vethab(veth,up,master=docker0)->eth0@4026532301`.
fn iface_text(i: &Iface) -> String {
    use crate::sys::text::name;
    let mut attrs: Vec<String> = i.kind.iter().map(|k| name(k).into_owned()).collect();
    if !i.up {
        attrs.push("down".into());
    }
    if let Some(m) = &i.master {
        attrs.push(format!("master={}", name(m)));
    }
    let mut s = if attrs.is_empty() { name(&i.name).into_owned() } else { format!("{}({})", name(&i.name), attrs.join(",")) };
    if let Some(p) = &i.peer {
        s.push_str(&format!("->{}@{}", name(&p.name), p.netns_inode));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ns::{NsPid, Peer};

    fn docker(id: char, name: &str) -> Container {
        Container { pod: None, runtime: "docker".into(), id: id.to_string().repeat(64), name: Some(name.into()) }
    }

    #[test]
    fn table_rows() {
        let web = docker('a', "web");
        let n = Netns {
            inode: 4026532301,
            cookie: Some(7),
            names: vec!["web".into()],
            pids: vec![NsPid { pid: 42, comm: "sleep".into() }],
            container: Some(web.clone()),
            containers: vec![web],
            host_containers: vec![],
            interfaces: vec![
                Iface { name: "lo".into(), ifindex: 1, kind: Some("loopback".into()), master: None, peer: None, up: false },
                Iface {
                    name: "eth0".into(),
                    ifindex: 2,
                    kind: Some("veth".into()),
                    master: None,
                    peer: Some(Peer { netns_inode: 4026531840, ifindex: 9, name: "veth1a2b".into() }),
                    up: true,
                },
            ],
            path: PathBuf::from("/proc/42/ns/net"),
            mounts: vec![],
            error: None,
        };
        let mut out = Vec::new();
        write_table(&[n], &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NETNS       COOKIE  NAMES  CONTAINERS  PIDS       INTERFACES"), "{text}");
        assert_eq!(lines[1], "4026532301  7       web    docker:web  42(sleep)  lo(loopback,down) eth0(veth)->veth1a2b@4026531840");
    }

    /// The owner unmarked, the others marked: a namespace shared with
    /// `--network container:web`, and the host's with host-network containers.
    #[test]
    fn shared_and_host_network_containers() {
        let (web, side, hn) = (docker('a', "web"), docker('b', "side"), docker('c', "hn"));
        let shared = Netns {
            inode: 9,
            cookie: None,
            names: vec!["web".into()],
            pids: vec![],
            container: Some(web.clone()),
            containers: vec![web.clone(), side.clone()],
            host_containers: vec![],
            interfaces: vec![],
            path: PathBuf::from("/proc/42/ns/net"),
            mounts: vec![],
            error: None,
        };
        assert_eq!(containers_text(&shared), ["docker:web", "docker:side(shared)"]);
        let host = Netns { inode: 1, names: vec![], container: None, containers: vec![], host_containers: vec![hn.clone()], ..shared.clone() };
        assert_eq!(containers_text(&host), ["docker:hn(host-network)"]);
        assert!(host.has_container(&hn.id) && shared.has_container(&side.id) && !host.has_container(&web.id));
        let json = serde_json::to_value(&host).expect("json");
        assert_eq!(json["container"], serde_json::Value::Null);
        assert_eq!(json["containers"], serde_json::json!([]));
        assert_eq!(json["host_containers"], serde_json::json!([{"runtime": "docker", "id": hn.id, "name": "hn"}]));
        let json = serde_json::to_value(&shared).expect("json");
        assert_eq!(json["container"]["name"], "web");
        assert_eq!(json["host_containers"], serde_json::json!([]));
    }

    #[test]
    fn table_escapes_and_cuts_names_from_outside() {
        let n = Netns {
            inode: 4026532301,
            cookie: None,
            names: vec!["lab\x1b[2J".into()],
            pids: vec![NsPid { pid: 42, comm: "x\x1b]0;pwn\x07".into() }],
            container: Some(Container { pod: None, runtime: "docker".into(), id: "ab".repeat(32), name: Some("w".repeat(500)) }),
            containers: vec![Container { pod: None, runtime: "docker".into(), id: "ab".repeat(32), name: Some("w".repeat(500)) }],
            host_containers: vec![],
            interfaces: vec![Iface {
                name: "e\u{9b}1m".into(),
                ifindex: 2,
                kind: Some("veth".into()),
                master: Some("br\x07".into()),
                peer: Some(Peer { netns_inode: 1, ifindex: 9, name: "p\x1b".into() }),
                up: true,
            }],
            path: PathBuf::from("/proc/42/ns/net"),
            mounts: vec![],
            error: None,
        };
        let mut out = Vec::new();
        write_table(&[n.clone(), Netns { names: vec!["b".into()], container: None, containers: vec![], ..n }], &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        let want_container = format!("docker:{}{}", "w".repeat(crate::sys::text::NAME_MAX - 3), crate::sys::text::ELLIPSIS);
        assert!(lines[1].contains(&format!("lab\\x1b[2J  {want_container}  42(x\\x1b]0;pwn\\x07)")), "{text}");
        assert!(lines[1].ends_with(r"e\x9b1m(veth,master=br\x07)->p\x1b@1"), "{text}");
        // The PIDS column starts at the same place on both rows.
        assert_eq!(lines[1].find("42(").map(|i| lines[1][..i].chars().count()), lines[2].find("42(").map(|i| lines[2][..i].chars().count()));
    }
}
