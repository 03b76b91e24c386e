//! The translator without a kernel: libpcap's programs (its capture-file
//! code, which needs no privilege) translated and run by the interpreter in
//! `cbpf::interp`, against libpcap's own interpreter; with the whole frame
//! in the linear head and with only the Ethernet header there (the helper
//! path). The kernel run of the same idea is tests/tests/pcap_filter.rs.

use etherparse::{PacketBuilder, VlanId};

use super::*;
use crate::tc::cbpf::{
    compile::{Dialect, Filter, LinkType},
    interp::{Exit, Skb, run, run_frame},
};

fn verdicts() -> Options {
    Options { direction: None, on_match: Action::Return(1), on_no_match: Action::Return(0) }
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let eth = || PacketBuilder::ethernet2(a, b);
    let mut out = Vec::new();
    let mut add = |name, builder: Result<Vec<u8>, ()>| out.push((name, builder.expect("frame")));
    let w = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        Ok(v)
    };
    add("tcp syn", w(&|v| eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 80, 1, 100).syn().write(v, &[]).expect("w")));
    add(
        "tcp psh http",
        w(&|v| eth().ipv4([10, 0, 0, 2], [10, 0, 0, 1], 1).tcp(80, 40000, 1, 100).ack(5).psh().write(v, b"GET / HTTP/1.1\r\n").expect("w")),
    );
    add("udp dns", w(&|v| eth().ipv4([192, 168, 1, 7], [10, 0, 0, 53], 64).udp(5353, 53).write(v, b"\x12\x34").expect("w")));
    add("udp big", w(&|v| eth().ipv4([10, 0, 0, 1], [224, 0, 0, 251], 64).udp(5353, 5353).write(v, &[7u8; 1200]).expect("w")));
    add("icmp echo", w(&|v| eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).icmpv4_echo_request(1, 1).write(v, b"p").expect("w")));
    add("icmp6 echo", w(&|v| eth().ipv6([0xfe; 16], [0xff; 16], 64).icmpv6_echo_request(1, 1).write(v, b"p").expect("w")));
    add(
        "vlan 10 tcp",
        w(&|v| eth().single_vlan(VlanId::try_new(10).expect("id")).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(1, 80, 1, 1).syn().write(v, &[]).expect("w")),
    );
    let mut frag = Vec::new();
    eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1, 2).write(&mut frag, &[0; 30]).expect("w");
    frag[20..22].copy_from_slice(&0x2001u16.to_be_bytes());
    out.push(("fragment", frag.clone()));
    out.push(("truncated", frag[..30].to_vec()));
    out.push(("runt", vec![0xff; 6]));
    out
}

const EXPRESSIONS: &[&str] = &[
    "ether host 02:00:00:00:00:01",
    "ether multicast",
    "arp or rarp",
    "host 10.0.0.1",
    "src net 192.168.1.0/24",
    "ip6 and src host fefe:fefe:fefe:fefe:fefe:fefe:fefe:fefe",
    "port 80",
    "dst portrange 50-60",
    "icmp or icmp6",
    "vlan 10 and tcp dst port 80",
    "not vlan",
    "less 60",
    "greater 1000",
    "ip multicast",
    "ip[6:2] & 0x1fff != 0",
    "ip[6] & 0x20 != 0",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] == tcp-push|tcp-ack",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "icmp[icmptype] == icmp-echo",
    "udp[8:2] = 0x1234",
    "ip[8] / (ip[1] & 0x3) > 1",
    "ip[8] % 5 = 4",
    "ether[0] << (ether[5] & 0x3f) != 0",
    "ether[1] >> (ether[11] + 30) = 0",
    "-ip[8] & 0xff = 0xc0",
    "len - 14 = ip[2:2]",
    "ether[1000] = 7",
    "ether[40000] = 0",
    "(tcp and port 80) or (udp and not port 53)",
    "",
];

#[test]
fn translated_programs_agree_with_libpcap_linear_and_paged() {
    let frames = frames();
    let mut checked = 0;
    for expr in EXPRESSIONS {
        let f = Filter::compile(expr, LinkType::Ethernet, Dialect::File).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        let prog = translate(f.instructions(), &verdicts()).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        for (name, frame) in &frames {
            let want = f.matches(frame, frame.len() as u32);
            // Only the Ethernet header in the linear head, the rest paged:
            // every deeper load takes the bpf_skb_load_bytes path.
            for linear in [frame.len(), frame.len().min(14), 0] {
                let skb = Skb { linear, ..Skb::linear(frame) };
                let got = run(&prog, &skb) == Exit::Return(1);
                assert_eq!(got, want, "{expr:?} on {name} (linear head {linear} of {})", frame.len());
                checked += 1;
            }
        }
    }
    assert!(checked >= EXPRESSIONS.len() * 30);
}

