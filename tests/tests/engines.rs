//! Naming by real container engines beyond Docker, as `tracer ns`,
//! `tracer packets` and `tracer serve`'s metrics show it: a containerd
//! task made with `ctr` carrying Kubernetes' CRI annotations is named with
//! its pod and namespace (what the node's runtime records, never the API
//! server), and a real Podman container (Debian's `podman`, CNI bridge)
//! is named by its name.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::json;
use tracer_tests::{
    Tracer,
    docker::{Ctr, IMAGE, engine},
    ns_json,
    prom::http_get,
    sh, sh_out, shell_quote, tracer_run, unique_id, wait_until,
};

fn metrics_of(t: &Tracer) -> String {
    wait_until(Duration::from_secs(5), || t.stderr().contains("/metrics"));
    let err = t.stderr();
    let addr = err
        .split("serving metrics on http://")
        .nth(1)
        .and_then(|r| r.split("/metrics").next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {err}"));
    http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default()
}

fn wait_metrics(t: &Tracer, want: &[String]) -> String {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(15), || {
        last = metrics_of(t);
        want.iter().all(|w| last.lines().any(|l| l.starts_with("tracer_packets_total{") && l.contains(w.as_str())))
    });
    assert!(ok, "no packets series with {want:?} in:\n{last}");
    last
}

