//! The insides of the library the integration tests (`tests/`) drive
//! directly, exported deliberately and nowhere else: the eBPF object and its
//! ring buffer, entering a namespace, the packet filter (libpcap's code and
//! its translator), and the interface watcher, which has no
//! command yet. Everything else the tests check through the binary.

pub use crate::{
    bpf::{
        event::{RawEvent, read_pod},
        load::{LoadOptions, Loaded, load},
        ring::Reader,
    },
    ns::watch,
    sys::in_netns,
    tc::cbpf,
};
