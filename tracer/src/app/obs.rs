//! The start-up `tracer drops` and `tracer tcp` share: the object loaded
//! with their settings, the namespace selection written into the kernel, the BTF tracepoints of the hook table
//! ([`crate::bpf::tp`]) attached with the program that fits each one's
//! argument list on this kernel, and the table that names namespaces and
//! interfaces, kept current by a thread ([`crate::ns::names`]). A selected
//! container that moves to a new namespace is followed there.

use std::collections::BTreeSet;

use aya::maps::{HashMap as BpfHashMap, MapData};
use tracer_common::{maps, tp::ObsConfig};

use super::Error;
use crate::{
    bpf::{
        hooks,
        load::{self, LoadOptions, Loaded},
        ring::Reader,
        tp::{TpCheck, Tracepoint},
    },
    ns::{
        self, Scope,
        names::{NsNames, Refresher, Selector},
    },
    sys::text,
    tc::follow::Selection,
};

/// How often a job reading a [`TpSession`]'s ring takes what is there
/// when no wakeup came (records below the wakeup threshold).
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The [`super::run::Running`] methods every job reading a [`TpSession`]
/// shares, for a struct with the fields `s` (the session), `batch` (a
/// `Vec<RawEvent>` the ring is read into), `ready` (the ready line) and
/// `sink` (where `lost` lines go): the ready line, a drain every
/// [`DRAIN_INTERVAL`] (at once again while records are left) that also
/// follows the selection, the last drain at
/// the stop, and the ring's losses.
macro_rules! tp_ring_job {
    () => {
        fn ready(&self) -> String {
            self.ready.clone()
        }

        fn tick(&self) -> std::time::Duration {
            if self.s.reader.backlog() { std::time::Duration::ZERO } else { super::obs::DRAIN_INTERVAL }
        }

        async fn wake(&mut self) -> Result<(), Error> {
            Ok(self.s.reader.read(&mut self.batch).await?)
        }

        fn ticked(&mut self) {
            self.s.reader.drain(&mut self.batch);
            self.s.sync_selection();
        }

        async fn stop(&mut self) {
            self.s.reader.drain_until_now(&mut self.batch);
        }

        fn lost(&self) -> Vec<(&'static str, u64)> {
            self.s.reader.lost_totals()
        }

        fn say_lost(&mut self, new: &[(&'static str, u64)]) -> Result<(), Error> {
            let time = crate::sys::clock::rfc3339(crate::sys::clock::now_wall_ns());
            for (src, n) in new {
                self.sink.lost(src, *n, &time)?;
            }
            Ok(())
        }
    };
}
pub(super) use tp_ring_job;

/// Loaded, selected, filtered and attached tracepoint programs.
pub struct TpSession {
    pub loaded: Loaded,
    pub reader: Reader,
    names: Refresher,
    /// The kernel's set of selected namespaces (`None`: every one).
    netns_map: Option<BpfHashMap<MapData, u32, u32>>,
    synced: BTreeSet<u64>,
    /// The tracepoints attached.
    pub attached: Vec<&'static str>,
}

/// The programs (with their tracepoints) of `tps` this kernel can run;
/// refuses to start when one in `needed` (tracepoint names) cannot be,
/// and says which others are left out.
fn usable(checks: &[TpCheck], tps: &[Tracepoint], needed: &[&str]) -> Result<Vec<(&'static str, &'static str)>, Error> {
    let mut out = Vec::new();
    for t in tps {
        let c = checks.iter().find(|c| c.tracepoint == t.name);
        match c.and_then(|c| c.program) {
            Some(p) => out.push((p, t.name)),
            None => {
                let why = c.and_then(|c| c.error.clone()).unwrap_or_else(|| "not checked".into());
                if needed.contains(&t.name) {
                    return Err(Error::Kernel(format!("tracepoint {}: {why}", t.name)));
                }
                text::warn(&format!("tracepoint {} left out: {why}", t.name));
            }
        }
    }
    Ok(out)
}

/// The default job's tracepoints (`kfree_skb` and `tcp_retransmit_skb`)
/// on an object loaded with drops and TCP events on: attached where this
/// kernel has them (a warning names one left out); their names.
pub(super) fn attach_timeline(loaded: &mut Loaded) -> Result<Vec<&'static str>, Error> {
    attach_named(loaded, &["kfree_skb", "tcp_retransmit_skb"])
}

/// The tracepoints `names` (none of them required), as [`attach_timeline`].
pub(super) fn attach_named(loaded: &mut Loaded, names: &[&str]) -> Result<Vec<&'static str>, Error> {
    let tps: Vec<Tracepoint> = crate::bpf::tp::TRACEPOINTS.iter().filter(|t| names.contains(&t.name)).copied().collect();
    let use_tps = usable(&loaded.tp_checks, &tps, &[])?;
    let btf = aya::Btf::from_sys_fs().map_err(|e| Error::Kernel(format!("cannot read its BTF: {e}")))?;
    hooks::attach_btf_tracepoints(&mut loaded.ebpf, &btf, &use_tps)?;
    Ok(use_tps.iter().map(|(_, t)| *t).collect())
}

impl TpSession {
    /// Loads the object with `obs`, writes the namespace selection, then attaches `tps` (those of `needed` must be there).
    pub fn start(obs: ObsConfig, ring_bytes: Option<u32>, select: &Selection, tps: &[Tracepoint], needed: &[&str]) -> Result<Self, Error> {
        Self::start_prepared(obs, ring_bytes, select, tps, needed, |_| ()).map(|(s, ())| s)
    }

