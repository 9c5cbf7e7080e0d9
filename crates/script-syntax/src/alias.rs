//! Probe alias expansion: `probe a = b { prologue }` and `probe a += b { epilogue }`.
//!
//! A user probe point whose leading components name an alias is replaced by the alias's
//! points (with the user's remaining components appended, stap's alias suffixes), and
//! the handler becomes the alias body followed by the user body (or the reverse for
//! `+=`). Aliases may refer to aliases. Every copied body gets fresh [`ExprId`]s so that
//! ids stay unique across the expanded handlers.

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::parser::IdGen;
use crate::preproc::glob_match;
use crate::visit::{walk_block_mut, walk_expr_mut, walk_script_mut};

/// One handler after alias expansion.
#[derive(Clone, Debug)]
pub struct ResolvedProbe {
    /// Concrete probe points (no alias names left).
    pub points: Vec<ProbePoint>,
    /// Alias prologues, the user's body, then alias epilogues, each as a nested block.
    pub body: Block,
    /// Index of the user's `probe` among the script's `Item::Probe`s.
    pub probe_index: usize,
    /// The user's probe declaration.
    pub span: Span,
}

/// How deep aliases may refer to aliases.
const MAX_ALIAS_DEPTH: usize = 16;

/// Expands all aliases used by the script's probes, in probe order. Points that use
/// no alias stay together in one handler with the user's body.
pub fn expand_aliases(script: &Script, ids: &mut IdGen) -> (Vec<ResolvedProbe>, Vec<Diagnostic>) {
    let aliases: Vec<&AliasDecl> = script
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Alias(a) => Some(a),
            _ => None,
        })
        .collect();
    let mut diags = Vec::new();
    let mut out = Vec::new();
    let probes = script.items.iter().filter_map(|i| match i {
        Item::Probe(p) => Some(p),
        _ => None,
    });
    for (probe_index, p) in probes.enumerate() {
        let mut plain = Vec::new();
        let mut expanded: Vec<(ProbePoint, Vec<&AliasDecl>)> = Vec::new();
        for pt in &p.points {
            let mut results = Vec::new();
            expand_point(pt, &aliases, Vec::new(), 0, &mut results, &mut diags);
            for (q, chain) in results {
                if chain.is_empty() {
                    plain.push(q);
                } else {
                    expanded.push((q, chain));
                }
            }
        }
        let mut first_use = true;
        let mut user_body = |ids: &mut IdGen| {
            let mut b = p.body.clone();
            if !first_use {
                renumber_block(&mut b, ids);
            }
            first_use = false;
            b
        };
        // A condition belongs to its own probe point (stap derives each point
        // separately), but a handler learns only which probe fired, not which point:
        // so every conditional point gets a handler of its own, while the points
        // without a condition stay together.
        let (conditional, unconditional): (Vec<ProbePoint>, Vec<ProbePoint>) =
            plain.into_iter().partition(|q| q.condition.is_some());
        if !unconditional.is_empty() {
            out.push(ResolvedProbe {
                points: unconditional,
                body: user_body(ids),
                probe_index,
                span: p.span,
            });
        }
        // Each condition is a distinct expression of the source, so its ids are unique.
        for q in conditional {
            out.push(ResolvedProbe {
                points: vec![q],
                body: user_body(ids),
                probe_index,
                span: p.span,
            });
        }
        for (mut q, chain) in expanded {
            if let Some(c) = &mut q.condition {
                walk_expr_mut(c, &mut |e| e.id = ids.fresh());
            }
            let mut body = user_body(ids);
            for a in chain.iter().rev() {
                let mut ab = a.body.clone();
                renumber_block(&mut ab, ids);
                let (first, second) = if a.epilogue { (body, ab) } else { (ab, body) };
                let span = first.span;
                body = Block {
                    stmts: vec![
                        Stmt {
                            span: first.span,
                            kind: StmtKind::Block(first),
                        },
                        Stmt {
                            span: second.span,
                            kind: StmtKind::Block(second),
                        },
                    ],
                    span,
                };
            }
            out.push(ResolvedProbe {
                points: vec![q],
                body,
                probe_index,
                span: p.span,
            });
        }
    }
    (out, diags)
}

/// A point's condition and its alias target's condition both apply, as in stap.
fn and_conditions(user: Option<Expr>, alias: Option<Expr>) -> Option<Expr> {
    match (user, alias) {
        (Some(u), Some(a)) => Some(Expr {
            id: u.id,
            span: u.span,
            kind: ExprKind::Binary {
                op: BinaryOp::And,
                lhs: Box::new(a),
                rhs: Box::new(u),
            },
        }),
        (u, a) => u.or(a),
    }
}

