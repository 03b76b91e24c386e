//! Container identity from cgroup paths: pure functions, one rule per
//! runtime, so every layout the runtimes use is a unit test.
//!
//! The runtimes put each container's processes in a cgroup whose last
//! components carry the container id:
//!
//! | runtime | cgroup path |
//! | --- | --- |
//! | Docker, cgroupfs driver | `/docker/<64 hex>` |
//! | Docker, systemd driver | `/system.slice/docker-<64 hex>.scope` |
//! | Podman | `/libpod_parent/libpod-<64 hex>`, `/machine.slice/libpod-<64 hex>.scope[/container]` |
//! | containerd (`ctr`) | `/<containerd namespace>/<id>` |
//! | Kubernetes | `/kubepods[.slice]/.../cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, or `/kubepods/<qos>/pod<uid>/<64 hex>` |
//!
//! The deepest component that matches wins, so a container nested in
//! another (Docker in Docker) is named by the inner one.

use super::Container;

pub const DOCKER: &str = "docker";
pub const PODMAN: &str = "podman";
pub const CONTAINERD: &str = "containerd";
pub const CRIO: &str = "cri-o";
/// A Kubernetes container whose cgroup does not say which runtime made it
/// (cgroupfs driver: the component is the bare id).
pub const CRI: &str = "cri";

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A containerd id: what `ctr` accepts (letters, digits, `_.-`), and not a
/// systemd unit, which would make every `/system.slice/foo.service` a container.
fn is_containerd_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 76
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && ![".scope", ".slice", ".service", ".mount", ".socket"].iter().any(|u| s.ends_with(u))
}

fn container(runtime: &str, id: &str) -> Container {
    Container { runtime: runtime.to_string(), id: id.to_string(), name: None }
}

/// The container a cgroup path belongs to. `containerd_namespaces` are the
/// containerd namespaces that exist (their names are free-form, so a bare
/// `/<a>/<b>` only counts when `<a>` is one of them).
pub fn container_from_cgroup_path(path: &str, containerd_namespaces: &[String]) -> Option<Container> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for i in (0..comps.len()).rev() {
        let c = comps[i];
        let unit = c.strip_suffix(".scope").unwrap_or(c);
        for (prefix, runtime) in [("docker-", DOCKER), ("libpod-", PODMAN), ("cri-containerd-", CONTAINERD), ("crio-", CRIO)] {
            // `libpod-conmon-<id>` and `crio-conmon-<id>` hold the monitor, not
            // the container: their remainder is not a bare id, so they fail here.
            if let Some(id) = unit.strip_prefix(prefix).filter(|id| is_hex_id(id)) {
                return Some(container(runtime, id));
            }
        }
        let parent = if i > 0 { comps[i - 1] } else { "" };
        if is_hex_id(c) {
            if parent == "docker" {
                return Some(container(DOCKER, c));
            }
            if parent.starts_with("pod") && comps[..i].iter().any(|p| p.starts_with("kubepods")) {
                return Some(container(CRI, c));
            }
        }
        if i > 0 && containerd_namespaces.iter().any(|n| n == parent) && is_containerd_id(c) {
            return Some(container(CONTAINERD, c));
        }
    }
    None
}

/// The container of a process, from the text of its `/proc/PID/cgroup`
/// (`hierarchy:controllers:path` lines; cgroup v1, v2 or both).
pub fn container_from_proc_cgroup(text: &str, containerd_namespaces: &[String]) -> Option<Container> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(|path| container_from_cgroup_path(path, containerd_namespaces))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f";

    fn parse(path: &str) -> Option<(String, String)> {
        container_from_cgroup_path(path, &["default".to_string(), "k8s.io".to_string()]).map(|c| (c.runtime, c.id))
    }

    fn is(runtime: &str) -> Option<(String, String)> {
        Some((runtime.to_string(), ID.to_string()))
    }

    #[test]
    fn docker() {
        assert_eq!(parse(&format!("/docker/{ID}")), is(DOCKER));
        assert_eq!(parse(&format!("/system.slice/docker-{ID}.scope")), is(DOCKER));
        // Docker in Docker: the inner container.
        let outer = "a".repeat(64);
        assert_eq!(parse(&format!("/docker/{outer}/docker/{ID}")), is(DOCKER));
        // dockerd itself is not a container.
        assert_eq!(parse("/system.slice/docker.service"), None);
        assert_eq!(parse("/docker"), None);
        // Not 64 hex digits.
        assert_eq!(parse("/docker/3f4e8a9b0c1d"), None);
    }

    #[test]
    fn podman() {
        assert_eq!(parse(&format!("/libpod_parent/libpod-{ID}")), is(PODMAN));
        assert_eq!(parse(&format!("/machine.slice/libpod-{ID}.scope")), is(PODMAN));
        assert_eq!(parse(&format!("/machine.slice/libpod-{ID}.scope/container")), is(PODMAN));
        assert_eq!(parse(&format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope")), is(PODMAN));
        // The monitor process is no container member.
        assert_eq!(parse(&format!("/libpod_parent/libpod-conmon-{ID}")), None);
        assert_eq!(parse(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
    }

    #[test]
    fn containerd() {
        assert_eq!(parse("/default/web"), Some((CONTAINERD.into(), "web".into())));
        assert_eq!(parse(&format!("/k8s.io/{ID}")), is(CONTAINERD));
        // Only namespaces containerd has: other two-level paths are not containers.
        assert_eq!(parse("/process_api/04f39e864476756738f5e6b6fbcac73b"), None);
        assert_eq!(parse("/system.slice/cron.service"), None);
        assert_eq!(parse("/default/cron.service"), None);
        assert_eq!(parse("/default"), None);
    }

    #[test]
    fn kubernetes() {
        let pod = "kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice";
        assert_eq!(parse(&format!("/kubepods.slice/kubepods-burstable.slice/{pod}/cri-containerd-{ID}.scope")), is(CONTAINERD));
        assert_eq!(parse(&format!("/kubepods.slice/kubepods-besteffort.slice/{pod}/crio-{ID}.scope")), is(CRIO));
        assert_eq!(parse(&format!("/kubepods.slice/{pod}/crio-conmon-{ID}.scope")), None);
        assert_eq!(parse(&format!("/kubepods.slice/kubepods-burstable.slice/{pod}/docker-{ID}.scope")), is(DOCKER));
        assert_eq!(parse(&format!("/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}")), is(CRI));
        assert_eq!(parse(&format!("/kubepods/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}")), is(CRI));
        // A pod's own cgroup is not a container.
        assert_eq!(parse("/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789"), None);
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
        let c = container_from_proc_cgroup(&hybrid, &ns).expect("docker");
        assert_eq!((c.runtime.as_str(), c.id.as_str(), c.name), (DOCKER, ID, None));
        let host = "9:name=systemd:/\n4:memory:/process_api/04f39e864476756738f5e6b6fbcac73b\n0::/\n";
        assert_eq!(container_from_proc_cgroup(host, &ns), None);
        assert_eq!(container_from_proc_cgroup("0::/default/redis\n", &ns).map(|c| c.runtime), Some(CONTAINERD.into()));
    }
}