#[test]
fn containerd_task_with_cri_annotations_is_named_with_its_pod() {
    let d = engine();
    let ctr = Ctr::new(d);
    let (pod, kns) = (format!("web-{}", unique_id()), "shop");
    // A pod's sandbox as containerd's CRI plugin annotates it, and an app
    // container as CRI-O and cri-dockerd label theirs.
    let sandbox_ann = [
        "io.kubernetes.cri.container-type=sandbox".to_string(),
        format!("io.kubernetes.cri.sandbox-name={pod}"),
        format!("io.kubernetes.cri.sandbox-namespace={kns}"),
    ];
    let app_ann =
        [format!("io.kubernetes.pod.name={pod}-b"), format!("io.kubernetes.pod.namespace={kns}"), "io.kubernetes.container.name=nginx".to_string()];
    let flags = |ann: &[String]| ann.iter().flat_map(|a| ["--annotation".to_string(), a.clone()]).collect::<Vec<String>>();
    let (f1, f2) = (flags(&sandbox_ann), flags(&app_ann));
    let sandbox = ctr.run_with("pod", &f1.iter().map(String::as_str).collect::<Vec<_>>(), &["sleep", "3600"]);
    let app = ctr.run_with("app", &f2.iter().map(String::as_str).collect::<Vec<_>>(), &["sleep", "3600"]);
    // ctr makes no network: give the sandbox a veth, its host end in the host.
    let hv = format!("trk{}", unique_id());
    sh(&format!("ip link add {hv} type veth peer name eth0 netns {} && ip link set {hv} up", sandbox.pid));
    let _veth = scopeguard(format!("ip link del {hv}"));
    sh(&format!("nsenter -t {} -n ip link set eth0 up", sandbox.pid));

    let list = ns_json(&[]);
    let find = |inode: u64| list.iter().find(|n| n["inode"] == inode).cloned().unwrap_or_else(|| panic!("no namespace {inode}: {list:?}"));
    let n = find(sandbox.netns_inode());
    assert_eq!(n["container"]["runtime"], "containerd", "{n}");
    assert_eq!(n["container"]["id"], sandbox.id.as_str(), "{n}");
    assert_eq!(n["container"]["pod"], json!({"name": pod, "namespace": kns, "container": null}), "{n}");
    assert_eq!(n["container"]["name"], pod.as_str(), "a sandbox is named after its pod: {n}");
    let n = find(app.netns_inode());
    assert_eq!(n["container"]["pod"], json!({"name": format!("{pod}-b"), "namespace": kns, "container": "nginx"}), "{n}");
    assert_eq!(n["container"]["name"], "nginx", "{n}");
    let (code, table, _) = tracer_run(&["ns"]);
    assert_eq!(code, 0);
    assert!(table.contains(&format!("containerd:{pod}[pod={kns}/{pod}]")), "{table}");
    assert!(table.contains(&format!("containerd:nginx[pod={kns}/{pod}-b]")), "{table}");

    // In the metrics: the sandbox's eth0, labelled with its pod.
    let mut t = Tracer::start(&["serve", "--listen", "127.0.0.1:0"]);
    let m = wait_metrics(&t, &[format!(r#"container="{pod}",runtime="containerd",pod="{pod}",pod_namespace="{kns}",interface="eth0""#)]);
    assert!(m.contains(r#"direction="egress""#));
    assert_eq!(t.stop(), 0, "{}", t.stderr());
}

/// Runs `sh -c` on drop.
struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = sh_out(&self.0);
    }
}
fn scopeguard(cmd: String) -> Guard {
    Guard(cmd)
}

/// `podman ARGS`, whatever the status.
fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().expect("spawn podman (is Debian's podman installed?)")
}

fn podman_ok(args: &[&str]) -> String {
    let o = podman(args);
    assert!(o.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A Podman container on its default CNI bridge; removed on drop with
/// the image and the bridge Podman made.
struct PodmanContainer {
    name: String,
    pid: u32,
    bridge_before: bool,
}

impl PodmanContainer {
    fn start() -> PodmanContainer {
        // No registry: the busybox image the Docker tests import, handed over.
        let d = engine();
        if !podman(&["image", "exists", IMAGE]).status.success() {
            let save = d.docker_out(&["save", IMAGE]);
            assert!(save.status.success(), "docker save");
            let mut load = Command::new("podman").args(["load"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("podman load");
            use std::io::Write as _;
            load.stdin.take().expect("stdin").write_all(&save.stdout).expect("feed podman load");
            assert!(load.wait().expect("podman load").success(), "podman load failed");
        }
        let bridge_before = std::path::Path::new("/sys/class/net/cni-podman0").exists();
        let name = format!("trc-{}-pm", unique_id());
        // This machine lacks CAP_SYS_RESOURCE: podman's default ulimits fail (DESIGN.md).
        let mut c = PodmanContainer { name: name.clone(), pid: 0, bridge_before };
        podman_ok(&[
            "run", "-d", "--name", &name, "--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768", IMAGE, "sleep", "3600",
        ]);
        c.pid = podman_ok(&["inspect", "-f", "{{.State.Pid}}", &name]).parse().expect("State.Pid");
        c
    }

    fn netns_inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(format!("/proc/{}/ns/net", self.pid)).expect("netns").ino()
    }

    /// Its gateway (the bridge's address) from inside.
    fn gateway(&self) -> String {
        let r = sh(&format!("nsenter -t {} -n ip -4 route show default", self.pid));
        r.split_whitespace().nth(2).unwrap_or_else(|| panic!("no default route: {r}")).to_string()
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
        let _ = podman(&["rmi", "-f", IMAGE]);
        if !self.bridge_before {
            let _ = sh_out("ip link del cni-podman0 2>/dev/null");
        }
    }
}

#[test]
fn a_podman_container_is_named_in_ns_packets_and_metrics() {
    let c = PodmanContainer::start();
    let list = ns_json(&[]);
    let n = list.iter().find(|n| n["inode"] == c.netns_inode()).unwrap_or_else(|| panic!("no namespace of {}: {list:?}", c.name));
    assert_eq!(n["container"]["runtime"], "podman", "{n}");
    assert_eq!(n["container"]["name"], c.name.as_str(), "{n}");
    assert!(n["container"].get("pod").is_none(), "no pod: {n}");
    let only = ns_json(&["--container", &c.name]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["inode"], c.netns_inode());

    let gw = c.gateway();
    let send = || {
        let py = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(5):\n    s.sendto(b'x'*20,('{gw}',40999))\n"
        );
        sh(&format!("nsenter -t {} -n python3 -c {}", c.pid, shell_quote(&py)));
    };
    // tracer packets --container NAME: its datagrams, named.
    let t = Tracer::start(&["packets", "--json", "--container", &c.name, "udp", "port", "40999"]);
    send();
    let ev = t.wait_for(Duration::from_secs(10), |e| e["type"] == "packet" && e["direction"] == "egress");
    let ev = ev.unwrap_or_else(|| panic!("no packet from {}: {:?}\n{}", c.name, t.lines(), t.stderr()));
    assert_eq!(ev["container"]["runtime"], "podman", "{ev}");
    assert_eq!(ev["container"]["name"], c.name.as_str(), "{ev}");
    assert_eq!(ev["netns"]["name"], c.name.as_str(), "{ev}");
    drop(t);

    // tracer serve: its eth0's counts under its name.
    let mut s = Tracer::start(&["serve", "--listen", "127.0.0.1:0", "udp", "port", "40999"]);
    let series = format!(r#"container="{}",runtime="podman",pod="",pod_namespace="",interface="eth0",direction="egress""#, c.name);
    wait_metrics(&s, std::slice::from_ref(&series));
    send();
    let mut last = String::new();
    let counted = wait_until(Duration::from_secs(10), || {
        last = metrics_of(&s);
        last.lines().any(|l| l.starts_with("tracer_packets_total{") && l.contains(&series) && l.ends_with(" 5"))
    });
    assert!(counted, "5 datagrams not counted under {}: {last}", c.name);
    assert_eq!(s.stop(), 0);
}
