//! A small eBPF interpreter for the unit tests: it runs exactly the subset
//! the translator emits, on a model of a TC `__sk_buff` whose linear head
//! can be shorter than the packet (as for paged skbs, which
//! `BPF_PROG_TEST_RUN` never makes), and panics on anything the verifier
//! would refuse at run time: a packet access past `data_end`, a stack
//! access outside the frame, a backward jump, a read of a register a
//! helper call clobbered, a shift by 32 or more. [`run_frame`] runs a
//! program of `translate_frame` on a map value instead (the lookup helper
//! hands back the value; an access outside it panics).

use super::insn::{Insn, e};

const CTX: u64 = 0x1000_0000_0000;
const PKT: u64 = 0x2000_0000_0000;
const STACK: u64 = 0x3000_0000_0000;
const MAP: u64 = 0x4000_0000_0000;
const VALUE: u64 = 0x5000_0000_0000;
const STACK_SIZE: u64 = 512;
/// What r1-r5 hold after a helper call: any use of it is a bug.
const CLOBBERED: u64 = 0xdead_0000_dead_0000;

/// The skb the program sees.
#[derive(Clone, Debug, Default)]
pub struct Skb {
    pub data: Vec<u8>,
    /// Bytes between `data` and `data_end`; the rest is paged.
    pub linear: usize,
    pub pkt_type: u32,
    pub protocol_be: u16,
    pub vlan_present: u32,
    pub vlan_tci: u32,
    pub vlan_proto_be: u16,
    pub ifindex: u32,
    pub mark: u32,
}

