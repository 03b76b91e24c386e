//! Many namespaces on one bridge, as Docker makes containers: each an
//! `eth0` whose veth peer is on the bridge in the host's namespace, an
//! address in one /16, `lo` up, and IPv6 off in the namespace, as Docker
//! sets a container on an IPv4-only network (its `eth0` drops what the
//! host's veth sends; quiet once the veths settled), or left as the kernel
//! sets it (each namespace then sends its own router solicitations and
//! MLD reports). Namespaces can be added and removed while a tracer
//! runs. Everything is removed on drop, also when a benchmark panics.

use std::{
    process::{Command, Stdio},
    sync::Mutex,
    time::Instant,
};

use crate::{LabNs, sh, sh_out, unique_id};

pub struct ScaleLab {
    pub id: String,
    pub bridge: String,
    /// The namespaces made up front.
    pub ns: Vec<LabNs>,
    /// First two octets of the lab's /16.
    prefix: String,
    /// Namespaces added later and not yet removed.
    extra: Mutex<Vec<LabNs>>,
    /// Whether the namespaces keep IPv6.
    ipv6: bool,
}

impl ScaleLab {
    /// Makes `n` namespaces (at most 60,000), IPv6 on in them or not, and
    /// says how long it took.
    pub fn new(n: usize, ipv6: bool) -> (ScaleLab, f64) {
        assert!(n < 60_000);
        let id = unique_id();
        let h = u32::from_str_radix(&id, 16).unwrap_or(0);
        let lab = ScaleLab {
            bridge: format!("tsb{id}"),
            prefix: format!("10.{}", 240 + h % 10),
            id,
            ns: Vec::new(),
            extra: Mutex::new(Vec::new()),
            ipv6,
        };
        let t = Instant::now();
        sh(&format!("ip link add {} type bridge && ip link set {} up", lab.bridge, lab.bridge));
        let mut lab = lab;
        // One shell for all: a process per `ip` command is the cost.
        lab.grow(n);
        (lab, t.elapsed().as_secs_f64())
    }

    /// Makes namespaces up to `n` in all, like those made up front; says
    /// how long it took.
    pub fn grow(&mut self, n: usize) -> f64 {
        let t = Instant::now();
        let made: Vec<LabNs> = (self.ns.len()..n).map(|k| self.describe(k)).collect();
        let script: Vec<String> = made.iter().map(|ns| self.make_script(ns)).collect();
        self.ns.extend(made);
        if let Err(e) = run_script(&format!("set -e\n{}\n", script.join("\n"))) {
            panic!("making the lab's namespaces failed: {e}");
        }
        t.elapsed().as_secs_f64()
    }

    /// The k-th namespace's names and address.
    fn describe(&self, k: usize) -> LabNs {
        LabNs {
            name: format!("trs{}-{k}", self.id),
            ip: format!("{}.{}.{}", self.prefix, 1 + k / 250, 1 + k % 250),
            host_veth: format!("tsv{}x{k}", self.id),
        }
    }

    fn make_script(&self, ns: &LabNs) -> String {
        // The veth's end created in it takes the namespace's default.
        let v6 = if self.ipv6 {
            String::new()
        } else {
            format!("ip netns exec {} sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' && ", ns.name)
        };
        format!(
            "ip netns add {n} && {v6}ip link add {v} type veth peer name eth0 netns {n} && \
             ip link set {v} master {br} up && ip -n {n} addr add {ip}/16 dev eth0 && \
             ip -n {n} link set eth0 up && ip -n {n} link set lo up",
            n = ns.name,
            v = ns.host_veth,
            br = self.bridge,
            ip = ns.ip
        )
    }

    /// Adds namespace number `k` (use numbers past the ones made up front).
    pub fn add(&self, k: usize) -> LabNs {
        let ns = self.describe(k);
        if let Ok(mut v) = self.extra.lock() {
            v.push(ns.clone());
        }
        sh(&self.make_script(&ns));
        ns
    }

    /// Removes namespaces added with [`ScaleLab::add`].
    pub fn remove_added(&self) {
        let v = self.extra.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        remove(&v);
    }
}

fn remove(v: &[LabNs]) {
    let cmds: Vec<String> = v.iter().map(|ns| format!("ip netns del {} 2>/dev/null; ip link del {} 2>/dev/null", ns.name, ns.host_veth)).collect();
    let _ = run_script(&cmds.join("\n"));
}

/// Runs a shell script given on stdin (a command line would be too long
/// for hundreds of namespaces); its stderr when it fails.
fn run_script(script: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("sh").arg("-s").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

impl Drop for ScaleLab {
    fn drop(&mut self) {
        self.remove_added();
        remove(&self.ns);
        let _ = sh_out(&format!("ip link del {}", self.bridge));
    }
}
