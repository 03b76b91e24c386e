//! The benchmarks' command line. `cargo xtask bench ARGS` hands the same
//! ARGS to every benchmark binary, so they share one grammar: words select
//! what runs (none: everything), options size it.
//!
//!     cargo xtask bench [SELECTOR...] [--rounds N] [--seconds S]
//!                       [--modes KEY,...] [--namespaces N] [--count N]
//!                       [--before PATH] [--ipv6]
//!
//! `--before PATH`: every tracer mode of the throughput tables runs twice
//! per round, also with the tracer binary at PATH (its rows say
//! `[before]`), so a change is measured against the code before it in
//! one run.
//!
//! `--ipv6`: the scale lab's namespaces keep IPv6 and send their own router
//! solicitations and MLD reports (by default it is off in them, as Docker
//! sets a container on an IPv4-only network).
//!
//! A binary none of whose selectors is named exits at once, saying nothing.

/// Every selector word, with the binary that answers to it.
pub const SELECTORS: &[(&str, &str)] = &[
    ("throughput", "bench-throughput: tcp, udp, programs and progrun"),
    ("tcp", "bench-throughput: one TCP stream, every mode, rounds interleaved"),
    ("udp", "bench-throughput: the 64-byte UDP flood"),
    ("programs", "bench-throughput: ns per packet of each BPF program"),
    ("progrun", "bench-throughput: ns per run of each TC program on one frame, in the kernel's test harness (no traffic)"),
    ("profile", "bench-throughput: perf profile under packets -w and top (runs only when named)"),
    ("scale", "bench-scale: ready, RSS, idle CPU, per-packet cost, attach latency, flow LRU"),
    ("modes", "bench-scale: the per-mode table only"),
    ("attach", "bench-scale: how fast new namespaces are attached"),
    ("lru", "bench-scale: top's flow table right after the namespaces were made"),
    ("netlink", "bench-netlink: the 20,000-change loop, untraced and traced, interleaved"),
    ("flood", "bench-flood: the hostile netlink flood of issue #8 (RSS)"),
    ("serve", "bench-serve: tracer serve with 200 namespaces: scrape time, series, RSS"),
    ("process", "bench-process: process attribution on vs off (TCP, UDP, connections) and top by process"),
    ("drop-flood", "bench-drops: every packet of a UDP flood dropped by a rule: drops and top --by reason count each or report it lost"),
];

#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub selectors: Vec<String>,
    pub rounds: Option<usize>,
    pub seconds: Option<f64>,
    pub modes: Option<Vec<String>>,
    pub namespaces: Option<usize>,
    pub count: Option<u64>,
    pub before: Option<String>,
    pub ipv6: bool,
}

const USAGE: &str = "usage: cargo xtask bench [SELECTOR...] [--rounds N] [--seconds S] [--modes KEY,...] [--namespaces N] [--count N] [--before PATH] [--ipv6]";

impl Opts {
    /// The process's arguments; a bad one ends the process with one sentence.
    pub fn from_env() -> Opts {
        match Opts::parse(std::env::args().skip(1)) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("bench: {e}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Opts, String> {
        let mut o = Opts::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (a.clone(), None),
            };
            let mut value = |what: &str| inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{name} needs {what}"));
            match name.as_str() {
                "-h" | "--help" => {
                    println!("{USAGE}\nselectors:");
                    for (s, what) in SELECTORS {
                        println!("  {s:<11} {what}");
                    }
                    std::process::exit(0);
                }
                "--rounds" => o.rounds = Some(number(&name, &value("a number")?)?),
                "--seconds" => {
                    let v = value("a number of seconds")?;
                    let s: f64 = v.parse().map_err(|_| format!("{name} takes seconds, not {v:?}"))?;
                    if !(0.5..=600.0).contains(&s) {
                        return Err(format!("{name} must be between 0.5 and 600 seconds"));
                    }
                    o.seconds = Some(s);
                }
                "--modes" => o.modes = Some(value("a list of mode keys")?.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()),
                "--namespaces" => o.namespaces = Some(number(&name, &value("a number")?)?),
                "--count" => o.count = Some(number::<u64>(&name, &value("a number")?)?),
                "--before" => {
                    let p = value("the path of a tracer binary")?;
                    if !std::path::Path::new(&p).is_file() {
                        return Err(format!("{name}: no file {p:?}"));
                    }
                    o.before = Some(p);
                }
                "--ipv6" => o.ipv6 = true,
                w if w.starts_with('-') => return Err(format!("unknown option {w:?}")),
                w => {
                    if !SELECTORS.iter().any(|(s, _)| *s == w) {
                        let known: Vec<&str> = SELECTORS.iter().map(|(s, _)| *s).collect();
                        return Err(format!("unknown benchmark {w:?}; choose among {}", known.join(", ")));
                    }
                    o.selectors.push(w.to_string());
                }
            }
        }
        Ok(o)
    }

    /// Whether a part answering to any of `names` runs: all run when no
    /// selector was given.
    pub fn wants(&self, names: &[&str]) -> bool {
        self.selectors.is_empty() || self.selectors.iter().any(|s| names.contains(&s.as_str()))
    }

    /// Whether the mode with this key runs (`--modes`; all when absent).
    /// `untraced` always runs: every ratio is to it.
    pub fn mode(&self, key: &str) -> bool {
        key == "untraced" || self.modes.as_ref().is_none_or(|m| m.iter().any(|k| k == key))
    }

    pub fn rounds(&self, default: usize) -> usize {
        self.rounds.unwrap_or(default).max(1)
    }

    pub fn seconds(&self, default: f64) -> f64 {
        self.seconds.unwrap_or(default)
    }
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{name} takes a number, not {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Opts, String> {
        Opts::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn selectors_and_options() {
        let o = p(&["scale", "--rounds", "3", "--seconds=2.5", "--modes", "top,packets-w"]).expect("parses");
        assert!(o.wants(&["scale"]) && !o.wants(&["tcp", "throughput"]));
        assert_eq!((o.rounds(5), o.seconds(4.0)), (3, 2.5));
        assert!(o.mode("top") && o.mode("untraced") && !o.mode("top-flow"));
        // The scale lab keeps IPv6 in its namespaces only when asked.
        assert!(!o.ipv6 && p(&["scale", "--ipv6"]).expect("parses").ipv6);
        let all = p(&[]).expect("parses");
        assert!(all.wants(&["netlink"]) && all.mode("anything"));
    }

    #[test]
    fn bad_words_are_refused() {
        assert!(p(&["througput"]).err().unwrap_or_default().contains("unknown benchmark"));
        assert!(p(&["--rounds"]).err().unwrap_or_default().contains("needs"));
        assert!(p(&["--rounds", "x"]).err().unwrap_or_default().contains("takes a number"));
        assert!(p(&["--seconds", "0"]).err().unwrap_or_default().contains("between"));
        assert!(p(&["--fast"]).err().unwrap_or_default().contains("unknown option"));
        assert!(p(&["--before", "/no/such/tracer"]).err().unwrap_or_default().contains("no file"));
        assert_eq!(p(&["--before", "/proc/self/exe"]).expect("parses").before.as_deref(), Some("/proc/self/exe"));
    }
}
