//! Deployment as a user would do it: the container image that
//! `cargo xtask image` builds, run under the real dockerd (started by
//! `tracer_tests::docker` when none runs) with exactly the `docker run`
//! flags the README documents; and the Kubernetes manifests of
//! `deploy/kubernetes/`, validated offline against the Kubernetes schema by
//! the PyPI package `kubernetes-validate` (installed here into a venv under
//! `target/deploy`, from the host's configured index).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use serde_json::Value;
use tracer_tests::docker::{Engine, engine};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn image_tag() -> String {
    format!("tracer:{VERSION}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `docker run` of the README's deployment section: its flags, from
/// `run` up to the image (`tracer:VERSION`), one word each.
fn documented_run_flags() -> Vec<String> {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme.find("    docker run ").expect("the README shows a `docker run` of the image");
    let mut words = Vec::new();
    for line in readme[start..].lines() {
        let l = line.trim();
        let cont = l.ends_with('\\');
        words.extend(l.trim_end_matches('\\').split_whitespace().map(String::from));
        if !cont {
            break;
        }
    }
    let image = words.iter().position(|w| *w == image_tag()).unwrap_or_else(|| panic!("the README's docker run has no {}: {words:?}", image_tag()));
    assert_eq!(&words[..2], ["docker", "run"]);
    words[2..image].to_vec()
}

/// The capabilities of the documented `docker run` (`--cap-add X`).
fn documented_caps(flags: &[String]) -> Vec<String> {
    let mut caps: Vec<String> = flags.windows(2).filter(|w| w[0] == "--cap-add").map(|w| w[1].clone()).collect();
    caps.sort();
    caps
}

/// The image, built once per test process by `cargo xtask image` (which
/// builds the release binary first, a no-op under `cargo xtask test`).
fn built_image(d: &Engine) -> &'static str {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(env!("CARGO")).args(["xtask", "image"]).current_dir(root()).output().expect("cargo xtask image");
        assert!(out.status.success(), "cargo xtask image failed: {}{}", text(&out.stdout), text(&out.stderr));
        let tag = image_tag();
        let ep = d.docker(&["image", "inspect", "-f", "{{json .Config.Entrypoint}}", &tag]);
        assert_eq!(ep, r#"["/usr/bin/tracer"]"#, "the entry point is the tracer");
        // Built from scratch: one layer, no parent image.
        let layers = d.docker(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", &tag]);
        assert_eq!(layers, "1", "one layer made by the build, nothing pulled");
        tag
    })
}

/// `docker run --rm FLAGS tracer:VERSION ARGS`, its `--name` made unique
/// (so the engine's clean-up removes a leftover).
fn run_with(d: &Engine, flags: &[String], args: &[&str]) -> Output {
    let tag = built_image(d);
    let mut flags = flags.to_vec();
    if let Some(i) = flags.iter().position(|f| f == "--name") {
        flags[i + 1] = format!("trc-{}-tracer", tracer_tests::unique_id());
    }
    let mut a: Vec<&str> = vec!["run", "--rm"];
    a.extend(flags.iter().map(String::as_str).filter(|f| *f != "--rm"));
    a.push(tag);
    a.extend_from_slice(args);
    d.docker_out(&a)
}

/// The image run with the README's flags.
fn run_image(d: &Engine, args: &[&str]) -> Output {
    run_with(d, &documented_run_flags(), args)
}

/// What the tracer in the image can do with `flags`: `doctor` says it can
/// run, with the netlink audit's tracepoints and a TC attach kind, and `ns`
/// names the container `name`.
fn works_with(d: &Engine, flags: &[String], name: &str) -> Result<(), String> {
    let out = run_with(d, flags, &["doctor", "--json"]);
    if !out.status.success() {
        return Err(format!("doctor: {} {}", out.status, text(&out.stdout).lines().last().unwrap_or("") ));
    }
    let doc: Value = serde_json::from_str(text(&out.stdout).trim()).map_err(|e| format!("doctor --json: {e}"))?;
    let kind = |k: &str| doc["kinds"].as_array().and_then(|v| v.iter().find(|x| x["kind"] == k)).is_some_and(|x| x["available"] == true);
    // The clsact fallback (kernels before 6.6) must work too: the same
    // flags serve every kernel.
    let need = if tracer_tests::kernel_has_tcx() { &["tracepoint", "tcx", "netlink-tc"][..] } else { &["tracepoint", "netlink-tc"][..] };
    if let Some(k) = need.iter().find(|k| !kind(k)) {
        return Err(format!("doctor: {k} refused: {doc}"));
    }
    if !doc["problem"].is_null() || doc["can_run"] != true {
        return Err(format!("doctor: cannot run: {}", doc["problem"]));
    }
    let out = run_with(d, flags, &["ns", "--json"]);
    if !out.status.success() {
        return Err(format!("ns: {} {}", out.status, text(&out.stderr).trim()));
    }
    let named = text(&out.stdout).lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|n| n["container"]["name"] == name);
    if !named {
        return Err(format!("ns does not name {name}"));
    }
    Ok(())
}