impl Skb {
    pub fn linear(data: &[u8]) -> Skb {
        Skb { data: data.to_vec(), linear: data.len(), ..Default::default() }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Return(i64),
    TailCall { map_fd: i32, index: u32 },
}

fn ctx_field(skb: &Skb, off: i64) -> u64 {
    match off {
        0 => skb.data.len() as u64,
        4 => u64::from(skb.pkt_type),
        8 => u64::from(skb.mark),
        // The uapi field holds the __be16 as stored in memory.
        16 => u64::from(u16::from_ne_bytes(skb.protocol_be.to_be_bytes())),
        20 => u64::from(skb.vlan_present),
        24 => u64::from(skb.vlan_tci),
        28 => u64::from(u16::from_ne_bytes(skb.vlan_proto_be.to_be_bytes())),
        40 => u64::from(skb.ifindex),
        76 => PKT,
        80 => PKT + skb.linear as u64,
        _ => panic!("context read at offset {off}"),
    }
}

fn width(size: u8) -> u64 {
    match size {
        e::B => 1,
        e::H => 2,
        e::W => 4,
        _ => 8,
    }
}

pub fn run(prog: &[Insn], skb: &Skb) -> Exit {
    run_on(prog, skb, None)
}

/// Runs a frame program: the per-CPU array value is `value` (looked up
/// through the map `map_fd`), which the program may read and write.
pub fn run_frame(prog: &[Insn], map_fd: i32, value: &mut [u8]) -> Exit {
    run_on(prog, &Skb::default(), Some((map_fd, value)))
}

fn run_on(prog: &[Insn], skb: &Skb, mut value: Option<(i32, &mut [u8])>) -> Exit {
    let mut r = [0u64; 11];
    r[1] = CTX;
    r[10] = STACK + STACK_SIZE;
    let mut stack = [0u8; STACK_SIZE as usize];
    let mut written = [false; STACK_SIZE as usize];
    let mut pc = 0usize;
    let read = |r: &[u64; 11], n: u8| {
        let v = r[n as usize];
        assert_ne!(v, CLOBBERED, "r{n} read after a helper call clobbered it");
        v
    };
    loop {
        let i = prog[pc];
        pc += 1;
        let class = i.code & 0x07;
        let (dst, src) = (i.dst(), i.src());
        match class {
            e::ALU | e::ALU64 => {
                let op = i.code & 0xf0;
                let x = if i.code & e::X != 0 { read(&r, src) } else { i.imm as i64 as u64 };
                let a = if op == e::MOV { 0 } else { read(&r, dst) };
                let v = if class == e::ALU {
                    let (a, x) = (a as u32, x as u32);
                    u64::from(match op {
                        e::ADD => a.wrapping_add(x),
                        e::SUB => a.wrapping_sub(x),
                        e::MUL => a.wrapping_mul(x),
                        e::DIV => a.checked_div(x).expect("division by zero reached"),
                        e::MOD => a.checked_rem(x).expect("modulo by zero reached"),
                        e::OR => a | x,
                        e::AND => a & x,
                        e::XOR => a ^ x,
                        e::LSH => a.checked_shl(x).filter(|_| x < 32).expect("shift by 32 or more"),
                        e::RSH => a.checked_shr(x).filter(|_| x < 32).expect("shift by 32 or more"),
                        e::NEG => a.wrapping_neg(),
                        e::MOV => x,
                        e::END => match i.imm {
                            16 => u32::from((a as u16).to_be()),
                            32 => a.to_be(),
                            n => panic!("byte swap of {n} bits"),
                        },
                        _ => panic!("ALU op {op:#x}"),
                    })
                } else {
                    match op {
                        e::ADD => a.wrapping_add(x),
                        e::MOV => x,
                        _ => panic!("ALU64 op {op:#x}"),
                    }
                };
                r[dst as usize] = v;
            }
            e::LD => {
                // ld_imm64 with a map fd: the only 16-byte instruction emitted.
                assert_eq!(i.src(), e::PSEUDO_MAP_FD);
                r[dst as usize] = MAP + i.imm as u32 as u64;
                pc += 1;
            }
            e::LDX => {
                let addr = read(&r, src).wrapping_add(i.off as i64 as u64);
                let n = width(i.code & 0x18);
                r[dst as usize] = if (VALUE..VALUE + 0x10000).contains(&addr) {
                    let v = value.as_ref().map(|(_, v)| &**v).expect("a value");
                    let at = (addr - VALUE) as usize;
                    assert!(at + n as usize <= v.len(), "value read at {at}+{n} past its {} bytes", v.len());
                    v[at..at + n as usize].iter().rev().fold(0, |acc, b| acc << 8 | u64::from(*b))
                } else if value.is_some() && (CTX..CTX + 0x100).contains(&addr) {
                    panic!("context read in a frame program")
                } else if (CTX..CTX + 0x100).contains(&addr) {
                    ctx_field(skb, (addr - CTX) as i64)
                } else if (PKT..PKT + 0x10000).contains(&addr) {
                    let at = (addr - PKT) as usize;
                    assert!(at + n as usize <= skb.linear, "packet read at {at}+{n} past data_end {}", skb.linear);
                    skb.data[at..at + n as usize].iter().rev().fold(0, |acc, b| acc << 8 | u64::from(*b))
                } else {
                    let at = addr.checked_sub(STACK).filter(|a| a + n <= STACK_SIZE).expect("stack read in bounds") as usize;
                    assert!(written[at..at + n as usize].iter().all(|w| *w), "read of unwritten stack at fp-{}", STACK_SIZE as usize - at);
                    stack[at..at + n as usize].iter().rev().fold(0, |acc, b| acc << 8 | u64::from(*b))
                };
            }
            e::ST | e::STX => {
                let addr = read(&r, dst).wrapping_add(i.off as i64 as u64);
                let n = width(i.code & 0x18) as usize;
                let v = if class == e::ST { i.imm as i64 as u64 } else { read(&r, src) };
                if (VALUE..VALUE + 0x10000).contains(&addr) {
                    let val = value.as_mut().map(|(_, v)| &mut **v).expect("a value");
                    let at = (addr - VALUE) as usize;
                    assert!(at + n <= val.len(), "value write at {at}+{n} past its {} bytes", val.len());
                    val[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
                    continue;
                }
                let at = addr.checked_sub(STACK).filter(|a| a + n as u64 <= STACK_SIZE).expect("stack write in bounds") as usize;
                stack[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
                written[at..at + n].fill(true);
            }
            e::JMP | e::JMP32 => {
                let op = i.code & 0xf0;
                match op {
                    e::EXIT => return Exit::Return(read(&r, 0) as i64),
                    e::CALL => {
                        let ret = match i.imm {
                            e::FN_MAP_LOOKUP_ELEM => {
                                let (fd, _) = value.as_ref().expect("a lookup in a frame program");
                                assert_eq!(read(&r, 1), MAP + *fd as u32 as u64, "the frame map");
                                let key = read(&r, 2).checked_sub(STACK).filter(|a| a + 4 <= STACK_SIZE).expect("key on the stack") as usize;
                                assert!(written[key..key + 4].iter().all(|w| *w), "key unwritten");
                                if stack[key..key + 4] == [0; 4] { VALUE } else { 0 }
                            }
                            e::FN_SKB_LOAD_BYTES => {
                                assert_eq!(read(&r, 1), CTX);
                                let (off, to, len) = (read(&r, 2), read(&r, 3), read(&r, 4));
                                if off + len > skb.data.len() as u64 {
                                    -14i64 as u64 // -EFAULT
                                } else {
                                    let at = to.checked_sub(STACK).filter(|a| a + len <= STACK_SIZE).expect("buffer on the stack") as usize;
                                    stack[at..at + len as usize].copy_from_slice(&skb.data[off as usize..(off + len) as usize]);
                                    written[at..at + len as usize].fill(true);
                                    0
                                }
                            }
                            e::FN_TAIL_CALL => {
                                assert_eq!(read(&r, 1), CTX);
                                let map = read(&r, 2).checked_sub(MAP).expect("a map in r2");
                                return Exit::TailCall { map_fd: map as i32, index: read(&r, 3) as u32 };
                            }
                            n => panic!("helper {n}"),
                        };
                        r[1..=5].fill(CLOBBERED);
                        r[0] = ret;
                    }
                    _ => {
                        assert!(i.off >= 0, "backward jump at {}", pc - 1);
                        let a = read(&r, dst);
                        let x = if i.code & e::X != 0 { read(&r, src) } else { i.imm as i64 as u64 };
                        let (a, x) = if class == e::JMP32 { (u64::from(a as u32), u64::from(x as u32)) } else { (a, x) };
                        let taken = match op {
                            e::JA => true,
                            e::JEQ => a == x,
                            e::JNE => a != x,
                            e::JGT => a > x,
                            e::JGE => a >= x,
                            0xa0 => a < x,
                            0xb0 => a <= x,
                            e::JSET => a & x != 0,
                            _ => panic!("jump op {op:#x}"),
                        };
                        if taken {
                            pc += i.off as usize;
                        }
                    }
                }
            }
            _ => panic!("instruction class {class}"),
        }
    }
}