/// Every instruction the translator emits is reachable and every jump
/// lands inside the program, forward: the verifier refuses anything else.
#[test]
fn every_instruction_is_reachable_and_jumps_go_forward() {
    for expr in EXPRESSIONS {
        let f = Filter::compile(expr, LinkType::Ethernet, Dialect::File).expect("compiles");
        let prog = translate(f.instructions(), &verdicts()).expect("translates");
        let mut seen = vec![false; prog.len()];
        seen[0] = true;
        let mut i = 0;
        while i < prog.len() {
            let ins = prog[i];
            let width = if ins.code == e::LD | e::DW | e::IMM { 2 } else { 1 };
            if width == 2 {
                seen[i + 1] = seen[i];
            }
            if seen[i] {
                let op = ins.code & 0xf0;
                if ins.is_jump() {
                    assert!(ins.off >= 0, "{expr:?}: backward jump at {i}");
                    let t = i + 1 + ins.off as usize;
                    assert!(t < prog.len(), "{expr:?}: jump out at {i}");
                    seen[t] = true;
                }
                let falls_through = !(ins.is_jump() && op == e::JA) && ins.code != e::JMP | e::EXIT;
                if falls_through {
                    assert!(i + width < prog.len(), "{expr:?}: runs off the end at {i}");
                    seen[i + width] = true;
                }
            }
            i += width;
        }
        assert!(seen.iter().all(|s| *s), "{expr:?}: unreachable eBPF instructions: {:?}", prog.iter().zip(&seen).enumerate().collect::<Vec<_>>());
    }
}

fn ret(k: u32) -> CbpfInsn {
    CbpfInsn { code: c::RET | c::K, jt: 0, jf: 0, k }
}
fn stmt(code: u16, k: u32) -> CbpfInsn {
    CbpfInsn { code, jt: 0, jf: 0, k }
}

#[test]
fn malformed_programs_are_refused_with_the_instruction() {
    let t = |p: &[CbpfInsn]| translate(p, &verdicts()).expect_err("refused");
    assert_eq!(t(&[]), TranslateError::Empty);
    assert_eq!(t(&[stmt(c::LD | c::IMM, 1)]), TranslateError::FallsOff { at: 0 });
    // `ja` with k = -2: libpcap's userland protochain loop.
    assert_eq!(t(&[stmt(c::JMP, u32::MAX - 1), ret(0)]), TranslateError::Jump { at: 0 });
    assert_eq!(t(&[CbpfInsn { code: c::JMP | 0x10, jt: 5, jf: 0, k: 0 }, ret(0)]), TranslateError::Jump { at: 0 });
    assert_eq!(t(&[stmt(c::ALU | 0x30, 0), ret(1)]), TranslateError::DivByZero { at: 0 });
    assert_eq!(t(&[stmt(c::ALU | 0x60, 32), ret(1)]), TranslateError::Shift { at: 0, k: 32 });
    assert_eq!(t(&[stmt(c::ST, 16), ret(1)]), TranslateError::Memory { at: 0, k: 16 });
    assert_eq!(t(&[stmt(c::LD | c::W | c::ABS, c::SKF_AD_OFF + 56), ret(1)]), TranslateError::Ancillary { at: 0, k: c::SKF_AD_OFF + 56 });
    assert_eq!(t(&[stmt(c::LD | c::W | c::ABS, 0xffe0_0000), ret(1)]), TranslateError::Ancillary { at: 0, k: 0xffe0_0000 });
    assert_eq!(t(&[stmt(0xff, 0), ret(1)]), TranslateError::Opcode { at: 0, code: 0xff });
    // libpcap's own `protochain` code loops backwards.
    let chain = Filter::compile("ip6 protochain 6", LinkType::Ethernet, Dialect::File).expect("compiles");
    assert!(matches!(translate(chain.instructions(), &verdicts()), Err(TranslateError::Jump { .. })));
}

