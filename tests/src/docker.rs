//! A real Docker engine for the integration tests, no mock.
//!
//! [`engine`] starts `dockerd` once per test process when none is running
//! (there is no systemd here), imports a busybox image built from Debian's
//! `busybox-static` (no registry can be reached), and registers an `atexit`
//! clean-up that runs when the test binary exits, whether its tests passed
//! or not: containers and networks named `trc-*`, the image, and, only for a
//! daemon this code started, the daemon itself, `docker0`, the iptables
//! rules and chains it added and the nftables tables it created.
//!
//! The daemon runs with `--ip-forward=false`: otherwise dockerd turns on
//! forwarding and sets the FORWARD policy to DROP, which (with
//! bridge-nf-call-iptables on) cuts the bridged traffic of every other
//! namespace lab on the machine while the tests run.
//!
//! What was there before the start is saved in [`STATE_FILE`], so a run that
//! died without cleaning up is adopted and cleaned by the next one.

use std::{
    collections::HashSet,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{sh_out, unique_id, wait_until};

pub const IMAGE: &str = "trc-busybox:test";
pub const PIDFILE: &str = "/run/trc-dockerd.pid";
pub const STATE_FILE: &str = "/run/trc-dockerd.state";
pub const LOG: &str = "/tmp/trc-dockerd.log";
const TABLES: &[&str] = &["filter", "nat"];

/// The engine the tests talk to.
pub struct Engine {
    /// The client: Debian's, matching its daemon, when installed.
    pub bin: PathBuf,
    /// Whether this code started (or adopted) the daemon and must stop it.
    pub started: bool,
    /// How long starting (or finding) the daemon and the image took.
    pub setup_time: Duration,
}

/// What the machine looked like before dockerd started.
#[derive(Debug, Default)]
struct Before {
    iptables: Vec<(String, Vec<String>)>,
    nft_tables: Vec<String>,
    docker0: bool,
    /// dockerd's runtime directory; it stays behind when the daemon stops.
    run_docker: bool,
    ip_forward: String,
}

impl Before {
    fn take() -> Self {
        Before {
            iptables: TABLES.iter().map(|t| (t.to_string(), iptables_rules(t))).collect(),
            nft_tables: nft_tables(),
            docker0: Path::new("/sys/class/net/docker0").exists(),
            run_docker: Path::new("/run/docker").exists(),
            ip_forward: fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default().trim().to_string(),
        }
    }

    fn save(&self) {
        let mut s = format!("docker0 {}\nrun_docker {}\nip_forward {}\n", self.docker0, self.run_docker, self.ip_forward);
        for t in &self.nft_tables {
            s.push_str(&format!("nft {t}\n"));
        }
        for (t, rules) in &self.iptables {
            for r in rules {
                s.push_str(&format!("iptables {t} {r}\n"));
            }
        }
        let _ = fs::write(STATE_FILE, s);
    }

    fn load() -> Option<Self> {
        let text = fs::read_to_string(STATE_FILE).ok()?;
        let mut b = Before { iptables: TABLES.iter().map(|t| (t.to_string(), Vec::new())).collect(), ..Before::default() };
        for l in text.lines() {
            let (k, v) = l.split_once(' ')?;
            match k {
                "docker0" => b.docker0 = v == "true",
                "run_docker" => b.run_docker = v == "true",
                "ip_forward" => b.ip_forward = v.to_string(),
                "nft" => b.nft_tables.push(v.to_string()),
                "iptables" => {
                    let (t, r) = v.split_once(' ')?;
                    b.iptables.iter_mut().find(|(n, _)| n == t)?.1.push(r.to_string());
                }
                _ => {}
            }
        }
        Some(b)
    }
}

fn iptables_rules(table: &str) -> Vec<String> {
    let out = sh_out(&format!("iptables -w -t {table} -S"));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

fn nft_tables() -> Vec<String> {
    let out = sh_out("nft list tables 2>/dev/null");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.strip_prefix("table ")).map(String::from).collect()
}

/// Puts back the rules, chains and policies of `table` as they were.
fn restore_iptables(table: &str, before: &[String]) {
    let had: HashSet<&str> = before.iter().map(String::as_str).collect();
    let now = iptables_rules(table);
    for r in now.iter().rev().filter(|r| r.starts_with("-A ") && !had.contains(r.as_str())) {
        let _ = sh_out(&format!("iptables -w -t {table} -D {}", &r[3..]));
    }
    for r in now.iter().filter(|r| r.starts_with("-N ") && !had.contains(r.as_str())) {
        let _ = sh_out(&format!("iptables -w -t {table} -F {0}; iptables -w -t {table} -X {0}", &r[3..]));
    }
    for r in before.iter().filter(|r| r.starts_with("-P ")) {
        let _ = sh_out(&format!("iptables -w -t {table} {r}"));
    }
}

fn daemon_pid() -> Option<i32> {
    let pid: i32 = fs::read_to_string(PIDFILE).ok()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dockerd").then_some(pid)
}

fn client() -> PathBuf {
    // Debian's client speaks its daemon's API version without negotiating.
    if Path::new("/usr/bin/docker").exists() { PathBuf::from("/usr/bin/docker") } else { PathBuf::from("docker") }
}

fn dockerd_bin() -> PathBuf {
    ["/usr/sbin/dockerd", "/usr/bin/dockerd"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from("dockerd"))
}

static ENGINE: OnceLock<Engine> = OnceLock::new();

/// The shared engine, started on first use; panics with the daemon's log
/// when it cannot start.
pub fn engine() -> &'static Engine {
    ENGINE.get_or_init(|| {
        let t = Instant::now();
        let bin = client();
        let answers = |bin: &Path| Command::new(bin).arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(cleanup_at_exit) };
        // A run that died before its clean-up left what the machine was like
        // before it: that, not the machine now, is what to restore.
        let leftover = Before::load().is_some();
        let started = if daemon_pid().is_some() {
            // Ours, left by a run that died: adopt it, clean it up at exit.
            assert!(leftover, "{STATE_FILE} is missing: cannot undo the leftover dockerd's changes");
            assert!(wait_until(Duration::from_secs(30), || answers(&bin)), "leftover dockerd does not answer; see {LOG}");
            true
        } else if answers(&bin) {
            false
        } else {
            if !leftover {
                Before::take().save();
            }
            let log = fs::File::create(LOG).expect("dockerd log");
            let mut cmd = Command::new(dockerd_bin());
            cmd.args(["--pidfile", PIDFILE, "--ip-forward=false"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log);
            // Its own session: a Ctrl-C of the tests must not kill it halfway.
            // SAFETY: setsid in the child before exec is async-signal-safe.
            unsafe {
                use std::os::unix::process::CommandExt as _;
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start dockerd ({e}); is docker.io installed?"));
            let up = wait_until(Duration::from_secs(60), || {
                answers(&bin) || child.try_wait().ok().flatten().is_some()
            });
            if !up || !answers(&bin) {
                let _ = child.kill();
                let _ = child.wait();
                teardown_daemon();
                panic!("dockerd did not come up; its log:\n{}", fs::read_to_string(LOG).unwrap_or_default());
            }
            true
        };
        let e = Engine { bin, started, setup_time: Duration::ZERO };
        e.ensure_image();
        Engine { setup_time: t.elapsed(), ..e }
    })
}


impl Engine {
    /// Runs the docker client; returns the output whatever the status.
    pub fn docker_out(&self, args: &[&str]) -> Output {
        Command::new(&self.bin).args(args).output().expect("spawn docker")
    }

    /// Runs the docker client, panicking with its output when it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_out(args);
        assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Imports the busybox image unless it is there: busybox-static's binary
    /// and one symlink per applet, in a 0755 root.
    fn ensure_image(&self) {
        if self.docker_out(&["image", "inspect", IMAGE]).status.success() {
            return;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"].iter().find(|p| Path::new(p).exists()).expect("busybox-static is installed");
        let root = std::env::temp_dir().join(format!("trc-rootfs-{}", unique_id()));
        let bin = root.join("bin");
        fs::create_dir_all(&bin).expect("rootfs");
        fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
        let list = Command::new(busybox).arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines().map(str::trim) {
            // `busybox --list` names itself: linking it would replace the binary.
            if !applet.is_empty() && applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
            }
        }
        for d in ["tmp", "proc", "sys", "dev", "etc"] {
            fs::create_dir_all(root.join(d)).expect("rootfs dir");
        }
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod rootfs");
        let tar = Command::new("tar").arg("-C").arg(&root).args(["-c", "."]).output().expect("tar");
        assert!(tar.status.success(), "tar of the rootfs failed");
        let mut imp = Command::new(&self.bin).args(["import", "-", IMAGE]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("docker import");
        imp.stdin.take().expect("stdin").write_all(&tar.stdout).expect("feed docker import");
        assert!(imp.wait().expect("docker import").success(), "docker import failed");
        let _ = fs::remove_dir_all(&root);
    }

    /// `docker run -d --name trc-<unique>-<suffix> IMAGE ARGS...`, removed on drop.
    pub fn run(&'static self, suffix: &str, extra: &[&str], cmd: &[&str]) -> RunningContainer {
        let name = format!("trc-{}-{suffix}", unique_id());
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        let id = self.docker(&args);
        // Removed on drop from here on, even if inspecting it fails.
        let mut c = RunningContainer { name: name.clone(), id, pid: 0, sandbox_key: String::new(), engine: self };
        let info = self.docker(&["inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.SandboxKey}}", &name]);
        let mut it = info.split_whitespace();
        c.pid = it.next().and_then(|p| p.parse().ok()).expect("State.Pid");
        c.sandbox_key = it.next().unwrap_or_default().to_string();
        c
    }
}

/// A container of the test; `docker rm -f` on drop.
pub struct RunningContainer {
    pub name: String,
    /// Full id.
    pub id: String,
    /// `State.Pid`: the container's first process, as the host sees it.
    pub pid: u32,
    /// `NetworkSettings.SandboxKey`: Docker's bind mount of its namespace.
    pub sandbox_key: String,
    engine: &'static Engine,
}

impl RunningContainer {
    /// Inode of its network namespace, from `/proc/<State.Pid>/ns/net`.
    pub fn netns_inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(format!("/proc/{}/ns/net", self.pid)).expect("container netns").ino()
    }

    /// Runs `sh -c CMD` inside the container. (`--privileged` fails here:
    /// runc cannot apply capabilities this machine does not hold; start the
    /// container with `--cap-add NET_ADMIN` to change its network.)
    pub fn exec(&self, cmd: &str) -> Output {
        self.engine.docker_out(&["exec", &self.name, "sh", "-c", cmd])
    }
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        let _ = self.engine.docker_out(&["rm", "-f", &self.name]);
    }
}

