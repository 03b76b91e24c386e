//! Tokens and grammar of the tcpdump subset, read into an [`Expr`] of
//! [`Atom`]s. Everything outside the subset is refused here, with the words
//! that were not understood in the error.

use std::net::{Ipv4Addr, Ipv6Addr};

use tracer_common::packet::{
    DIR_EGRESS, DIR_INGRESS, SEL_DPORT, SEL_DST, SEL_SPORT, SEL_SRC, key_flags,
};

use super::FilterError;

/// Longest expression accepted, in bytes: far beyond what the kernel table
/// can hold, and short enough that no input makes the parser work hard.
const MAX_INPUT: usize = 4096;
/// Deepest nesting of parentheses.
const MAX_DEPTH: usize = 32;

/// One test on a frame; each becomes one kernel predicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Atom {
    /// The EtherType after at most one VLAN tag (`ip`, `ip6`, `arp`).
    EtherType(u16),
    /// IPv4 protocol or IPv6 next header, when the key has a flag of `need`.
    Proto { need: u8, proto: u8 },
    /// The leading `prefix` bits of the source and/or destination address
    /// (`sel`), when the key has a flag of `need`.
    Addr { need: u8, sel: u8, addr: [u8; 16], prefix: u8 },
    /// Source and/or destination port (`sel`) within `lo..=hi`.
    Port { sel: u8, lo: u16, hi: u16 },
    /// Any VLAN tag, or one with this id.
    Vlan(Option<u16>),
    /// Ingress or egress of the interface.
    Direction(u8),
}

/// A parsed expression. `And`/`Or` hold two or more operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Atom(Atom),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    Not,
    And,
    Or,
    /// A keyword or a value.
    Word(String),
    /// Something outside the grammar (`tcp[13]`, `>`, `&`...), kept whole
    /// so the error can quote it.
    Bad(String),
}

impl Tok {
    fn text(&self) -> &str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Not => "not",
            Tok::And => "and",
            Tok::Or => "or",
            Tok::Word(s) | Tok::Bad(s) => s,
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_' | '\\')
}

/// Splits the input at whitespace, parentheses and the operators `!`,
/// `&&`, `||`. A chunk with anything else in it becomes one `Bad` token.
fn lex(input: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    for chunk in input.split_whitespace() {
        let mut rest = chunk;
        let mut bad = false;
        let mut out = Vec::new();
        while let Some(c) = rest.chars().next() {
            let (tok, len) = match c {
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                '!' if !rest.starts_with("!=") => (Tok::Not, 1),
                '&' if rest.starts_with("&&") => (Tok::And, 2),
                '|' if rest.starts_with("||") => (Tok::Or, 2),
                c if is_word_char(c) => {
                    let end = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
                    let w = &rest[..end];
                    let t = match w.to_ascii_lowercase().as_str() {
                        "and" => Tok::And,
                        "or" => Tok::Or,
                        "not" => Tok::Not,
                        _ => Tok::Word(w.to_string()),
                    };
                    (t, end)
                }
                _ => {
                    bad = true;
                    break;
                }
            };
            out.push(tok);
            rest = &rest[len..];
        }
        if bad {
            // Keep the parentheses around the chunk as structure, the rest as one Bad token.
            let inner = chunk.trim_start_matches('(').trim_end_matches(')');
            toks.extend(std::iter::repeat_n(Tok::LParen, chunk.len() - chunk.trim_start_matches('(').len()));
            toks.push(Tok::Bad(inner.to_string()));
            toks.extend(std::iter::repeat_n(Tok::RParen, chunk.len() - chunk.trim_end_matches(')').len()));
        } else {
            toks.extend(out);
        }
    }
    toks
}

/// Protocol qualifiers (`tcp port 80`, `ip host X`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProtoQ {
    Ip,
    Ip6,
    Arp,
    Tcp,
    Udp,
    Sctp,
}

