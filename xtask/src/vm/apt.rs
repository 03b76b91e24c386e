//! Fetching a kernel package from Debian through the host's own mirror.
//!
//! The mirror is read from the host's apt configuration (the files apt
//! itself reads: `sources.list` and `sources.list.d/*.list` in the one-line
//! format, `sources.list.d/*.sources` in deb822), so `vmtest` works behind
//! whatever mirror, proxy or snapshot the host uses and names none. Its
//! Debian entries give one set of URIs for the archive and one for security
//! updates; the other releases a kernel comes from (bullseye,
//! trixie-backports) are asked of the same URIs. The package is fetched
//! with a private apt configuration under `target/vm/apt/<release>` (the
//! host's `/etc/apt` is read, never changed), unpacked with `dpkg-deb -x`
//! and never installed.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    str::FromStr as _,
};

use anyhow::{Context as _, Result, bail};
use apt_sources::{Repositories, RepositoryType, legacy::LegacyRepositories, signature::Signature};

use super::catalogue::{Kernel, Pick, Release};
use crate::host::{output, run, step};

/// The Debian mirror the host's apt uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Mirror {
    /// URIs of the archive (`bookworm`, `bookworm-updates`, backports...).
    pub archive: Vec<String>,
    /// URIs of the security archive (`bookworm-security`); may be empty.
    pub security: Vec<String>,
    /// The keyring the host's Debian entries are checked with, when they name one.
    pub signed_by: Option<PathBuf>,
}

/// Suites of Debian (codenames and their aliases). An entry counts as
/// Debian's when its suite, without `-updates`, `-security` and the like,
/// is one of these: other vendors' entries (`nodistro`, `cloud-sdk-bookworm`,
/// an Ubuntu codename) are not.
const DEBIAN_SUITES: &[&str] = &[
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "experimental", "oldoldstable", "oldstable", "stable",
    "testing", "unstable",
];

/// What part of Debian a suite belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Archive,
    Security,
}

fn debian_part(suite: &str) -> Option<Part> {
    let (base, part) = if let Some(b) = suite.strip_suffix("-security").or_else(|| suite.strip_suffix("/updates")) {
        (b, Part::Security)
    } else {
        let b = ["-proposed-updates", "-updates", "-backports-sloppy", "-backports"]
            .iter()
            .find_map(|s| suite.strip_suffix(s))
            .unwrap_or(suite);
        (b, Part::Archive)
    };
    DEBIAN_SUITES.contains(&base).then_some(part)
}

/// One active `deb` entry of a source file, whichever its format.
struct Entry {
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<PathBuf>,
}

fn key_path(s: &Option<Signature>) -> Option<PathBuf> {
    match s {
        Some(Signature::KeyPath(p)) => Some(p.clone()),
        _ => None,
    }
}

/// The active binary entries of one file; `.sources` is deb822, the rest
/// the one-line format. Disabled ones (`Enabled: no`, commented lines) are
/// left out.
fn entries(name: &Path, text: &str) -> Result<Vec<Entry>, String> {
    if name.extension().is_some_and(|e| e == "sources") {
        let repos = Repositories::from_str(text).map_err(|e| e.to_string())?;
        Ok(repos
            .iter()
            .filter(|r| r.enabled != Some(false) && r.types.contains(&RepositoryType::Binary))
            .map(|r| Entry {
                uris: r.uris.iter().map(|u| u.to_string()).collect(),
                suites: r.suites.clone(),
                components: r.components.clone().unwrap_or_default(),
                signed_by: key_path(&r.signature),
            })
            .collect())
    } else {
        let repos = LegacyRepositories::from_str(text).map_err(|e| e.to_string())?;
        Ok(repos
            .iter()
            .filter(|r| r.typ == RepositoryType::Binary)
            .map(|r| Entry {
                uris: vec![r.uri.to_string()],
                suites: vec![r.suite.clone()],
                components: r.components.clone(),
                signed_by: key_path(&r.signature),
            })
            .collect())
    }
}

