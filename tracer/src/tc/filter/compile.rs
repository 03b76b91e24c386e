//! Lowers a parsed expression to the kernel's form: distinct atoms become
//! predicates (one bit each), and the expression becomes a disjunction of
//! clauses, each a set of predicates that must hold and a set that must not.

use tracer_common::packet::{
    FILTER_MAX_CLAUSES, FILTER_MAX_INSNS, FILTER_OP_EQ, FILTER_OP_RANGE, FilterClause, FilterInsn,
    SEL_META, key_flags, key_offsets,
};

use super::{
    FilterError,
    parse::{Atom, Expr, mask_prefix},
};

/// Most clauses kept while expanding, before simplification brings them
/// down; past it the expression is refused rather than expanded further.
const MAX_WORKING_CLAUSES: usize = 1024;

/// The predicate testing one atom.
pub fn insn(atom: &Atom) -> FilterInsn {
    // Build the expected window and its mask as bytes in key layout, then
    // take them as the native-endian words the kernel compares.
    let mut value = [0u8; 16];
    let mut mask = [0u8; 16];
    let mut put = |off: usize, v: &[u8], m: &[u8]| {
        value[off..off + v.len()].copy_from_slice(v);
        mask[off..off + m.len()].copy_from_slice(m);
    };
    let (op, need, sel) = match *atom {
        Atom::EtherType(et) => {
            put(key_offsets::ETHERTYPE, &et.to_be_bytes(), &[0xff, 0xff]);
            (FILTER_OP_EQ, 0, SEL_META)
        }
        Atom::Proto { need, proto } => {
            put(key_offsets::PROTO, &[proto], &[0xff]);
            (FILTER_OP_EQ, need, SEL_META)
        }
        Atom::Vlan(id) => {
            if let Some(id) = id {
                put(key_offsets::VLAN_ID, &id.to_be_bytes(), &[0x0f, 0xff]);
            }
            (FILTER_OP_EQ, key_flags::VLAN, SEL_META)
        }
        Atom::Direction(d) => {
            put(key_offsets::DIRECTION, &[d], &[0xff]);
            (FILTER_OP_EQ, 0, SEL_META)
        }
        Atom::Addr { need, sel, addr, prefix } => {
            let m = mask_prefix([0xff; 16], prefix);
            put(0, &mask_prefix(addr, prefix), &m);
            (FILTER_OP_EQ, need, sel)
        }
        Atom::Port { sel, lo, hi } => {
            return FilterInsn {
                op: FILTER_OP_RANGE,
                need: key_flags::PORTS,
                sel,
                value: [u64::from(lo), u64::from(hi)],
                ..FilterInsn::default()
            };
        }
    };
    let word = |b: &[u8; 16], i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    FilterInsn {
        op,
        need,
        sel,
        value: [word(&value, 0), word(&value, 1)],
        mask: [word(&mask, 0), word(&mask, 1)],
        ..FilterInsn::default()
    }
}

/// A conjunction as (required, forbidden) bit sets.
type Clause = (u32, u32);

/// The kernel form of an expression.
pub struct Compiled {
    pub insns: Vec<FilterInsn>,
    pub clauses: Vec<FilterClause>,
}

pub fn compile(expr: &Expr) -> Result<Compiled, FilterError> {
    // Every distinct atom gets a bit; identical ones share it.
    let mut atoms: Vec<FilterInsn> = Vec::new();
    let tree = number(expr, &mut atoms)?;
    let clauses = dnf(&tree, false)?;

    // Simplification may have dropped predicates; renumber what is left.
    let used = clauses.iter().fold(0u32, |acc, &(r, f)| acc | r | f);
    let mut insns = Vec::new();
    let mut remap = [0u32; 32];
    for (i, atom) in atoms.iter().enumerate() {
        if used & (1 << i) != 0 {
            remap[i] = 1 << insns.len();
            insns.push(*atom);
        }
    }
    if insns.len() > FILTER_MAX_INSNS {
        return Err(FilterError::TooComplex(format!(
            "it needs {} distinct tests; the kernel filter holds at most {FILTER_MAX_INSNS}",
            insns.len()
        )));
    }
    if clauses.len() > FILTER_MAX_CLAUSES {
        return Err(FilterError::TooComplex(format!(
            "written as an or of ands it has {} terms; the kernel filter holds at most {FILTER_MAX_CLAUSES}",
            clauses.len()
        )));
    }
    let bits = |m: u32| (0..32).filter(|i| m & (1 << i) != 0).fold(0, |acc, i| acc | remap[i]);
    let clauses = clauses.iter().map(|&(r, f)| FilterClause { required: bits(r), forbidden: bits(f) }).collect();
    Ok(Compiled { insns, clauses })
}

