//! What events say about where they happened, typed: a container
//! ([`Container`]), a network namespace ([`NetnsId`]) and the namespace a
//! netlink request acts on ([`TargetNetns`]). Each serialises to the JSON
//! contract (DESIGN.md, "Interfaces users rely on") and has one `label()`,
//! which is how every text output names it.

use std::borrow::Cow;

use serde::{Serialize, Serializer, ser::SerializeMap};

/// Characters of a container id shown when it has no name, as `docker ps`
/// shows ids.
pub const SHORT_ID: usize = 12;

/// A container: `{runtime, id, name}` in JSON, and `pod` when it belongs
/// to a Kubernetes pod.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Container {
    pub runtime: String,
    /// The full id.
    pub id: String,
    pub name: Option<String>,
    /// The pod, from the CRI labels or annotations the runtime keeps on
    /// the node (never from the API server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

/// A Kubernetes pod as its container runtime records it: `{name,
/// namespace, container}` in JSON.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    /// The container's name in the pod (none for the pod's sandbox).
    pub container: Option<String>,
}

impl Pod {
    /// `namespace/name`, as `kubectl` names a pod.
    pub fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl Container {
    /// The first [`SHORT_ID`] characters of the id (characters, not bytes:
    /// an id read from outside need not be ASCII).
    pub fn short_id(&self) -> &str {
        match self.id.char_indices().nth(SHORT_ID) {
            Some((end, _)) => &self.id[..end],
            None => &self.id,
        }
    }

    /// How text names it: its name if the runtime gave one, else its short id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or_else(|| self.short_id())
    }
}

/// A network namespace as events name it: `{inode, name}` in JSON. The
/// container that owns it is printed beside it (`container`), not in it.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NetnsId {
    pub inode: u64,
    /// Its owner container's name, else its `/run/netns` name.
    pub name: Option<String>,
    /// The container that made it and labels it.
    #[serde(skip)]
    pub owner: Option<Container>,
    /// The tracer's own namespace, which is the host's as users see it.
    #[serde(skip)]
    pub host: bool,
}

impl NetnsId {
    /// How text names it: its owner's label, else its name, else `host`
    /// for the tracer's own, else its inode.
    pub fn label(&self) -> Cow<'_, str> {
        match (&self.owner, &self.name) {
            (Some(c), _) => Cow::Borrowed(c.label()),
            (None, Some(n)) => Cow::Borrowed(n),
            (None, None) if self.host => Cow::Borrowed("host"),
            (None, None) => Cow::Owned(self.inode.to_string()),
        }
    }
}

/// How a request names the namespace it acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsRef {
    /// `IFLA_NET_NS_FD`: an fd in the sender's table.
    Fd(i32),
    /// `IFLA_NET_NS_PID`: the namespace of that process.
    Pid(u32),
    /// `IFLA_TARGET_NETNSID` and friends: an nsid in the sender's namespace.
    Nsid(i32),
}

/// The namespace a netlink request acts on when it is not the sender's:
/// `{inode, name, of, fd|pid|nsid}` in JSON, `inode` null when it could
/// not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetNetns {
    pub inode: Option<u64>,
    pub name: Option<String>,
    /// The tracer's own namespace.
    pub host: bool,
    /// What of the request lives there: `link` (the interface itself),
    /// `peer` (a veth's other end), `nsid` (an nsid request's namespace).
    pub of: &'static str,
    /// How the request named it.
    pub by: NsRef,
}

impl TargetNetns {
    /// How text names it: its name, else `host`, else its inode, else `?`.
    pub fn label(&self) -> Cow<'_, str> {
        match (&self.name, self.inode) {
            (Some(n), _) => Cow::Borrowed(n),
            (None, Some(_)) if self.host => Cow::Borrowed("host"),
            (None, Some(i)) => Cow::Owned(i.to_string()),
            (None, None) => Cow::Borrowed("?"),
        }
    }
}