#[test]
fn division_by_zero_ends_with_no_match_and_big_shifts_give_zero() {
    let frame = [0u8; 20];
    // A = 7; X = [0] (0); A /= X; ret 1
    let div = [stmt(c::LD | c::IMM, 7), stmt(c::LDX | c::W | c::IMM, 0), stmt(c::ALU | 0x30 | c::X, 0), ret(1)];
    assert_eq!(run(&translate(&div, &verdicts()).expect("ok"), &Skb::linear(&frame)), Exit::Return(0));
    // A = 1; X = 40; A <<= X; ret A  -> 0
    let shl = [stmt(c::LD | c::IMM, 1), stmt(c::LDX | c::W | c::IMM, 40), stmt(c::ALU | 0x60 | c::X, 0), stmt(c::RET | c::A, 0)];
    assert_eq!(run(&translate(&shl, &verdicts()).expect("ok"), &Skb::linear(&frame)), Exit::Return(0));
    let shl5 = [stmt(c::LD | c::IMM, 1), stmt(c::LDX | c::W | c::IMM, 5), stmt(c::ALU | 0x60 | c::X, 0), stmt(c::RET | c::A, 0)];
    assert_eq!(run(&translate(&shl5, &verdicts()).expect("ok"), &Skb::linear(&frame)), Exit::Return(1));
}

/// libpcap's live Linux VLAN code, as `tcpdump -d -i eth0 'vlan 10'` prints
/// it (compiling it here needs CAP_NET_RAW), run on an offloaded tag.
#[test]
fn ancillary_loads_read_the_skb() {
    let jeq = |k, jt, jf| CbpfInsn { code: c::JMP | 0x10, jt, jf, k };
    let ld_anc = |n| stmt(c::LD | c::B | c::ABS, c::SKF_AD_OFF + n);
    let vlan10 = [
        ld_anc(c::SKF_AD_VLAN_TAG_PRESENT),
        jeq(1, 4, 0),
        stmt(c::LD | c::H | c::ABS, 12),
        jeq(0x8100, 2, 0),
        jeq(0x88a8, 1, 0),
        jeq(0x9100, 0, 8),
        ld_anc(c::SKF_AD_VLAN_TAG_PRESENT),
        jeq(1, 0, 2),
        ld_anc(c::SKF_AD_VLAN_TAG),
        stmt(c::JMP, 1),
        stmt(c::LD | c::H | c::ABS, 14),
        stmt(c::ALU | 0x50, 0xfff),
        jeq(10, 0, 1),
        ret(262_144),
        ret(0),
    ];
    let prog = translate(&vlan10, &verdicts()).expect("ok");
    let ip = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x45, 0];
    let tagged = |tci| Skb { vlan_present: 1, vlan_tci: tci, vlan_proto_be: 0x8100, ..Skb::linear(&ip) };
    assert_eq!(run(&prog, &tagged(10)), Exit::Return(1));
    assert_eq!(run(&prog, &tagged(0x2000 | 10)), Exit::Return(1), "the priority bits are not the id");
    assert_eq!(run(&prog, &tagged(11)), Exit::Return(0));
    assert_eq!(run(&prog, &Skb::linear(&ip)), Exit::Return(0));
    let mut in_data = ip.to_vec();
    in_data.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(run(&prog, &Skb::linear(&in_data)), Exit::Return(1), "a tag in the frame data still counts");

    // `inbound`: PKTTYPE != PACKET_OUTGOING; at egress the skb does not say so.
    let inbound = [stmt(c::LD | c::H | c::ABS, c::SKF_AD_OFF + c::SKF_AD_PKTTYPE), jeq(4, 0, 1), ret(0), ret(1)];
    let at = |direction| translate(&inbound, &Options { direction, ..verdicts() }).expect("ok");
    assert_eq!(run(&at(Some(Direction::Ingress)), &Skb::linear(&ip)), Exit::Return(1));
    assert_eq!(run(&at(Some(Direction::Egress)), &Skb::linear(&ip)), Exit::Return(0));
    let proto = [stmt(c::LD | c::H | c::ABS, c::SKF_AD_OFF + c::SKF_AD_PROTOCOL), jeq(0x0800, 0, 1), ret(1), ret(0)];
    let ipv4 = Skb { protocol_be: 0x0800, ..Skb::linear(&ip) };
    assert_eq!(run(&translate(&proto, &verdicts()).expect("ok"), &ipv4), Exit::Return(1));
}

