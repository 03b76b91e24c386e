//! What the container runtimes themselves say about a container: whether
//! it runs, its name, its first process and how it got its network
//! namespace. Only the root-owned records of the system's runtimes are
//! read: Docker's API on `/var/run/docker.sock` and its metadata under
//! `/var/lib/docker/containers/<id>/`, Podman's (and CRI-O's) root storage,
//! containerd's task state directories. Every file must be a regular file
//! owned by root and writable by nobody else, so no other user can forge
//! one. A runtime that is absent, slow or says something unexpected
//! confirms nothing, never an error or a hang: every socket operation has a
//! short time-out and every file a size limit.

use std::{
    collections::HashMap,
    fs,
    io::{Read as _, Write as _},
    os::unix::{
        fs::{MetadataExt as _, OpenOptionsExt as _},
        net::UnixStream,
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    Pod,
    cgroup::{self, Candidate, is_containerd_id, is_hex_id},
};

pub const DOCKER_SOCK: &str = "/var/run/docker.sock";
pub const DOCKER_ROOT: &str = "/var/lib/docker";
pub const PODMAN_CONTAINERS: &str = "/var/lib/containers/storage/overlay-containers/containers.json";
/// Where Podman and CRI-O keep each running container's pidfile.
pub const PODMAN_RUN: &str = "/run/containers/storage/overlay-containers";
/// containerd keeps one directory per namespace of running tasks here: the
/// system's containerd, and the one dockerd starts for itself.
pub const CONTAINERD_TASKS: &[&str] =
    &["/run/containerd/io.containerd.runtime.v2.task", "/run/docker/containerd/daemon/io.containerd.runtime.v2.task"];
/// The most read of one metadata file; Docker's are a few KiB.
const MAX_FILE: u64 = 16 << 20;

/// Where to ask; tests and odd installs can point elsewhere.
#[derive(Clone, Debug)]
pub struct Sources {
    pub docker_sock: PathBuf,
    pub docker_root: PathBuf,
    pub podman_containers: PathBuf,
    pub podman_run: PathBuf,
    pub containerd_tasks: Vec<PathBuf>,
    pub timeout: Duration,
    /// The only owner whose files and socket are believed (root).
    pub trusted_uid: u32,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            docker_sock: DOCKER_SOCK.into(),
            docker_root: DOCKER_ROOT.into(),
            podman_containers: PODMAN_CONTAINERS.into(),
            podman_run: PODMAN_RUN.into(),
            containerd_tasks: CONTAINERD_TASKS.iter().map(PathBuf::from).collect(),
            timeout: Duration::from_millis(500),
            trusted_uid: 0,
        }
    }
}

/// How a container's network namespace came to be, as its runtime recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// It made its own: Docker's bridge, `none` and user networks, an OCI
    /// spec asking for a new namespace, a Kubernetes sandbox.
    Own,
    /// It uses the runtime's: Docker's `--network host`, an OCI spec with
    /// no network namespace.
    Host,
    /// It joined another's: Docker's `--network container:<id>`, an OCI
    /// spec pointing into `/proc/<pid>/ns/net`, a Kubernetes app container.
    Joined,
}

/// What a runtime says about one running container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The runtime that confirmed it (for a bare Kubernetes id, the one that knew it).
    pub runtime: &'static str,
    pub name: Option<String>,
    /// Its first process as the host sees it: Docker's `State.Pid`,
    /// containerd's `init.pid`, Podman's pidfile.
    pub pid: u32,
    pub net: NetMode,
    /// A bind mount of its network namespace the runtime keeps (Docker's `SandboxKey`).
    pub sandbox: Option<PathBuf>,
    /// Its Kubernetes pod, from the CRI labels or annotations ([`cri_pod`]).
    pub pod: Option<Pod>,
}

/// Reads a runtime's file when it is one only root could have written: a
/// regular file (not followed through a symlink, not a FIFO that would
/// block) owned by `uid`, writable by no one else, at most `max` bytes.
pub fn read_trusted(path: &Path, uid: u32, max: u64) -> Option<Vec<u8>> {
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path).ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.uid() != uid || m.mode() & 0o022 != 0 || m.len() > max {
        return None;
    }
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf).ok()?;
    (buf.len() as u64 <= max).then_some(buf)
}