#[test]
fn documented_docker_run_uses_capabilities_not_privileged() {
    let flags = documented_run_flags();
    assert!(!flags.iter().any(|f| f == "--privileged"), "{flags:?}");
    assert!(flags.windows(2).any(|w| w[0] == "--cap-drop" && w[1] == "ALL"), "all others dropped: {flags:?}");
    for need in [["--pid", "host"], ["--network", "host"], ["--cgroupns", "host"]] {
        assert!(flags.windows(2).any(|w| w == need), "{need:?} missing: {flags:?}");
    }
    assert!(!documented_caps(&flags).is_empty());
}

#[test]
fn image_runs_doctor_and_names_a_container_started_after_it() {
    let d = engine();
    let tag = built_image(d);
    let size: u64 = d.docker(&["image", "inspect", "-f", "{{.Size}}", tag]).parse().expect("size");
    eprintln!("{tag}: {:.1} MiB", size as f64 / 1048576.0);

    // doctor: exit 0 means the tracer can run here, in the container.
    let out = run_image(d, &["doctor", "--json"]);
    assert!(out.status.success(), "doctor in the image failed ({}): {}{}", out.status, text(&out.stdout), text(&out.stderr));
    let doc: Value = serde_json::from_str(text(&out.stdout).trim()).expect("doctor --json");
    assert!(doc["problem"].is_null() && doc["can_run"] == true, "{doc}");
    let kind = |k: &str| doc["kinds"].as_array().and_then(|v| v.iter().find(|x| x["kind"] == k)).map(|x| x["available"] == true);
    assert_eq!(kind("tracepoint"), Some(true), "{doc}");
    assert_eq!(kind("netlink-tc"), Some(true), "{doc}");
    assert_eq!(kind("tcx"), Some(tracer_tests::kernel_has_tcx()), "{doc}");

    // A container started after the image was built is found by name.
    let web = d.run("imgweb", &[], &["sleep", "3600"]);
    let out = run_image(d, &["ns", "--json"]);
    assert!(out.status.success(), "ns in the image failed ({}): {}", out.status, text(&out.stderr));
    let list: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("ns line")).collect();
    let ns = list
        .iter()
        .find(|n| n["inode"] == web.netns_inode())
        .unwrap_or_else(|| panic!("no namespace of {} in {list:?}", web.name));
    assert_eq!(ns["container"]["name"], web.name.as_str(), "{ns}");
    assert_eq!(ns["container"]["id"], web.id.as_str(), "{ns}");
    assert!(ns["pids"].as_array().expect("pids").iter().any(|p| p["pid"] == web.pid), "{ns}");
    // Its host veth is seen too (the host's network namespace, by --network host).
    assert_eq!(ns["interfaces"].as_array().and_then(|v| v.iter().find(|i| i["name"] == "eth0")).map(|i| i["kind"].clone()), Some("veth".into()));

    // `tracer serve` in the image, detached with the same flags: its
    // /metrics shows a container started after it, by name.
    let port = tracer_tests::prom::free_port();
    let name = format!("trc-{}-serve", tracer_tests::unique_id());
    let mut flags = documented_run_flags();
    if let Some(i) = flags.iter().position(|f| f == "--name") {
        flags[i + 1] = name.clone();
    }
    let listen = format!("127.0.0.1:{port}");
    let mut a: Vec<&str> = vec!["run", "-d"];
    a.extend(flags.iter().map(String::as_str).filter(|f| *f != "--rm"));
    a.extend_from_slice(&[tag, "serve", "--listen", &listen]);
    d.docker(&a);
    let logs = || {
        let o = d.docker_out(&["logs", &name]);
        text(&o.stdout) + &text(&o.stderr)
    };
    let ready = tracer_tests::wait_until(std::time::Duration::from_secs(60), || logs().contains("ready"));
    if !ready {
        let l = logs();
        let _ = d.docker_out(&["rm", "-f", &name]);
        panic!("serve in the image never said ready: {l}");
    }
    let later = d.run("imgsrv", &[], &["sleep", "3600"]);
    let addr: std::net::SocketAddr = listen.parse().expect("addr");
    let want = format!(r#"container="{}""#, later.name);
    let metrics = || tracer_tests::prom::http_get(addr, "/metrics", "*/*").map(|r| r.2).unwrap_or_default();
    // Its traffic series: a drop in its namespace (its IPv6 start-up) may
    // name it in `tracer_drops_total` first.
    let packets_line = |m: &str| m.lines().find(|x| x.starts_with("tracer_packets_total{") && x.contains(&want)).map(str::to_string);
    let shown = tracer_tests::wait_until(std::time::Duration::from_secs(15), || packets_line(&metrics()).is_some());
    let (m, l) = (metrics(), logs());
    let _ = d.docker_out(&["rm", "-f", &name]);
    assert!(shown, "/metrics of serve in the image has no packets series of {}: {m}\nlogs: {l}", later.name);
    let line = packets_line(&m).expect("a packets series");
    assert!(line.contains(r#"runtime="docker""#) && line.contains(r#"interface="eth0""#), "{line}");
    assert!(m.contains("tracer_build_info{"), "{m}");

    if d.started {
        // The daemon is this test's: leave no image of ours in it.
        let _ = d.docker_out(&["rmi", "-f", tag]);
    }
}

/// Each capability the README lists, and the host cgroup namespace, is
/// needed: without any one of them the tracer in the image cannot run,
/// cannot attach, or cannot name a container.
#[test]
fn every_documented_privilege_is_needed() {
    let d = engine();
    let web = d.run("capweb", &[], &["sleep", "3600"]);
    let flags = documented_run_flags();
    works_with(d, &flags, &web.name).unwrap_or_else(|e| panic!("with the documented flags: {e}"));
    for cap in documented_caps(&flags) {
        let mut without = Vec::new();
        let mut it = flags.iter();
        while let Some(f) = it.next() {
            if f == "--cap-add" {
                let c = it.next().expect("--cap-add has a value");
                if *c != cap {
                    without.extend([f.clone(), c.clone()]);
                }
            } else {
                without.push(f.clone());
            }
        }
        let r = works_with(d, &without, &web.name);
        eprintln!("without CAP_{cap}: {r:?}");
        assert!(r.is_err(), "CAP_{cap} is documented but the image works without it");
    }
    // A private cgroup namespace (Docker's default on cgroup v2 hosts)
    // shows other containers' cgroups relative to the tracer's own.
    let mut private = flags.clone();
    let i = private.iter().position(|f| f == "--cgroupns").expect("--cgroupns");
    private[i + 1] = "private".into();
    let r = works_with(d, &private, &web.name);
    eprintln!("with --cgroupns private: {r:?}");
    assert!(r.is_err(), "--cgroupns host is documented but the image works without it");
}

/// target/deploy/venv with kubernetes-validate, made once.
fn validator() -> &'static Path {
    const PINNED: &str = "1.37.0";
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = root().join("target/deploy/venv");
        let bin = venv.join("bin/kubernetes-validate");
        let have = Command::new(&bin).arg("--version").output().map(|o| text(&o.stdout) + &text(&o.stderr)).unwrap_or_default();
        if !have.contains(PINNED) {
            let _ = fs::remove_dir_all(&venv);
            fs::create_dir_all(venv.parent().expect("parent")).expect("target/deploy");
            // The Python on PATH, else Debian's.
            let made = ["python3", "/usr/bin/python3"]
                .iter()
                .any(|py| Command::new(py).args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success()));
            assert!(made, "cannot make a Python venv in {}: install python3-venv", venv.display());
            let pip = Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", &format!("kubernetes-validate=={PINNED}")])
                .output()
                .expect("pip");
            assert!(pip.status.success(), "pip install kubernetes-validate=={PINNED} failed: {}", text(&pip.stderr));
        }
        venv
    })
}

