//! Tests of the AST walker: every node visited once in order, and the `Walk` controls.

use std::collections::BTreeMap;

use super::*;
use crate::ast::*;
use crate::{parse, SourceMap};

/// A script using every statement and expression kind (the `Error` kinds excepted:
/// those come from bad input, see `error_nodes_are_visited`).
const EVERY_CONSTRUCT: &str = r#"
global a, h
probe begin {
    { x = 1; y = "s"; }
    if (x) next; else ;
    while (x < $1 + @1 + $#) break;
    for (i = 0; i < 3; i++) continue;
    foreach ([k, v] in a[1, *] limit 5) print(k);
    foreach ([b] in @hist_log(h)) print(b);
    delete a[*, 2];
    try { error("e") } catch (m) { print(m) }
    z = [1, 2] in a ? -x : ~x;
    z = @hist_linear(h, 0, 10, 1)[2];
    z = @count(h) && !@defined($p);
    z += @probewrite(x);
}
probe process("t").function("f") {
    y = $p->q[$i][0] . @var("g")[$j]->k;
    h <<< @cast($p, "struct s")->r[$k] + &$m + @entry($n);
}
function fn(n) { return n; }
"#;

fn parse_ok(text: &str) -> Script {
    let mut sources = SourceMap::default();
    let f = sources.add("t.stp", text);
    let (s, d) = parse(&sources, f, &["7".to_string()]);
    assert!(d.is_empty(), "unexpected diagnostics: {d:?}");
    s
}

fn expr_kind(e: &Expr) -> &'static str {
    // Exhaustive on purpose: a new variant does not compile until it is named here and
    // used in EVERY_CONSTRUCT (EXPR_KINDS counts the names).
    match &e.kind {
        ExprKind::Number(_) => "Number",
        ExprKind::String(_) => "String",
        ExprKind::Var(_) => "Var",
        ExprKind::ScriptArg { .. } => "ScriptArg",
        ExprKind::ArgCount => "ArgCount",
        ExprKind::Index { .. } => "Index",
        ExprKind::Call { .. } => "Call",
        ExprKind::Target(_) => "Target",
        ExprKind::Cast { .. } => "Cast",
        ExprKind::GlobalVar { .. } => "GlobalVar",
        ExprKind::Entry(_) => "Entry",
        ExprKind::Defined(_) => "Defined",
        ExprKind::ProbeWrite(_) => "ProbeWrite",
        ExprKind::Stat { .. } => "Stat",
        ExprKind::Unary { .. } => "Unary",
        ExprKind::Binary { .. } => "Binary",
        ExprKind::Ternary { .. } => "Ternary",
        ExprKind::Assign { .. } => "Assign",
        ExprKind::IncDec { .. } => "IncDec",
        ExprKind::In { .. } => "In",
        ExprKind::HistBucket { .. } => "HistBucket",
        ExprKind::Wildcard => "Wildcard",
        ExprKind::Error => "Error",
    }
}
const EXPR_KINDS: usize = 23;

fn stmt_kind(s: &Stmt) -> &'static str {
    match &s.kind {
        StmtKind::Block(_) => "Block",
        StmtKind::Expr(_) => "Expr",
        StmtKind::If { .. } => "If",
        StmtKind::While { .. } => "While",
        StmtKind::For { .. } => "For",
        StmtKind::Foreach { .. } => "Foreach",
        StmtKind::Break => "Break",
        StmtKind::Continue => "Continue",
        StmtKind::Next => "Next",
        StmtKind::Return(_) => "Return",
        StmtKind::Delete(_) => "Delete",
        StmtKind::Try { .. } => "Try",
        StmtKind::Empty => "Empty",
        StmtKind::Error => "Error",
    }
}
const STMT_KINDS: usize = 14;

/// The bodies of the script's probes and functions.
fn bodies(s: &Script) -> Vec<&Block> {
    s.items
        .iter()
        .filter_map(|i| match i {
            Item::Probe(p) => Some(&p.body),
            Item::Function(FunctionDecl {
                body: FunctionBody::Script(b),
                ..
            }) => Some(b),
            _ => None,
        })
        .collect()
}

/// How often `needle` occurs in the script's debug dump: an independent count of the
/// nodes in the tree, whatever their variant.
fn dump_count(s: &Script, needle: &str) -> usize {
    format!("{s:?}").matches(needle).count()
}

#[test]
fn every_node_is_visited_once() {
    let s = parse_ok(EVERY_CONSTRUCT);
    let mut exprs: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stmts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids = Vec::new();
    for b in bodies(&s) {
        walk_nodes(&b.stmts, &mut |n| {
            match n {
                Node::Expr(e) => {
                    *exprs.entry(expr_kind(e)).or_default() += 1;
                    ids.push(e.id);
                }
                Node::Stmt(s) => *stmts.entry(stmt_kind(s)).or_default() += 1,
            }
            Walk::Descend
        });
    }
    // Every variant but the error placeholders occurs.
    assert_eq!(exprs.len(), EXPR_KINDS - 1, "{exprs:?}");
    assert_eq!(stmts.len(), STMT_KINDS - 1, "{stmts:?}");
    // Every node once: as many as the tree holds, no id twice.
    assert_eq!(ids.len(), dump_count(&s, "Expr { id: ExprId("));
    assert_eq!(
        stmts.values().sum::<usize>(),
        dump_count(&s, "Stmt { kind: ")
    );
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
    // Counted by hand from EVERY_CONSTRUCT, so that a walker visiting a node twice and
    // skipping another would still fail.
    assert_eq!(exprs["Target"], 8);
    assert_eq!(exprs["Wildcard"], 1);
    assert_eq!(stmts["Block"], 1);
    assert_eq!(stmts["Expr"], 12);

    // The expression-only walk sees the same expressions, in the same order.
    let mut again = Vec::new();
    for b in bodies(&s) {
        walk_block(b, &mut |e| {
            again.push(e.id);
            Walk::Descend
        });
    }
    again.sort();
    assert_eq!(again, ids);

    // The mutable walk sees them too, plus nothing else.
    let mut m = s.clone();
    let mut seen = Vec::new();
    walk_script_mut(&mut m, &mut |e| seen.push(e.id));
    seen.sort();
    assert_eq!(seen, ids);
}