/// The files apt reads, in its order: the main list, then the parts
/// directory's `*.list` and `*.sources` by name. Others there (`*.save`,
/// `*.disabled`, `*.dpkg-old`) apt ignores, and so does this.
pub fn source_files(list: &Path, parts: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    if list.is_file() {
        v.push(list.to_path_buf());
    }
    let mut more: Vec<PathBuf> = fs::read_dir(parts)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            ok_chars && (name.ends_with(".list") || name.ends_with(".sources")) && p.is_file()
        })
        .collect();
    more.sort();
    v.extend(more);
    v
}

/// The Debian mirror of the given source files (name, text). Files that
/// cannot be parsed are skipped with a warning (apt would refuse them too).
pub fn mirror_of(files: &[(PathBuf, String)]) -> Result<Mirror> {
    let mut m = Mirror { archive: Vec::new(), security: Vec::new(), signed_by: None };
    for (name, text) in files {
        let list = match entries(name, text) {
            Ok(l) => l,
            Err(e) => {
                step(&format!("skipping {} (cannot parse it: {e})", name.display()));
                continue;
            }
        };
        for e in list.iter().filter(|e| e.components.iter().any(|c| c == "main")) {
            for suite in &e.suites {
                let Some(part) = debian_part(suite) else { continue };
                let uris = match part {
                    Part::Archive => &mut m.archive,
                    Part::Security => &mut m.security,
                };
                for u in &e.uris {
                    if !uris.contains(u) {
                        uris.push(u.clone());
                    }
                }
                if m.signed_by.is_none() {
                    m.signed_by.clone_from(&e.signed_by);
                }
            }
        }
    }
    if m.archive.is_empty() {
        let names: Vec<String> = files.iter().map(|(n, _)| n.display().to_string()).collect();
        bail!(
            "the host's apt has no Debian source with the main component (read: {}), so vmtest cannot fetch Debian's kernels: \
             configure your Debian mirror in /etc/apt/sources.list.d/debian.sources (Types: deb, URIs: <mirror>, Suites: bookworm, Components: main)",
            if names.is_empty() { "no source file".into() } else { names.join(", ") }
        );
    }
    Ok(m)
}