impl ProtoQ {
    fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "ip" => Self::Ip,
            "ip6" => Self::Ip6,
            "arp" => Self::Arp,
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "sctp" => Self::Sctp,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Ip6 => "ip6",
            Self::Arp => "arp",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    /// The primitive the qualifier stands for on its own.
    fn atom(self) -> Atom {
        match self {
            Self::Ip => Atom::EtherType(0x0800),
            Self::Ip6 => Atom::EtherType(0x86dd),
            Self::Arp => Atom::EtherType(0x0806),
            Self::Tcp => ip_proto(6),
            Self::Udp => ip_proto(17),
            Self::Sctp => ip_proto(132),
        }
    }
}

fn ip_proto(proto: u8) -> Atom {
    Atom::Proto { need: key_flags::IP4 | key_flags::IP6, proto }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DirQ {
    Either,
    Src,
    Dst,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
    PortRange,
    Proto,
}

impl Kind {
    fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "host" => Self::Host,
            "net" => Self::Net,
            "port" => Self::Port,
            "portrange" => Self::PortRange,
            "proto" => Self::Proto,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Net => "net",
            Self::Port => "port",
            Self::PortRange => "portrange",
            Self::Proto => "proto",
        }
    }
}

/// The qualifiers of the last primitive, which a bare value after `and`,
/// `or` or `not` reuses, as in tcpdump (`port 80 or 443`).
#[derive(Clone, Copy, Debug)]
struct Qual {
    proto: Option<ProtoQ>,
    dir: DirQ,
    kind: Kind,
}

/// Every keyword of the subset; anything else in a keyword's place is unsupported.
fn is_keyword(w: &str) -> bool {
    ProtoQ::from_word(w).is_some()
        || Kind::from_word(w).is_some()
        || matches!(w, "src" | "dst" | "icmp" | "icmp6" | "vlan" | "inbound" | "outbound" | "ingress" | "egress" | "mask")
}

/// Words of tcpdump's language this subset leaves out, named so the error
/// can say so rather than take them for a host name.
const TCPDUMP_ONLY: &[&str] = &[
    "ether", "gateway", "less", "greater", "len", "broadcast", "multicast", "rarp", "mpls", "pppoed",
    "pppoes", "geneve", "vxlan", "protochain", "igmp", "igrp", "pim", "vrrp", "carp", "ah", "esp",
    "decnet", "atalk", "aarp", "lat", "sca", "moprc", "mopdl", "iso", "esis", "isis", "clnp", "stp",
    "ipx", "netbeui", "llc", "wlan", "type", "subtype", "dir", "addr1", "addr2", "addr3", "addr4",
    "ra", "ta", "ifname", "on", "rnr", "rulenum", "reason", "rset", "ruleset", "srnr", "subrulenum",
    "action", "fddi", "tr", "link", "radio", "slip", "ppp", "atm", "oam", "oamf4", "lane", "metac",
    "bcc", "sc", "ilmic", "connectmsg", "metaconnect", "hdpr", "hsls", "iih", "lsp", "snp", "csnp",
    "psnp", "l1", "l2",
];

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    last: Option<Qual>,
}

/// Parses a non-empty expression.
pub fn parse(input: &str) -> Result<Expr, FilterError> {
    if input.len() > MAX_INPUT {
        return Err(FilterError::TooComplex(format!("the expression is {} bytes long; at most {MAX_INPUT}", input.len())));
    }
    let mut p = Parser { toks: lex(input), pos: 0, depth: 0, last: None };
    let e = p.expr()?;
    match p.peek() {
        None => Ok(e),
        Some(Tok::RParen) => Err(syntax("unbalanced parentheses: \")\" without \"(\"")),
        Some(t) => Err(syntax(format!("expected \"and\" or \"or\" before \"{}\"", t.text()))),
    }
}

fn syntax(msg: impl Into<String>) -> FilterError {
    FilterError::Syntax(msg.into())
}

fn unsupported(part: impl Into<String>, why: impl Into<String>) -> FilterError {
    FilterError::Unsupported { part: part.into(), why: why.into() }
}

