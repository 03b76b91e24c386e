//! Loading the eBPF object: the kernel offsets and settings go in as globals
//! before the kernel sees it. Programs are loaded later, one by one, by the
//! hook table, so a program kind the kernel refuses costs only its users.

use aya::{Ebpf, EbpfLoader};
use tracer_common::{
    Config,
    drops::{DROP_COUNTS_MAX, DROP_FLOWS_MAX},
    globals, maps,
    offsets::KernelOffsets,
    tcp::{TCP_COUNTS_MAX, TCP_FLOWS_MAX},
    sock::{ProcConfig, SOCK_OWNERS_MAX, SOCK_SEL_PORTS_MAX},
    top::{TOP_FLOWS_MAX, TOP_IFACES_MAX},
    tp::{ObsConfig, SkOffsets, mode},
};

use crate::bpf::btf::{BtfError, KernelBtf};

/// The compiled `tracer-ebpf` object, built by `build.rs` with aya-build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("the kernel refused the tracer's maps: {0} (is tracer running as root, with CAP_BPF?)")]
    Ebpf(#[from] aya::EbpfError),
    #[error("the kernel cannot run the tracer here: its BTF lacks {} (see `tracer doctor`)", .0.join(", "))]
    MissingFields(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    pub snaplen: u32,
    /// Capture netlink only from sockets of this namespace (in the kernel).
    pub nl_netns: Option<u64>,
    /// Size the counters of `tracer top` for use; other jobs get token
    /// maps, since the per-CPU flow table is preallocated (about 24 bytes
    /// per flow and CPU).
    pub top: bool,
    /// A packet filter will be installed: the TC entry programs tail-call it.
    pub pkt_filter: bool,
    /// Packet records carry the skb's flow hash (see `Config::pkt_hash`).
    pub pkt_hash: bool,
    /// `tracer top --by process`: size its per-socket flow table too.
    pub top_proc: bool,
    /// Process attribution (see `crate::procs`): its settings, and its
    /// maps sized for use; `None` leaves them token-sized.
    pub procs: Option<ProcConfig>,
    /// Settings of the drop and TCP tracepoint programs (off by default).
    pub obs: ObsConfig,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { ring_bytes: 16 * 1024 * 1024, snaplen: 0, nl_netns: None, top: false, pkt_filter: false, pkt_hash: false, top_proc: false, procs: None, obs: ObsConfig::off() }
    }
}

/// Entries of the `tracer top` maps when another job loads the object.
const UNUSED_MAP_ENTRIES: u32 = 64;

/// A loaded object plus what was learned about the kernel while loading it.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub offsets: KernelOffsets,
    /// Kernel fields the BTF lacks (programs needing them stay silent).
    pub missing_fields: Vec<String>,
    /// What the tracepoints of the drop and TCP programs carry here.
    pub tp_checks: Vec<super::tp::TpCheck>,
    /// skb/socket fields the BTF lacks (the drop and TCP programs do without).
    pub missing_sk_fields: Vec<String>,
    /// The kernel's drop reason and reset reason names, from BTF.
    pub drop_reasons: super::tp::EnumNames,
    pub rst_reasons: super::tp::EnumNames,
}

/// Loads the object for a job: a kernel whose BTF lacks a field the
/// programs read is refused, since they would stay silent.
pub fn load_for_job(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let loaded = load(opts)?;
    if !loaded.missing_fields.is_empty() {
        return Err(LoadError::MissingFields(loaded.missing_fields));
    }
    Ok(loaded)
}

/// The ring's size: a power of two of at least a page, as the kernel
/// requires (the largest power of two a u32 holds when asked for more).
fn ring_size(bytes: u32) -> u32 {
    bytes.checked_next_power_of_two().unwrap_or(1 << 31).max(4096)
}

/// The settings every program reads (`CONFIG`).
fn config(opts: &LoadOptions, ring: u32) -> Config {
    Config {
        self_tgid: std::process::id(),
        snaplen: opts.snaplen,
        nl_netns: opts.nl_netns.and_then(|i| u32::try_from(i).ok()).unwrap_or(0),
        pkt_filter: u32::from(opts.pkt_filter),
        pkt_hash: u32::from(opts.pkt_hash),
        ring_eighth: ring / 8,
    }
}