/// `kubernetes-validate --strict -k VERSION FILE`: (passed, output).
fn validate(file: &Path, k8s: &str) -> (bool, String) {
    let out = Command::new(validator().join("bin/kubernetes-validate"))
        .args(["--strict", "-k", k8s])
        .arg(file)
        .output()
        .expect("kubernetes-validate");
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

fn manifest() -> PathBuf {
    root().join("deploy/kubernetes/tracer.yaml")
}

/// Kubernetes releases the manifest must be valid for: the oldest still
/// common, and the newest the validator knows.
const K8S: &[&str] = &["1.29.0", "1.37.0"];

#[test]
fn manifest_validates_against_the_kubernetes_schema() {
    for k in K8S {
        let (ok, out) = validate(&manifest(), k);
        assert!(ok, "deploy/kubernetes/tracer.yaml is not valid Kubernetes {k}:\n{out}");
        for kind in ["namespace/tracer", "serviceaccount/tracer", "daemonset/tracer"] {
            assert!(out.contains(&format!("passed for resource {kind}")), "{kind} not checked:\n{out}");
        }
    }
}

#[test]
fn a_broken_manifest_is_rejected() {
    let good = fs::read_to_string(manifest()).expect("manifest");
    let dir = root().join("target/deploy");
    fs::create_dir_all(&dir).expect("target/deploy");
    // A wrong type, a misspelt field (strict), a missing required field.
    let breaks = [
        ("containerPort: 9464", "containerPort: nine-four-six-four", "containerPort"),
        ("hostPID: true", "hostPid: true", "hostPid"),
        ("  selector:\n    matchLabels:\n      app.kubernetes.io/name: tracer\n", "", "selector"),
    ];
    for (i, (from, to, named)) in breaks.iter().enumerate() {
        assert!(good.contains(from), "the manifest no longer has {from:?}: update this test");
        let broken = dir.join(format!("broken-{i}.yaml"));
        fs::write(&broken, good.replacen(from, to, 1)).expect("write");
        let (ok, out) = validate(&broken, K8S[K8S.len() - 1]);
        assert!(!ok, "a manifest with {to:?} passed:\n{out}");
        assert!(out.contains("did not validate") && out.contains(named), "{out}");
    }
}

/// The manifest as JSON documents (through the venv's PyYAML).
fn manifest_docs() -> Vec<Value> {
    let py = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let out = Command::new(validator().join("bin/python")).args(["-c", py]).arg(manifest()).output().expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON")
}

#[test]
fn daemonset_has_the_documented_privileges_and_no_api_access() {
    let docs = manifest_docs();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Namespace", "ServiceAccount", "DaemonSet"], "no Role or binding: names come from the node, not the API");
    let sa = &docs[1];
    assert_eq!(sa["automountServiceAccountToken"], false);
    let ds = &docs[2];
    let pod = &ds["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!((spec["hostPID"].clone(), spec["hostNetwork"].clone()), (true.into(), true.into()));
    // Every node: one toleration of everything.
    assert!(spec["tolerations"].as_array().expect("tolerations").iter().any(|t| t["operator"] == "Exists" && t.get("key").is_none()), "{spec}");
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9464");
    let c = &spec["containers"][0];
    assert_eq!(c["args"], serde_json::json!(["serve", "--listen", "0.0.0.0:9464"]));
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 9464);
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "resources.{k}.{r} missing");
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut caps: Vec<String> = sc["capabilities"]["add"].as_array().expect("caps").iter().filter_map(|v| v.as_str().map(String::from)).collect();
    caps.sort();
    assert_eq!(caps, documented_caps(&documented_run_flags()), "the DaemonSet and the README's docker run differ");
    // The image the manifest names is the one `cargo xtask image` tags.
    assert_eq!(c["image"], image_tag());
    let mounts: Vec<&str> = c["volumeMounts"].as_array().expect("mounts").iter().filter_map(|m| m["mountPath"].as_str()).collect();
    for m in ["/sys/kernel/tracing", "/run/netns", "/run/containerd"] {
        assert!(mounts.contains(&m), "{m} not mounted: {mounts:?}");
    }
}