fn join(and: bool, left: Expr, right: Expr) -> Expr {
    match (and, left) {
        (true, Expr::And(mut v)) => {
            v.push(right);
            Expr::And(v)
        }
        (false, Expr::Or(mut v)) => {
            v.push(right);
            Expr::Or(v)
        }
        (true, l) => Expr::And(vec![l, right]),
        (false, l) => Expr::Or(vec![l, right]),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_word(&self, ahead: usize) -> Option<String> {
        match self.toks.get(self.pos + ahead) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// `and` and `or` have the same precedence and group from the left, as
    /// in tcpdump: `a or b and c` is `(a or b) and c`.
    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        loop {
            let and = match self.peek() {
                Some(Tok::And) => true,
                Some(Tok::Or) => false,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary()?;
            left = join(and, left, right);
        }
    }

    /// `not` binds tighter than `and` and `or`.
    fn unary(&mut self) -> Result<Expr, FilterError> {
        let mut negate = false;
        while self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            negate = !negate;
        }
        let e = self.primary()?;
        Ok(if negate { Expr::Not(Box::new(e)) } else { e })
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        match self.next() {
            None => Err(syntax("the expression ends where a primitive was expected")),
            Some(Tok::LParen) => {
                if self.depth >= MAX_DEPTH {
                    return Err(FilterError::TooComplex(format!("parentheses nest deeper than {MAX_DEPTH}")));
                }
                self.depth += 1;
                let e = self.expr()?;
                self.depth -= 1;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    None => Err(syntax("unbalanced parentheses: \"(\" without \")\"")),
                    Some(t) => Err(syntax(format!("expected \"and\", \"or\" or \")\" before \"{}\"", t.text()))),
                }
            }
            Some(Tok::Bad(s)) => Err(self.unsupported_from(s)),
            Some(t @ (Tok::RParen | Tok::And | Tok::Or | Tok::Not)) => {
                Err(syntax(format!("\"{}\" where a primitive was expected", t.text())))
            }
            Some(Tok::Word(w)) => self.primitive(w),
        }
    }

    /// The unsupported words starting at `first`, up to the next `and`,
    /// `or`, parenthesis or the end.
    fn unsupported_from(&mut self, first: String) -> FilterError {
        let mut part = first;
        while let Some(t @ (Tok::Word(_) | Tok::Bad(_))) = self.peek() {
            part.push(' ');
            part.push_str(t.text());
            self.pos += 1;
        }
        let why = if part.chars().any(|c| "[]=<>+*%^&|\"'".contains(c)) {
            ": byte offsets, comparisons and arithmetic are not supported"
        } else {
            ""
        };
        unsupported(part, why)
    }

    fn primitive(&mut self, word: String) -> Result<Expr, FilterError> {
        let w = word.to_ascii_lowercase();
        if let Some(proto) = ProtoQ::from_word(&w) {
            return match self.peek_word(0) {
                // `tcp port 80`, `ip src host X`, `ip proto 6`.
                Some(n) if Kind::from_word(&n).is_some() || n == "src" || n == "dst" => self.qualified(Some(proto)),
                // `ip 10.0.0.1` is `ip host 10.0.0.1`, as in tcpdump.
                Some(n) if !is_keyword(&n) && !TCPDUMP_ONLY.contains(&n.as_str()) => self.qualified(Some(proto)),
                _ => Ok(Expr::Atom(proto.atom())),
            };
        }
        match w.as_str() {
            "icmp" | "icmp6" => {
                if let Some(n) = self.peek_word(0).filter(|n| Kind::from_word(n).is_some() || n == "src" || n == "dst") {
                    return Err(match self.unsupported_from(word) {
                        FilterError::Unsupported { part, .. } => unsupported(part, format!(": {w} does not qualify {n}")),
                        e => e,
                    });
                }
                Ok(Expr::Atom(if w == "icmp" {
                    Atom::Proto { need: key_flags::IP4, proto: 1 }
                } else {
                    Atom::Proto { need: key_flags::IP6, proto: 58 }
                }))
            }
            "src" | "dst" | "host" | "net" | "port" | "portrange" | "proto" => {
                self.pos -= 1;
                self.qualified(None)
            }
            "vlan" => {
                let id = match self.peek_word(0) {
                    Some(n) if n.chars().all(|c| c.is_ascii_digit()) => {
                        self.pos += 1;
                        match n.parse::<u16>() {
                            Ok(id) if id < 4096 => Some(id),
                            _ => return Err(syntax(format!("VLAN id {n} is not within 0-4095"))),
                        }
                    }
                    _ => None,
                };
                Ok(Expr::Atom(Atom::Vlan(id)))
            }
            "inbound" | "ingress" => Ok(Expr::Atom(Atom::Direction(DIR_INGRESS))),
            "outbound" | "egress" => Ok(Expr::Atom(Atom::Direction(DIR_EGRESS))),
            "mask" => Err(syntax("\"mask\" must follow \"net ADDRESS\"")),
            _ if TCPDUMP_ONLY.contains(&w.as_str()) => Err(self.unsupported_from(word)),
            _ => self.bare_value(word),
        }
    }

    /// A value without qualifiers: it takes those of the previous primitive,
    /// or is a host address when there is none.
    fn bare_value(&mut self, value: String) -> Result<Expr, FilterError> {
        if let Some(q) = self.last {
            return self.build(q, &value);
        }
        if value.parse::<Ipv4Addr>().is_ok() || value.parse::<Ipv6Addr>().is_ok() {
            return self.build(Qual { proto: None, dir: DirQ::Either, kind: Kind::Host }, &value);
        }
        if value.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Err(syntax(format!("\"{value}\" needs a qualifier such as host, net or port")));
        }
        Err(self.unsupported_from(value))
    }

    /// `[proto] [src|dst|src or dst|src and dst] [host|net|port|portrange|proto] VALUE`
    fn qualified(&mut self, proto: Option<ProtoQ>) -> Result<Expr, FilterError> {
        let mut dir = DirQ::Either;
        let mut dir_given = false;
        if let Some(first @ ("src" | "dst")) = self.peek_word(0).as_deref() {
            let other = if first == "src" { "dst" } else { "src" };
            self.pos += 1;
            dir_given = true;
            dir = if first == "src" { DirQ::Src } else { DirQ::Dst };
            // `src or dst`, `src and dst`: the operator belongs to the qualifier.
            if let (Some(op @ (Tok::And | Tok::Or)), Some(w)) = (self.peek().cloned(), self.peek_word(1))
                && w == other
            {
                self.pos += 2;
                dir = if op == Tok::And { DirQ::Both } else { DirQ::Either };
            }
        }
        let kind = match self.peek_word(0).and_then(|w| Kind::from_word(&w)) {
            Some(k) => {
                self.pos += 1;
                k
            }
            // tcpdump's default type is host: `src 10.0.0.1`.
            None => Kind::Host,
        };
        if kind == Kind::Proto && dir_given {
            return Err(syntax("\"proto\" takes no src/dst qualifier"));
        }
        let value = match self.next() {
            Some(Tok::Word(v)) if !is_keyword(&v.to_ascii_lowercase()) || kind == Kind::Proto => v,
            other => {
                let what = other.map(|t| format!("\"{}\"", t.text())).unwrap_or_else(|| "the end".into());
                return Err(syntax(format!("expected a value after \"{}\", found {what}", kind.name())));
            }
        };
        let q = Qual { proto, dir, kind };
        self.last = Some(q);
        self.build(q, &value)
    }

    /// Turns qualifiers and a value into atoms.
    fn build(&mut self, q: Qual, value: &str) -> Result<Expr, FilterError> {
        let quote = |extra: &str| {
            let mut s = String::new();
            if let Some(p) = q.proto {
                s.push_str(p.name());
                s.push(' ');
            }
            s.push_str(match q.dir {
                DirQ::Either => "",
                DirQ::Src => "src ",
                DirQ::Dst => "dst ",
                DirQ::Both => "src and dst ",
            });
            s.push_str(q.kind.name());
            s.push(' ');
            s.push_str(value);
            s.push_str(extra);
            s
        };
        match q.kind {
            Kind::Host | Kind::Net => {
                if matches!(q.proto, Some(ProtoQ::Tcp | ProtoQ::Udp | ProtoQ::Sctp)) {
                    return Err(unsupported(quote(""), format!(": {} qualifies only port and portrange", q.proto.map(ProtoQ::name).unwrap_or_default())));
                }
                let (addr, prefix, v6) = if q.kind == Kind::Host {
                    parse_host(value).ok_or_else(|| {
                        if value.contains('/') {
                            syntax(format!("\"{}\": host takes one address; use net for a CIDR block", quote("")))
                        } else {
                            unsupported(quote(""), ": host names are not resolved; give an IPv4 or IPv6 address")
                        }
                    })?
                } else {
                    let mask = if self.peek_word(0).as_deref() == Some("mask") {
                        self.pos += 1;
                        match self.next() {
                            Some(Tok::Word(m)) => Some(m),
                            _ => return Err(syntax("expected a netmask after \"mask\"")),
                        }
                    } else {
                        None
                    };
                    parse_net(value, mask.as_deref()).map_err(|why| syntax(format!("\"{}\": {why}", quote(""))))?
                };
                let need = match (q.proto, v6) {
                    (None, false) => key_flags::IP4 | key_flags::ARP4,
                    (Some(ProtoQ::Ip), false) => key_flags::IP4,
                    (Some(ProtoQ::Arp), false) => key_flags::ARP4,
                    (None | Some(ProtoQ::Ip6), true) => key_flags::IP6,
                    (Some(p), _) => {
                        let fam = if v6 { "an IPv6" } else { "an IPv4" };
                        return Err(syntax(format!("\"{}\": {fam} address cannot be {}", quote(""), p.name())));
                    }
                };
                let addr_atom = |sel| Expr::Atom(Atom::Addr { need, sel, addr, prefix });
                Ok(match q.dir {
                    DirQ::Either => addr_atom(SEL_SRC | SEL_DST),
                    DirQ::Src => addr_atom(SEL_SRC),
                    DirQ::Dst => addr_atom(SEL_DST),
                    DirQ::Both => Expr::And(vec![addr_atom(SEL_SRC), addr_atom(SEL_DST)]),
                })
            }
            Kind::Port | Kind::PortRange => {
                let proto = match q.proto {
                    None => None,
                    Some(p @ (ProtoQ::Tcp | ProtoQ::Udp | ProtoQ::Sctp)) => Some(p.atom()),
                    Some(p) => {
                        return Err(unsupported(quote(""), format!(": {} does not qualify {}; use tcp, udp or sctp", p.name(), q.kind.name())));
                    }
                };
                let (lo, hi) = if q.kind == Kind::Port {
                    let p = parse_port(value).ok_or_else(|| syntax(format!("\"{}\": not a port number (0-65535) or known service", quote(""))))?;
                    (p, p)
                } else {
                    parse_range(value).ok_or_else(|| syntax(format!("\"{}\": expected a range such as 1000-2000", quote(""))))?
                };
                let port_atom = |sel| Expr::Atom(Atom::Port { sel, lo, hi });
                let ports = match q.dir {
                    DirQ::Either => port_atom(SEL_SPORT | SEL_DPORT),
                    DirQ::Src => port_atom(SEL_SPORT),
                    DirQ::Dst => port_atom(SEL_DPORT),
                    DirQ::Both => Expr::And(vec![port_atom(SEL_SPORT), port_atom(SEL_DPORT)]),
                };
                Ok(match proto {
                    Some(p) => Expr::And(vec![Expr::Atom(p), ports]),
                    None => ports,
                })
            }
            Kind::Proto => {
                let need = match q.proto {
                    None => key_flags::IP4 | key_flags::IP6,
                    Some(ProtoQ::Ip) => key_flags::IP4,
                    Some(ProtoQ::Ip6) => key_flags::IP6,
                    Some(p) => return Err(unsupported(quote(""), format!(": {} does not qualify proto; use ip or ip6", p.name()))),
                };
                let proto = parse_ip_proto(value).ok_or_else(|| syntax(format!("\"{}\": not a protocol number (0-255) or name", quote(""))))?;
                Ok(Expr::Atom(Atom::Proto { need, proto }))
            }
        }
    }
}