#[test]
fn a_match_tail_calls_the_capture_slot_and_a_miss_returns_unspec() {
    let opts = Options {
        direction: Some(Direction::Ingress),
        on_match: Action::TailCall { prog_array_fd: 42, index: 4, fallback: -1 },
        on_no_match: Action::Return(-1),
    };
    let f = Filter::compile("udp", LinkType::Ethernet, Dialect::File).expect("compiles");
    let prog = translate(f.instructions(), &opts).expect("ok");
    let frames = frames();
    let udp = &frames.iter().find(|(n, _)| *n == "udp dns").expect("udp").1;
    let tcp = &frames.iter().find(|(n, _)| *n == "tcp syn").expect("tcp").1;
    assert_eq!(run(&prog, &Skb::linear(udp)), Exit::TailCall { map_fd: 42, index: 4 });
    assert_eq!(run(&prog, &Skb::linear(tcp)), Exit::Return(-1));
    // Only the used epilogue is emitted: a filter that never matches has no tail call.
    let never = translate(&[ret(0)], &opts).expect("ok");
    assert!(!never.iter().any(|i| i.code == e::JMP | e::CALL));
}


/// `tracer drops`' layout: the frame in a per-CPU array value.
fn frame_options() -> FrameOptions {
    use tracer_common::drops::{DROP_FRAME_MAX, drop_frame};
    FrameOptions {
        frame_map_fd: 7,
        busy_off: drop_frame::BUSY as i16,
        cap_off: drop_frame::CAP as i16,
        wire_off: drop_frame::WIRE as i16,
        data_off: drop_frame::DATA as i16,
        data_max: DROP_FRAME_MAX as u32,
        prog_array_fd: 9,
        emit_index: 1,
    }
}

/// A busy value holding the first `cap` bytes of `frame`, `wire` long.
fn frame_value(frame: &[u8], cap: usize, wire: u32) -> Vec<u8> {
    use tracer_common::drops::{DropFrame, drop_frame};
    let mut v = vec![0xa5u8; size_of::<DropFrame>()];
    v[drop_frame::BUSY..drop_frame::BUSY + 4].copy_from_slice(&1u32.to_ne_bytes());
    v[drop_frame::CAP..drop_frame::CAP + 4].copy_from_slice(&(cap as u32).to_ne_bytes());
    v[drop_frame::WIRE..drop_frame::WIRE + 4].copy_from_slice(&wire.to_ne_bytes());
    v[drop_frame::DATA..drop_frame::DATA + cap].copy_from_slice(&frame[..cap]);
    v
}

/// The frame translation (`tracer drops`) gives libpcap's verdict on the
/// bytes copied (whole frames, and cut at 60, 20 and 1 bytes while the
/// wire length stays: loads past the copy fail the filter, `len` reads the
/// wire), never reads outside the value (the interpreter panics), and
/// leaves the value busy only on a match, which tail-calls the emitter.
#[test]
fn frame_programs_agree_with_libpcap_on_the_bytes_copied() {
    use tracer_common::drops::{DROP_FRAME_MAX, drop_frame};
    let fo = frame_options();
    let mut checked = 0;
    for expr in EXPRESSIONS {
        let f = Filter::compile(expr, LinkType::Ethernet, Dialect::File).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        let prog = translate_frame(f.instructions(), &fo).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        for (name, frame) in &frames() {
            let full = frame.len().min(DROP_FRAME_MAX);
            for cap in [full, full.min(60), full.min(20), full.min(1)] {
                let want = f.matches(&frame[..cap], frame.len() as u32);
                let mut value = frame_value(frame, cap, frame.len() as u32);
                let got = run_frame(&prog, fo.frame_map_fd, &mut value);
                let busy = u32::from_ne_bytes(value[drop_frame::BUSY..drop_frame::BUSY + 4].try_into().expect("4"));
                if want {
                    assert_eq!((got, busy), (Exit::TailCall { map_fd: 9, index: 1 }, 1), "{expr:?} on {name} cut at {cap}");
                } else {
                    assert_eq!((got, busy), (Exit::Return(0), 0), "{expr:?} on {name} cut at {cap}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= EXPRESSIONS.len() * 40);
    // Linux ancillary loads have no meaning on a copied frame: refused.
    let inbound = [stmt(c::LD | c::H | c::ABS, c::SKF_AD_OFF + c::SKF_AD_PKTTYPE), ret(1)];
    assert!(matches!(translate_frame(&inbound, &fo), Err(TranslateError::Ancillary { at: 0, .. })));
}
