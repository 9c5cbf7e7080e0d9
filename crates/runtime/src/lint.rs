//! stap's elaboration warnings about unused code: unused functions and variables,
//! never-assigned variables, dead assignments and side-effect-free statements.
//!
//! stap reports these while its optimiser (`semantic_pass_opt1..4` in `elaborate.cxx`)
//! removes the code; snaptap runs the code unchanged (it is harmless) but prints the
//! same warnings in the same order: unused functions (by name), never-assigned locals
//! and globals and unused globals, dead assignments, side-effect-free statements, and
//! finally the locals that the removed assignments left unused. Only code in user files
//! (files holding a `probe`) is reported, as stap skips tapsets. The model is
//! deliberately conservative: a statement counts as side-effect-free only when it holds
//! no call, assignment or target access at all.

use std::collections::{BTreeMap, HashMap, HashSet};

use script_syntax::ast::{
    AssignOp, Block, Expr, ExprKind, FileId, FunctionBody, FunctionDecl, Item, ProbeDecl, Script,
    Span, Stmt, StmtKind,
};
use script_syntax::{Diagnostic, SourceMap};

/// What one body does with one variable.
#[derive(Default)]
struct VarUse {
    /// First occurrence (stap's declaration token of an implicit local).
    first: Option<Span>,
    read: bool,
    /// Written by anything (assignment, `foreach`, `catch`, `++`, ...).
    written: bool,
    /// Written by something other than a plain `=` to the bare name.
    written_otherwise: bool,
    /// Spans of the `=` operators of plain assignments to the bare name.
    plain_assigns: Vec<Span>,
}

/// Variable use inside one probe or function body.
struct Body<'a> {
    /// Names that are locals here (everything not global, plus shadowing parameters).
    params: HashSet<&'a str>,
    locals: Vec<String>,
    uses: HashMap<String, VarUse>,
    /// Expression statements, for the side-effect-free check after dead assignments go.
    expr_stmts: Vec<&'a Stmt>,
    calls: Vec<&'a str>,
}

struct Lint<'a> {
    sources: &'a SourceMap,
    globals: &'a HashSet<&'a str>,
    /// Global reads and writes, over every reachable body.
    g_read: HashSet<String>,
    g_written: HashSet<String>,
}

impl<'a> Lint<'a> {
    fn is_local(&self, b: &Body<'_>, name: &str) -> bool {
        b.params.contains(name) || !self.globals.contains(name)
    }

    fn note_local(b: &mut Body<'_>, name: &str, span: Span) {
        if !b.uses.contains_key(name) {
            b.locals.push(name.to_string());
        }
        let u = b.uses.entry(name.to_string()).or_default();
        if u.first.is_none() {
            u.first = Some(span);
        }
    }

    fn read(&mut self, b: &mut Body<'_>, name: &str, span: Span) {
        if self.is_local(b, name) {
            Self::note_local(b, name, span);
            if let Some(u) = b.uses.get_mut(name) {
                u.read = true;
            }
        } else {
            self.g_read.insert(name.to_string());
        }
    }

    fn write(&mut self, b: &mut Body<'_>, name: &str, span: Span, plain_op: Option<Span>) {
        if self.is_local(b, name) {
            Self::note_local(b, name, span);
            if let Some(u) = b.uses.get_mut(name) {
                u.written = true;
                match plain_op {
                    Some(op) => u.plain_assigns.push(op),
                    None => u.written_otherwise = true,
                }
            }
        } else {
            self.g_written.insert(name.to_string());
        }
    }

    /// The span of the operator text `op` between two operands (stap's token for an
    /// assignment), found in the source; the left operand's end if it cannot be found.
    fn op_span(&self, lhs: Span, rhs: Span, op: &str) -> Span {
        let gap = Span {
            file: lhs.file,
            start: lhs.end,
            end: rhs.start.max(lhs.end),
        };
        let text = self.sources.snippet(gap);
        let at = text.find(op).unwrap_or(0) as u32;
        Span {
            file: lhs.file,
            start: lhs.end + at,
            end: lhs.end + at + op.len() as u32,
        }
    }

