//! The one walker over the AST: every pass that looks at (or rewrites) each expression
//! of a block goes through here, so a new `ExprKind`/`StmtKind` variant is taught to
//! all passes at once.
//!
//! Order: statements in source order; a node before its children (pre-order); the
//! children of a node in source order (`if`: condition, then, else; `for`: init,
//! condition, step, body; `foreach`: histogram, slice keys, limit, body; `@cast`: the
//! address operand, then the target path's index expressions).
//!
//! The read-only walk ([`walk_expr`], [`walk_block`], [`walk_nodes`]) is steered by
//! the callback's [`Walk`] answer: descend, skip the node's children, skip only the
//! index expressions of a target path (what the probe point evaluates, see
//! [`Walk::SkipPath`]), or state the node's compile-time truth ([`Walk::Known`]) so
//! that branches which cannot run are not visited. The mutable walk
//! ([`walk_expr_mut`], [`walk_block_mut`], [`walk_script_mut`]) visits everything, for
//! in-place rewrites such as renumbering expression ids.
//!
//! Recursion depth is bounded by the parser's nesting limit (200 levels).

use crate::ast::{
    BinaryOp, Block, Expr, ExprKind, FunctionBody, FunctionDecl, Item, ProbePoint, Script, Stmt,
    StmtKind, TargetStep, UnaryOp,
};

/// What the callback wants after seeing a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Visit its children.
    Descend,
    /// Do not visit its children.
    Skip,
    /// Visit its children except the `[index]` expressions of its target path (of
    /// `$x[i]`, `@var("v")[i]`, `@cast(p, "t")[i]`; `@cast`'s address operand is still
    /// visited). Those indexes are lowered into the capture plan and evaluated at the
    /// probe point, never by the handler, so passes over handler code leave them out.
    /// The same as [`Walk::Descend`] on any other node.
    SkipPath,
    /// Its truth is known at compile time (such as `@defined(...)`), and its children
    /// are handled by the callback: the truth is propagated through `!`, `&&`, `||` and
    /// `?:`, and the branches it guards that cannot run (`if`'s then or else, a `while`
    /// body) are not visited, as stap elides them.
    Known(bool),
}