#[test]
fn error_nodes_are_visited() {
    // The parser makes few error placeholders (it drops bad items), so build them.
    let error = Expr {
        id: ExprId(7),
        kind: ExprKind::Error,
        span: Span::default(),
    };
    let stmt = |kind| Stmt {
        kind,
        span: Span::default(),
    };
    let stmts = [stmt(StmtKind::Error), stmt(StmtKind::Expr(error))];
    let mut kinds = Vec::new();
    walk_nodes(&stmts, &mut |n| {
        kinds.push(match n {
            Node::Expr(e) => expr_kind(e),
            Node::Stmt(s) => stmt_kind(s),
        });
        Walk::Descend
    });
    assert_eq!(kinds, ["Error", "Expr", "Error"]);
}

#[test]
fn preorder_source_order() {
    let s = parse_ok(
        "probe begin { if (a) b = c + d; else e; for (f; g; h) i; \
         foreach (k in x[l] limit m) n; q = @cast(r, \"t\")[s] }",
    );
    let mut names = String::new();
    walk_block(bodies(&s)[0], &mut |e| {
        names.push_str(match &e.kind {
            ExprKind::Var(n) => n,
            ExprKind::Assign { .. } => "=",
            ExprKind::Binary { .. } => "+",
            ExprKind::Cast { .. } => "@",
            _ => "?",
        });
        Walk::Descend
    });
    assert_eq!(names, "a=b+cdefghilmn=q@rs");
}

#[test]
fn skip_and_skip_path() {
    let s = parse_ok(
        "probe begin { x = f(g(a), b) + $t[c]->m[d] + @cast(e, \"t\")[h] + @var(\"v\")[i] }",
    );
    let vars = |walk: &dyn Fn(&Expr) -> Walk| {
        let mut v = String::new();
        walk_block(bodies(&s)[0], &mut |e| {
            if let ExprKind::Var(n) = &e.kind {
                v.push_str(n);
            }
            walk(e)
        });
        v
    };
    assert_eq!(vars(&|_| Walk::Descend), "xabcdehi");
    // Skip leaves out the children of `g(a)` and the whole `@cast`.
    assert_eq!(
        vars(&|e| match &e.kind {
            ExprKind::Call { name, .. } if name == "g" => Walk::Skip,
            ExprKind::Cast { .. } => Walk::Skip,
            _ => Walk::Descend,
        }),
        "xbcdi"
    );
    // SkipPath keeps `@cast`'s operand and acts as Descend on a call.
    assert_eq!(vars(&|_| Walk::SkipPath), "xabe");
}

#[test]
fn known_truth_elides_dead_branches() {
    // `@defined` answers: $a defined, $b not.
    let s = parse_ok(
        "probe begin { \
         if (@defined($a)) a1; else a2; \
         if (!@defined($a)) b1; else b2; \
         if (@defined($b) && c0) c1; else c2; \
         if (@defined($a) || d0) d1; \
         if (d2 || @defined($a)) d3; else d4; \
         while (@defined($b)) e1; \
         x = @defined($b) ? f1 : f2; \
         if (g0) g1; else g2; }",
    );
    let mut v = Vec::new();
    walk_block(bodies(&s)[0], &mut |e| match &e.kind {
        ExprKind::Defined(x) => {
            Walk::Known(matches!(&x.kind, ExprKind::Target(t) if t.name == "a"))
        }
        ExprKind::Var(n) => {
            v.push(n.clone());
            Walk::Descend
        }
        _ => Walk::Descend,
    });
    assert_eq!(
        v.join(" "),
        "a1 b2 c2 d1 d2 d3 x f2 g0 g1 g2",
        "c0 is never evaluated after a false &&; d0 after a true ||"
    );
}

#[test]
fn statement_skip_and_renumbering() {
    let mut s = parse_ok("probe begin { if (a) { b } c; foreach (k in x[d]) e }");
    let mut v = String::new();
    walk_nodes(&bodies(&s)[0].stmts, &mut |n| match n {
        Node::Stmt(st) if matches!(st.kind, StmtKind::If { .. } | StmtKind::Foreach { .. }) => {
            Walk::Skip
        }
        Node::Expr(Expr {
            kind: ExprKind::Var(n),
            ..
        }) => {
            v.push_str(n);
            Walk::Descend
        }
        _ => Walk::Descend,
    });
    assert_eq!(v, "c");
    // A rewrite in place reaches every expression.
    let mut next = 100;
    walk_script_mut(&mut s, &mut |e| {
        e.id = ExprId(next);
        next += 1;
    });
    let mut ids = Vec::new();
    walk_block(bodies(&s)[0], &mut |e| {
        ids.push(e.id.0);
        Walk::Descend
    });
    assert_eq!(ids, (100..next).collect::<Vec<_>>());
}