    fn expr(&mut self, b: &mut Body<'a>, e: &'a Expr) {
        match &e.kind {
            ExprKind::Var(n) => self.read(b, n, e.span),
            ExprKind::Index { array, keys } => {
                self.read(b, array, e.span);
                for k in keys {
                    self.expr(b, k);
                }
            }
            ExprKind::In { keys, array } => {
                for k in keys {
                    self.expr(b, k);
                }
                self.read(b, array, e.span);
            }
            ExprKind::Call { name, args } => {
                b.calls.push(name.as_str());
                for a in args {
                    self.expr(b, a);
                }
            }
            ExprKind::Assign { op, target, value } => {
                match (&target.kind, op) {
                    (ExprKind::Var(n), AssignOp::Set) => {
                        let ops = self.op_span(target.span, value.span, "=");
                        self.write(b, n, target.span, Some(ops));
                    }
                    (ExprKind::Var(n), AssignOp::Aggregate) => {
                        self.write(b, n, target.span, None);
                    }
                    (ExprKind::Var(n), AssignOp::Compound(_)) => {
                        self.read(b, n, target.span);
                        self.write(b, n, target.span, None);
                    }
                    (ExprKind::Index { array, keys }, op) => {
                        if !matches!(op, AssignOp::Set | AssignOp::Aggregate) {
                            self.read(b, array, target.span);
                        }
                        self.write(b, array, target.span, None);
                        for k in keys {
                            self.expr(b, k);
                        }
                    }
                    _ => self.expr(b, target),
                }
                self.expr(b, value);
            }
            ExprKind::IncDec { target, .. } => match &target.kind {
                ExprKind::Var(n) => {
                    self.read(b, n, target.span);
                    self.write(b, n, target.span, None);
                }
                ExprKind::Index { array, keys } => {
                    self.read(b, array, target.span);
                    self.write(b, array, target.span, None);
                    for k in keys {
                        self.expr(b, k);
                    }
                }
                _ => self.expr(b, target),
            },
            ExprKind::Stat { expr, args, .. } => {
                self.expr(b, expr);
                for a in args {
                    self.expr(b, a);
                }
            }
            ExprKind::Unary { expr, .. } | ExprKind::Entry(expr) | ExprKind::Defined(expr) => {
                self.expr(b, expr)
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(b, lhs);
                self.expr(b, rhs);
            }
            ExprKind::Ternary { cond, then, els } => {
                self.expr(b, cond);
                self.expr(b, then);
                self.expr(b, els);
            }
            ExprKind::Cast { expr, .. } => self.expr(b, expr),
            ExprKind::Number(_)
            | ExprKind::String(_)
            | ExprKind::ScriptArg { .. }
            | ExprKind::ArgCount
            | ExprKind::Target(_)
            | ExprKind::GlobalVar { .. }
            | ExprKind::ProbeWrite(_)
            | ExprKind::Wildcard
            | ExprKind::Error => {}
            ExprKind::HistBucket { hist, index } => {
                self.expr(b, hist);
                self.expr(b, index);
            }
        }
    }