fn read_json(path: &Path, uid: u32) -> Option<Value> {
    serde_json::from_slice(&read_trusted(path, uid, MAX_FILE)?).ok()
}

fn read_pid(path: &Path, uid: u32) -> Option<u32> {
    let text = read_trusted(path, uid, 64)?;
    std::str::from_utf8(&text).ok()?.trim().parse().ok().filter(|p| *p > 0)
}

/// One `GET` on the Docker API; `None` when the daemon is not there, too
/// slow, or answers anything but 200 with JSON. HTTP/1.0 so that the answer
/// is neither chunked nor kept alive: it ends when the daemon closes.
pub fn docker_get(sock: &Path, path: &str, timeout: Duration) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n\r\n").as_bytes()).ok()?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() > deadline || resp.len() > 64 << 20 {
            return None;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(body_at) = r.parse(&resp).ok()? else { return None };
    if r.code != Some(200) {
        return None;
    }
    serde_json::from_slice(&resp[body_at..]).ok()
}

/// The runtimes' records, asked one container at a time. Podman's container
/// list is one file for all containers: it is read once per `ttl`.
pub struct Runtimes {
    pub src: Sources,
    podman: Option<(Instant, HashMap<String, String>)>,
    pub ttl: Duration,
}

impl Runtimes {
    pub fn new(src: Sources) -> Self {
        Runtimes { src, podman: None, ttl: Duration::from_millis(500) }
    }

    /// What the candidate's runtime records about it, if it says the
    /// container runs. Whether that process really is the container's, and
    /// still alive, is for the caller to check (see `super::identity`).
    pub fn record(&mut self, c: &Candidate) -> Option<Record> {
        let ns = c.namespace.as_deref().unwrap_or(cgroup::K8S_NAMESPACE);
        match c.runtime {
            cgroup::DOCKER => self.docker(&c.id),
            cgroup::PODMAN => self.podman(&c.id, cgroup::PODMAN),
            cgroup::CRIO => self.podman(&c.id, cgroup::CRIO),
            cgroup::CONTAINERD => self.containerd(ns, &c.id),
            // Kubernetes with the cgroupfs driver: whichever runtime knows it.
            cgroup::CRI => self.containerd(ns, &c.id).or_else(|| self.docker(&c.id)).or_else(|| self.podman(&c.id, cgroup::CRIO)),
            _ => None,
        }
    }

    /// Docker's metadata on disk first (no daemon round trip, and it works
    /// while dockerd is busy), else its API.
    fn docker(&self, id: &str) -> Option<Record> {
        if !is_hex_id(id) {
            return None;
        }
        let uid = self.src.trusted_uid;
        let dir = self.src.docker_root.join("containers").join(id);
        if let Some(config) = read_json(&dir.join("config.v2.json"), uid) {
            let host = read_json(&dir.join("hostconfig.json"), uid)?;
            return docker_record(&config, host["NetworkMode"].as_str());
        }
        // The socket must be root's too: a user cannot make one there, but
        // a misconfigured path could point at anyone's.
        if fs::metadata(&self.src.docker_sock).ok()?.uid() != uid {
            return None;
        }
        let v = docker_get(&self.src.docker_sock, &format!("/containers/{id}/json"), self.src.timeout)?;
        docker_record(&v, v["HostConfig"]["NetworkMode"].as_str())
    }

    fn podman(&mut self, id: &str, runtime: &'static str) -> Option<Record> {
        if !is_hex_id(id) {
            return None;
        }
        let uid = self.src.trusted_uid;
        if self.podman.as_ref().is_none_or(|(at, _)| at.elapsed() >= self.ttl) {
            let list = read_json(&self.src.podman_containers, uid).map(|v| podman_names_from_list(&v)).unwrap_or_default();
            self.podman = Some((Instant::now(), list));
        }
        let name = self.podman.as_ref()?.1.get(id)?.clone();
        let pid = read_pid(&self.src.podman_run.join(id).join("userdata/pidfile"), uid)?;
        let storage = self.src.podman_containers.parent()?;
        let spec = read_json(&storage.join(id).join("userdata/config.json"), uid);
        let net = spec.as_ref().map_or(NetMode::Own, oci_net_mode);
        // CRI-O keeps the pod in the spec's annotations.
        let pod = spec.as_ref().and_then(|s| cri_pod(&s["annotations"]));
        Some(Record { runtime, name: Some(name), pid, net, sandbox: None, pod })
    }