/// An address as (bytes, prefix length, is IPv6).
fn parse_host(s: &str) -> Option<([u8; 16], u8, bool)> {
    let mut addr = [0u8; 16];
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        addr[..4].copy_from_slice(&a.octets());
        return Some((addr, 32, false));
    }
    let a = s.parse::<Ipv6Addr>().ok()?;
    Some((a.octets(), 128, true))
}

/// `A.B.C.D/N`, `A.B.C.D mask M`, tcpdump's short `A.B` (= `A.B.0.0/16`),
/// `X::/N` or a whole address. Host bits must be clear, as tcpdump insists.
fn parse_net(s: &str, mask: Option<&str>) -> Result<([u8; 16], u8, bool), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| format!("bad prefix length \"{l}\""))?)),
        None => (s, None),
    };
    let mut addr = [0u8; 16];
    let (prefix, v6) = if a.contains(':') {
        if mask.is_some() {
            return Err("mask works only with IPv4 networks".into());
        }
        let ip = a.parse::<Ipv6Addr>().map_err(|_| format!("\"{a}\" is not an IPv6 address"))?;
        addr = ip.octets();
        let len = len.unwrap_or(128);
        if len > 128 {
            return Err(format!("prefix length {len} exceeds 128"));
        }
        (len, true)
    } else {
        let parts: Vec<&str> = a.split('.').collect();
        if parts.is_empty() || parts.len() > 4 {
            return Err(format!("\"{a}\" is not an IPv4 network"));
        }
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 3 || !p.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("\"{a}\" is not an IPv4 network"));
            }
            addr[i] = p.parse::<u8>().map_err(|_| format!("\"{a}\" is not an IPv4 network"))?;
        }
        let len = match (len, mask) {
            (Some(_), Some(_)) => return Err("give either /LEN or mask, not both".into()),
            (Some(l), None) => l,
            (None, Some(m)) => {
                let m = m.parse::<Ipv4Addr>().map_err(|_| format!("\"{m}\" is not a netmask"))?;
                let bits = u32::from(m);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return Err(format!("\"{m}\" is not a contiguous netmask"));
                }
                bits.leading_ones() as u8
            }
            (None, None) => (parts.len() * 8) as u8,
        };
        if len > 32 {
            return Err(format!("prefix length {len} exceeds 32"));
        }
        (len, false)
    };
    let masked = mask_prefix(addr, prefix);
    if masked != addr {
        return Err("non-network bits set (the address has bits beyond the prefix)".into());
    }
    Ok((addr, prefix, v6))
}