    fn stmt(&mut self, b: &mut Body<'a>, s: &'a Stmt) {
        match &s.kind {
            StmtKind::Block(bl) => self.block(b, bl),
            StmtKind::Expr(e) => {
                b.expr_stmts.push(s);
                self.expr(b, e);
            }
            StmtKind::If { cond, then, els } => {
                self.expr(b, cond);
                self.stmt(b, then);
                if let Some(e) = els {
                    self.stmt(b, e);
                }
            }
            StmtKind::While { cond, body } => {
                self.expr(b, cond);
                self.stmt(b, body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                for e in [init, cond, step].into_iter().flatten() {
                    self.expr(b, e);
                }
                self.stmt(b, body);
            }
            StmtKind::Foreach {
                keys,
                value,
                array,
                slice,
                histogram,
                limit,
                body,
                ..
            } => {
                if let Some(h) = histogram {
                    self.expr(b, h);
                }
                for e in slice.iter().flatten() {
                    self.expr(b, e);
                }
                for k in keys {
                    self.write(b, k, s.span, None);
                }
                if let Some(v) = value {
                    self.write(b, v, s.span, None);
                }
                if histogram.is_none() {
                    self.read(b, array, s.span);
                }
                if let Some(l) = limit {
                    self.expr(b, l);
                }
                self.stmt(b, body);
            }
            StmtKind::Return(Some(e)) => self.expr(b, e),
            StmtKind::Delete(e) => match &e.kind {
                ExprKind::Var(n) => self.write(b, n, e.span, None),
                ExprKind::Index { array, keys } => {
                    self.write(b, array, e.span, None);
                    for k in keys {
                        self.expr(b, k);
                    }
                }
                _ => self.expr(b, e),
            },
            StmtKind::Try { body, var, catch } => {
                self.block(b, body);
                if let Some(v) = var {
                    // An unread catch variable is dropped silently by stap.
                    if self.is_local(b, v) {
                        Self::note_local(b, v, s.span);
                        if let Some(u) = b.uses.get_mut(v.as_str()) {
                            u.written = true;
                            u.written_otherwise = true;
                            u.read = true;
                        }
                    }
                }
                self.block(b, catch);
            }
            StmtKind::Return(None)
            | StmtKind::Break
            | StmtKind::Continue
            | StmtKind::Next
            | StmtKind::Empty
            | StmtKind::Error => {}
        }
    }

    fn block(&mut self, b: &mut Body<'a>, bl: &'a Block) {
        for s in &bl.stmts {
            self.stmt(b, s);
        }
    }
}

/// The expression left after stap's dead-assignment removal: `x = EXPR` with `x`
/// never read becomes `EXPR`, repeatedly.
fn after_elision<'e>(e: &'e Expr, dead: &dyn Fn(&str) -> bool) -> &'e Expr {
    match &e.kind {
        ExprKind::Assign {
            op: AssignOp::Set,
            target,
            value,
        } if matches!(&target.kind, ExprKind::Var(n) if dead(n)) => after_elision(value, dead),
        _ => e,
    }
}

/// Whether evaluating `e` can have no effect (conservatively: no calls, assignments,
/// increments or target accesses anywhere in it).
fn side_effect_free(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Number(_)
        | ExprKind::String(_)
        | ExprKind::Wildcard
        | ExprKind::Var(_)
        | ExprKind::ScriptArg { .. }
        | ExprKind::ArgCount => true,
        ExprKind::Index { keys, .. } | ExprKind::In { keys, .. } => {
            keys.iter().all(side_effect_free)
        }
        ExprKind::Unary { expr, .. } => side_effect_free(expr),
        ExprKind::Binary { lhs, rhs, .. } => side_effect_free(lhs) && side_effect_free(rhs),
        ExprKind::Ternary { cond, then, els } => {
            side_effect_free(cond) && side_effect_free(then) && side_effect_free(els)
        }
        _ => false,
    }
}

/// stap's `levenshtein_suggest(name, set, 5)`: the five nearest names by edit distance
/// (ties in name order), formatted as ` (similar: a, b)`; empty when there are none.
pub(crate) fn similar(name: &str, candidates: &[&str]) -> String {
    similar_list(name, candidates, false)
}

/// [`similar`] as stap 4.8 computes it for a never-assigned global: the global itself is
/// among the candidates (`(similar: never, hits)` for `never`).
pub(crate) fn similar_with_self(name: &str, candidates: &[&str]) -> String {
    similar_list(name, candidates, true)
}