/// A node handed to a [`walk_nodes`] callback.
#[derive(Clone, Copy, Debug)]
pub enum Node<'a> {
    /// A statement, before its expressions and sub-statements.
    Stmt(&'a Stmt),
    /// An expression, before its operands.
    Expr(&'a Expr),
}

/// Calls `f` on every statement and expression of `stmts`, parents first. A
/// statement's answer is read as [`Walk::Skip`] (skip the whole statement's contents)
/// or anything else (descend).
pub fn walk_nodes(stmts: &[Stmt], f: &mut impl FnMut(Node<'_>) -> Walk) {
    for s in stmts {
        stmt(s, f);
    }
}

/// Calls `f` on every expression of the block, as [`walk_nodes`] does.
pub fn walk_block(b: &Block, f: &mut impl FnMut(&Expr) -> Walk) {
    walk_nodes(&b.stmts, &mut exprs_only(f));
}

/// Calls `f` on every expression of the statement and its sub-statements.
pub fn walk_stmt(s: &Stmt, f: &mut impl FnMut(&Expr) -> Walk) {
    stmt(s, &mut exprs_only(f));
}

/// Calls `f` on `e` and, as `f` asks, on its operands; returns `e`'s compile-time
/// truth when known (see [`Walk::Known`]).
pub fn walk_expr(e: &Expr, f: &mut impl FnMut(&Expr) -> Walk) -> Option<bool> {
    expr(e, &mut exprs_only(f))
}

/// Adapts an expression callback to a node callback (statements always descend).
fn exprs_only(f: &mut impl FnMut(&Expr) -> Walk) -> impl FnMut(Node<'_>) -> Walk + '_ {
    move |n| match n {
        Node::Expr(e) => f(e),
        Node::Stmt(_) => Walk::Descend,
    }
}

// The private walkers take `dyn` so that one copy of each is compiled, whatever the
// callers' closures.

fn stmt(s: &Stmt, f: &mut dyn FnMut(Node<'_>) -> Walk) {
    if f(Node::Stmt(s)) == Walk::Skip {
        return;
    }
    match &s.kind {
        StmtKind::Block(b) => {
            for s in &b.stmts {
                stmt(s, f);
            }
        }
        StmtKind::Expr(e) | StmtKind::Delete(e) | StmtKind::Return(Some(e)) => {
            expr(e, f);
        }
        StmtKind::If { cond, then, els } => {
            let known = expr(cond, f);
            if known != Some(false) {
                stmt(then, f);
            }
            if let Some(e) = els {
                if known != Some(true) {
                    stmt(e, f);
                }
            }
        }
        StmtKind::While { cond, body } => {
            if expr(cond, f) != Some(false) {
                stmt(body, f);
            }
        }
        StmtKind::For {
            init,
            cond,
            step,
            body,
        } => {
            for e in [init, cond, step].into_iter().flatten() {
                expr(e, f);
            }
            stmt(body, f);
        }
        StmtKind::Foreach {
            slice,
            histogram,
            limit,
            body,
            ..
        } => {
            if let Some(h) = histogram {
                expr(h, f);
            }
            for e in slice.iter().flatten() {
                expr(e, f);
            }
            if let Some(l) = limit {
                expr(l, f);
            }
            stmt(body, f);
        }
        StmtKind::Try { body, catch, .. } => {
            for s in body.stmts.iter().chain(&catch.stmts) {
                stmt(s, f);
            }
        }
        StmtKind::Return(None)
        | StmtKind::Break
        | StmtKind::Continue
        | StmtKind::Next
        | StmtKind::Empty
        | StmtKind::Error => {}
    }
}

fn path(p: &[TargetStep], walk: Walk, f: &mut dyn FnMut(Node<'_>) -> Walk) {
    if walk == Walk::SkipPath {
        return;
    }
    for st in p {
        if let TargetStep::Index(i) = st {
            expr(i, f);
        }
    }
}

fn all(v: &[Expr], f: &mut dyn FnMut(Node<'_>) -> Walk) {
    for x in v {
        expr(x, f);
    }
}

fn expr(e: &Expr, f: &mut dyn FnMut(Node<'_>) -> Walk) -> Option<bool> {
    let walk = f(Node::Expr(e));
    match walk {
        Walk::Skip => return None,
        Walk::Known(b) => return Some(b),
        Walk::Descend | Walk::SkipPath => {}
    }
    match &e.kind {
        ExprKind::Index { keys: v, .. }
        | ExprKind::Call { args: v, .. }
        | ExprKind::In { keys: v, .. } => all(v, f),
        ExprKind::Target(t) => path(&t.path, walk, f),
        ExprKind::Cast {
            expr: x, path: p, ..
        } => {
            expr(x, f);
            path(p, walk, f);
        }
        ExprKind::GlobalVar { path: p, .. } => path(p, walk, f),
        ExprKind::Unary {
            op: UnaryOp::Not,
            expr: x,
        } => return expr(x, f).map(|b| !b),
        ExprKind::Entry(x) | ExprKind::Defined(x) | ExprKind::Unary { expr: x, .. } => {
            expr(x, f);
        }
        ExprKind::Stat { expr: x, args, .. } => {
            expr(x, f);
            all(args, f);
        }
        ExprKind::Binary {
            op: op @ (BinaryOp::And | BinaryOp::Or),
            lhs,
            rhs,
        } => {
            let and = *op == BinaryOp::And;
            match expr(lhs, f) {
                // `false && x` and `true || x` never evaluate x.
                Some(l) if l != and => return Some(l),
                Some(_) => return expr(rhs, f),
                None => {
                    let r = expr(rhs, f);
                    if r == Some(!and) {
                        return r;
                    }
                }
            }
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            expr(lhs, f);
            expr(rhs, f);
        }
        ExprKind::Ternary { cond, then, els } => match expr(cond, f) {
            Some(true) => return expr(then, f),
            Some(false) => return expr(els, f),
            None => {
                expr(then, f);
                expr(els, f);
            }
        },
        ExprKind::Assign { target, value, .. } => {
            expr(target, f);
            expr(value, f);
        }
        ExprKind::IncDec { target, .. } => {
            expr(target, f);
        }
        ExprKind::HistBucket { hist, index } => {
            expr(hist, f);
            expr(index, f);
        }
        ExprKind::Number(_)
        | ExprKind::String(_)
        | ExprKind::Var(_)
        | ExprKind::ScriptArg { .. }
        | ExprKind::ArgCount
        | ExprKind::ProbeWrite(_)
        | ExprKind::Wildcard
        | ExprKind::Error => {}
    }
    None
}

/// Calls `f` on every expression of the script: probe point conditions (of probes and
/// of alias names and targets), probe and alias bodies, script function bodies.
pub fn walk_script_mut(s: &mut Script, f: &mut impl FnMut(&mut Expr)) {
    let f: &mut dyn FnMut(&mut Expr) = f;
    let conds = |pts: &mut Vec<ProbePoint>, f: &mut dyn FnMut(&mut Expr)| {
        for c in pts.iter_mut().filter_map(|p| p.condition.as_mut()) {
            expr_mut(c, f);
        }
    };
    for item in &mut s.items {
        match item {
            Item::Probe(p) => {
                conds(&mut p.points, f);
                block_mut(&mut p.body, f);
            }
            Item::Alias(a) => {
                conds(&mut a.names, f);
                conds(&mut a.points, f);
                block_mut(&mut a.body, f);
            }
            Item::Function(FunctionDecl {
                body: FunctionBody::Script(b),
                ..
            }) => block_mut(b, f),
            Item::Function(_) | Item::Global(_) | Item::Embedded(_) => {}
        }
    }
}

/// Calls `f` on every expression of the block (all of them, target path indexes
/// included), parents before children; `f` may rewrite the node in place before its
/// children are visited.
pub fn walk_block_mut(b: &mut Block, f: &mut impl FnMut(&mut Expr)) {
    block_mut(b, f);
}

/// Calls `f` on `e` and every expression under it, as [`walk_block_mut`] does.
pub fn walk_expr_mut(e: &mut Expr, f: &mut impl FnMut(&mut Expr)) {
    expr_mut(e, f);
}

fn block_mut(b: &mut Block, f: &mut dyn FnMut(&mut Expr)) {
    for s in &mut b.stmts {
        stmt_mut(s, f);
    }
}

fn stmt_mut(s: &mut Stmt, f: &mut dyn FnMut(&mut Expr)) {
    match &mut s.kind {
        StmtKind::Block(b) => block_mut(b, f),
        StmtKind::Expr(e) | StmtKind::Delete(e) | StmtKind::Return(Some(e)) => expr_mut(e, f),
        StmtKind::If { cond, then, els } => {
            expr_mut(cond, f);
            stmt_mut(then, f);
            if let Some(e) = els {
                stmt_mut(e, f);
            }
        }
        StmtKind::While { cond, body } => {
            expr_mut(cond, f);
            stmt_mut(body, f);
        }
        StmtKind::For {
            init,
            cond,
            step,
            body,
        } => {
            for e in [init, cond, step].into_iter().flatten() {
                expr_mut(e, f);
            }
            stmt_mut(body, f);
        }
        StmtKind::Foreach {
            slice,
            histogram,
            limit,
            body,
            ..
        } => {
            if let Some(h) = histogram {
                expr_mut(h, f);
            }
            for e in slice.iter_mut().flatten() {
                expr_mut(e, f);
            }
            if let Some(l) = limit {
                expr_mut(l, f);
            }
            stmt_mut(body, f);
        }
        StmtKind::Try { body, catch, .. } => {
            block_mut(body, f);
            block_mut(catch, f);
        }
        StmtKind::Return(None)
        | StmtKind::Break
        | StmtKind::Continue
        | StmtKind::Next
        | StmtKind::Empty
        | StmtKind::Error => {}
    }
}

fn path_mut(p: &mut [TargetStep], f: &mut dyn FnMut(&mut Expr)) {
    for st in p {
        if let TargetStep::Index(e) = st {
            expr_mut(e, f);
        }
    }
}

fn expr_mut(e: &mut Expr, f: &mut dyn FnMut(&mut Expr)) {
    f(e);
    match &mut e.kind {
        ExprKind::Index { keys: v, .. }
        | ExprKind::Call { args: v, .. }
        | ExprKind::In { keys: v, .. } => {
            for x in v {
                expr_mut(x, f);
            }
        }
        ExprKind::Target(t) => path_mut(&mut t.path, f),
        ExprKind::Cast { expr, path, .. } => {
            expr_mut(expr, f);
            path_mut(path, f);
        }
        ExprKind::GlobalVar { path, .. } => path_mut(path, f),
        ExprKind::Entry(x) | ExprKind::Defined(x) | ExprKind::Unary { expr: x, .. } => {
            expr_mut(x, f)
        }
        ExprKind::Stat { expr, args, .. } => {
            expr_mut(expr, f);
            for x in args {
                expr_mut(x, f);
            }
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            expr_mut(lhs, f);
            expr_mut(rhs, f);
        }
        ExprKind::Ternary { cond, then, els } => {
            expr_mut(cond, f);
            expr_mut(then, f);
            expr_mut(els, f);
        }
        ExprKind::Assign { target, value, .. } => {
            expr_mut(target, f);
            expr_mut(value, f);
        }
        ExprKind::IncDec { target, .. } => expr_mut(target, f),
        ExprKind::HistBucket { hist, index } => {
            expr_mut(hist, f);
            expr_mut(index, f);
        }
        ExprKind::Number(_)
        | ExprKind::String(_)
        | ExprKind::Var(_)
        | ExprKind::ScriptArg { .. }
        | ExprKind::ArgCount
        | ExprKind::ProbeWrite(_)
        | ExprKind::Wildcard
        | ExprKind::Error => {}
    }
}

#[cfg(test)]
mod tests;