/// `ctr` on the containerd that dockerd runs, in a containerd namespace of
/// its own (`trc-<unique>`), removed on drop with its tasks and images.
pub struct Ctr {
    pub namespace: String,
}

pub const CONTAINERD_SOCK: &str = "/run/docker/containerd/containerd.sock";
/// The name containerd gives the image `docker save` exports.
const CTR_IMAGE: &str = "docker.io/library/trc-busybox:test";

impl Ctr {
    /// Imports the busybox image from Docker into a fresh containerd namespace.
    pub fn new(engine: &Engine) -> Ctr {
        let ctr = Ctr { namespace: format!("trc-{}", unique_id()) };
        let save = Command::new(&engine.bin).args(["save", IMAGE]).output().expect("docker save");
        assert!(save.status.success(), "docker save failed");
        let mut imp = ctr.command(&["image", "import", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("ctr import");
        imp.stdin.take().expect("stdin").write_all(&save.stdout).expect("feed ctr import");
        assert!(imp.wait().expect("ctr import").success(), "ctr image import failed");
        ctr
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.args(["--address", CONTAINERD_SOCK, "--namespace", &self.namespace]).args(args);
        c
    }

    fn ctr(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("spawn ctr");
        assert!(out.status.success(), "ctr {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr run -d IMAGE trc-<unique>-<suffix> CMD...`: a task in a new,
    /// empty network namespace (no CNI), deleted on drop.
    pub fn run(&self, suffix: &str, cmd: &[&str]) -> Task<'_> {
        self.run_with(suffix, &[], cmd)
    }

    /// [`Ctr::run`] with more `ctr run` flags (`--annotation k=v`...).
    pub fn run_with(&self, suffix: &str, extra: &[&str], cmd: &[&str]) -> Task<'_> {
        let id = format!("trc-{}-{suffix}", unique_id());
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[CTR_IMAGE, &id]);
        args.extend_from_slice(cmd);
        self.ctr(&args);
        let mut task = Task { ctr: self, id: id.clone(), pid: 0 };
        let list = self.ctr(&["task", "ls"]);
        task.pid = list
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(id.as_str())).then(|| f.next().and_then(|p| p.parse().ok())).flatten()
            })
            .unwrap_or_else(|| panic!("task {id} not in {list}"));
        task
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self.command(&["image", "rm", CTR_IMAGE]).output();
        // containerd removes a namespace only once it is empty, and lets go
        // of snapshots and content asynchronously: prune and retry.
        let list = |what: &str| -> Vec<String> {
            self.command(&[what, "ls", "-q"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
                .unwrap_or_default()
        };
        wait_until(Duration::from_secs(10), || {
            for key in list("snapshots") {
                let _ = self.command(&["snapshots", "rm", &key]).output();
            }
            for digest in list("content") {
                let _ = self.command(&["content", "rm", &digest]).output();
            }
            Command::new("ctr")
                .args(["--address", CONTAINERD_SOCK, "namespaces", "rm", &self.namespace])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        // containerd leaves the namespace's parent cgroup (`/<namespace>`) in
        // every hierarchy; its tasks' cgroups are gone with them.
        for dir in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = fs::remove_dir(dir.path().join(&self.namespace));
        }
    }
}

/// A containerd task; killed and deleted on drop.
pub struct Task<'a> {
    ctr: &'a Ctr,
    pub id: String,
    pub pid: u32,
}