fn similar_list(name: &str, candidates: &[&str], with_self: bool) -> String {
    let mut scored: Vec<(usize, &str)> = Vec::new();
    for c in candidates {
        if !c.is_empty() && (with_self || *c != name) && !scored.iter().any(|(_, s)| s == c) {
            scored.push((crate::compile::edit_distance(name, c), *c));
        }
    }
    // Nearest first; equal distances keep the candidates' order.
    scored.sort_by_key(|(d, _)| *d);
    if scored.is_empty() {
        return String::new();
    }
    let list: Vec<&str> = scored.iter().take(5).map(|(_, c)| *c).collect();
    format!(" (similar: {})", list.join(", "))
}

/// The span of the first whole-word occurrence of `word` inside `within` (statements
/// name their variables as plain strings; diagnostics point at the name itself).
pub(crate) fn word_span(sources: &SourceMap, within: Span, word: &str) -> Span {
    if word.is_empty() {
        return within;
    }
    let text = sources.snippet(within);
    let bytes = text.as_bytes();
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'@';
    let mut from = 0;
    while let Some(i) = text.get(from..).and_then(|t| t.find(word)) {
        let at = from + i;
        let end = at + word.len();
        let before_ok = at == 0 || !is_id(bytes[at - 1]);
        let after_ok = end >= bytes.len() || !is_id(bytes[end]);
        if before_ok && after_ok {
            return Span {
                file: within.file,
                start: within.start + at as u32,
                end: within.start + end as u32,
            };
        }
        from = end;
    }
    within
}

/// The span of `word` after the first whole word `after` inside `within` (the array
/// of `foreach (... in ARRAY)`).
pub(crate) fn word_after(sources: &SourceMap, within: Span, after: &str, word: &str) -> Span {
    let kw = word_span(sources, within, after);
    if kw == within {
        return word_span(sources, within, word);
    }
    let rest = Span {
        start: kw.end,
        ..within
    };
    let found = word_span(sources, rest, word);
    if found == rest {
        within
    } else {
        found
    }
}

fn warn(message: String, span: Span) -> Diagnostic {
    Diagnostic::warning("warning", message, span)
}

/// stap's warnings for `script` (already alias-expanded), in stap's order.
/// Whether statement `s` is nothing once stap's optimiser has removed dead assignments
/// (`dead` locals), side-effect-free expressions and empty control structures.
fn elided_stmt(s: &Stmt, dead: &dyn Fn(&str) -> bool) -> bool {
    let pure = |e: &Expr| side_effect_free(after_elision(e, dead));
    match &s.kind {
        StmtKind::Empty => true,
        StmtKind::Block(b) => b.stmts.iter().all(|s| elided_stmt(s, dead)),
        StmtKind::Expr(e) => pure(e),
        StmtKind::If { cond, then, els } => {
            pure(cond)
                && elided_stmt(then, dead)
                && els.as_ref().is_none_or(|e| elided_stmt(e, dead))
        }
        StmtKind::While { cond, body } => pure(cond) && elided_stmt(body, dead),
        StmtKind::For {
            init,
            cond,
            step,
            body,
        } => [init, cond, step].into_iter().flatten().all(pure) && elided_stmt(body, dead),
        StmtKind::Foreach { limit, body, .. } => {
            limit.as_ref().is_none_or(pure) && elided_stmt(body, dead)
        }
        _ => false,
    }
}