    /// [`Self::start`], running `prepare` on the loaded object before
    /// anything is attached (`tracer drops` installs its filter there).
    pub fn start_prepared<T>(
        mut obs: ObsConfig,
        ring_bytes: Option<u32>,
        select: &Selection,
        tps: &[Tracepoint],
        needed: &[&str],
        prepare: impl FnOnce(&mut aya::Ebpf) -> T,
    ) -> Result<(Self, T), Error> {
        obs.select_netns = u32::from(select.scope != Scope::All);
        let mut opts = LoadOptions { obs, ..Default::default() };
        if let Some(b) = ring_bytes {
            opts.ring_bytes = b;
        }
        let mut loaded = load::load_for_job(&opts)?;
        let use_tps = usable(&loaded.tp_checks, tps, needed)?;
        let (selector, first): (Option<Selector>, BTreeSet<u64>) = match &select.scope {
            Scope::All => (None, BTreeSet::new()),
            Scope::Netns(ino) => (None, BTreeSet::from([*ino])),
            Scope::Container { netns, .. } => {
                let scope = select.scope.clone();
                (Some(Box::new(move |n: &ns::Netns| scope.selects(n))), BTreeSet::from([*netns]))
            }
        };
        let names = Refresher::start(ns::tracer_netns(), selector);
        let netns_map = match select.scope {
            Scope::All => None,
            _ => {
                let map = crate::bpf::take_map(&mut loaded.ebpf, maps::OBS_NETNS).map_err(|e| Error::Kernel(e.to_string()))?;
                Some(BpfHashMap::<MapData, u32, u32>::try_from(map).map_err(|e| Error::Kernel(format!("map {}: {e}", maps::OBS_NETNS)))?)
            }
        };
        let reader = Reader::new(&mut loaded.ebpf)?;
        let mut s = Self { reader, loaded, names, netns_map, synced: BTreeSet::new(), attached: vec![] };
        s.select(&first);
        s.sync_selection();
        let prepared = prepare(&mut s.loaded.ebpf);
        let btf = aya::Btf::from_sys_fs().map_err(|e| Error::Kernel(format!("cannot read its BTF: {e}")))?;
        hooks::attach_btf_tracepoints(&mut s.loaded.ebpf, &btf, &use_tps)?;
        s.attached = use_tps.iter().map(|(_, t)| *t).collect();
        Ok((s, prepared))
    }

    /// Makes the kernel's selection `want`.
    fn select(&mut self, want: &BTreeSet<u64>) {
        let Some(map) = &mut self.netns_map else { return };
        for gone in self.synced.difference(want) {
            let _ = map.remove(&(*gone as u32));
        }
        for new in want.difference(&self.synced) {
            // Inodes fit in 32 bits (the kernel's `ns.inum` is an unsigned int).
            let _ = map.insert(*new as u32, 1, 0);
        }
        self.synced = want.clone();
    }

    /// Follows a container into its new namespace: the kernel's selection
    /// is made the name table's (which only a container's scope sets).
    pub fn sync_selection(&mut self) {
        let want = match self.names.table.read() {
            Ok(t) if !t.selected.is_empty() => t.selected.clone(),
            _ => return,
        };
        if want != self.synced {
            self.select(&want);
        }
    }

    /// The names as the refresher last saw them.
    pub fn names(&self) -> Result<NsNames, Error> {
        Ok(self.names.table.read().map_err(|_| Error::Kernel("the namespace table is poisoned".into()))?.clone())
    }
}

/// The kernel's namespace selection of the drop and TCP programs, for the
/// jobs whose namespaces a TC session follows (`top`, `serve`): made the
/// session's covered namespaces at every read, so an unselected
/// namespace's drops cost the programs one lookup and are never counted.
pub(super) struct NetnsFilter {
    map: BpfHashMap<MapData, u32, u32>,
    synced: BTreeSet<u64>,
}

impl NetnsFilter {
    /// Takes the selection map out of an object loaded with
    /// `ObsConfig::select_netns` set.
    pub(super) fn take(loaded: &mut Loaded) -> Result<Self, Error> {
        let map = crate::bpf::take_map(&mut loaded.ebpf, maps::OBS_NETNS).map_err(|e| Error::Kernel(e.to_string()))?;
        let map = BpfHashMap::<MapData, u32, u32>::try_from(map).map_err(|e| Error::Kernel(format!("map {}: {e}", maps::OBS_NETNS)))?;
        Ok(Self { map, synced: BTreeSet::new() })
    }

    /// Makes the kernel's selection `want`.
    pub(super) fn sync<'a>(&mut self, want: impl IntoIterator<Item = &'a u64>) {
        let want: BTreeSet<u64> = want.into_iter().copied().collect();
        if want == self.synced {
            return;
        }
        for gone in self.synced.difference(&want) {
            let _ = self.map.remove(&(*gone as u32));
        }
        let mut failed = Vec::new();
        for new in want.difference(&self.synced) {
            // Inodes fit in 32 bits (the kernel's `ns.inum` is an unsigned
            // int). A full map (more than OBS_NETNS_MAX namespaces) is
            // tried again at the next read.
            if self.map.insert(*new as u32, 1, 0).is_err() {
                failed.push(*new);
            }
        }
        self.synced = want;
        for f in failed {
            self.synced.remove(&f);
        }
    }
}

/// How the `ready` line says where.
pub fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::All => "every namespace".into(),
        Scope::Netns(i) => format!("namespace {i}"),
        Scope::Container { id, .. } => format!("container {}", text::name(&id.chars().take(ns::label::SHORT_ID).collect::<String>())),
    }
}