/// The first `prefix` bits of `addr`, the rest cleared.
pub fn mask_prefix(addr: [u8; 16], prefix: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in addr.iter().enumerate() {
        let bits = (prefix as usize).saturating_sub(i * 8).min(8);
        out[i] = if bits == 0 { 0 } else { b & (0xffu8 << (8 - bits)) };
    }
    out
}

/// Well-known services, so `port domain` works as in tcpdump without
/// depending on the machine's /etc/services.
const SERVICES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("http", 80),
    ("www", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("syslog", 514),
    ("mdns", 5353),
    ("vxlan", 4789),
    ("geneve", 6081),
];

fn parse_port(s: &str) -> Option<u16> {
    if s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = s.to_ascii_lowercase();
    SERVICES.iter().find(|(n, _)| *n == s).map(|&(_, p)| p)
}

/// `A-B`; tcpdump swaps a reversed range, so this does too.
fn parse_range(s: &str) -> Option<(u16, u16)> {
    // Service names contain '-' too: try every split.
    s.match_indices('-').find_map(|(i, _)| {
        let (a, b) = (parse_port(&s[..i])?, parse_port(&s[i + 1..])?);
        Some((a.min(b), a.max(b)))
    })
}

fn parse_ip_proto(s: &str) -> Option<u8> {
    let s = s.trim_start_matches('\\').to_ascii_lowercase();
    if s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    Some(match s.as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmp6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        _ => return None,
    })
}