impl Task<'_> {
    pub fn netns_inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(format!("/proc/{}/ns/net", self.pid)).expect("task netns").ino()
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        let _ = self.ctr.command(&["task", "kill", "-s", "SIGKILL", &self.id]).output();
        let _ = wait_until(Duration::from_secs(5), || {
            self.ctr.command(&["task", "delete", &self.id]).output().is_ok_and(|o| o.status.success())
        });
        let _ = self.ctr.command(&["container", "delete", &self.id]).output();
    }
}

extern "C" fn cleanup_at_exit() {
    // A panic must not unwind out of an atexit handler.
    let _ = std::panic::catch_unwind(cleanup);
}

/// Removes everything the tests made; stops the daemon only if this code
/// started (or adopted) it. Safe to call more than once.
pub fn cleanup() {
    let bin = client();
    let out = |args: &[&str]| {
        Command::new(&bin).args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap_or_default()
    };
    let containers = out(&["ps", "-aq", "--filter", "name=^trc-"]);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        let _ = Command::new(&bin).args(&args).output();
    }
    for net in out(&["network", "ls", "-q", "--filter", "name=^trc-"]) {
        let _ = Command::new(&bin).args(["network", "rm", &net]).output();
    }
    if !ENGINE.get().is_some_and(|e| e.started) {
        return;
    }
    let _ = Command::new(&bin).args(["rmi", "-f", IMAGE]).output();
    teardown_daemon();
}

