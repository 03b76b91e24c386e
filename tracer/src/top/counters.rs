//! Reading the per-CPU counter maps of `tracer top` from userspace.
//!
//! A whole map is read with `BPF_MAP_LOOKUP_BATCH` (Linux >= 5.6), a few
//! hundred entries per system call, bucket by bucket: unlike walking it
//! with `GET_NEXT_KEY`, which starts over from the first key when the key
//! it stands on is evicted meanwhile, a batch read cannot loop or repeat
//! itself while the kernel evicts flows. Older kernels get the key walk,
//! with repeated keys dropped. aya 0.14 has no batch operations, hence the
//! raw `bpf(2)` calls here.

use std::{
    collections::HashMap,
    hash::Hash,
    io,
    marker::PhantomData,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Ebpf, Pod,
    maps::{Map, MapData},
};
use tracer_common::top::Counters;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per batch call (a bucket larger than this is retried
/// with a larger buffer).
const BATCH: u32 = 512;

#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    #[error(transparent)]
    Map(#[from] crate::bpf::MapError),
    #[error("map {0} is not a per-CPU hash map")]
    NotPerCpuHash(&'static str),
    #[error("cannot count the possible CPUs: {0}")]
    Cpus(io::Error),
    #[error("cannot read map {0}: {1}")]
    Read(&'static str, io::Error),
}

/// One entry's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Total {
    pub packets: u64,
    pub bytes: u64,
    /// When this incarnation of the entry was created (kernel monotonic ns).
    pub created_ns: u64,
}

impl Total {
    /// Sums the per-CPU values of one entry. Only the CPU that created the
    /// entry holds its creation time; the others hold 0.
    pub fn sum(per_cpu: impl IntoIterator<Item = Counters>) -> Self {
        per_cpu.into_iter().fold(Self::default(), |t, c| Total {
            packets: t.packets + c.packets,
            bytes: t.bytes + c.bytes,
            created_ns: t.created_ns.max(c.created_ns),
        })
    }
}

/// A per-CPU hash map of [`Counters`] keyed by `K`.
pub struct CounterMap<K> {
    name: &'static str,
    data: MapData,
    ncpus: usize,
    batch: bool,
    _key: PhantomData<K>,
}

/// `bpf_attr` for the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next: u64,
    flags: u64,
}

/// `bpf_attr` for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The `bpf(2)` system call.
///
/// # Safety
///
/// `A` must be the `repr(C)` layout of `union bpf_attr`'s member for
/// `cmd` (or a prefix of it), and every address in `attr` must point into
/// memory that is valid, and large enough, for what the kernel reads or
/// writes there for that command: the kernel trusts them both.
unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<()> {
    // SAFETY: as the caller promised.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>() as u32) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

impl<K: Pod + Eq + Hash> CounterMap<K> {
    /// Takes map `name` out of the object.
    pub fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, CountersError> {
        let data = match crate::bpf::take_map(ebpf, name)? {
            Map::PerCpuHashMap(d) | Map::PerCpuLruHashMap(d) => d,
            _ => return Err(CountersError::NotPerCpuHash(name)),
        };
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| CountersError::Cpus(e))?;
        // `TRACER_MAP_READ=walk` forces the older kernels' way, for tests.
        let batch = std::env::var("TRACER_MAP_READ").map_or(true, |v| v != "walk");
        Ok(Self { name, data, ncpus, batch, _key: PhantomData })
    }

    fn fd(&self) -> u32 {
        self.data.fd().as_fd().as_raw_fd() as u32
    }

    /// Bytes of one entry's values: one 8-aligned slot per possible CPU.
    fn value_stride(&self) -> usize {
        size_of::<Counters>().next_multiple_of(8) * self.ncpus
    }

    fn values_at(&self, buf: &[u8], i: usize) -> Total {
        let stride = size_of::<Counters>().next_multiple_of(8);
        let base = i * self.value_stride();
        Total::sum((0..self.ncpus).map(|c| {
            let off = base + c * stride;
            // SAFETY: the buffer holds `value_stride` bytes per entry; the
            // read is unaligned-safe and Counters is plain data.
            unsafe { std::ptr::read_unaligned(buf[off..off + size_of::<Counters>()].as_ptr().cast::<Counters>()) }
        }))
    }

    /// Every entry with its counters summed over CPUs.
    pub fn read(&mut self) -> Result<Vec<(K, Total)>, CountersError> {
        if self.batch {
            match self.read_batch() {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP | 524)) => {
                    // 524 is the kernel's ENOTSUPP: no batch operations here.
                    self.batch = false;
                }
                r => return r.map_err(|e| CountersError::Read(self.name, e)),
            }
        }
        self.read_walk().map_err(|e| CountersError::Read(self.name, e))
    }

    fn read_batch(&self) -> io::Result<Vec<(K, Total)>> {
        let mut out = Vec::new();
        let mut cap = BATCH as usize;
        // The kernel's batch token for hash maps is a bucket index (u32);
        // 8 bytes leave room for any other map kind's.
        let (mut token_in, mut token_out) = (0u64, 0u64);
        let mut first = true;
        loop {
            let mut keys = vec![0u8; cap * size_of::<K>()];
            let mut values = vec![0u8; cap * self.value_stride()];
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { &raw mut token_in as u64 },
                out_batch: &raw mut token_out as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: cap as u32,
                map_fd: self.fd(),
                ..Default::default()
            };
            // SAFETY: a batch attr; `keys` and `values` hold `cap` entries
            // (keys of K's size, values of `value_stride`), the tokens 8 bytes.
            let r = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
            let done = match r {
                Ok(()) => false,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                // One bucket holds more entries than the buffer.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && cap < 1 << 20 => {
                    cap *= 4;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for i in 0..attr.count as usize {
                // SAFETY: the kernel wrote `count` keys of K's size.
                let k: K = unsafe { std::ptr::read_unaligned(keys[i * size_of::<K>()..].as_ptr().cast::<K>()) };
                out.push((k, self.values_at(&values, i)));
            }
            if done {
                return Ok(out);
            }
            token_in = token_out;
            first = false;
        }
    }

    /// The key walk of kernels without batch reads: a walk that restarts
    /// (its key was evicted) yields keys again, which are dropped here.
    fn read_walk(&self) -> io::Result<Vec<(K, Total)>> {
        let mut seen: HashMap<K, Total> = HashMap::new();
        let mut key = vec![0u8; size_of::<K>()];
        let mut next = vec![0u8; size_of::<K>()];
        let mut values = vec![0u8; self.value_stride()];
        let mut first = true;
        // Bounded, in case evictions keep sending the walk back to the start.
        for _ in 0..4 * (tracer_common::top::TOP_FLOWS_MAX as usize + tracer_common::top::TOP_IFACES_MAX as usize) {
            let mut attr = ElemAttr {
                map_fd: self.fd(),
                key: if first { 0 } else { key.as_ptr() as u64 },
                value_or_next: next.as_mut_ptr() as u64,
                ..Default::default()
            };
            // SAFETY: an element attr; `key` (when set) and `next` hold a key of K's size.
            match unsafe { bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) } {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => return Err(e),
            }
            first = false;
            key.copy_from_slice(&next);
            let mut attr = ElemAttr {
                map_fd: self.fd(),
                key: key.as_ptr() as u64,
                value_or_next: values.as_mut_ptr() as u64,
                ..Default::default()
            };
            // SAFETY: an element attr; `key` holds a key, `values` one entry's values.
            match unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            }
            // SAFETY: `key` holds K's bytes as the kernel wrote them.
            let k: K = unsafe { std::ptr::read_unaligned(key.as_ptr().cast::<K>()) };
            seen.insert(k, self.values_at(&values, 0));
        }
        Ok(seen.into_iter().collect())
    }

    /// Deletes an entry; one that is already gone is no error.
    pub fn delete(&self, key: &K) -> Result<(), CountersError> {
        let mut attr = ElemAttr { map_fd: self.fd(), key: std::ptr::from_ref(key) as u64, ..Default::default() };
        // SAFETY: an element attr whose key points at a live K.
        match unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr) } {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(CountersError::Read(self.name, e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_cpus_and_keep_the_creation_time() {
        let t = Total::sum([
            Counters { packets: 2, bytes: 100, created_ns: 0 },
            Counters { packets: 3, bytes: 50, created_ns: 777 },
        ]);
        assert_eq!(t, Total { packets: 5, bytes: 150, created_ns: 777 });
    }
}
