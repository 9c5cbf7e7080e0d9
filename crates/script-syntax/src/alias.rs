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
        if !plain.is_empty() {
            out.push(ResolvedProbe {
                points: plain,
                body: user_body(ids),
                probe_index,
                span: p.span,
            });
        }
        for (q, chain) in expanded {
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
                condition: pt.condition.clone().or_else(|| target.condition.clone()),
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
    for s in &mut b.stmts {
        renumber_stmt(s, ids);
    }
}

fn renumber_stmt(s: &mut Stmt, ids: &mut IdGen) {
    match &mut s.kind {
        StmtKind::Block(b) => renumber_block(b, ids),
        StmtKind::Expr(e) | StmtKind::Delete(e) | StmtKind::Return(Some(e)) => {
            renumber_expr(e, ids)
        }
        StmtKind::If { cond, then, els } => {
            renumber_expr(cond, ids);
            renumber_stmt(then, ids);
            if let Some(e) = els {
                renumber_stmt(e, ids);
            }
        }
        StmtKind::While { cond, body } => {
            renumber_expr(cond, ids);
            renumber_stmt(body, ids);
        }
        StmtKind::For {
            init,
            cond,
            step,
            body,
        } => {
            for e in [init, cond, step].into_iter().flatten() {
                renumber_expr(e, ids);
            }
            renumber_stmt(body, ids);
        }
        StmtKind::Foreach { limit, body, .. } => {
            if let Some(l) = limit {
                renumber_expr(l, ids);
            }
            renumber_stmt(body, ids);
        }
        StmtKind::Try { body, catch, .. } => {
            renumber_block(body, ids);
            renumber_block(catch, ids);
        }
        StmtKind::Return(None)
        | StmtKind::Break
        | StmtKind::Continue
        | StmtKind::Next
        | StmtKind::Empty
        | StmtKind::Error => {}
    }
}

fn renumber_path(path: &mut [TargetStep], ids: &mut IdGen) {
    for st in path {
        if let TargetStep::Index(e) = st {
            renumber_expr(e, ids);
        }
    }
}

fn renumber_expr(e: &mut Expr, ids: &mut IdGen) {
    e.id = ids.fresh();
    match &mut e.kind {
        ExprKind::Index { keys: v, .. }
        | ExprKind::Call { args: v, .. }
        | ExprKind::In { keys: v, .. } => {
            for x in v {
                renumber_expr(x, ids);
            }
        }
        ExprKind::Target(t) => renumber_path(&mut t.path, ids),
        ExprKind::Cast { expr, path, .. } => {
            renumber_expr(expr, ids);
            renumber_path(path, ids);
        }
        ExprKind::GlobalVar { path, .. } => renumber_path(path, ids),
        ExprKind::Entry(x) | ExprKind::Defined(x) => renumber_expr(x, ids),
        ExprKind::Stat { expr, args, .. } => {
            renumber_expr(expr, ids);
            for x in args {
                renumber_expr(x, ids);
            }
        }
        ExprKind::Unary { expr, .. } => renumber_expr(expr, ids),
        ExprKind::Binary { lhs, rhs, .. } => {
            renumber_expr(lhs, ids);
            renumber_expr(rhs, ids);
        }
        ExprKind::Ternary { cond, then, els } => {
            renumber_expr(cond, ids);
            renumber_expr(then, ids);
            renumber_expr(els, ids);
        }
        ExprKind::Assign { target, value, .. } => {
            renumber_expr(target, ids);
            renumber_expr(value, ids);
        }
        ExprKind::IncDec { target, .. } => renumber_expr(target, ids),
        ExprKind::Number(_)
        | ExprKind::String(_)
        | ExprKind::Var(_)
        | ExprKind::ScriptArg { .. }
        | ExprKind::ArgCount
        | ExprKind::ProbeWrite(_)
        | ExprKind::Error => {}
    }
}