    fn containerd(&self, ns: &str, id: &str) -> Option<Record> {
        if !is_containerd_id(ns) || !is_containerd_id(id) {
            return None;
        }
        let uid = self.src.trusted_uid;
        self.src.containerd_tasks.iter().find_map(|tasks| {
            let dir = tasks.join(ns).join(id);
            let pid = read_pid(&dir.join("init.pid"), uid)?;
            let spec = read_json(&dir.join("config.json"), uid)?;
            // containerd has no name of its own for a task: a CRI one is
            // named after its container in the pod, or its pod.
            let pod = cri_pod(&spec["annotations"]);
            let name = pod.as_ref().map(|p| p.container.clone().unwrap_or_else(|| p.name.clone()));
            Some(Record { runtime: cgroup::CONTAINERD, name, pid, net: oci_net_mode(&spec), sandbox: None, pod })
        })
    }
}

/// A Docker container's record from its `config.v2.json` (or the API's
/// inspect answer, which has the same `State`, `Name` and `NetworkSettings`)
/// and its `HostConfig.NetworkMode`: only a running one.
pub fn docker_record(v: &Value, network_mode: Option<&str>) -> Option<Record> {
    let state = &v["State"];
    if state["Running"].as_bool() != Some(true) {
        return None;
    }
    let pid = state["Pid"].as_u64().and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0)?;
    let name = v["Name"].as_str().map(|n| n.trim_start_matches('/').to_string()).filter(|n| !n.is_empty());
    let net = match network_mode? {
        "host" => NetMode::Host,
        m if m.starts_with("container:") => NetMode::Joined,
        _ => NetMode::Own,
    };
    let sandbox = v["NetworkSettings"]["SandboxKey"].as_str().filter(|k| !k.is_empty()).map(PathBuf::from);
    // cri-dockerd (and dockershim before it) label the pod's containers.
    let pod = cri_pod(&v["Config"]["Labels"]);
    Some(Record { runtime: cgroup::DOCKER, name, pid, net, sandbox, pod })
}

/// The longest pod, namespace and container name kept (Kubernetes allows
/// 253 for a pod, 63 for the others).
const POD_NAME_MAX: usize = 253;

/// The pod a container belongs to, from the labels or annotations its
/// runtime keeps: `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`
/// and `io.kubernetes.container.name` (cri-dockerd's Docker labels, CRI-O's
/// annotations), or containerd's CRI annotations
/// (`io.kubernetes.cri.sandbox-name`, `-namespace`, `io.kubernetes.cri.container-name`).
/// Both the pod's name and namespace are needed; names longer than
/// Kubernetes allows are no pod.
pub fn cri_pod(kv: &Value) -> Option<Pod> {
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| kv[*k].as_str()).filter(|v| !v.is_empty() && v.len() <= POD_NAME_MAX).map(String::from)
    };
    let name = get(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"])?;
    let namespace = get(&["io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"])?;
    // The sandbox's own "container" is no container of the pod.
    let container = get(&["io.kubernetes.container.name", "io.kubernetes.cri.container-name"]).filter(|c| c != "POD");
    Some(Pod { name, namespace, container })
}

/// How an OCI runtime spec (containerd's, Podman's, CRI-O's `config.json`)
/// gets the container its network namespace.
pub fn oci_net_mode(spec: &Value) -> NetMode {
    let annotations = &spec["annotations"];
    let cri_type = annotations["io.kubernetes.cri.container-type"].as_str().or(annotations["io.kubernetes.cri-o.ContainerType"].as_str());
    let net = spec["linux"]["namespaces"].as_array().and_then(|v| v.iter().find(|n| n["type"] == "network"));
    match (net, cri_type) {
        (None, _) => NetMode::Host,
        // Kubernetes: the sandbox (pause) container holds the pod's namespace.
        (Some(_), Some("sandbox")) => NetMode::Own,
        (Some(_), Some("container")) => NetMode::Joined,
        (Some(n), _) => match n["path"].as_str() {
            Some(p) if p.starts_with("/proc/") => NetMode::Joined,
            // No path: a new namespace; another path: a bind mount the
            // runtime made for this container (Podman's /run/netns/netns-<uuid>).
            _ => NetMode::Own,
        },
    }
}