/// The expression with atoms replaced by their bit numbers.
enum Tree {
    Bit(u32),
    Not(Box<Tree>),
    And(Vec<Tree>),
    Or(Vec<Tree>),
}

fn number(e: &Expr, atoms: &mut Vec<FilterInsn>) -> Result<Tree, FilterError> {
    Ok(match e {
        Expr::Atom(a) => {
            let i = insn(a);
            let bit = match atoms.iter().position(|x| *x == i) {
                Some(p) => p,
                None => {
                    // Room for the bits the simplifier may still remove; the
                    // kernel limit is checked on what remains.
                    if atoms.len() >= 32 {
                        return Err(FilterError::TooComplex(format!(
                            "it has more than 32 distinct tests; the kernel filter holds at most {FILTER_MAX_INSNS}"
                        )));
                    }
                    atoms.push(i);
                    atoms.len() - 1
                }
            };
            Tree::Bit(bit as u32)
        }
        Expr::Not(x) => Tree::Not(Box::new(number(x, atoms)?)),
        Expr::And(xs) => Tree::And(xs.iter().map(|x| number(x, atoms)).collect::<Result<_, _>>()?),
        Expr::Or(xs) => Tree::Or(xs.iter().map(|x| number(x, atoms)).collect::<Result<_, _>>()?),
    })
}

/// Disjunctive normal form of `t` (negated when `neg`), simplified.
fn dnf(t: &Tree, neg: bool) -> Result<Vec<Clause>, FilterError> {
    match t {
        Tree::Bit(b) => Ok(vec![if neg { (0, 1 << b) } else { (1 << b, 0) }]),
        Tree::Not(x) => dnf(x, !neg),
        // De Morgan: a negated and is an or of negations, and vice versa.
        Tree::And(xs) | Tree::Or(xs) if matches!(t, Tree::And(_)) != neg => {
            let mut acc: Vec<Clause> = vec![(0, 0)];
            for x in xs {
                let d = dnf(x, neg)?;
                let mut next = Vec::with_capacity(acc.len() * d.len());
                for &(r1, f1) in &acc {
                    for &(r2, f2) in &d {
                        let c = (r1 | r2, f1 | f2);
                        if c.0 & c.1 == 0 {
                            next.push(c);
                        }
                    }
                    check_size(next.len())?;
                }
                acc = simplify(next);
            }
            Ok(acc)
        }
        Tree::And(xs) | Tree::Or(xs) => {
            let mut acc = Vec::new();
            for x in xs {
                acc.extend(dnf(x, neg)?);
                check_size(acc.len())?;
            }
            Ok(simplify(acc))
        }
    }
}

fn check_size(n: usize) -> Result<(), FilterError> {
    if n > MAX_WORKING_CLAUSES {
        return Err(FilterError::TooComplex(format!(
            "written as an or of ands it has more than {MAX_WORKING_CLAUSES} terms; the kernel filter holds at most {FILTER_MAX_CLAUSES}"
        )));
    }
    Ok(())
}

/// Drops duplicate clauses and clauses implied by a weaker one (absorption:
/// `a or (a and b)` is `a`).
fn simplify(mut cs: Vec<Clause>) -> Vec<Clause> {
    cs.sort_by_key(|&(r, f)| ((r | f).count_ones(), r, f));
    cs.dedup();
    let mut out: Vec<Clause> = Vec::with_capacity(cs.len());
    for c in cs {
        // Sorted by size, so any clause that absorbs `c` is already in `out`.
        if !out.iter().any(|&(r, f)| r & c.0 == r && f & c.1 == f) {
            out.push(c);
        }
    }
    out
}
