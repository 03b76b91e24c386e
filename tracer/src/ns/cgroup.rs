//! Container candidates from cgroup paths: pure functions, one rule per
//! runtime, so every layout the runtimes use is a unit test.
//!
//! A cgroup name proves nothing by itself: anyone with a delegated subtree
//! (every user under systemd: `/user.slice/user-1000.slice/...`) can make a
//! cgroup called `docker-<64 hex>.scope`. So a path counts only when it
//! starts at the root with a parent that only root can write and that the
//! runtime itself uses, and even then it only names a *candidate*, which the
//! runtime must confirm (see `super::identity`):
//!
//! | runtime | cgroup path (anchored at the root) |
//! | --- | --- |
//! | Docker, cgroupfs driver | `/docker/<64 hex>` |
//! | Docker, systemd driver | `/system.slice/docker-<64 hex>.scope` |
//! | Podman (root) | `/libpod_parent/libpod-<64 hex>`, `/machine.slice/libpod-<64 hex>.scope[/container]`, `/machine.slice/machine-libpod_pod_<id>.slice/libpod-<64 hex>.scope` |
//! | containerd (`ctr`) | `/<containerd namespace>/<id>` |
//! | Kubernetes | `/kubepods[.slice]/.../<pod>/cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, or `/kubepods/<qos>/pod<uid>/<64 hex>` |
//!
//! Rootless containers live in their user's own cgroups and are never
//! candidates. A container nested in another (Docker in Docker) is the
//! outer one: the inner runtime's records are inside the outer container,
//! out of reach of the host's runtimes that could confirm it.


pub const DOCKER: &str = "docker";
pub const PODMAN: &str = "podman";
pub const CONTAINERD: &str = "containerd";
pub const CRIO: &str = "cri-o";
/// A Kubernetes container whose cgroup does not say which runtime made it
/// (cgroupfs driver: the component is the bare id); the runtime that
/// confirms it gives the name it is reported under.
pub const CRI: &str = "cri";

/// The containerd namespace the Kubernetes CRI plugin uses.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// A container a cgroup path points at, before its runtime confirms it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub runtime: &'static str,
    pub id: String,
    /// The containerd namespace (containerd ids are unique only within one).
    pub namespace: Option<String>,
}

impl Candidate {
    fn new(runtime: &'static str, id: &str, namespace: Option<&str>) -> Self {
        Candidate { runtime, id: id.to_string(), namespace: namespace.map(String::from) }
    }

    /// As the output contract prints it, without a name.
    #[cfg(test)]
    pub fn container(&self) -> super::Container {
        super::Container { pod: None, runtime: self.runtime.to_string(), id: self.id.clone(), name: None }
    }
}

pub fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A containerd id as containerd itself validates it (alphanumerics joined
/// by single `.`, `_` or `-`, at most 76 bytes): never `..`, never a path.
/// Systemd units are refused too, which would make every
/// `/system.slice/foo.service` a container.
pub fn is_containerd_id(s: &str) -> bool {
    let b = s.as_bytes();
    let sep = |c: &u8| b"._-".contains(c);
    !b.is_empty()
        && b.len() <= 76
        && b.iter().all(|c| c.is_ascii_alphanumeric() || sep(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !b.windows(2).any(|w| sep(&w[0]) && sep(&w[1]))
        && ![".scope", ".slice", ".service", ".mount", ".socket"].iter().any(|u| s.ends_with(u))
}

/// `<prefix><64 hex>[.scope]` -> the id.
fn unit_id<'a>(c: &'a str, prefix: &str) -> Option<&'a str> {
    let unit = c.strip_suffix(".scope").unwrap_or(c);
    unit.strip_prefix(prefix).filter(|id| is_hex_id(id))
}

/// The container a cgroup path belongs to, if the path is one a runtime
/// makes under its own parent. `containerd_namespaces` are the containerd
/// namespaces that have tasks (their names are free-form, so a bare
/// `/<a>/<b>` only counts when `<a>` is one of them).
pub fn container_from_cgroup_path(path: &str, containerd_namespaces: &[String]) -> Option<Candidate> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let unit = |runtime, prefix, c: &str| unit_id(c, prefix).map(|id| Candidate::new(runtime, id, None));
    let libpod = |c: &str| unit(PODMAN, "libpod-", c);
    match comps.as_slice() {
        ["docker", id, ..] if is_hex_id(id) => Some(Candidate::new(DOCKER, id, None)),
        ["system.slice", c, ..] => unit(DOCKER, "docker-", c),
        // `libpod-conmon-<id>` holds the monitor, not the container: its
        // remainder is not a bare id, so it fails here.
        ["libpod_parent", c, rest @ ..] => libpod(c).or_else(|| rest.first().filter(|_| is_hex_id(c)).and_then(|c| libpod(c))),
        ["machine.slice", c, rest @ ..] => libpod(c).or_else(|| {
            let pod = c.starts_with("machine-libpod_pod_") && c.ends_with(".slice");
            rest.first().filter(|_| pod).and_then(|c| libpod(c))
        }),
        ["kubepods" | "kubepods.slice", rest @ ..] => kubernetes(rest),
        [ns, id, ..] if containerd_namespaces.iter().any(|n| n == ns) && is_containerd_id(id) => {
            Some(Candidate::new(CONTAINERD, id, Some(ns)))
        }
        _ => None,
    }
}

