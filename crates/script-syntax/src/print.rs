//! Prints a [`Script`] back as normalised SystemTap text (`snaptap -p1`).
//!
//! The output parses back to a script that prints identically: parentheses are added
//! exactly where SystemTap's precedence ladder needs them, strings are re-escaped, and
//! every statement is terminated so that optional semicolons cannot change meaning.

use std::fmt::Write;

use crate::ast::*;
use crate::diag::SourceMap;
use crate::parser::PREC_IN;

/// Prints the script; embedded C shows as a placeholder since the AST only has spans.
pub fn print_script(s: &Script) -> String {
    Printer {
        out: String::new(),
        indent: 0,
        sources: None,
    }
    .script(s)
}

/// Prints the script with the embedded C blocks copied from their sources.
pub fn print_script_with_sources(s: &Script, sources: &SourceMap) -> String {
    Printer {
        out: String::new(),
        indent: 0,
        sources: Some(sources),
    }
    .script(s)
}

/// Prints one expression.
pub fn print_expr(e: &Expr) -> String {
    let mut p = Printer {
        out: String::new(),
        indent: 0,
        sources: None,
    };
    p.expr(e, 0);
    p.out
}

/// Quotes a string with SystemTap escapes.
pub fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(o, "\\{:03o}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

struct Printer<'a> {
    out: String,
    indent: usize,
    sources: Option<&'a SourceMap>,
}

/// The name of a statistics extractor as written in scripts.
pub(crate) fn stat_name(op: StatOp) -> &'static str {
    match op {
        StatOp::Count => "@count",
        StatOp::Sum => "@sum",
        StatOp::Min => "@min",
        StatOp::Max => "@max",
        StatOp::Avg => "@avg",
        StatOp::Variance => "@variance",
        StatOp::HistLog => "@hist_log",
        StatOp::HistLinear => "@hist_linear",
    }
}

/// What this printer and `stap -p1`'s (in `stap_print`) write alike. The two differ in
/// layout, terminators and parentheses, so each supplies its output and how it prints
/// an expression standing alone (as an argument, index or `foreach` part); the pieces
/// below are spelled the same in both.
pub(crate) trait Emit {
    /// The text printed so far.
    fn out(&mut self) -> &mut String;

    /// Prints an expression where no parentheses are needed around it.
    fn whole_expr(&mut self, e: &Expr);

    /// A target path: `->name` and `[index]` steps.
    fn steps(&mut self, path: &[TargetStep]) {
        for s in path {
            match s {
                TargetStep::Member(m, _) => {
                    self.out().push_str("->");
                    self.out().push_str(m);
                }
                TargetStep::Index(e) => {
                    self.out().push('[');
                    self.whole_expr(e);
                    self.out().push(']');
                }
            }
        }
    }

    /// The inside of `foreach (...)`: `v = [k1-, k2] in a[e, *] @sum+ limit n`.
    /// `bracket` puts the brackets around a single key too (stap always does).
    fn foreach_head(&mut self, s: &StmtKind, bracket: bool) {
        let StmtKind::Foreach {
            keys,
            value,
            array,
            slice,
            histogram,
            sort,
            limit,
            ..
        } = s
        else {
            return;
        };
        let mark = |d: bool| if d { "-" } else { "+" };
        if let Some(v) = value {
            let _ = write!(self.out(), "{v} = ");
        }
        let bracket = bracket || keys.len() != 1;
        if bracket {
            self.out().push('[');
        }
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                self.out().push_str(", ");
            }
            self.out().push_str(k);
            if let Some(sp) = sort {
                if sp.key == Some(i) {
                    self.out().push_str(mark(sp.descending));
                }
            }
        }
        if bracket {
            self.out().push(']');
        }
        self.out().push_str(" in ");
        match histogram {
            Some(h) => self.whole_expr(h),
            None => self.out().push_str(array),
        }
        if !slice.is_empty() {
            self.out().push('[');
            for (i, k) in slice.iter().enumerate() {
                if i > 0 {
                    self.out().push_str(", ");
                }
                match k {
                    Some(e) => self.whole_expr(e),
                    None => self.out().push('*'),
                }
            }
            self.out().push(']');
        }
        if let Some(sp) = sort {
            if sp.key.is_none() {
                if let Some(a) = sp.aggregate {
                    let _ = write!(self.out(), " {}", stat_name(a));
                }
                self.out().push_str(mark(sp.descending));
            }
        }
        if let Some(l) = limit {
            self.out().push_str(" limit ");
            self.whole_expr(l);
        }
    }
}