/// id -> first name, from Podman's (and CRI-O's) `containers.json`.
pub fn podman_names_from_list(v: &Value) -> HashMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let id = c["id"].as_str()?;
            let name = c["names"].as_array()?.iter().filter_map(Value::as_str).next()?;
            Some((id.to_string(), name.to_string()))
        })
        .collect()
}

/// The containerd namespaces that have running tasks (their names are what
/// containerd puts first in its cgroup paths).
pub fn containerd_namespaces(task_dirs: &[PathBuf]) -> Vec<String> {
    let mut v: Vec<String> = task_dirs
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f";

    fn me() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tracer-rt-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    fn sources(dir: &Path) -> Sources {
        Sources {
            docker_sock: dir.join("docker.sock"),
            docker_root: dir.join("docker"),
            podman_containers: dir.join("storage/overlay-containers/containers.json"),
            podman_run: dir.join("run/overlay-containers"),
            containerd_tasks: vec![dir.join("tasks")],
            timeout: Duration::from_millis(200),
            trusted_uid: me(),
        }
    }

    fn candidate(runtime: &'static str, id: &str, ns: Option<&str>) -> Candidate {
        cgroup::container_from_cgroup_path(
            &match runtime {
                cgroup::DOCKER => format!("/docker/{id}"),
                cgroup::PODMAN => format!("/libpod_parent/libpod-{id}"),
                _ => format!("/{}/{id}", ns.unwrap_or("default")),
            },
            &[ns.unwrap_or("default").to_string()],
        )
        .expect("candidate")
    }

    #[test]
    fn docker_records_by_network_mode() {
        let running = |mode: &str| {
            let v = serde_json::json!({"State": {"Running": true, "Pid": 42}, "Name": "/web",
                "NetworkSettings": {"SandboxKey": "/var/run/docker/netns/1a2b"}});
            docker_record(&v, Some(mode))
        };
        let r = running("bridge").expect("running");
        assert_eq!((r.runtime, r.name.as_deref(), r.pid, r.net), (cgroup::DOCKER, Some("web"), 42, NetMode::Own));
        assert_eq!(r.sandbox, Some(PathBuf::from("/var/run/docker/netns/1a2b")));
        assert_eq!(running("default").map(|r| r.net), Some(NetMode::Own));
        assert_eq!(running("host").map(|r| r.net), Some(NetMode::Host));
        assert_eq!(running(&format!("container:{ID}")).map(|r| r.net), Some(NetMode::Joined));
        // Stopped, no pid, a pid that does not fit, no mode: nothing confirmed.
        for state in [
            serde_json::json!({"State": {"Running": false, "Pid": 0}}),
            serde_json::json!({"State": {"Running": true, "Pid": 0}}),
            serde_json::json!({"State": {"Running": true, "Pid": 1u64 << 40}}),
            serde_json::json!({"State": {"Running": "yes", "Pid": 42}}),
            serde_json::json!([]),
        ] {
            assert_eq!(docker_record(&state, Some("bridge")), None, "{state}");
        }
        assert_eq!(docker_record(&serde_json::json!({"State": {"Running": true, "Pid": 42}}), None), None);
    }

    #[test]
    fn pods_from_cri_labels_and_annotations() {
        use serde_json::json;
        let docker = json!({"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop", "io.kubernetes.container.name": "nginx"});
        assert_eq!(cri_pod(&docker), Some(Pod { name: "web-1".into(), namespace: "shop".into(), container: Some("nginx".into()) }));
        let sandbox = json!({"io.kubernetes.cri.sandbox-name": "web-1", "io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.container-type": "sandbox"});
        assert_eq!(cri_pod(&sandbox), Some(Pod { name: "web-1".into(), namespace: "shop".into(), container: None }));
        let pause = json!({"io.kubernetes.pod.name": "p", "io.kubernetes.pod.namespace": "n", "io.kubernetes.container.name": "POD"});
        assert_eq!(cri_pod(&pause).and_then(|p| p.container), None, "dockershim's sandbox is no container of the pod");
        // Half a pod, empty, too long or not a string: none.
        assert_eq!(cri_pod(&json!({"io.kubernetes.pod.name": "web-1"})), None);
        assert_eq!(cri_pod(&json!({"io.kubernetes.pod.name": "", "io.kubernetes.pod.namespace": "n"})), None);
        assert_eq!(cri_pod(&json!({"io.kubernetes.pod.name": "x".repeat(254), "io.kubernetes.pod.namespace": "n"})), None);
        assert_eq!(cri_pod(&json!({"io.kubernetes.pod.name": 7, "io.kubernetes.pod.namespace": "n"})), None);
        assert_eq!(cri_pod(&json!(null)), None);
        // From a Docker record's labels.
        let v = json!({"State": {"Running": true, "Pid": 42}, "Name": "/k8s_nginx_web-1", "Config": {"Labels": docker}});
        assert_eq!(docker_record(&v, Some("container:abc")).and_then(|r| r.pod).map(|p| p.label()), Some("shop/web-1".into()));
    }

    #[test]
    fn oci_specs() {
        let spec = |ns: Value, ann: Value| serde_json::json!({"linux": {"namespaces": ns}, "annotations": ann});
        let none = serde_json::json!({});
        assert_eq!(oci_net_mode(&spec(serde_json::json!([{"type": "pid"}, {"type": "network"}]), none.clone())), NetMode::Own);
        assert_eq!(oci_net_mode(&spec(serde_json::json!([{"type": "pid"}]), none.clone())), NetMode::Host);
        assert_eq!(oci_net_mode(&spec(serde_json::json!([{"type": "network", "path": "/proc/7/ns/net"}]), none.clone())), NetMode::Joined);
        assert_eq!(oci_net_mode(&spec(serde_json::json!([{"type": "network", "path": "/run/netns/netns-1"}]), none)), NetMode::Own);
        let cni = serde_json::json!([{"type": "network", "path": "/var/run/netns/cni-1"}]);
        assert_eq!(oci_net_mode(&spec(cni.clone(), serde_json::json!({"io.kubernetes.cri.container-type": "sandbox"}))), NetMode::Own);
        assert_eq!(oci_net_mode(&spec(cni.clone(), serde_json::json!({"io.kubernetes.cri.container-type": "container"}))), NetMode::Joined);
        assert_eq!(oci_net_mode(&spec(cni, serde_json::json!({"io.kubernetes.cri-o.ContainerType": "container"}))), NetMode::Joined);
        assert_eq!(oci_net_mode(&serde_json::json!("garbage")), NetMode::Host);
    }

    /// Each runtime's files, as the runtime lays them out.
    #[test]
    fn records_from_each_runtimes_files() {
        let dir = scratch("files");
        let src = sources(&dir);
        let d = src.docker_root.join("containers").join(ID);
        write(&d.join("config.v2.json"), r#"{"ID":"x","Name":"/cache","State":{"Running":true,"Pid":42},"NetworkSettings":{"SandboxKey":""}}"#);
        write(&d.join("hostconfig.json"), r#"{"NetworkMode":"host"}"#);
        let podman_id = "b".repeat(64);
        write(&src.podman_containers, &format!(r#"[{{"id":"{podman_id}","names":["podweb"]}},{{"id":"bar","names":[]}}]"#));
        write(&src.podman_run.join(&podman_id).join("userdata/pidfile"), "77\n");
        write(&dir.join("tasks/default/web/init.pid"), "99");
        write(&dir.join("tasks/default/web/config.json"), r#"{"linux":{"namespaces":[{"type":"network"}]}}"#);
        let mut rt = Runtimes::new(src.clone());
        let r = rt.record(&candidate(cgroup::DOCKER, ID, None)).expect("docker");
        assert_eq!((r.name.as_deref(), r.pid, r.net, r.sandbox), (Some("cache"), 42, NetMode::Host, None));
        let r = rt.record(&candidate(cgroup::PODMAN, &podman_id, None)).expect("podman");
        assert_eq!((r.runtime, r.name.as_deref(), r.pid, r.net), (cgroup::PODMAN, Some("podweb"), 77, NetMode::Own));
        let r = rt.record(&candidate(cgroup::CONTAINERD, "web", Some("default"))).expect("containerd");
        assert_eq!((r.runtime, r.name, r.pid, r.net), (cgroup::CONTAINERD, None, 99, NetMode::Own));
        // Unknown to its runtime: nothing.
        assert_eq!(rt.record(&candidate(cgroup::DOCKER, &"c".repeat(64), None)), None);
        assert_eq!(rt.record(&candidate(cgroup::CONTAINERD, "db", Some("default"))), None);
        assert_eq!(rt.record(&candidate(cgroup::PODMAN, &"c".repeat(64), None)), None);
        assert_eq!(containerd_namespaces(&[dir.join("tasks"), dir.join("none")]), ["default"]);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Files another user could have written, symlinks and FIFOs are not records.
    #[test]
    fn untrusted_files_confirm_nothing() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("trust");
        let src = sources(&dir);
        let d = src.docker_root.join("containers").join(ID);
        write(&d.join("config.v2.json"), r#"{"Name":"/cache","State":{"Running":true,"Pid":42}}"#);
        write(&d.join("hostconfig.json"), r#"{"NetworkMode":"bridge"}"#);
        let mut rt = Runtimes::new(src.clone());
        assert!(rt.record(&candidate(cgroup::DOCKER, ID, None)).is_some());
        // Group- or world-writable.
        fs::set_permissions(d.join("config.v2.json"), fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(rt.record(&candidate(cgroup::DOCKER, ID, None)), None);
        // Owned by someone else.
        let mut other = Runtimes::new(Sources { trusted_uid: me() + 1, ..src.clone() });
        fs::set_permissions(d.join("config.v2.json"), fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(rt.record(&candidate(cgroup::DOCKER, ID, None)).is_some());
        assert_eq!(other.record(&candidate(cgroup::DOCKER, ID, None)), None);
        // A symlink to a good file, a FIFO (which must not block), a directory.
        let real = dir.join("real.json");
        fs::rename(d.join("config.v2.json"), &real).expect("mv");
        std::os::unix::fs::symlink(&real, d.join("config.v2.json")).expect("symlink");
        assert_eq!(read_trusted(&d.join("config.v2.json"), me(), MAX_FILE), None);
        assert!(read_trusted(&real, me(), MAX_FILE).is_some());
        let fifo = std::ffi::CString::new(dir.join("fifo").as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo with a valid C path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(read_trusted(&dir.join("fifo"), me(), MAX_FILE), None);
        assert_eq!(read_trusted(&dir, me(), MAX_FILE), None);
        // Too big.
        assert_eq!(read_trusted(&real, me(), 10), None);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A daemon that accepts and never answers costs the time-out, not a hang.
    #[test]
    fn silent_daemon_times_out() {
        let dir = scratch("sock");
        let sock = dir.join("d.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let t = Instant::now();
        assert_eq!(docker_get(&sock, "/containers/json", Duration::from_millis(200)), None);
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(listener);
        // No daemon at all.
        assert_eq!(docker_get(&dir.join("none.sock"), "/containers/json", Duration::from_millis(200)), None);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A daemon that answers as Docker does (HTTP/1.0, then close), asked
    /// when the metadata on disk is not there.
    #[test]
    fn answering_daemon() {
        let dir = scratch("sock2");
        let src = sources(&dir);
        let listener = std::os::unix::net::UnixListener::bind(&src.docker_sock).expect("bind");
        let h = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            let mut req = [0u8; 1024];
            let n = c.read(&mut req).expect("read");
            let body = r#"{"Name":"/web","State":{"Running":true,"Pid":4242},"HostConfig":{"NetworkMode":"bridge"},"NetworkSettings":{"SandboxKey":"/var/run/docker/netns/ab"}}"#;
            let _ = c.write_all(format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        let r = Runtimes::new(src).record(&candidate(cgroup::DOCKER, ID, None)).expect("answer");
        assert_eq!((r.name.as_deref(), r.pid, r.net), (Some("web"), 4242, NetMode::Own));
        let req = h.join().expect("server");
        assert!(req.starts_with(&format!("GET /containers/{ID}/json HTTP/1.0\r\n")), "{req}");
        let _ = fs::remove_dir_all(&dir);
    }
}