/// Stops the dockerd this code started (if it still runs) and puts back what
/// it changed, from the snapshot in [`STATE_FILE`].
fn teardown_daemon() {
    if let Some(pid) = daemon_pid() {
        stop_daemon(pid);
    }
    let _ = fs::remove_file(PIDFILE);
    let Some(before) = Before::load() else { return };
    if !before.docker0 {
        let _ = sh_out("ip link del docker0 2>/dev/null");
    }
    // Only when nothing is mounted there any more (a namespace bind mount
    // would make this remove the mount point's contents, not the mount).
    let mounted = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().contains(" /run/docker/");
    if !before.run_docker && !mounted {
        let _ = fs::remove_dir_all("/run/docker");
    }
    for (table, rules) in &before.iptables {
        restore_iptables(table, rules);
    }
    for t in nft_tables() {
        // Made by iptables-nft for dockerd, and empty again: only policies left.
        let iptables_table = t.strip_prefix("ip ").filter(|n| TABLES.contains(n));
        if let Some(name) = iptables_table
            && !before.nft_tables.contains(&t)
            && iptables_rules(name).iter().all(|r| r.starts_with("-P "))
        {
            let _ = sh_out(&format!("nft delete table {t}"));
        }
    }
    if !before.ip_forward.is_empty() {
        let _ = fs::write("/proc/sys/net/ipv4/ip_forward", &before.ip_forward);
    }
    let _ = fs::remove_file(STATE_FILE);
}