/// Where the host's apt keeps its main list and parts directory (apt-config
/// resolves them, so a configured `Dir::Etc` is followed).
fn host_source_paths() -> (PathBuf, PathBuf) {
    let dump = Command::new("apt-config")
        .args(["shell", "L", "Dir::Etc::SourceList/f", "P", "Dir::Etc::SourceParts/d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let var = |k: &str| {
        dump.lines().find_map(|l| l.strip_prefix(&format!("{k}='"))).map(|v| PathBuf::from(v.trim_end_matches('\'')))
    };
    (
        var("L").unwrap_or_else(|| "/etc/apt/sources.list".into()),
        var("P").unwrap_or_else(|| "/etc/apt/sources.list.d".into()),
    )
}

/// The host's Debian mirror.
pub fn host_mirror() -> Result<Mirror> {
    let (list, parts) = host_source_paths();
    let files: Vec<(PathBuf, String)> = source_files(&list, &parts)
        .into_iter()
        .filter_map(|p| fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect();
    mirror_of(&files)
}

/// The private sources.list of one release on the host's mirror.
pub fn private_list(rel: &Release, m: &Mirror) -> String {
    let opt = m.signed_by.as_ref().map(|k| format!("[signed-by={}] ", k.display())).unwrap_or_default();
    let mut s = String::new();
    for suite in rel.suites {
        for u in &m.archive {
            writeln!(s, "deb {opt}{u} {suite} main").ok();
        }
    }
    if let Some(sec) = rel.security {
        for u in &m.security {
            writeln!(s, "deb {opt}{u} {sec} main").ok();
        }
    }
    s
}

/// Options that make apt use its own sources, lists and cache under
/// `dir`, never the host's sources.
fn apt_options(dir: &Path, rel: &Release, m: &Mirror) -> Result<Vec<String>> {
    for d in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
        fs::create_dir_all(dir.join(d)).with_context(|| format!("creating {}", dir.join(d).display()))?;
    }
    fs::write(dir.join("sources.list"), private_list(rel, m)).context("writing the private sources.list")?;
    let d = dir.display();
    Ok(vec![
        format!("-oDir::Etc::SourceList={d}/sources.list"),
        format!("-oDir::Etc::SourceParts={d}/sources.list.d"),
        format!("-oDir::State::Lists={d}/lists"),
        format!("-oDir::Cache={d}/cache"),
        // The downloads land in target/vm, which apt's sandbox user cannot write.
        "-oAPT::Sandbox::User=root".into(),
    ])
}

/// Why a kernel could not be fetched, when that is not an error of this
/// machine (the release is out of reach, or has no such kernel now).
pub enum Fetched {
    /// `<package> <version>`, unpacked into the tree.
    Package(String),
    Unavailable(String),
}

/// Fetches the kernel's package from the host's mirror and unpacks it into
/// `tree`; `apt_dir` keeps apt's lists and cache of the release.
pub fn fetch(k: &Kernel, m: &Mirror, apt_dir: &Path, dir: &Path, tree: &Path) -> Result<Fetched> {
    let opts = apt_options(apt_dir, k.release, m)?;
    step(&format!("Linux {}: reading the package lists of Debian {} from the host's mirror", k.name, k.release.name));
    let upd = Command::new("apt-get").args(&opts).args(["-qq", "update"]).output().context("starting apt-get")?;
    let err = String::from_utf8_lossy(&upd.stderr);
    if !upd.status.success() || err.contains("Failed to fetch") {
        let why = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("apt-get update failed").trim().to_string();
        return Ok(Fetched::Unavailable(format!("Debian {} cannot be reached through the host's mirror ({why})", k.release.name)));
    }
    let Some(pkg) = pick_package(k, &opts)? else {
        return Ok(Fetched::Unavailable(format!("Debian {} has no package of Linux {} now", k.release.name, k.name)));
    };
    step(&format!("Linux {}: fetching {pkg}", k.name));
    run(Command::new("apt-get").args(&opts).args(["-qq", "download", &pkg]).current_dir(dir), "apt-get download")?;
    let deb = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(tree), "unpacking the kernel package")?;
    let version = deb.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('_').nth(1)).unwrap_or("").to_string();
    fs::remove_file(&deb).context("removing the .deb")?;
    // trixie keeps modules in usr/lib/modules; depmod -b wants lib/modules.
    let usr = tree.join("usr/lib/modules");
    if usr.is_dir() && !tree.join("lib/modules").exists() {
        fs::create_dir_all(tree.join("lib")).context("creating lib")?;
        fs::rename(&usr, tree.join("lib/modules")).context("moving usr/lib/modules to lib/modules")?;
    }
    let release = kernel_release(tree)?;
    step(&format!("Linux {}: depmod {release}", k.name));
    run(Command::new("/bin/busybox").arg("depmod").arg("-b").arg(tree).arg(&release), "depmod")?;
    Ok(Fetched::Package(format!("{pkg} {version}")))
}

/// The name of the package that holds the kernel, if the release has one.
fn pick_package(k: &Kernel, opts: &[String]) -> Result<Option<String>> {
    match k.pick {
        Pick::Meta(meta) => {
            let deps = output(Command::new("apt-cache").args(opts).args(["depends", meta]), "resolving the kernel package")?;
            Ok(deps
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .find(|p| p.starts_with("linux-image-"))
                .map(str::to_string))
        }
        Pick::Newest { prefix, suffix } => {
            let names = output(Command::new("apt-cache").args(opts).args(["pkgnames", prefix]), "listing kernel packages")?;
            let version = |n: &str| -> Option<Vec<u32>> {
                let v = n.strip_prefix(prefix)?.strip_suffix(suffix)?;
                v.split('.').map(|x| x.parse().ok()).collect()
            };
            Ok(names.lines().filter_map(|n| Some((version(n)?, n.to_string()))).max().map(|(_, n)| n))
        }
    }
}