/// stap's elaboration warnings, whether every probe of the script is empty once
/// optimised (stap then stops with "no probes found"), and how many warnings were left
/// out as similar to one shown (same message).
pub(crate) fn lint(script: &Script, sources: &SourceMap) -> (Vec<Diagnostic>, bool, usize) {
    let user: HashSet<FileId> = script
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Probe(p) => Some(p.span.file),
            _ => None,
        })
        .collect();
    let is_user = |s: Span| user.contains(&s.file);
    let mut gdecls: Vec<(&str, Span, bool)> = Vec::new();
    let mut funcs: BTreeMap<&str, &FunctionDecl> = BTreeMap::new();
    for item in &script.items {
        match item {
            Item::Global(g) => gdecls.push((g.name.as_str(), g.span, g.init.is_some())),
            Item::Function(f) => {
                funcs.insert(f.name.as_str(), f);
            }
            _ => {}
        }
    }
    // stap keeps its globals in the order symbol resolution first meets them (functions,
    // then probes); similar-name lists follow that order among equal distances.
    let mut first_use: Vec<String> = Vec::new();
    {
        let mut note = |n: &str| {
            if !first_use.iter().any(|x| x == n) {
                first_use.push(n.to_string());
            }
        };
        for item in &script.items {
            if let Item::Function(f) = item {
                if let FunctionBody::Script(b) = &f.body {
                    crate::compile::names_in_order(&b.stmts, &mut note);
                }
            }
        }
        for item in &script.items {
            if let Item::Probe(p) = item {
                crate::compile::names_in_order(&p.body.stmts, &mut note);
            }
        }
    }
    gdecls.sort_by_key(|g| {
        first_use
            .iter()
            .position(|n| n == g.0)
            .unwrap_or(usize::MAX)
    });
    let globals: HashSet<&str> = gdecls.iter().map(|g| g.0).collect();
    let mut lint = Lint {
        sources,
        globals: &globals,
        g_read: HashSet::new(),
        g_written: HashSet::new(),
    };
    let new_body = |params: HashSet<&'static str>| Body {
        params,
        locals: Vec::new(),
        uses: HashMap::new(),
        expr_stmts: Vec::new(),
        calls: Vec::new(),
    };
    // Probe bodies (with their conditions), then every function reachable from them.
    let mut probe_bodies = Vec::new();
    for item in &script.items {
        if let Item::Probe(p) = item {
            let mut b = new_body(HashSet::new());
            for pt in &p.points {
                if let Some(c) = &pt.condition {
                    lint.expr(&mut b, c);
                }
            }
            lint.block(&mut b, &p.body);
            probe_bodies.push(b);
        }
    }
    let mut reached: BTreeMap<&str, Body<'_>> = BTreeMap::new();
    let mut work: Vec<&str> = probe_bodies
        .iter()
        .flat_map(|b| b.calls.iter().copied())
        .collect();
    while let Some(name) = work.pop() {
        if reached.contains_key(name) {
            continue;
        }
        let Some(f) = funcs.get(name) else { continue };
        let mut b = Body {
            params: f.params.iter().map(|p| p.name.as_str()).collect(),
            locals: Vec::new(),
            uses: HashMap::new(),
            expr_stmts: Vec::new(),
            calls: Vec::new(),
        };
        if let FunctionBody::Script(bl) = &f.body {
            lint.block(&mut b, bl);
        }
        work.extend(b.calls.iter().copied());
        reached.insert(name, b);
    }

    let mut out = Vec::new();
    // opt1 (unused functions) and the elision of unused variables are silent in stap 4.8
    // at the default verbosity: `stap -p2` prints no warning for them.
    // opt2, first iteration: never-assigned locals, then globals.
    // Globals nobody uses are already elided when stap lists similar names.
    let gnames: Vec<&str> = gdecls
        .iter()
        .map(|g| g.0)
        .filter(|g| lint.g_read.contains(*g) || lint.g_written.contains(*g))
        .collect();
    let reached_bodies: Vec<(&str, &Body<'_>)> = reached.iter().map(|(n, b)| (*n, b)).collect();
    let all_bodies: Vec<&Body<'_>> = probe_bodies
        .iter()
        .chain(reached_bodies.iter().map(|(_, b)| *b))
        .collect();
    for b in &all_bodies {
        for l in &b.locals {
            let u = &b.uses[l];
            if u.read && !u.written && !b.params.contains(l.as_str()) {
                let Some(at) = u.first.filter(|s| is_user(*s)) else {
                    continue;
                };
                // Locals and parameters alphabetically, then globals, as stap lists them.
                let mut cands: Vec<&str> = b.locals.iter().map(|s| s.as_str()).collect();
                cands.extend(b.params.iter().copied());
                cands.sort_unstable();
                cands.extend(gnames.iter().copied());
                out.push(warn(
                    format!("never-assigned local variable '{l}'{}", similar(l, &cands)),
                    at,
                ));
            }
        }
    }
    for (name, span, init) in &gdecls {
        if !is_user(*span) {
            continue;
        }
        let read = lint.g_read.contains(*name);
        let written = lint.g_written.contains(*name);
        if read && !written && !init {
            out.push(warn(
                format!(
                    "never-assigned global variable '{name}'{}",
                    similar_with_self(name, &gnames)
                ),
                *span,
            ));
        }
    }
    // opt3: assignments to locals nobody reads.
    let dead_in = |b: &Body<'_>, n: &str| -> bool { !globals.contains(n) || b.params.contains(n) };
    for b in &all_bodies {
        let mut ops: Vec<Span> = Vec::new();
        for l in &b.locals {
            let u = &b.uses[l];
            if !u.read && dead_in(b, l) {
                ops.extend(u.plain_assigns.iter().copied().filter(|s| is_user(*s)));
            }
        }
        ops.sort_by_key(|s| (s.file.0, s.start));
        for op in ops {
            let name = b
                .locals
                .iter()
                .find(|l| b.uses[l.as_str()].plain_assigns.contains(&op))
                .cloned()
                .unwrap_or_default();
            out.push(warn(format!("Eliding assignment to '{name}'"), op));
        }
    }
    // opt4: statements without effect, counting what the removed assignments left.
    for b in &all_bodies {
        let dead = |n: &str| b.uses.get(n).is_some_and(|u| !u.read) && dead_in(b, n);
        for s in &b.expr_stmts {
            if let StmtKind::Expr(e) = &s.kind {
                if is_user(s.span) && side_effect_free(after_elision(e, &dead)) {
                    out.push(warn(
                        "Eliding side-effect-free expression ".to_string(),
                        s.span,
                    ));
                }
            }
        }
    }
    // Probes left with nothing to do are elided (stap names the first point's first
    // component, at the `probe` keyword).
    let probes: Vec<&ProbeDecl> = script
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Probe(p) => Some(p),
            _ => None,
        })
        .collect();
    let mut all_elided = !probes.is_empty();
    for (p, b) in probes.iter().zip(&probe_bodies) {
        let dead = |n: &str| b.uses.get(n).is_some_and(|u| !u.read) && dead_in(b, n);
        let cond = p.points.iter().any(|pt| pt.condition.is_some());
        if !cond && p.body.stmts.iter().all(|s| elided_stmt(s, &dead)) {
            if is_user(p.span) {
                let name = p
                    .points
                    .first()
                    .and_then(|pt| pt.components.first())
                    .map_or("", |c| c.name.as_str());
                let at = Span {
                    file: p.span.file,
                    start: p.span.start,
                    end: p.span.start + 5,
                };
                out.push(warn(format!("Probe '{name}' has been elided"), at));
            }
        } else {
            all_elided = false;
        }
    }
    // Alias expansion and conditional probe points copy a user's body into several
    // handlers; stap prints a repeated warning once.
    let mut seen = HashSet::new();
    out.retain(|d| {
        let at = d.labels.first().map(|l| (l.span.file.0, l.span.start));
        seen.insert((d.message.clone(), at))
    });
    // stap shows one warning per message and counts the similar ones it suppresses.
    let mut shown = HashSet::new();
    let before = out.len();
    out.retain(|d| shown.insert(d.message.clone()));
    (out, all_elided, before - shown.len())
}