/// Below `/kubepods[.slice]` (kubelet's, root only): the first component
/// that is a container directly under a pod's cgroup.
fn kubernetes(rest: &[&str]) -> Option<Candidate> {
    let is_pod = |c: &str| c.starts_with("pod") || (c.starts_with("kubepods-") && c.contains("-pod"));
    (1..rest.len()).filter(|&i| is_pod(rest[i - 1])).find_map(|i| {
        let c = rest[i];
        for (prefix, runtime, ns) in [("cri-containerd-", CONTAINERD, Some(K8S_NAMESPACE)), ("crio-", CRIO, None), ("docker-", DOCKER, None)] {
            if let Some(id) = unit_id(c, prefix) {
                return Some(Candidate::new(runtime, id, ns));
            }
        }
        is_hex_id(c).then(|| Candidate::new(CRI, c, Some(K8S_NAMESPACE)))
    })
}

/// The container of a process, from the text of its `/proc/PID/cgroup`
/// (`hierarchy:controllers:path` lines; cgroup v1, v2 or both).
pub fn container_from_proc_cgroup(text: &str, containerd_namespaces: &[String]) -> Option<Candidate> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(|path| container_from_cgroup_path(path, containerd_namespaces))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f";

    fn parse(path: &str) -> Option<(String, String)> {
        container_from_cgroup_path(path, &["default".to_string(), "k8s.io".to_string()]).map(|c| (c.runtime.to_string(), c.id))
    }

    fn is(runtime: &str) -> Option<(String, String)> {
        Some((runtime.to_string(), ID.to_string()))
    }

    #[test]
    fn docker() {
        assert_eq!(parse(&format!("/docker/{ID}")), is(DOCKER));
        assert_eq!(parse(&format!("/system.slice/docker-{ID}.scope")), is(DOCKER));
        // Docker in Docker: the outer container, the one the host's Docker knows.
        let outer = "a".repeat(64);
        assert_eq!(parse(&format!("/docker/{outer}/docker/{ID}")), Some((DOCKER.into(), outer)));
        // dockerd itself is not a container.
        assert_eq!(parse("/system.slice/docker.service"), None);
        assert_eq!(parse("/docker"), None);
        // Not 64 hex digits.
        assert_eq!(parse("/docker/3f4e8a9b0c1d"), None);
    }

    /// Names a user can give cgroups of their own (systemd delegates
    /// `user@UID.service` to its user; root can make them anywhere): only
    /// the runtimes' own parents at the root count.
    #[test]
    fn look_alikes_outside_the_runtimes_parents() {
        for p in [
            format!("/user.slice/user-1000.slice/docker-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/docker/{ID}"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            format!("/user.slice/kubepods/pod1/{ID}"),
            format!("/mine/docker/{ID}"),
            format!("/system.slice/cron.service/docker-{ID}.scope"),
            format!("/machine.slice/mine.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/mine/libpod-{ID}"),
            format!("/user.slice/default/{ID}"),
        ] {
            assert_eq!(parse(&p), None, "{p}");
        }
    }

    #[test]
    fn podman() {
        assert_eq!(parse(&format!("/libpod_parent/libpod-{ID}")), is(PODMAN));
        assert_eq!(parse(&format!("/libpod_parent/{}/libpod-{ID}", "b".repeat(64))), is(PODMAN));
        assert_eq!(parse(&format!("/machine.slice/libpod-{ID}.scope")), is(PODMAN));
        assert_eq!(parse(&format!("/machine.slice/libpod-{ID}.scope/container")), is(PODMAN));
        assert_eq!(parse(&format!("/machine.slice/machine-libpod_pod_{}.slice/libpod-{ID}.scope", "c".repeat(64))), is(PODMAN));
        // The monitor process is no container member.
        assert_eq!(parse(&format!("/libpod_parent/libpod-conmon-{ID}")), None);
        assert_eq!(parse(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
    }

    #[test]
    fn containerd() {
        let c = container_from_cgroup_path("/default/web", &["default".to_string()]).expect("task");
        assert_eq!(c, Candidate { runtime: CONTAINERD, id: "web".into(), namespace: Some("default".into()) });
        assert_eq!(parse(&format!("/k8s.io/{ID}")), is(CONTAINERD));
        // Only namespaces containerd has: other two-level paths are not containers.
        assert_eq!(parse("/process_api/04f39e864476756738f5e6b6fbcac73b"), None);
        assert_eq!(parse("/system.slice/cron.service"), None);
        assert_eq!(parse("/default/cron.service"), None);
        assert_eq!(parse("/default"), None);
        // Ids containerd would refuse, paths among them.
        for id in ["..", ".", "-a", "a-", "a..b", "a_-b", &"a".repeat(77)] {
            assert!(!is_containerd_id(id), "{id}");
        }
        assert!(is_containerd_id("trc-1234-task") && is_containerd_id("a.b_c-d"));
    }

    #[test]
    fn kubernetes() {
        let pod = "kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice";
        let k = |p: &str| container_from_cgroup_path(p, &[]);
        let c = k(&format!("/kubepods.slice/kubepods-burstable.slice/{pod}/cri-containerd-{ID}.scope")).expect("containerd");
        assert_eq!((c.runtime, c.id.as_str(), c.namespace.as_deref()), (CONTAINERD, ID, Some(K8S_NAMESPACE)));
        assert_eq!(parse(&format!("/kubepods.slice/kubepods-besteffort.slice/{pod}/crio-{ID}.scope")), is(CRIO));
        assert_eq!(parse(&format!("/kubepods.slice/kubepods-pod0a1b2c3d_4e5f.slice/crio-{ID}.scope")), is(CRIO));
        assert_eq!(parse(&format!("/kubepods.slice/{pod}/crio-conmon-{ID}.scope")), None);
        assert_eq!(parse(&format!("/kubepods.slice/kubepods-burstable.slice/{pod}/docker-{ID}.scope")), is(DOCKER));
        assert_eq!(parse(&format!("/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}")), is(CRI));
        assert_eq!(parse(&format!("/kubepods/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}")), is(CRI));
        // A pod's own cgroup is not a container, nor is an id not under a pod.
        assert_eq!(parse("/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789"), None);
        assert_eq!(parse(&format!("/kubepods/burstable/{ID}")), None);
        // A bare id outside kubepods and docker says nothing.
        assert_eq!(parse(&format!("/pod1/{ID}")), None);
    }

    #[test]
    fn host_processes() {
        for p in ["/", "/init.scope", "/system.slice/sshd.service", "/user.slice/user-0.slice/session-1.scope", ""] {
            assert_eq!(parse(p), None, "{p}");
        }
    }

    #[test]
    fn proc_cgroup_files() {
        let ns = ["default".to_string()];
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_from_proc_cgroup(&v2, &ns).map(|c| c.id), Some(ID.into()));
        // cgroup v1 and hybrid: any hierarchy may carry it; the unified one may be "/".
        let hybrid = format!("12:pids:/docker/{ID}\n4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
        let c = container_from_proc_cgroup(&hybrid, &ns).expect("docker").container();
        assert_eq!((c.runtime.as_str(), c.id.as_str(), c.name), (DOCKER, ID, None));
        let host = "9:name=systemd:/\n4:memory:/process_api/04f39e864476756738f5e6b6fbcac73b\n0::/\n";
        assert_eq!(container_from_proc_cgroup(host, &ns), None);
        assert_eq!(container_from_proc_cgroup("0::/default/redis\n", &ns).map(|c| c.runtime), Some(CONTAINERD));
        // A user's look-alike in the unified hierarchy, v1 at the root.
        let user = format!("4:memory:/user.slice\n0::/user.slice/user-1000.slice/docker-{ID}.scope\n");
        assert_eq!(container_from_proc_cgroup(&user, &ns), None);
    }
}