impl Emit for Printer<'_> {
    fn out(&mut self) -> &mut String {
        &mut self.out
    }

    fn whole_expr(&mut self, e: &Expr) {
        self.expr(e, 0);
    }
}

pub(crate) fn binop_str(op: BinaryOp) -> (&'static str, u8) {
    match op {
        BinaryOp::Or => ("||", 3),
        BinaryOp::And => ("&&", 4),
        BinaryOp::BitOr => ("|", 5),
        BinaryOp::BitXor => ("^", 6),
        BinaryOp::BitAnd => ("&", 7),
        BinaryOp::Eq => ("==", 9),
        BinaryOp::Ne => ("!=", 9),
        BinaryOp::Lt => ("<", 9),
        BinaryOp::Le => ("<=", 9),
        BinaryOp::Gt => (">", 9),
        BinaryOp::Ge => (">=", 9),
        BinaryOp::Match => ("=~", 9),
        BinaryOp::NotMatch => ("!~", 9),
        BinaryOp::Shl => ("<<", 10),
        BinaryOp::Shr => (">>", 10),
        BinaryOp::UShr => (">>>", 10),
        BinaryOp::Concat => (".", 11),
        BinaryOp::Add => ("+", 12),
        BinaryOp::Sub => ("-", 12),
        BinaryOp::Mul => ("*", 13),
        BinaryOp::Div => ("/", 13),
        BinaryOp::Mod => ("%", 13),
    }
}

/// Precedence level of an expression as the parser assigns them.
fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Assign { .. } => 1,
        ExprKind::Ternary { .. } => 2,
        ExprKind::Binary { op, .. } => binop_str(*op).1,
        ExprKind::In { .. } => PREC_IN,
        ExprKind::Unary { .. } => 14,
        ExprKind::IncDec { prefix: true, .. } => 14,
        ExprKind::IncDec { prefix: false, .. } => 15,
        _ => 16,
    }
}

fn type_str(t: TypeName) -> &'static str {
    match t {
        TypeName::Long => "long",
        TypeName::String => "string",
    }
}

