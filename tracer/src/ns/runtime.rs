//! Container names from the runtimes that made them: the Docker API on its
//! unix socket (with Docker's on-disk metadata when the daemon is silent)
//! and Podman's on-disk container list. A runtime that is absent, slow or
//! says something unexpected gives no names, never an error or a hang: every
//! socket operation has a short time-out.

use std::{
    collections::HashMap,
    fs,
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const DOCKER_SOCK: &str = "/var/run/docker.sock";
pub const DOCKER_ROOT: &str = "/var/lib/docker";
pub const PODMAN_CONTAINERS: &str = "/var/lib/containers/storage/overlay-containers/containers.json";
/// containerd keeps one directory per namespace of running tasks here: the
/// system's containerd, and the one dockerd starts for itself.
pub const CONTAINERD_TASKS: &[&str] =
    &["/run/containerd/io.containerd.runtime.v2.task", "/run/docker/containerd/daemon/io.containerd.runtime.v2.task"];

/// Where to ask; tests and odd installs can point elsewhere.
#[derive(Clone, Debug)]
pub struct Sources {
    pub docker_sock: PathBuf,
    pub docker_root: PathBuf,
    pub podman_containers: PathBuf,
    pub containerd_tasks: Vec<PathBuf>,
    pub timeout: Duration,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            docker_sock: DOCKER_SOCK.into(),
            docker_root: DOCKER_ROOT.into(),
            podman_containers: PODMAN_CONTAINERS.into(),
            containerd_tasks: CONTAINERD_TASKS.iter().map(PathBuf::from).collect(),
            timeout: Duration::from_millis(500),
        }
    }
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

/// id -> name of the running Docker containers, from the API.
pub fn docker_names_api(src: &Sources) -> Option<HashMap<String, String>> {
    let list = docker_get(&src.docker_sock, "/containers/json", src.timeout)?;
    Some(docker_names_from_list(&list))
}

/// id -> name from the answer to `GET /containers/json`.
pub fn docker_names_from_list(list: &Value) -> HashMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let id = c["Id"].as_str()?;
            let name = c["Names"].as_array()?.iter().filter_map(Value::as_str).next()?;
            Some((id.to_string(), name.trim_start_matches('/').to_string()))
        })
        .collect()
}

/// The name Docker stored for one container on disk; works with the daemon down.
pub fn docker_name_on_disk(root: &Path, id: &str) -> Option<String> {
    let text = fs::read(root.join("containers").join(id).join("config.v2.json")).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    v["Name"].as_str().map(|n| n.trim_start_matches('/').to_string()).filter(|n| !n.is_empty())
}

/// id -> name of Podman's (root) containers, from its storage's container list.
pub fn podman_names(path: &Path) -> HashMap<String, String> {
    let Ok(text) = fs::read(path) else { return HashMap::new() };
    let Ok(v) = serde_json::from_slice::<Value>(&text) else { return HashMap::new() };
    podman_names_from_list(&v)
}

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

    #[test]
    fn docker_list_names() {
        let list: Value = serde_json::from_str(
            r#"[{"Id":"aaa","Names":["/web"],"State":"running"},{"Id":"bbb","Names":["/db","/web/db"]},{"Id":"ccc"}]"#,
        )
        .expect("json");
        let m = docker_names_from_list(&list);
        assert_eq!(m.get("aaa").map(String::as_str), Some("web"));
        assert_eq!(m.get("bbb").map(String::as_str), Some("db"));
        assert_eq!(m.len(), 2);
        assert!(docker_names_from_list(&serde_json::json!({"message": "x"})).is_empty());
    }

    #[test]
    fn docker_on_disk_and_podman_list() {
        let dir = std::env::temp_dir().join(format!("tracer-rt-{}", std::process::id()));
        let cdir = dir.join("containers/abc");
        fs::create_dir_all(&cdir).expect("mkdir");
        fs::write(cdir.join("config.v2.json"), r#"{"ID":"abc","Name":"/cache","State":{"Pid":42}}"#).expect("write");
        assert_eq!(docker_name_on_disk(&dir, "abc").as_deref(), Some("cache"));
        assert_eq!(docker_name_on_disk(&dir, "nope"), None);
        let p = dir.join("containers.json");
        fs::write(&p, r#"[{"id":"f00","names":["podweb"],"image":"x"},{"id":"bar","names":[]}]"#).expect("write");
        let m = podman_names(&p);
        assert_eq!(m.get("f00").map(String::as_str), Some("podweb"));
        assert_eq!(m.len(), 1);
        assert!(podman_names(&dir.join("missing.json")).is_empty());
        fs::create_dir_all(dir.join("tasks/default")).expect("mkdir");
        fs::create_dir_all(dir.join("tasks/k8s.io")).expect("mkdir");
        fs::create_dir_all(dir.join("tasks2/k8s.io")).expect("mkdir");
        assert_eq!(containerd_namespaces(&[dir.join("tasks"), dir.join("tasks2"), dir.join("none")]), ["default", "k8s.io"]);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A daemon that accepts and never answers costs the time-out, not a hang.
    #[test]
    fn silent_daemon_times_out() {
        let dir = std::env::temp_dir().join(format!("tracer-sock-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let sock = dir.join("d.sock");
        let _ = fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let t = Instant::now();
        assert_eq!(docker_get(&sock, "/containers/json", Duration::from_millis(200)), None);
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(listener);
        // No daemon at all.
        assert_eq!(docker_get(&dir.join("none.sock"), "/containers/json", Duration::from_millis(200)), None);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A daemon that answers as Docker does (HTTP/1.0, then close).
    #[test]
    fn answering_daemon() {
        let dir = std::env::temp_dir().join(format!("tracer-sock2-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let sock = dir.join("d.sock");
        let _ = fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let h = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            let mut req = [0u8; 1024];
            let n = c.read(&mut req).expect("read");
            let body = r#"[{"Id":"abc","Names":["/web"]}]"#;
            let _ = c.write_all(format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        let src = Sources { docker_sock: sock, ..Sources::default() };
        let names = docker_names_api(&src).expect("answer");
        assert_eq!(names.get("abc").map(String::as_str), Some("web"));
        let req = h.join().expect("server");
        assert!(req.starts_with("GET /containers/json HTTP/1.0\r\n"), "{req}");
        let _ = fs::remove_dir_all(&dir);
    }
}