/// `uname -r` of the unpacked kernel: its one `lib/modules/<release>`.
pub fn kernel_release(tree: &Path) -> Result<String> {
    let mut v: Vec<String> = fs::read_dir(tree.join("lib/modules"))
        .with_context(|| format!("no lib/modules in {}", tree.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    match v.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one kernel in {}/lib/modules, found {v:?}", tree.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::catalogue::{BOOKWORM, BULLSEYE, TRIXIE_BACKPORTS};

    // Mirror hosts here are made up (`.invalid`, RFC 2606) and their paths
    // are not a real archive's: no real mirror is named.
    const DEB822: &str = "\
Types: deb
# http://snapshot.invalid/archive/primary/20250520T000000Z
URIs: http://mirror.invalid/primary
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.invalid/archive/primary-security/20250520T000000Z
URIs: http://mirror.invalid/primary-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    fn files(v: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        v.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect()
    }

    #[test]
    fn deb822_with_snapshot_comments_gives_archive_and_security() {
        let m = mirror_of(&files(&[("/etc/apt/sources.list.d/debian.sources", DEB822)])).expect("mirror");
        assert_eq!(m.archive, ["http://mirror.invalid/primary"]);
        assert_eq!(m.security, ["http://mirror.invalid/primary-security"]);
        assert_eq!(m.signed_by.as_deref(), Some(Path::new("/usr/share/keyrings/debian-archive-keyring.gpg")));
    }

    #[test]
    fn one_line_format_with_options_and_commented_lines() {
        let list = "\
# the host's own comment
deb [arch=amd64 signed-by=/etc/apt/keyrings/d.gpg] http://proxy.invalid:3142/a bullseye main contrib
#deb http://old.invalid/b bullseye main
deb-src http://src.invalid/c bullseye main
deb http://proxy.invalid:3142/a-sec bullseye-security main
deb http://proxy.invalid:3142/a bullseye-updates main
";
        let m = mirror_of(&files(&[("/etc/apt/sources.list", list)])).expect("mirror");
        assert_eq!(m.archive, ["http://proxy.invalid:3142/a"], "commented and deb-src lines are not used, a URI is listed once");
        assert_eq!(m.security, ["http://proxy.invalid:3142/a-sec"]);
        assert_eq!(m.signed_by.as_deref(), Some(Path::new("/etc/apt/keyrings/d.gpg")));
    }

    #[test]
    fn several_uris_disabled_stanzas_and_other_vendors() {
        let d = "\
Types: deb
URIs: http://one.invalid/p http://two.invalid/p
Suites: trixie
Components: main contrib

Enabled: no
Types: deb
URIs: http://off.invalid/p
Suites: trixie
Components: main

Types: deb
URIs: http://vendor.invalid/node
Suites: nodistro
Components: main
";
        let vendor = "deb http://vendor.invalid/sdk cloud-sdk-bookworm main\n";
        let m = mirror_of(&files(&[("/x/d.sources", d), ("/x/google.list", vendor)])).expect("mirror");
        assert_eq!(m.archive, ["http://one.invalid/p", "http://two.invalid/p"]);
        assert!(m.security.is_empty());
        assert_eq!(m.signed_by, None);
    }

    #[test]
    fn no_debian_source_is_one_sentence_saying_what_to_configure() {
        let vendor = "Types: deb\nURIs: http://vendor.invalid/node\nSuites: nodistro\nComponents: main\n";
        let ubuntu = "deb http://ubuntu.invalid/u noble main\n";
        let e = mirror_of(&files(&[("/x/n.sources", vendor), ("/x/u.list", ubuntu)])).expect_err("no Debian source");
        let e = e.to_string();
        assert!(e.contains("no Debian source") && e.contains("debian.sources") && e.contains("URIs:"), "{e}");
        assert!(!e.contains('\n'), "one sentence: {e}");
        // Only the contrib component: the kernels are in main.
        let contrib = "deb http://m.invalid/p bookworm contrib\n";
        assert!(mirror_of(&files(&[("/x/c.list", contrib)])).is_err());
        assert!(mirror_of(&[]).is_err());
    }

    #[test]
    fn a_file_that_does_not_parse_is_skipped() {
        let broken = "Types: deb\nURIs: not a uri at all\nSuites: bookworm\nComponents: main\n";
        let good = "deb http://m.invalid/p bookworm main\n";
        let m = mirror_of(&files(&[("/x/a.sources", broken), ("/x/b.list", good)])).expect("mirror");
        assert_eq!(m.archive, ["http://m.invalid/p"]);
    }

    #[test]
    fn only_the_files_apt_reads() {
        let dir = std::env::temp_dir().join(format!("xtask-apt-{}", std::process::id()));
        let parts = dir.join("sources.list.d");
        fs::create_dir_all(&parts).expect("tmp");
        for n in ["b.sources", "a.list", "google.list.disabled-by-farm", "x.sources.save", "bad name.list", "debian.sources.dpkg-old"] {
            fs::write(parts.join(n), "").expect("write");
        }
        fs::write(dir.join("sources.list"), "").expect("write");
        let got: Vec<String> = source_files(&dir.join("sources.list"), &parts)
            .iter()
            .map(|p| p.strip_prefix(&dir).expect("under dir").display().to_string())
            .collect();
        fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(got, ["sources.list", "sources.list.d/a.list", "sources.list.d/b.sources"]);
        // No main list at all is fine too.
        assert!(source_files(Path::new("/nonexistent/sources.list"), Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn other_releases_are_formed_on_the_same_mirror() {
        let m = mirror_of(&files(&[("/etc/apt/sources.list.d/debian.sources", DEB822)])).expect("mirror");
        let k = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";
        assert_eq!(
            private_list(&BULLSEYE, &m),
            format!(
                "deb {k} http://mirror.invalid/primary bullseye main\ndeb {k} http://mirror.invalid/primary-security bullseye-security main\n"
            )
        );
        assert_eq!(private_list(&TRIXIE_BACKPORTS, &m), format!("deb {k} http://mirror.invalid/primary trixie-backports main\n"));
        assert!(private_list(&BOOKWORM, &m).starts_with(&format!("deb {k} http://mirror.invalid/primary bookworm main\n")));
    }

    #[test]
    fn suites_of_debian() {
        assert_eq!(debian_part("bookworm"), Some(Part::Archive));
        assert_eq!(debian_part("bookworm-backports"), Some(Part::Archive));
        assert_eq!(debian_part("trixie-security"), Some(Part::Security));
        assert_eq!(debian_part("buster/updates"), Some(Part::Security));
        assert_eq!(debian_part("stable-updates"), Some(Part::Archive));
        assert_eq!(debian_part("nodistro"), None);
        assert_eq!(debian_part("jammy-security"), None);
        assert_eq!(debian_part("cloud-sdk-bookworm"), None);
    }

    /// The host this runs on, through apt-config: a mirror is found in the
    /// files its apt reads, or the one sentence says there is none; a URI
    /// found is one written in those files (no host name is assumed here).
    #[test]
    fn the_hosts_own_sources() {
        let (list, parts) = host_source_paths();
        assert!(list.is_absolute() && parts.is_absolute(), "{} {}", list.display(), parts.display());
        let files: Vec<(PathBuf, String)> =
            source_files(&list, &parts).into_iter().filter_map(|p| fs::read_to_string(&p).ok().map(|t| (p, t))).collect();
        match host_mirror() {
            Ok(m) => {
                for u in m.archive.iter().chain(&m.security) {
                    let host = u.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or("");
                    assert!(!host.is_empty() && files.iter().any(|(_, t)| t.contains(host)), "{u} is not from the host's files");
                }
            }
            Err(e) => assert!(e.to_string().contains("no Debian source"), "{e}"),
        }
    }
}
