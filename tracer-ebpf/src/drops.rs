//! `tracer drops`: the `skb:kfree_skb` tracepoint, which the kernel fires
//! for every packet it drops (consumed packets go to `consume_skb`), with
//! the reason (`enum skb_drop_reason`, Linux >= 5.17) and the address it
//! was freed from.
//!
//! The namespace of a drop is the device's when the skb has one, else the
//! socket's (`rx_sk` where the tracepoint has it, else `skb->sk`), else
//! unknown (0; reported with `--all`, counted by userspace). Unselected
//! namespaces, unwanted reasons and packets the filter refuses leave at
//! once. In events mode the record is the [`DropMeta`] and the first bytes
//! of the packet; in `top` mode per-CPU counters per namespace, interface
//! and reason and per flow, and no record.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel,
    macros::{map, tracepoint},
    maps::{LruPerCpuHashMap, PerCpuHashMap},
    programs::TracePointContext,
};
use tracer_common::{
    EventKind, LostSource,
    drops::{DROP_COUNTS_MAX, DROP_DATA_MAX, DROP_FLOWS_MAX, DropKey, DropMeta, REASON_NONE, attrib, layer},
    packet::{DIR_INGRESS, PacketKey},
    top::{Counters, FlowKey},
    tp::mode,
};

use crate::{
    filter::PKT_FILTER,
    kernel::{HDR, SCRATCH, count_lost, is_self, kread_or_zero, offsets, task_header},
    obs::{cfg, dev_netns, field, in_task, output_batched, parse_skb, selected, sk_netns, skb_data, sko, tp},
};

#[map(name = "DROP_COUNTS")]
static DROP_COUNTS: PerCpuHashMap<DropKey, Counters> = PerCpuHashMap::with_max_entries(DROP_COUNTS_MAX, 0);

#[map(name = "DROP_FLOWS")]
static DROP_FLOWS: LruPerCpuHashMap<FlowKey, Counters> = LruPerCpuHashMap::with_max_entries(DROP_FLOWS_MAX, 0);

#[tracepoint]
pub fn drop_kfree_skb(ctx: TracePointContext) -> u32 {
    let _ = try_drop(&ctx);
    0
}

#[inline(always)]
fn try_drop(ctx: &TracePointContext) -> Option<()> {
    let c = cfg();
    if c.drops == mode::OFF {
        return None;
    }
    let t = tp();
    let reason = match field::<u32>(ctx, t.kfree_reason) {
        Some(r) => r,
        None => REASON_NONE,
    };
    if reason != REASON_NONE && !c.wants_reason(reason) {
        return None;
    }
    let task = in_task(ctx);
    // The tracer's own packets (its netlink requests, for one).
    if task && is_self() {
        return None;
    }
    let skb = field::<u64>(ctx, t.kfree_skbaddr)? as *const u8;
    let (netns, ifindex, how) = attribute(ctx, skb);
    if !selected(netns) {
        return None;
    }
    let data = skb_data(skb);
    let counting = c.drops == mode::COUNT;
    let mut key = PacketKey { direction: DIR_INGRESS, ..PacketKey::default() };
    let filter = PKT_FILTER.get(0);
    let filtering = matches!(filter, Some(f) if f.enabled != 0);
    if counting || filtering {
        parse_skb(&data, &mut key);
        if let Some(f) = filter
            && !f.matches(&key)
        {
            return None;
        }
    }
    let len: u32 = kread_or_zero(skb, sko().skb_len);
    if counting {
        count(netns, ifindex, reason, key, len as u64);
        return None;
    }
    let location = field::<u64>(ctx, t.kfree_location).unwrap_or(0);
    emit(task, netns, DropMeta {
        location,
        reason,
        ifindex,
        len,
        cap_len: 0,
        protocol: data.protocol,
        attrib: how,
        layer: data.layer,
        _pad: 0,
    }, &data);
    Some(())
}

/// The drop's namespace, interface and how they were found.
#[inline(always)]
fn attribute(ctx: &TracePointContext, skb: *const u8) -> (u32, u32, u8) {
    let o = offsets();
    let dev = kread_or_zero::<u64>(skb, o.skb_dev) as *const u8;
    if !dev.is_null() {
        let ns = dev_netns(dev);
        if ns != 0 {
            return (ns, kread_or_zero(dev, sko().dev_ifindex), attrib::DEVICE);
        }
    }
    let mut sk = field::<u64>(ctx, tp().kfree_rx_sk).unwrap_or(0) as *const u8;
    if sk.is_null() {
        sk = kread_or_zero::<u64>(skb, sko().skb_sk) as *const u8;
    }
    if !sk.is_null() {
        let ns = sk_netns(sk);
        if ns != 0 {
            return (ns, 0, attrib::SOCKET);
        }
    }
    (0, 0, attrib::UNKNOWN)
}

#[inline(always)]
fn emit(task: bool, netns: u32, mut meta: DropMeta, data: &crate::obs::SkbData) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return };
    let mut cap = data.frame.len;
    let snap = cfg().snaplen as usize;
    if cap > snap {
        cap = snap;
    }
    if cap > DROP_DATA_MAX {
        cap = DROP_DATA_MAX;
    }
    let meta_len = size_of::<DropMeta>();
    // SAFETY: scratch holds a header, the meta and DROP_DATA_MAX bytes
    // (SCRATCH_SIZE is far larger).
    unsafe {
        let base = (*scratch).buf.as_mut_ptr();
        if cap > 0 {
            // 1..=DROP_DATA_MAX by arithmetic the verifier follows.
            let n = ((cap as u32).wrapping_sub(1) & (DROP_DATA_MAX as u32 - 1)) + 1;
            let dst = base.add(HDR + meta_len) as *mut _;
            if bpf_probe_read_kernel(dst, n, data.frame.base as *const _) != 0 {
                count_lost(LostSource::DropRead);
                cap = 0;
            }
        }
        meta.cap_len = cap as u32;
        if cap == 0 {
            meta.layer = layer::NONE;
        }
        let mut hdr = task_header(EventKind::Drop as u32, netns, (meta_len + cap) as u32);
        if !task {
            // Whatever task the interrupt came in is not the drop's.
            hdr.pid_tgid = 0;
            hdr.uid_gid = 0;
            hdr.cgroup_id = 0;
            hdr.comm = [0; 16];
        }
        core::ptr::write_unaligned(base as *mut _, hdr);
        core::ptr::write_unaligned(base.add(HDR) as *mut _, meta);
        output_batched(scratch, HDR + meta_len + (cap & (DROP_DATA_MAX * 2 - 1)), LostSource::Drop);
    }
}

/// `tracer top`: one drop of `bytes` in the reason counter and the flow's.
#[inline(always)]
fn count(netns: u32, ifindex: u32, reason: u32, pkt: PacketKey, bytes: u64) {
    let fkey = FlowKey { netns_ino: netns, ifindex, pkt };
    let _ = crate::top::add!(DROP_FLOWS, &fkey, bytes);
    let key = DropKey { netns_ino: netns, ifindex, reason, _pad: 0 };
    if !crate::top::add!(DROP_COUNTS, &key, bytes) {
        count_lost(LostSource::DropStats);
    }
}
