//! The kernels `vmtest` boots: each is a Debian package, named by the
//! Debian release (suites of the host's mirror) it comes from and how to
//! find the package in it.

/// A Debian release the kernels come from: the suites asked of the
/// mirror's archive URIs, and the suite asked of its security URIs.
pub struct Release {
    pub name: &'static str,
    pub suites: &'static [&'static str],
    pub security: Option<&'static str>,
}

pub const BOOKWORM: Release = Release { name: "bookworm", suites: &["bookworm"], security: Some("bookworm-security") };
pub const BULLSEYE: Release = Release { name: "bullseye", suites: &["bullseye"], security: Some("bullseye-security") };
pub const TRIXIE_BACKPORTS: Release = Release { name: "trixie-backports", suites: &["trixie-backports"], security: None };

/// How the kernel's package is found in its release.
pub enum Pick {
    /// The package this meta-package depends on.
    Meta(&'static str),
    /// The newest `<prefix><version>+<suffix>` (backports move on to newer
    /// kernels, and their meta-package with them).
    Newest { prefix: &'static str, suffix: &'static str },
}

/// A kernel `vmtest` can boot.
pub struct Kernel {
    pub name: &'static str,
    pub release: &'static Release,
    pub pick: Pick,
}

pub const KERNELS: &[Kernel] = &[
    Kernel { name: "5.10", release: &BULLSEYE, pick: Pick::Meta("linux-image-amd64") },
    Kernel { name: "6.1", release: &BOOKWORM, pick: Pick::Meta("linux-image-amd64") },
    Kernel { name: "6.12", release: &BOOKWORM, pick: Pick::Meta("linux-image-6.12-amd64") },
    Kernel {
        name: "6.18",
        release: &TRIXIE_BACKPORTS,
        pick: Pick::Newest { prefix: "linux-image-6.18.", suffix: "+deb13-amd64" },
    },
];

/// The kernels of `--kernel NAME` (`all`: every one).
pub fn chosen(name: &str) -> Option<Vec<&'static Kernel>> {
    if name == "all" {
        return Some(KERNELS.iter().collect());
    }
    KERNELS.iter().find(|k| k.name == name).map(|k| vec![k])
}

pub fn names() -> String {
    KERNELS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}