impl Serialize for TargetNetns {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("inode", &self.inode)?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("of", self.of)?;
        match self.by {
            NsRef::Fd(fd) => m.serialize_entry("fd", &fd)?,
            NsRef::Pid(pid) => m.serialize_entry("pid", &pid)?,
            NsRef::Nsid(id) => m.serialize_entry("nsid", &id)?,
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn docker(id: &str, name: Option<&str>) -> Container {
        Container { pod: None, runtime: "docker".into(), id: id.into(), name: name.map(String::from) }
    }

    #[test]
    fn a_container_is_its_name_else_its_short_id() {
        let c = docker("0123456789abcdef0123", None);
        assert_eq!((c.label(), c.short_id()), ("0123456789ab", "0123456789ab"));
        assert_eq!(docker("abc", None).label(), "abc");
        assert_eq!(docker("abc", Some("web")).label(), "web");
        // Ids from outside: twelve characters, never a cut inside one.
        let odd = docker("ééééééééééééééé", None);
        assert_eq!(odd.label(), "é".repeat(12));
        assert_eq!(serde_json::to_value(&c).expect("json"), json!({"runtime": "docker", "id": "0123456789abcdef0123", "name": null}));
    }

    #[test]
    fn a_namespace_is_its_owner_else_its_name_else_host_else_its_inode() {
        let mut n = NetnsId { inode: 4026531840, ..Default::default() };
        assert_eq!(n.label(), "4026531840");
        n.host = true;
        assert_eq!(n.label(), "host");
        n.name = Some("lab".into());
        assert_eq!(n.label(), "lab");
        n.owner = Some(docker("0123456789abcdef", None));
        assert_eq!(n.label(), "0123456789ab", "an unnamed owner by its short id");
        // JSON is the inode and the name, nothing else.
        assert_eq!(serde_json::to_value(&n).expect("json"), json!({"inode": 4026531840u64, "name": "lab"}));
    }

    #[test]
    fn a_target_says_how_it_was_named() {
        let t = TargetNetns { inode: Some(5), name: None, host: false, of: "peer", by: NsRef::Fd(7) };
        assert_eq!(serde_json::to_value(&t).expect("json"), json!({"inode": 5, "name": null, "of": "peer", "fd": 7}));
        assert_eq!(t.label(), "5");
        let t = TargetNetns { inode: None, by: NsRef::Nsid(2), of: "link", ..t };
        assert_eq!(serde_json::to_value(&t).expect("json"), json!({"inode": null, "name": null, "of": "link", "nsid": 2}));
        assert_eq!(t.label(), "?");
        let t = TargetNetns { inode: Some(1), host: true, by: NsRef::Pid(1), ..t };
        assert_eq!((t.label(), serde_json::to_value(&t).expect("json")["pid"].as_u64()), (Cow::Borrowed("host"), Some(1)));
        let t = TargetNetns { name: Some("lab".into()), ..t };
        assert_eq!(t.label(), "lab");
    }
}

/// Whether `name` is how an unnamed interface is shown, `if<ifindex>`
/// (what `format!("if{ifindex}")` gives), without allocating: asked of
/// every packet held.
pub fn is_index_name(name: &str, ifindex: u32) -> bool {
    name.strip_prefix("if").is_some_and(|r| {
        r.bytes().all(|b| b.is_ascii_digit()) && (r.len() == 1 || !r.starts_with('0')) && r.parse::<u32>() == Ok(ifindex)
    })
}

#[cfg(test)]
mod index_name_tests {
    use super::is_index_name;

    #[test]
    fn index_names_are_what_format_gives() {
        for (name, idx) in [("if7", 7), ("if0", 0), ("if4294967295", u32::MAX), ("if07", 7), ("if+7", 7), ("if", 0), ("eth0", 0), ("if7x", 7), ("if8", 7)] {
            assert_eq!(is_index_name(name, idx), name == format!("if{idx}"), "{name} {idx}");
        }
    }
}