/// Loads the object whatever the kernel lacks (`tracer doctor` says what).
pub fn load(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let btf = KernelBtf::open()?;
    let (offsets, missing_fields) = btf.kernel_offsets();
    let ring = ring_size(opts.ring_bytes);
    let config = config(opts, ring);
    let (flows, ifaces) = if opts.top { (TOP_FLOWS_MAX, TOP_IFACES_MAX) } else { (UNUSED_MAP_ENTRIES, UNUSED_MAP_ENTRIES) };
    let proc_flows = if opts.top_proc { TOP_FLOWS_MAX } else { UNUSED_MAP_ENTRIES };
    let (owners, sel_ports) = match &opts.procs {
        Some(c) if c.select != 0 => (SOCK_OWNERS_MAX, SOCK_SEL_PORTS_MAX),
        Some(_) => (SOCK_OWNERS_MAX, UNUSED_MAP_ENTRIES),
        None => (UNUSED_MAP_ENTRIES, UNUSED_MAP_ENTRIES),
    };
    let proc_config = opts.procs.unwrap_or_default();
    // The drop and TCP programs: which program fits each tracepoint,
    // struct offsets and enum names, all from BTF (only when they run).
    let obs_on = opts.obs.drops != mode::OFF || opts.obs.tcp != mode::OFF;
    let tp_checks = if obs_on { super::tp::checks(&btf) } else { Vec::new() };
    let (sk_offsets, missing_sk_fields) = if obs_on { super::tp::sk_offsets(&btf) } else { (SkOffsets::missing(), Vec::new()) };
    let counting = opts.obs.drops == mode::COUNT || opts.obs.tcp == mode::COUNT;
    let obs_entries = |n: u32| if counting { n } else { UNUSED_MAP_ENTRIES };
    let ebpf = EbpfLoader::new()
        .override_global(globals::CONFIG, &config, true)
        .override_global(globals::OFFSETS, &offsets, true)
        .override_global(globals::PROC_CONFIG, &proc_config, true)
        .override_global(globals::SK_OFFSETS, &sk_offsets, true)
        .override_global(globals::OBS_CONFIG, &opts.obs, true)
        .map_max_entries(maps::EVENTS, ring)
        .map_max_entries(maps::TOP_FLOWS, flows)
        .map_max_entries(maps::TOP_IFACES, ifaces)
        .map_max_entries(maps::TOP_PROC_FLOWS, proc_flows)
        .map_max_entries(maps::SOCK_OWNERS, owners)
        .map_max_entries(maps::SOCK_SEL_PORTS, sel_ports)
        .map_max_entries(maps::DROP_COUNTS, obs_entries(DROP_COUNTS_MAX))
        .map_max_entries(maps::DROP_FLOWS, obs_entries(DROP_FLOWS_MAX))
        .map_max_entries(maps::TCP_COUNTS, obs_entries(TCP_COUNTS_MAX))
        .map_max_entries(maps::TCP_FLOWS, obs_entries(TCP_FLOWS_MAX))
        .load(OBJECT)?;
    let (drop_reasons, rst_reasons) = if obs_on {
        (
            super::tp::EnumNames::from_btf(&btf, "skb_drop_reason", &["SKB_DROP_REASON_", "SKB_"]),
            super::tp::EnumNames::from_btf(&btf, "sk_rst_reason", &["SK_RST_REASON_"]),
        )
    } else {
        Default::default()
    };
    Ok(Loaded { ebpf, offsets, missing_fields, tp_checks, missing_sk_fields, drop_reasons, rst_reasons })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_a_power_of_two_and_the_programs_know_its_eighth() {
        assert_eq!(ring_size(16 * 1024 * 1024), 16 * 1024 * 1024);
        assert_eq!(ring_size(3 * 1024 * 1024), 4 * 1024 * 1024);
        assert_eq!(ring_size(100), 4096);
        assert_eq!(ring_size(u32::MAX), 1 << 31);
        let opts = LoadOptions::default();
        let c = config(&opts, ring_size(opts.ring_bytes));
        assert_eq!(c.ring_eighth, 2 * 1024 * 1024);
        assert_eq!(c.self_tgid, std::process::id());
    }
}