/// Does the alias name `name` match the first components of `pt`?
fn name_matches(name: &ProbePoint, pt: &ProbePoint) -> bool {
    name.components.len() <= pt.components.len()
        && name
            .components
            .iter()
            .zip(&pt.components)
            .all(|(a, u)| glob_match(u.name.as_bytes(), a.name.as_bytes()) && a.arg == u.arg)
}

/// Expands one point; `chain` lists the aliases applied so far, outermost first.
fn expand_point<'a>(
    pt: &ProbePoint,
    aliases: &[&'a AliasDecl],
    chain: Vec<&'a AliasDecl>,
    depth: usize,
    out: &mut Vec<(ProbePoint, Vec<&'a AliasDecl>)>,
    diags: &mut Vec<Diagnostic>,
) {
    // Every alias name matching a prefix of the point applies, except that a name is
    // dropped when a longer matching name extends it (`syscall.open.return` beats
    // `syscall.open` for `syscall.*.return`, while `syscall.close` plus the `.return`
    // suffix still applies). Several definitions of one name all apply.
    let mut found: Vec<(&'a AliasDecl, &ProbePoint)> = Vec::new();
    for a in aliases {
        for n in &a.names {
            if name_matches(n, pt) {
                found.push((a, n));
            }
        }
    }
    let extends = |long: &ProbePoint, short: &ProbePoint| {
        long.components.len() > short.components.len()
            && short
                .components
                .iter()
                .zip(&long.components)
                .all(|(s, l)| s.name == l.name && s.arg == l.arg)
    };
    let matches: Vec<(&'a AliasDecl, usize)> = found
        .iter()
        .filter(|(_, n)| !found.iter().any(|(_, m)| extends(m, n)))
        .map(|(a, n)| (*a, n.components.len()))
        .collect();
    if matches.is_empty() {
        out.push((pt.clone(), chain));
        return;
    }
    if depth >= MAX_ALIAS_DEPTH {
        diags.push(Diagnostic::error(
            "semantic error",
            "probe alias expansion too deep (recursive alias?)",
            pt.span,
        ));
        return;
    }
    for (a, len) in matches {
        for target in &a.points {
            let mut components = target.components.clone();
            components.extend(pt.components[len..].iter().cloned());
            let q = ProbePoint {
                components,
                optional: pt.optional || target.optional,
                sufficient: pt.sufficient || target.sufficient,
                condition: and_conditions(pt.condition.clone(), target.condition.clone()),
                span: pt.span,
            };
            let mut c = chain.clone();
            c.push(a);
            expand_point(&q, aliases, c, depth + 1, out, diags);
        }
    }
}

/// Gives every expression in the block a fresh id.
pub fn renumber_block(b: &mut Block, ids: &mut IdGen) {
    walk_block_mut(b, &mut |e| e.id = ids.fresh());
}

/// Expands aliases into a new script: alias declarations are dropped and each user
/// probe is replaced, in place, by its expanded handlers (so "handler index = index
/// among `Item::Probe`" holds for the result). New ids start above the script's
/// highest one.
pub fn expand_script(script: &Script) -> (Script, Vec<Diagnostic>) {
    let mut copy = script.clone();
    let mut next = 0u32;
    walk_script_mut(&mut copy, &mut |e| {
        next = next.max(e.id.0.saturating_add(1))
    });
    let mut ids = IdGen::starting_at(next);
    let (probes, diags) = expand_aliases(script, &mut ids);
    let mut by_probe: Vec<Vec<ResolvedProbe>> = Vec::new();
    for p in probes {
        if by_probe.len() <= p.probe_index {
            by_probe.resize_with(p.probe_index + 1, Vec::new);
        }
        by_probe[p.probe_index].push(p);
    }
    let mut items = Vec::with_capacity(script.items.len());
    let mut k = 0;
    for item in &script.items {
        match item {
            Item::Probe(_) => {
                for r in by_probe.get_mut(k).map(std::mem::take).unwrap_or_default() {
                    items.push(Item::Probe(ProbeDecl {
                        points: r.points,
                        body: r.body,
                        span: r.span,
                    }));
                }
                k += 1;
            }
            Item::Alias(_) => {}
            other => items.push(other.clone()),
        }
    }
    (Script { items }, diags)
}