fn stop_daemon(pid: i32) {
    // SAFETY: signalling the dockerd this code started, by its pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // Gone means reaped when it is our child; when adopted (not our child),
    // no process or a zombie with no thread left. A zombie leader whose
    // other threads still run is a daemon still cleaning up.
    let gone = || {
        // SAFETY: waitpid on a pid, no status pointer.
        match unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } {
            r if r == pid => true,
            -1 => !Path::new(&format!("/proc/{pid}")).exists() || (is_zombie(pid) && threads(pid) <= 1),
            _ => false,
        }
    };
    if !wait_until(Duration::from_secs(20), gone) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until(Duration::from_secs(5), gone);
    }
}

fn threads(pid: i32) -> u32 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|n| n.trim().parse().ok())))
        .unwrap_or(0)
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

/// The mount points of the cgroup v2 hierarchy and of the v1 `pids`
/// hierarchy (when mounted), from `/proc/self/mountinfo`.
fn cgroup_roots() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v2 = None;
    let mut pids = None;
    for l in info.lines() {
        let Some((left, right)) = l.split_once(" - ") else { continue };
        let mut r = right.split(' ');
        let (fstype, opts) = (r.next().unwrap_or(""), r.nth(1).unwrap_or(""));
        let Some(point) = left.split(' ').nth(4) else { continue };
        if fstype == "cgroup2" && v2.is_none() {
            v2 = Some(PathBuf::from(point));
        } else if fstype == "cgroup" && opts.split(',').any(|o| o == "pids") && pids.is_none() {
            pids = Some(PathBuf::from(point));
        }
    }
    v2.into_iter().chain(pids).collect()
}

/// Cgroups made by hand with names like a runtime's (e.g.
/// `user.slice/user-1000.slice/docker-<64 hex>.scope`), as any user with a
/// delegated subtree could make them: each in the cgroup v2 hierarchy and,
/// where mounted, the v1 `pids` one. On drop, whatever is still in them
/// goes back to the root cgroup and every directory made is removed, last
/// made first.
pub struct HandMadeCgroups {
    /// Per cgroup, its directory in each hierarchy.
    leaves: Vec<Vec<PathBuf>>,
    made: Vec<PathBuf>,
}

impl HandMadeCgroups {
    pub fn new(rels: &[&str]) -> HandMadeCgroups {
        let roots = cgroup_roots();
        assert!(!roots.is_empty(), "no cgroup hierarchy found in /proc/self/mountinfo");
        let mut g = HandMadeCgroups { leaves: Vec::new(), made: Vec::new() };
        for rel in rels {
            let mut leaves = Vec::new();
            for root in &roots {
                let mut dir = root.clone();
                for comp in rel.split('/').filter(|c| !c.is_empty()) {
                    dir.push(comp);
                    if !dir.exists() {
                        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                        g.made.push(dir.clone());
                    }
                }
                leaves.push(dir);
            }
            g.leaves.push(leaves);
        }
        g
    }

    /// The `cgroup.procs` files of cgroup `i`, one per hierarchy.
    pub fn procs_files(&self, i: usize) -> Vec<String> {
        self.leaves[i].iter().map(|l| l.join("cgroup.procs").to_string_lossy().into_owned()).collect()
    }

    /// Moves process `pid` into cgroup `i`, in every hierarchy.
    pub fn add(&self, i: usize, pid: u32) {
        for f in self.procs_files(i) {
            fs::write(&f, pid.to_string()).unwrap_or_else(|e| panic!("move {pid} into {f}: {e}"));
        }
    }
}

impl Drop for HandMadeCgroups {
    fn drop(&mut self) {
        let roots = cgroup_roots();
        for leaf in self.leaves.iter().flatten() {
            let Some(root) = roots.iter().find(|r| leaf.starts_with(r)) else { continue };
            for pid in fs::read_to_string(leaf.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
                let _ = fs::write(root.join("cgroup.procs"), pid);
            }
        }
        for dir in self.made.iter().rev() {
            // An emptied cgroup may take a moment to let go of its last process.
            let _ = wait_until(Duration::from_secs(2), || fs::remove_dir(dir).is_ok() || !dir.exists());
        }
    }
}

/// Spawns `make()` as process `pid`: sets `kernel.ns_last_pid` to the pid
/// before it and forks, again and again while other processes of the
/// machine take the pid first. `None` when it did not happen in `timeout`.
pub fn spawn_as_pid(pid: u32, timeout: Duration, mut make: impl FnMut() -> Command) -> Option<std::process::Child> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("write ns_last_pid (needs root)");
        let mut child = make().spawn().expect("spawn");
        if child.id() == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}