impl Printer<'_> {
    fn script(mut self, s: &Script) -> String {
        for item in &s.items {
            self.item(item);
        }
        self.out
    }

    fn nl(&mut self) {
        self.out.push('\n');
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
    }

    fn embedded(&mut self, span: Span) {
        match self.sources.map(|s| s.snippet(span)) {
            Some(t) if t.starts_with("%{") && t.ends_with("%}") => self.out.push_str(t),
            _ => self.out.push_str("%{ /* embedded C */ %}"),
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Probe(p) => {
                self.out.push_str("probe ");
                self.points(&p.points);
                self.out.push(' ');
                self.block(&p.body);
            }
            Item::Alias(a) => {
                self.out.push_str("probe ");
                self.points(&a.names);
                self.out.push_str(if a.epilogue { " += " } else { " = " });
                self.points(&a.points);
                self.out.push(' ');
                self.block(&a.body);
            }
            Item::Global(g) => {
                let _ = write!(self.out, "global {}", g.name);
                if let Some(n) = g.size {
                    let _ = write!(self.out, "[{n}]");
                }
                if let Some(l) = &g.init {
                    self.out.push_str(" = ");
                    self.literal(l);
                }
            }
            Item::Function(f) => {
                let _ = write!(self.out, "function {}", f.name);
                if let Some(t) = f.ret {
                    let _ = write!(self.out, ":{}", type_str(t));
                }
                self.out.push('(');
                for (i, p) in f.params.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.out.push_str(&p.name);
                    if let Some(t) = p.ty {
                        let _ = write!(self.out, ":{}", type_str(t));
                    }
                }
                self.out.push_str(") ");
                match &f.body {
                    FunctionBody::Script(b) => self.block(b),
                    FunctionBody::EmbeddedC(span) => self.embedded(*span),
                }
            }
            Item::Embedded(span) => self.embedded(*span),
        }
        self.out.push('\n');
    }

    fn literal(&mut self, l: &Literal) {
        match l {
            Literal::Number(n) => {
                let _ = write!(self.out, "{n}");
            }
            Literal::String(s) => self.out.push_str(&quote(s)),
        }
    }

    fn points(&mut self, pts: &[ProbePoint]) {
        for (i, p) in pts.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            for (j, c) in p.components.iter().enumerate() {
                if j > 0 {
                    self.out.push('.');
                }
                self.out.push_str(&c.name);
                if let Some(a) = &c.arg {
                    self.out.push('(');
                    self.literal(a);
                    self.out.push(')');
                }
            }
            if p.optional {
                self.out.push('?');
            }
            if p.sufficient {
                self.out.push('!');
            }
            if let Some(c) = &p.condition {
                self.out.push_str(" if (");
                self.expr(c, 0);
                self.out.push(')');
            }
        }
    }

    fn block(&mut self, b: &Block) {
        self.out.push('{');
        self.indent += 1;
        for s in &b.stmts {
            self.nl();
            self.stmt(s);
        }
        self.indent -= 1;
        self.nl();
        self.out.push('}');
    }

    /// A branch or loop body: a block stays on the line, anything else goes on its
    /// own indented line.
    fn body(&mut self, s: &Stmt) {
        if let StmtKind::Block(b) = &s.kind {
            self.out.push(' ');
            self.block(b);
        } else {
            self.indent += 1;
            self.nl();
            self.stmt(s);
            self.indent -= 1;
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::Expr(e) => {
                self.expr(e, 0);
                self.out.push(';');
            }
            StmtKind::If { cond, then, els } => {
                self.out.push_str("if (");
                self.expr(cond, 0);
                self.out.push(')');
                let dangling = els.is_some() && matches!(then.kind, StmtKind::If { .. });
                if dangling {
                    // An inner `if` printed bare would capture our `else`.
                    self.out.push_str(" {");
                    self.indent += 1;
                    self.nl();
                    self.stmt(then);
                    self.indent -= 1;
                    self.nl();
                    self.out.push('}');
                } else {
                    self.body(then);
                }
                if let Some(e) = els {
                    if matches!(then.kind, StmtKind::Block(_)) || dangling {
                        self.out.push_str(" else");
                    } else {
                        self.nl();
                        self.out.push_str("else");
                    }
                    if matches!(e.kind, StmtKind::If { .. }) {
                        self.out.push(' ');
                        self.stmt(e);
                    } else {
                        self.body(e);
                    }
                }
            }
            StmtKind::While { cond, body } => {
                self.out.push_str("while (");
                self.expr(cond, 0);
                self.out.push(')');
                self.body(body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                self.out.push_str("for (");
                if let Some(e) = init {
                    self.expr(e, 0);
                }
                self.out.push_str("; ");
                if let Some(e) = cond {
                    self.expr(e, 0);
                }
                self.out.push_str("; ");
                if let Some(e) = step {
                    self.expr(e, 0);
                }
                self.out.push(')');
                self.body(body);
            }
            StmtKind::Foreach { body, .. } => {
                self.out.push_str("foreach (");
                self.foreach_head(&s.kind, false);
                self.out.push(')');
                self.body(body);
            }
            StmtKind::Break => self.out.push_str("break;"),
            StmtKind::Continue => self.out.push_str("continue;"),
            StmtKind::Next => self.out.push_str("next;"),
            StmtKind::Return(v) => {
                self.out.push_str("return");
                if let Some(e) = v {
                    self.out.push(' ');
                    self.expr(e, 0);
                }
                self.out.push(';');
            }
            StmtKind::Delete(e) => {
                self.out.push_str("delete ");
                self.expr(e, 0);
                self.out.push(';');
            }
            StmtKind::Try { body, var, catch } => {
                self.out.push_str("try ");
                self.block(body);
                self.out.push_str(" catch ");
                if let Some(v) = var {
                    let _ = write!(self.out, "({v}) ");
                }
                self.block(catch);
            }
            StmtKind::Empty => self.out.push(';'),
            StmtKind::Error => self.out.push_str("/* error */;"),
        }
    }

    fn list(&mut self, es: &[Expr]) {
        for (i, e) in es.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.expr(e, 0);
        }
    }

    fn path(&mut self, path: &[TargetStep], pretty: u8) {
        self.steps(path);
        for _ in 0..pretty {
            self.out.push('$');
        }
    }

    /// Prints `e`, parenthesised if its precedence is below `min`.
    fn expr(&mut self, e: &Expr, min: u8) {
        let paren = prec(e) < min;
        if paren {
            self.out.push('(');
        }
        self.expr_inner(e);
        if paren {
            self.out.push(')');
        }
    }

    fn expr_inner(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Number(n) => {
                // Negative values only arise from literals above i64::MAX; print them
                // the way they were written so they read back identically.
                if *n < 0 {
                    let _ = write!(self.out, "{}", *n as u64);
                } else {
                    let _ = write!(self.out, "{n}");
                }
            }
            ExprKind::String(s) => self.out.push_str(&quote(s)),
            ExprKind::Var(v) => self.out.push_str(v),
            ExprKind::ScriptArg { index, as_string } => {
                let _ = write!(self.out, "{}{index}", if *as_string { '@' } else { '$' });
            }
            ExprKind::ArgCount => self.out.push_str("$#"),
            ExprKind::Index { array, keys } => {
                self.out.push_str(array);
                self.out.push('[');
                self.list(keys);
                self.out.push(']');
            }
            ExprKind::Call { name, args } => {
                self.out.push_str(name);
                self.out.push('(');
                self.list(args);
                self.out.push(')');
            }
            ExprKind::Target(t) => {
                self.out.push('$');
                self.out.push_str(&t.name);
                self.path(&t.path, t.pretty);
            }
            ExprKind::Cast {
                expr,
                type_name,
                module,
                path,
                pretty,
            } => {
                self.out.push_str("@cast(");
                self.expr(expr, 0);
                self.out.push_str(", ");
                self.out.push_str(&quote(type_name));
                if let Some(m) = module {
                    self.out.push_str(", ");
                    self.out.push_str(&quote(m));
                }
                self.out.push(')');
                self.path(path, *pretty);
            }
            ExprKind::GlobalVar { name, module, path } => {
                self.out.push_str("@var(");
                self.out.push_str(&quote(name));
                if let Some(m) = module {
                    self.out.push_str(", ");
                    self.out.push_str(&quote(m));
                }
                self.out.push(')');
                self.path(path, 0);
            }
            ExprKind::Entry(x) => {
                self.out.push_str("@entry(");
                self.expr(x, 0);
                self.out.push(')');
            }
            ExprKind::Defined(x) => {
                self.out.push_str("@defined(");
                self.expr(x, 0);
                self.out.push(')');
            }
            ExprKind::ProbeWrite(v) => {
                let _ = write!(self.out, "@probewrite({v})");
            }
            ExprKind::Stat { op, expr, args } => {
                self.out.push_str(stat_name(*op));
                self.out.push('(');
                self.expr(expr, 0);
                for a in args {
                    self.out.push_str(", ");
                    self.expr(a, 0);
                }
                self.out.push(')');
            }
            ExprKind::Unary { op, expr } => {
                let s = match op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Plus => "+",
                    UnaryOp::Not => "!",
                    UnaryOp::BitNot => "~",
                    UnaryOp::AddressOf => "&",
                };
                self.out.push_str(s);
                let mark = self.out.len();
                self.expr(expr, 14);
                // `- -x` must not become the `--` operator.
                let next = self.out[mark..].chars().next();
                if (s == "-" && next == Some('-')) || (s == "+" && next == Some('+')) {
                    self.out.insert(mark, ' ');
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (s, p) = binop_str(*op);
                self.expr(lhs, p);
                let _ = write!(self.out, " {s} ");
                self.expr(rhs, p + 1);
            }
            ExprKind::Ternary { cond, then, els } => {
                self.expr(cond, 3);
                self.out.push_str(" ? ");
                self.expr(then, 0);
                self.out.push_str(" : ");
                self.expr(els, 0);
            }
            ExprKind::Assign { op, target, value } => {
                self.expr(target, 2);
                let s = match op {
                    AssignOp::Set => "=".to_string(),
                    AssignOp::Aggregate => "<<<".to_string(),
                    AssignOp::Compound(b) => format!("{}=", binop_str(*b).0),
                };
                let _ = write!(self.out, " {s} ");
                self.expr(value, 0);
            }
            ExprKind::IncDec {
                prefix,
                increment,
                target,
            } => {
                let s = if *increment { "++" } else { "--" };
                if *prefix {
                    self.out.push_str(s);
                    self.expr(target, 16);
                } else {
                    self.expr(target, 16);
                    self.out.push_str(s);
                }
            }
            ExprKind::In { keys, array } => {
                if keys.len() == 1 {
                    self.expr(&keys[0], PREC_IN + 1);
                } else {
                    self.out.push('[');
                    for (i, k) in keys.iter().enumerate() {
                        if i > 0 {
                            self.out.push_str(", ");
                        }
                        self.expr(k, PREC_IN + 1);
                    }
                    self.out.push(']');
                }
                let _ = write!(self.out, " in {array}");
            }
            ExprKind::Wildcard => self.out.push('*'),
            ExprKind::HistBucket { hist, index } => {
                self.expr(hist, 0);
                self.out.push('[');
                self.expr(index, 0);
                self.out.push(']');
            }
            ExprKind::Error => self.out.push_str("/* error */"),
        }
    }
}
