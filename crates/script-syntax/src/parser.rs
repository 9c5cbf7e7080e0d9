//! Recursive-descent parser from preprocessed tokens to [`crate::ast::Script`].
//!
//! Expressions follow SystemTap's own precedence ladder (parse.cxx), lowest first:
//! assignment, ternary, `||`, `&&`, `|`, `^`, `&`, `in`, comparisons and `=~`/`!~`,
//! shifts, `.` concatenation, `+ -`, `* / %`, unary, `++`/`--`, values. Parsing never
//! fails: an error is recorded, the parser skips to the end of the statement (or to the
//! next top-level item) and goes on, so every error in a file is reported.

use crate::ast::*;
use crate::diag::{Diagnostic, SourceMap};
use crate::lexer::{self, is_keyword, Tok, Token};
use crate::preproc::{self, MacroTable, PpConfig};

/// Hands out [`ExprId`]s; one per session, shared by every file parsed in it.
#[derive(Clone, Debug, Default)]
pub struct IdGen {
    next: u32,
}

impl IdGen {
    /// A generator starting at id 0.
    pub fn new() -> IdGen {
        IdGen::default()
    }

    /// A generator whose first id is `next` (to continue after an existing script).
    pub fn starting_at(next: u32) -> IdGen {
        IdGen { next }
    }

    /// A fresh id.
    pub fn fresh(&mut self) -> ExprId {
        let id = ExprId(self.next);
        self.next = self.next.wrapping_add(1);
        id
    }

    /// How many ids were handed out so far (the next id's number).
    pub fn count(&self) -> u32 {
        self.next
    }
}

/// Everything besides the text that influences a parse.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// Script arguments: `$#` in preprocessor conditions, `$1`/`@1` in probe points.
    pub script_args: Vec<String>,
    /// The preprocessor environment (`arg_count` is taken from `script_args`).
    pub pp: PpConfig,
}

impl ParseOptions {
    /// Options with these script arguments and the default environment.
    pub fn with_args(script_args: &[String]) -> ParseOptions {
        ParseOptions {
            script_args: script_args.to_vec(),
            pp: PpConfig::default(),
        }
    }
}

/// Parses one file with a fresh id counter and the default environment.
pub fn parse(
    sources: &SourceMap,
    file: FileId,
    script_args: &[String],
) -> (Script, Vec<Diagnostic>) {
    let mut ids = IdGen::new();
    parse_session(
        sources,
        file,
        &mut ids,
        &ParseOptions::with_args(script_args),
    )
}

/// Parses one file, taking expression ids from `ids`.
pub fn parse_session(
    sources: &SourceMap,
    file: FileId,
    ids: &mut IdGen,
    opts: &ParseOptions,
) -> (Script, Vec<Diagnostic>) {
    parse_files(sources, &[file], ids, opts)
}

/// Parses several files (tapsets, then the user script) into one [`Script`], items in
/// file order. Macros defined in files whose name ends in `.stpm` are visible in every
/// later file; other macros are local to their file, as in stap.
pub fn parse_files(
    sources: &SourceMap,
    files: &[FileId],
    ids: &mut IdGen,
    opts: &ParseOptions,
) -> (Script, Vec<Diagnostic>) {
    // The parser recurses once per nesting level and unoptimised builds use several KB
    // of stack per level; a thread with a roomy stack makes the nesting limit, not the
    // caller's stack size, decide what is accepted.
    let mut local_ids = ids.clone();
    let spawned = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("script-parse".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, move || {
                let r = parse_files_here(sources, files, &mut local_ids, opts);
                (r, local_ids)
            })
            .ok()
            .map(|h| h.join())
    });
    match spawned {
        Some(Ok((r, new_ids))) => {
            *ids = new_ids;
            r
        }
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread available: parse on the caller's stack.
        None => parse_files_here(sources, files, ids, opts),
    }
}

/// Stack size of the parsing thread.
const PARSER_STACK: usize = 64 << 20;

fn parse_files_here(
    sources: &SourceMap,
    files: &[FileId],
    ids: &mut IdGen,
    opts: &ParseOptions,
) -> (Script, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut script = Script::default();
    let mut library = MacroTable::new();
    let mut cfg = opts.pp.clone();
    cfg.arg_count = opts.script_args.len();
    for &file in files {
        let Some(src) = sources.file(file) else {
            continue;
        };
        let raw = lexer::lex(file, &src.text, &mut diags);
        let mut macros = library.clone();
        let toks = preproc::preprocess(&raw, &cfg, &mut macros, &mut diags);
        if src.name.ends_with(".stpm") {
            library = macros;
        }
        let mut p = Parser {
            sources,
            toks,
            pos: 0,
            ids,
            diags: &mut diags,
            depth: 0,
            in_function: false,
            bail: false,
            hist_ok: false,
            script_args: &opts.script_args,
        };
        p.items(&mut script.items);
    }
    (script, diags)
}

/// Deepest nesting of statements and expressions accepted; deeper input is reported
/// rather than risking a stack overflow here or in any later pass walking the tree.
const MAX_DEPTH: usize = 200;

/// Brace expansion multiplies probe points; past this many the script is rejected
/// rather than exhausting memory.
const MAX_EXPANDED_POINTS: usize = 10_000;

/// Marker for "an error was reported, unwind to a recovery point".
struct Bail;

type PResult<T> = Result<T, Bail>;

struct Parser<'a> {
    sources: &'a SourceMap,
    toks: Vec<Token>,
    pos: usize,
    ids: &'a mut IdGen,
    diags: &'a mut Vec<Diagnostic>,
    depth: usize,
    in_function: bool,
    /// Set when recovery stopped at a top-level keyword: unwind to the item loop.
    bail: bool,
    script_args: &'a [String],
    /// A bare `@hist_log(...)`/`@hist_linear(...)` may come next: a print argument or
    /// a foreach's histogram. Anywhere else stap wants it indexed (`@hist_log(x)[3]`).
    hist_ok: bool,
}

/// Binary operators with their precedence level (higher binds tighter).
fn binop(t: &Tok) -> Option<(u8, BinaryOp)> {
    let Tok::Op(o) = t else {
        return None;
    };
    Some(match *o {
        "||" => (3, BinaryOp::Or),
        "&&" => (4, BinaryOp::And),
        "|" => (5, BinaryOp::BitOr),
        "^" => (6, BinaryOp::BitXor),
        "&" => (7, BinaryOp::BitAnd),
        "==" => (9, BinaryOp::Eq),
        "!=" => (9, BinaryOp::Ne),
        "<" => (9, BinaryOp::Lt),
        "<=" => (9, BinaryOp::Le),
        ">" => (9, BinaryOp::Gt),
        ">=" => (9, BinaryOp::Ge),
        "=~" => (9, BinaryOp::Match),
        "!~" => (9, BinaryOp::NotMatch),
        "<<" => (10, BinaryOp::Shl),
        ">>" => (10, BinaryOp::Shr),
        ">>>" => (10, BinaryOp::UShr),
        "." => (11, BinaryOp::Concat),
        "+" => (12, BinaryOp::Add),
        "-" => (12, BinaryOp::Sub),
        "*" => (13, BinaryOp::Mul),
        "/" => (13, BinaryOp::Div),
        "%" => (13, BinaryOp::Mod),
        _ => return None,
    })
}

/// Precedence of `in`.
pub(crate) const PREC_IN: u8 = 8;

fn assign_op(t: &Tok) -> Option<AssignOp> {
    let Tok::Op(o) = t else {
        return None;
    };
    Some(match *o {
        "=" => AssignOp::Set,
        "<<<" => AssignOp::Aggregate,
        "+=" => AssignOp::Compound(BinaryOp::Add),
        "-=" => AssignOp::Compound(BinaryOp::Sub),
        "*=" => AssignOp::Compound(BinaryOp::Mul),
        "/=" => AssignOp::Compound(BinaryOp::Div),
        "%=" => AssignOp::Compound(BinaryOp::Mod),
        "<<=" => AssignOp::Compound(BinaryOp::Shl),
        ">>=" => AssignOp::Compound(BinaryOp::Shr),
        "&=" => AssignOp::Compound(BinaryOp::BitAnd),
        "|=" => AssignOp::Compound(BinaryOp::BitOr),
        "^=" => AssignOp::Compound(BinaryOp::BitXor),
        ".=" => AssignOp::Compound(BinaryOp::Concat),
        _ => return None,
    })
}

fn is_lvalue(e: &Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Var(_)
            | ExprKind::Index { .. }
            | ExprKind::Target(_)
            | ExprKind::Cast { .. }
            | ExprKind::GlobalVar { .. }
            | ExprKind::Error
    )
}

fn is_item_start(t: &Tok) -> bool {
    matches!(t, Tok::Ident(w) if w == "probe" || w == "global" || w == "function" || w == "private")
        || matches!(t, Tok::Embedded)
}

impl Parser<'_> {
    // ---- token helpers ----

    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }

    fn tok(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn span(&self) -> Span {
        self.tok().span
    }

    fn prev_span(&self) -> Span {
        if self.pos == 0 {
            self.span()
        } else {
            self.toks[(self.pos - 1).min(self.toks.len() - 1)].span
        }
    }

    /// Span from `start` to the end of the last consumed token.
    fn since(&self, start: Span) -> Span {
        let prev = self.prev_span();
        if prev.file == start.file && prev.end >= start.start {
            Span {
                file: start.file,
                start: start.start,
                end: prev.end,
            }
        } else {
            start
        }
    }

    fn bump(&mut self) -> Token {
        let t = self.tok().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == kw)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> PResult<Token> {
        if self.is_op(op) {
            Ok(self.bump())
        } else {
            Err(self.error(format!("expected '{op}'")))
        }
    }

    /// How stap shows a token in an error (`operator '{'`, `keyword`, ...).
    fn describe(&self, t: &Token) -> String {
        let text = self.sources.snippet(t.span);
        match &t.tok {
            Tok::Ident(w) if is_keyword(w) => "keyword".into(),
            // stap's lexer makes `@hist_log`, `@count`... operators.
            Tok::Ident(w) if w.starts_with('@') => format!("operator '{w}'"),
            Tok::Ident(w) => format!("identifier '{w}'"),
            Tok::Number(_) => format!("number '{}'", lexer::printable(text)),
            Tok::Str(s) => format!("string '{}'", lexer::printable(s)),
            Tok::Op(o) => format!("operator '{o}'"),
            Tok::Embedded => "embedded-code".into(),
            Tok::Eof => String::new(),
        }
    }

    /// Reports an error at the current token.
    fn error(&mut self, msg: impl Into<String>) -> Bail {
        let t = self.tok().clone();
        self.error_at(msg, &t)
    }

    /// `$N`/`@N` past the script's arguments: stap's lexer substitutes arguments, so
    /// this is a lexer error (an empty junk token) at the `$N`.
    fn arg_out_of_range(&mut self) -> Bail {
        let t = self.tok().clone();
        let msg = format!(
            "command line argument out of range [1-{}]",
            self.script_args.len()
        );
        let mut d = Diagnostic::error("parse error", msg, t.span);
        d.labels[0].message = "junk ''".into();
        self.diags.push(d);
        Bail
    }

    fn error_at(&mut self, msg: impl Into<String>, t: &Token) -> Bail {
        // A string left open swallowed the rest of the input: stap reports that alone.
        if t.tok == Tok::Eof
            && self
                .diags
                .iter()
                .any(|d| d.message == "Could not find matching closing quote")
        {
            return Bail;
        }
        let mut d = Diagnostic::error("parse error", msg, t.span);
        d.labels[0].message = self.describe(t);
        self.diags.push(d);
        Bail
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let e = self.error("nesting too deep");
            // Everything inside is skipped: unwinding to the item level is the only
            // recovery that cannot itself recurse.
            self.bail = true;
            return Err(e);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn mk(&mut self, kind: ExprKind, span: Span) -> Expr {
        Expr {
            id: self.ids.fresh(),
            kind,
            span,
        }
    }

    // ---- items ----

    fn items(&mut self, out: &mut Vec<Item>) {
        loop {
            self.bail = false;
            self.depth = 0;
            let start = self.pos;
            let r = match self.peek().clone() {
                Tok::Eof => return,
                Tok::Ident(w) if w == "private" => {
                    self.bump();
                    if self.is_kw("global") || self.is_kw("function") {
                        continue;
                    }
                    Err(self.error("expected 'function' or identifier"))
                }
                Tok::Ident(w) if w == "probe" => self.probe(out),
                Tok::Ident(w) if w == "global" => self.global(out),
                Tok::Ident(w) if w == "function" => self.function(out),
                Tok::Embedded => {
                    let t = self.bump();
                    out.push(Item::Embedded(t.span));
                    Ok(())
                }
                Tok::Op(";") => {
                    self.bump();
                    Ok(())
                }
                _ => Err(self.error("expected 'probe', 'global', 'private', 'function', or '%{'")),
            };
            if r.is_err() {
                self.recover_item(start);
            }
        }
    }

    /// Skips to the next top-level keyword.
    fn recover_item(&mut self, start: usize) {
        if self.pos == start {
            self.bump();
        }
        while !matches!(self.peek(), Tok::Eof) && !is_item_start(self.peek()) {
            self.bump();
        }
    }

    fn probe(&mut self, out: &mut Vec<Item>) -> PResult<()> {
        let start = self.bump().span;
        let first = self.probe_points(true)?;
        if self.is_op("=") || self.is_op("+=") {
            let epilogue = self.bump().tok == Tok::Op("+=");
            for n in &first {
                if n.condition.is_some() || n.optional || n.sufficient {
                    let t = self.tok().clone();
                    return Err(
                        self.error_at("probe alias names cannot be optional or conditional", &t)
                    );
                }
            }
            let points = self.probe_points(false)?;
            let body = self.block()?;
            out.push(Item::Alias(AliasDecl {
                names: first,
                epilogue,
                points,
                body,
                span: self.since(start),
            }));
        } else {
            let body = self.block()?;
            out.push(Item::Probe(ProbeDecl {
                points: first,
                body,
                span: self.since(start),
            }));
        }
        Ok(())
    }

    fn probe_points(&mut self, may_be_alias: bool) -> PResult<Vec<ProbePoint>> {
        let mut v = self.probe_point()?;
        while self.eat_op(",") {
            v.extend(self.probe_point()?);
            if v.len() > MAX_EXPANDED_POINTS {
                return Err(self.error("too many probe points after brace expansion"));
            }
        }
        if !self.is_op("{") && !(may_be_alias && (self.is_op("=") || self.is_op("+="))) {
            let expected = if may_be_alias {
                "expected one of '. , ( ? ! { = +='"
            } else {
                "expected one of '. , ( ? ! {'"
            };
            return Err(self.error(expected));
        }
        Ok(v)
    }

    /// One probe point as written; brace expansion (`a.{b,c(1)}.d`) makes it several.
    fn probe_point(&mut self) -> PResult<Vec<ProbePoint>> {
        let start = self.span();
        let expansions = self.point_components()?;
        let (mut optional, mut sufficient) = (false, false);
        loop {
            if self.eat_op("?") {
                optional = true;
            } else if self.eat_op("!") {
                sufficient = true;
            } else {
                break;
            }
        }
        let mut condition = None;
        if self.is_kw("if") {
            self.bump();
            self.expect_op("(")?;
            condition = Some(self.expr()?);
            self.expect_op(")")?;
        }
        let span = self.since(start);
        let mut points = Vec::with_capacity(expansions.len());
        for (i, components) in expansions.into_iter().enumerate() {
            let mut cond = condition.clone();
            if i > 0 {
                // Every copy of the condition needs ids of its own.
                if let Some(c) = &mut cond {
                    crate::visit::walk_expr_mut(c, &mut |e| e.id = self.ids.fresh());
                }
            }
            points.push(ProbePoint {
                components,
                optional,
                sufficient,
                condition: cond,
                span,
            });
        }
        Ok(points)
    }

    /// The dotted components of a probe point, expanding `{A, B}` groups (which may
    /// nest and hold dotted sequences) into every combination, in order.
    fn point_components(&mut self) -> PResult<Vec<Vec<Component>>> {
        self.enter()?;
        let r = self.point_components_inner();
        self.leave();
        r
    }

    fn point_components_inner(&mut self) -> PResult<Vec<Vec<Component>>> {
        let mut acc: Vec<Vec<Component>> = vec![Vec::new()];
        loop {
            let part: Vec<Vec<Component>> = if self.eat_op("{") {
                let mut alts = Vec::new();
                loop {
                    alts.extend(self.point_components()?);
                    if self.eat_op(",") {
                        continue;
                    }
                    self.expect_op("}")?;
                    break;
                }
                alts
            } else {
                vec![vec![self.component()?]]
            };
            if acc.len().saturating_mul(part.len()) > MAX_EXPANDED_POINTS {
                return Err(self.error("too many probe points after brace expansion"));
            }
            let mut next = Vec::with_capacity(acc.len() * part.len());
            for a in &acc {
                for p in &part {
                    let mut c = a.clone();
                    c.extend(p.iter().cloned());
                    next.push(c);
                }
            }
            acc = next;
            if !self.eat_op(".") {
                break;
            }
        }
        Ok(acc)
    }

    /// One component: a name made of adjacent identifier and `*` tokens, and an
    /// optional literal argument.
    fn component(&mut self) -> PResult<Component> {
        let start = self.span();
        let mut name = String::new();
        let mut last_end = None;
        loop {
            let t = self.tok();
            if let Some(e) = last_end {
                if t.span.start != e {
                    break;
                }
            }
            match &t.tok {
                Tok::Ident(w) if !w.starts_with('$') && !w.starts_with('@') => name.push_str(w),
                Tok::Op("*") => name.push('*'),
                Tok::Number(_) if last_end.is_some() => name.push_str(self.sources.snippet(t.span)),
                _ => break,
            }
            last_end = Some(t.span.end);
            self.bump();
        }
        if name.is_empty() {
            return Err(self.error("expected identifier or '*'"));
        }
        let mut arg = None;
        if self.eat_op("(") {
            arg = Some(self.literal("expected literal string or number")?);
            self.expect_op(")")?;
        }
        Ok(Component {
            name,
            arg,
            span: self.since(start),
        })
    }

    /// A literal: number (optionally negated), string, or `$N`/`@N` substituted from
    /// the script arguments.
    fn literal(&mut self, what: &str) -> PResult<Literal> {
        let neg = self.eat_op("-");
        match self.peek().clone() {
            Tok::Number(n) => {
                self.bump();
                Ok(Literal::Number(if neg { n.wrapping_neg() } else { n }))
            }
            Tok::Str(s) if !neg => {
                self.bump();
                Ok(Literal::String(s))
            }
            Tok::Ident(w)
                if (w.starts_with('$') || w.starts_with('@'))
                    && w[1..].bytes().all(|b| b.is_ascii_digit())
                    && w.len() > 1 =>
            {
                let idx: usize = w[1..].parse().unwrap_or(0);
                let Some(arg) = idx
                    .checked_sub(1)
                    .and_then(|i| self.script_args.get(i))
                    .cloned()
                else {
                    return Err(self.arg_out_of_range());
                };
                self.bump();
                if w.starts_with('$') {
                    if let Some(n) = parse_int(&arg) {
                        return Ok(Literal::Number(if neg { n.wrapping_neg() } else { n }));
                    }
                }
                if neg {
                    return Err(self.error("expected number"));
                }
                Ok(Literal::String(arg))
            }
            _ => Err(self.error(what)),
        }
    }

    fn global(&mut self, out: &mut Vec<Item>) -> PResult<()> {
        self.bump();
        loop {
            let start = self.span();
            let name = self.name("expected identifier")?;
            self.eat_op("%");
            let mut size = None;
            if self.eat_op("[") {
                match self.peek().clone() {
                    Tok::Number(n) if n > 0 => {
                        self.bump();
                        size = Some(n);
                    }
                    _ => return Err(self.error("expected a positive array size")),
                }
                self.expect_op("]")?;
                self.eat_op("%");
            }
            let mut init = None;
            if self.eat_op("=") {
                init = Some(self.literal("expected literal string or number")?);
            }
            out.push(Item::Global(GlobalDecl {
                name,
                size,
                init,
                span: self.since(start),
            }));
            if !self.eat_op(",") {
                break;
            }
        }
        self.eat_op(";");
        Ok(())
    }

    /// An identifier that is not a keyword and not a `$`/`@` name.
    fn name(&mut self, what: &str) -> PResult<String> {
        match self.peek().clone() {
            Tok::Ident(w) if !is_keyword(&w) && !w.starts_with('$') && !w.starts_with('@') => {
                self.bump();
                Ok(w)
            }
            _ => Err(self.error(what)),
        }
    }

    fn type_name(&mut self) -> PResult<TypeName> {
        match self.peek() {
            Tok::Ident(w) if w == "long" => {
                self.bump();
                Ok(TypeName::Long)
            }
            Tok::Ident(w) if w == "string" => {
                self.bump();
                Ok(TypeName::String)
            }
            _ => Err(self.error("expected 'string' or 'long'")),
        }
    }

    fn function(&mut self, out: &mut Vec<Item>) -> PResult<()> {
        let start = self.bump().span;
        let name = self.name("expected identifier")?;
        let mut ret = None;
        if self.eat_op(":") {
            ret = Some(self.type_name()?);
        }
        self.expect_op("(")?;
        let mut params = Vec::new();
        if !self.eat_op(")") {
            loop {
                let pstart = self.span();
                let pname = self.name("expected identifier")?;
                let ty = if self.eat_op(":") {
                    Some(self.type_name()?)
                } else {
                    None
                };
                params.push(Param {
                    name: pname,
                    ty,
                    span: self.since(pstart),
                });
                if self.eat_op(")") {
                    break;
                }
                if !self.eat_op(",") {
                    return Err(self.error("expected ',' or ')'"));
                }
            }
        }
        if ret.is_none() && self.eat_op(":") {
            ret = Some(self.type_name()?);
        }
        let body = if matches!(self.peek(), Tok::Embedded) {
            FunctionBody::EmbeddedC(self.bump().span)
        } else {
            self.in_function = true;
            let b = self.block();
            self.in_function = false;
            FunctionBody::Script(b?)
        };
        out.push(Item::Function(FunctionDecl {
            name,
            params,
            ret,
            body,
            span: self.since(start),
        }));
        Ok(())
    }

    // ---- statements ----

    fn block(&mut self) -> PResult<Block> {
        let start = self.expect_op("{")?.span;
        self.enter()?;
        let mut stmts = Vec::new();
        loop {
            match self.peek() {
                Tok::Op("}") => {
                    self.bump();
                    break;
                }
                Tok::Eof => {
                    self.leave();
                    return Err(self.error("expected statement"));
                }
                t if is_item_start(t) && !matches!(t, Tok::Embedded) => {
                    self.bail = true;
                    self.leave();
                    // stap tries a statement there, and says so.
                    return Err(self.error("expected statement"));
                }
                _ => {}
            }
            match self.statement() {
                Ok(s) => {
                    if !matches!(s.kind, StmtKind::Empty) {
                        stmts.push(s);
                    }
                }
                Err(b) => {
                    if self.bail || !self.recover_stmt() {
                        self.leave();
                        return Err(b);
                    }
                }
            }
        }
        self.leave();
        Ok(Block {
            stmts,
            span: self.since(start),
        })
    }

    /// Skips the rest of a bad statement. Returns false (and sets `bail`) when it
    /// reached a top-level keyword or the end of input instead.
    fn recover_stmt(&mut self) -> bool {
        let mut level = 0usize;
        let mut skipped = 0usize;
        loop {
            // Semicolons are optional, so a new line is the best guess for where the
            // next statement starts once the bad token itself is skipped.
            if skipped > 0 && level == 0 && self.newline_before() {
                return true;
            }
            match self.peek() {
                Tok::Eof => {
                    self.bail = true;
                    return false;
                }
                t if is_item_start(t) && !matches!(t, Tok::Embedded) => {
                    self.bail = true;
                    return false;
                }
                Tok::Op("{") => level += 1,
                // The enclosing block's closing brace: leave it for the block loop
                // (which cannot have called us on it, so progress is guaranteed).
                Tok::Op("}") if level == 0 => return true,
                Tok::Op("}") => level -= 1,
                Tok::Op(";") if level == 0 => {
                    self.bump();
                    return true;
                }
                _ => {}
            }
            self.bump();
            skipped += 1;
        }
    }

    /// Is there a line break between the previous token and the current one?
    fn newline_before(&self) -> bool {
        let (prev, cur) = (self.prev_span(), self.span());
        if prev.file != cur.file || prev.end > cur.start {
            return false;
        }
        self.sources
            .file(cur.file)
            .and_then(|f| f.text.get(prev.end as usize..cur.start as usize))
            .is_some_and(|gap| gap.contains('\n'))
    }

    fn statement(&mut self) -> PResult<Stmt> {
        self.enter()?;
        let r = self.statement_inner();
        self.leave();
        r
    }

    // Statement parsing is split into one small function per statement kind: in
    // unoptimised builds every local of a function occupies its own stack slot, and
    // these functions recurse, so small frames directly raise the nesting we survive.
    fn statement_inner(&mut self) -> PResult<Stmt> {
        let start = self.span();
        let kind = match self.peek() {
            Tok::Op(";") => {
                self.bump();
                StmtKind::Empty
            }
            Tok::Op("{") => StmtKind::Block(self.block()?),
            Tok::Embedded => self.embedded_stmt(),
            Tok::Ident(w) => match w.as_str() {
                "if" => self.if_stmt()?,
                "while" => self.while_stmt()?,
                "for" => self.for_stmt()?,
                "foreach" => self.foreach()?,
                "break" => self.simple(StmtKind::Break),
                "continue" => self.simple(StmtKind::Continue),
                "next" => self.simple(StmtKind::Next),
                "return" => self.return_stmt()?,
                "delete" => self.delete_stmt()?,
                "try" => self.try_stmt()?,
                w if is_keyword(w) => return Err(self.error("expected statement")),
                _ => self.expr_stmt()?,
            },
            _ => self.expr_stmt()?,
        };
        Ok(Stmt {
            kind,
            span: self.since(start),
        })
    }

    #[inline(never)]
    fn embedded_stmt(&mut self) -> StmtKind {
        let t = self.bump();
        self.error_at("embedded C code is not supported in snaptap", &t);
        StmtKind::Error
    }

    fn if_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        self.expect_op("(")?;
        let cond = self.expr()?;
        self.expect_op(")")?;
        let then = Box::new(self.statement()?);
        let els = if self.is_kw("else") {
            self.bump();
            Some(Box::new(self.statement()?))
        } else {
            None
        };
        Ok(StmtKind::If { cond, then, els })
    }

    fn while_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        self.expect_op("(")?;
        let cond = self.expr()?;
        self.expect_op(")")?;
        let body = Box::new(self.statement()?);
        Ok(StmtKind::While { cond, body })
    }

    fn for_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        self.expect_op("(")?;
        let init = if self.is_op(";") {
            None
        } else {
            Some(self.expr()?)
        };
        self.expect_op(";")?;
        let cond = if self.is_op(";") {
            None
        } else {
            Some(self.expr()?)
        };
        self.expect_op(";")?;
        let step = if self.is_op(")") {
            None
        } else {
            Some(self.expr()?)
        };
        self.expect_op(")")?;
        let body = Box::new(self.statement()?);
        Ok(StmtKind::For {
            init,
            cond,
            step,
            body,
        })
    }

    fn return_stmt(&mut self) -> PResult<StmtKind> {
        let t = self.bump();
        if !self.in_function {
            return Err(self.error_at("found 'return' not in function context", &t));
        }
        let value = if self.is_op(";") || self.is_op("}") {
            None
        } else {
            Some(self.expr()?)
        };
        self.eat_op(";");
        Ok(StmtKind::Return(value))
    }

    fn delete_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        let e = self.expr()?;
        self.eat_op(";");
        Ok(StmtKind::Delete(e))
    }

    fn try_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        let body = self.block()?;
        if !self.is_kw("catch") {
            return Err(self.error("expected 'catch'"));
        }
        self.bump();
        let mut var = None;
        if self.eat_op("(") {
            var = Some(self.name("expected identifier")?);
            self.expect_op(")")?;
        }
        let catch = self.block()?;
        Ok(StmtKind::Try { body, var, catch })
    }

    fn simple(&mut self, kind: StmtKind) -> StmtKind {
        self.bump();
        self.eat_op(";");
        kind
    }

    fn expr_stmt(&mut self) -> PResult<StmtKind> {
        let e = self.expr()?;
        self.eat_op(";");
        Ok(StmtKind::Expr(e))
    }

    fn foreach(&mut self) -> PResult<StmtKind> {
        self.bump();
        self.expect_op("(")?;
        let mut sort: Option<SortSpec> = None;
        let mut keys = Vec::new();
        let mut value = None;
        // A possible value variable or single key.
        if !self.is_op("[") {
            let n = self.name("expected identifier")?;
            let s = self.sort_mark()?;
            if self.eat_op("=") {
                value = Some(n);
                if let Some(d) = s {
                    self.set_sort(
                        &mut sort,
                        SortSpec {
                            key: None,
                            descending: d,
                            aggregate: None,
                        },
                    )?;
                }
            } else {
                keys.push(n);
                if let Some(d) = s {
                    self.set_sort(
                        &mut sort,
                        SortSpec {
                            key: Some(0),
                            descending: d,
                            aggregate: None,
                        },
                    )?;
                }
            }
        }
        if keys.is_empty() {
            if self.eat_op("[") {
                loop {
                    let n = self.name("expected identifier")?;
                    if let Some(d) = self.sort_mark()? {
                        let k = keys.len();
                        self.set_sort(
                            &mut sort,
                            SortSpec {
                                key: Some(k),
                                descending: d,
                                aggregate: None,
                            },
                        )?;
                    }
                    keys.push(n);
                    if self.eat_op("]") {
                        break;
                    }
                    if !self.eat_op(",") {
                        return Err(self.error("expected ',' or ']'"));
                    }
                }
            } else {
                let n = self.name("expected identifier")?;
                if let Some(d) = self.sort_mark()? {
                    self.set_sort(
                        &mut sort,
                        SortSpec {
                            key: Some(0),
                            descending: d,
                            aggregate: None,
                        },
                    )?;
                }
                keys.push(n);
            }
        }
        if !self.is_kw("in") {
            return Err(self.error("expected 'in'"));
        }
        self.bump();
        // `in @hist_log(x)`: the buckets of a histogram.
        let mut histogram = None;
        let array = if matches!(self.peek(), Tok::Ident(w) if w == "@hist_log" || w == "@hist_linear")
        {
            self.hist_ok = true;
            let h = self.value()?;
            if !matches!(h.kind, ExprKind::Stat { .. }) {
                return Err(self.error("expected a histogram"));
            }
            histogram = Some(Box::new(h));
            String::new()
        } else {
            self.name("expected identifier")?
        };
        // An array slice: `in a[E, *]`.
        let mut slice = Vec::new();
        if histogram.is_none() && self.eat_op("[") {
            loop {
                if self.eat_op("*") {
                    slice.push(None);
                } else {
                    slice.push(Some(self.expr()?));
                }
                if self.eat_op("]") {
                    break;
                }
                if !self.eat_op(",") {
                    return Err(self.error("expected ',' or ']'"));
                }
            }
        }
        // A value sort, optionally by an aggregate extractor: `in a @sum-`.
        let aggregate = match self.peek() {
            Tok::Ident(w) => match w.as_str() {
                "@count" => Some(StatOp::Count),
                "@sum" => Some(StatOp::Sum),
                "@min" => Some(StatOp::Min),
                "@max" => Some(StatOp::Max),
                "@avg" => Some(StatOp::Avg),
                _ => None,
            },
            _ => None,
        };
        if aggregate.is_some() {
            self.bump();
        }
        match self.sort_mark()? {
            Some(d) => self.set_sort(
                &mut sort,
                SortSpec {
                    key: None,
                    descending: d,
                    aggregate,
                },
            )?,
            None if aggregate.is_some() => return Err(self.error("expected '+' or '-'")),
            None => {}
        }
        let mut limit = None;
        if self.is_kw("limit") {
            self.bump();
            limit = Some(self.expr()?);
        }
        self.expect_op(")")?;
        let body = Box::new(self.statement()?);
        Ok(StmtKind::Foreach {
            keys,
            value,
            array,
            slice,
            histogram,
            sort,
            limit,
            body,
        })
    }

    /// An optional `+`/`-` sort mark; Some(true) for descending.
    fn sort_mark(&mut self) -> PResult<Option<bool>> {
        if self.eat_op("+") {
            Ok(Some(false))
        } else if self.eat_op("-") {
            Ok(Some(true))
        } else {
            Ok(None)
        }
    }

    fn set_sort(&mut self, sort: &mut Option<SortSpec>, s: SortSpec) -> PResult<()> {
        if sort.is_some() {
            let t = self.toks[self.pos - 1].clone();
            return Err(self.error_at("multiple sort directives", &t));
        }
        *sort = Some(s);
        Ok(())
    }

    // ---- expressions ----

    /// A full expression (assignment level).
    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.assignment();
        self.leave();
        r
    }

    fn assignment(&mut self) -> PResult<Expr> {
        let lhs = self.ternary()?;
        let Some(op) = assign_op(self.peek()) else {
            return Ok(lhs);
        };
        let op_tok = self.tok().clone();
        if !is_lvalue(&lhs) {
            return Err(self.error_at(
                "left side of assignment is not a variable or array element",
                &op_tok,
            ));
        }
        self.bump();
        let value = self.expr()?;
        let span = lhs.span.to(value.span);
        Ok(self.mk(
            ExprKind::Assign {
                op,
                target: Box::new(lhs),
                value: Box::new(value),
            },
            span,
        ))
    }

    fn ternary(&mut self) -> PResult<Expr> {
        let cond = self.binary(3)?;
        if !self.eat_op("?") {
            return Ok(cond);
        }
        let then = self.expr()?;
        self.expect_op(":")?;
        let els = self.expr()?;
        let span = cond.span.to(els.span);
        Ok(self.mk(
            ExprKind::Ternary {
                cond: Box::new(cond),
                then: Box::new(then),
                els: Box::new(els),
            },
            span,
        ))
    }

    /// Precedence climbing over the binary operators of level `min` and above.
    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        let saved = self.depth;
        // After `K in A` only operators below `in` may follow, as in stap.
        let mut cap = u8::MAX;
        let r = loop {
            if self.is_kw("in") && PREC_IN >= min && PREC_IN <= cap {
                self.bump();
                let array = match self.name("expected identifier") {
                    Ok(a) => a,
                    Err(b) => break Err(b),
                };
                let span = self.since(lhs.span);
                lhs = self.mk(
                    ExprKind::In {
                        keys: vec![lhs],
                        array,
                    },
                    span,
                );
                cap = PREC_IN - 1;
            } else {
                let Some((prec, op)) = binop(self.peek()) else {
                    break Ok(());
                };
                if prec < min || prec > cap {
                    break Ok(());
                }
                self.bump();
                let rhs = match self.binary(prec + 1) {
                    Ok(r) => r,
                    Err(b) => break Err(b),
                };
                let span = lhs.span.to(rhs.span);
                lhs = self.mk(
                    ExprKind::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    span,
                );
                // Any operator binding tighter than this one was taken by `rhs`;
                // what may follow binds no tighter (this also keeps the `in` cap).
                cap = cap.min(prec);
            }
            // Each fold deepens the tree; count it like recursion.
            if let Err(b) = self.enter() {
                break Err(b);
            }
        };
        self.depth = saved;
        r.map(|()| lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.unary_inner();
        self.leave();
        r
    }

    fn unary_inner(&mut self) -> PResult<Expr> {
        let start = self.span();
        let op = match self.peek() {
            Tok::Op("+") => Some(UnaryOp::Plus),
            Tok::Op("-") => Some(UnaryOp::Neg),
            Tok::Op("!") => Some(UnaryOp::Not),
            Tok::Op("~") => Some(UnaryOp::BitNot),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let e = self.unary()?;
            let span = start.to(e.span);
            return Ok(self.mk(
                ExprKind::Unary {
                    op,
                    expr: Box::new(e),
                },
                span,
            ));
        }
        if self.is_op("++") || self.is_op("--") {
            let t = self.bump();
            let target = self.value()?;
            if !is_lvalue(&target) {
                return Err(self.error_at(
                    "operand of '++'/'--' is not a variable or array element",
                    &t,
                ));
            }
            let span = start.to(target.span);
            return Ok(self.mk(
                ExprKind::IncDec {
                    prefix: true,
                    increment: t.tok == Tok::Op("++"),
                    target: Box::new(target),
                },
                span,
            ));
        }
        if self.is_op("[") {
            // `[K1, K2] in ARRAY`
            self.bump();
            let mut keys = Vec::new();
            loop {
                keys.push(match self.wildcard() {
                    Some(w) => w,
                    None => self.binary(PREC_IN + 1)?,
                });
                if self.eat_op("]") {
                    break;
                }
                if !self.eat_op(",") {
                    return Err(self.error("expected ',' or ']'"));
                }
            }
            if !self.is_kw("in") {
                return Err(self.error("expected 'in'"));
            }
            self.bump();
            let array = self.name("expected identifier")?;
            let span = self.since(start);
            return Ok(self.mk(ExprKind::In { keys, array }, span));
        }
        let e = self.value()?;
        // stap's grammar takes a `++` after any value as a postfix increment, even on
        // the next line (`a = b` then `++c` is `a = b++; c`); elaboration rejects
        // `3++` as stap does.
        if self.is_op("++") || self.is_op("--") {
            let t = self.bump();
            let span = self.since(start);
            return Ok(self.mk(
                ExprKind::IncDec {
                    prefix: false,
                    increment: t.tok == Tok::Op("++"),
                    target: Box::new(e),
                },
                span,
            ));
        }
        Ok(e)
    }

    /// A primary value.
    fn value(&mut self) -> PResult<Expr> {
        let start = self.span();
        match self.peek().clone() {
            Tok::Number(n) => {
                self.bump();
                Ok(self.mk(ExprKind::Number(n), start))
            }
            Tok::Str(s) => {
                self.bump();
                // Adjacent literals are one string, as in C (stap's parser joins them).
                let mut s = s;
                while let Tok::Str(more) = self.peek().clone() {
                    self.bump();
                    s.push_str(&more);
                }
                let span = self.since(start);
                Ok(self.mk(ExprKind::String(s), span))
            }
            Tok::Op("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("&") => {
                // stap's parse_value: `&` binds to the value that follows.
                self.bump();
                let e = self.value()?;
                let span = start.to(e.span);
                Ok(self.mk(
                    ExprKind::Unary {
                        op: UnaryOp::AddressOf,
                        expr: Box::new(e),
                    },
                    span,
                ))
            }
            Tok::Embedded => Err(self.error("embedded C code is not supported in snaptap")),
            Tok::Ident(w) => self.symbol(w, start),
            _ => Err(self.error("expected literal string or number")),
        }
    }

    fn symbol(&mut self, w: String, start: Span) -> PResult<Expr> {
        if is_keyword(&w) {
            return Err(self.error("expected literal string or number"));
        }
        if w == "$#" {
            self.bump();
            return Ok(self.mk(ExprKind::ArgCount, start));
        }
        if w == "@#" {
            // The string form: stap's lexer substitutes "N".
            self.bump();
            let n = self.script_args.len().to_string();
            return Ok(self.mk(ExprKind::String(n), start));
        }
        if w.len() > 1
            && (w.starts_with('$') || w.starts_with('@'))
            && w[1..].bytes().all(|b| b.is_ascii_digit())
        {
            self.bump();
            let index: u32 = match w[1..].parse() {
                Ok(i) if i > 0 => i,
                _ => {
                    let t = self.toks[self.pos - 1].clone();
                    return Err(self.error_at("command line argument index must be at least 1", &t));
                }
            };
            if index as usize > self.script_args.len() {
                self.pos -= 1;
                return Err(self.arg_out_of_range());
            }
            return Ok(self.mk(
                ExprKind::ScriptArg {
                    index,
                    as_string: w.starts_with('@'),
                },
                start,
            ));
        }
        if let Some(rest) = w.strip_prefix('$') {
            self.bump();
            let base_len = rest.trim_end_matches('$').len();
            let mut pretty = (rest.len() - base_len) as u8;
            let mut name = rest[..base_len].to_string();
            if name.starts_with('$') && name.len() > 1 {
                // `$$parms`: the name keeps one `$`.
            } else if name.is_empty() {
                // `$$` alone cannot happen (the lexer rejects it) but `$$$` could.
                let t = self.toks[self.pos - 1].clone();
                return Err(self.error_at("expected target variable name", &t));
            }
            if pretty > 2 {
                let t = self.toks[self.pos - 1].clone();
                return Err(self.error_at("expected '$' or '$$' pretty-printing suffix", &t));
            }
            let path = if pretty == 0 {
                self.target_path(&mut pretty)?
            } else {
                Vec::new()
            };
            if name.is_empty() {
                name.push('$');
            }
            let span = self.since(start);
            return Ok(self.mk(ExprKind::Target(TargetExpr { name, path, pretty }), span));
        }
        if w.starts_with('@') {
            return self.at_op(w, start);
        }
        self.bump();
        if self.eat_op("(") {
            let args = if is_print_family(&w) {
                self.print_args(&w)?
            } else {
                self.args(")")?
            };
            let span = self.since(start);
            return Ok(self.mk(ExprKind::Call { name: w, args }, span));
        }
        if self.eat_op("[") {
            let mut keys = Vec::new();
            loop {
                keys.push(match self.wildcard() {
                    Some(w) => w,
                    None => self.expr()?,
                });
                if self.eat_op("]") {
                    break;
                }
                if !self.eat_op(",") {
                    return Err(self.error("expected one of '] ,'"));
                }
            }
            let span = self.since(start);
            return Ok(self.mk(ExprKind::Index { array: w, keys }, span));
        }
        Ok(self.mk(ExprKind::Var(w), start))
    }

    /// A `*` array index (followed by `,` or `]`, where no expression can start with
    /// `*`), consumed.
    fn wildcard(&mut self) -> Option<Expr> {
        if !self.is_op("*") {
            return None;
        }
        let next = self.toks.get(self.pos + 1).map(|t| &t.tok);
        if !matches!(next, Some(Tok::Op(",")) | Some(Tok::Op("]"))) {
            return None;
        }
        let t = self.bump();
        Some(self.mk(ExprKind::Wildcard, t.span))
    }

    /// Comma-separated expressions up to `close` (consumed); the opener is consumed.
    fn args(&mut self, close: &str) -> PResult<Vec<Expr>> {
        let mut v = Vec::new();
        if close == ")" && self.eat_op(close) {
            return Ok(v);
        }
        loop {
            v.push(self.expr()?);
            if self.eat_op(close) {
                return Ok(v);
            }
            if !self.eat_op(",") {
                // stap lists the expected operators in the order its parser tries them.
                return Err(self.error(format!("expected one of '{close} ,'")));
            }
        }
    }

    /// The arguments of `print`, `printf`, `printd` and their kin, which stap's parser
    /// checks itself: the format of `printf`/`sprintf` and the delimiter of
    /// `printd`/`printdln` must be literal strings (a bad format is reported at the token
    /// after it), `printd` needs two values and `print` one, as stap requires.
    fn print_args(&mut self, name: &str) -> PResult<Vec<Expr>> {
        let with_format = matches!(name, "printf" | "sprintf");
        let with_delim = matches!(name, "printd" | "printdln" | "sprintd" | "sprintdln");
        let mut v = Vec::new();
        if with_format || with_delim {
            let t = self.tok().clone();
            if !matches!(t.tok, Tok::Str(_)) {
                return Err(self.error("expected literal string"));
            }
            v.push(self.expr()?);
            let ExprKind::String(text) = &v[0].kind else {
                return Err(self.error_at("expected literal string", &t));
            };
            if with_format {
                if let Err(msg) = check_format(text) {
                    return Err(self.error(msg));
                }
            }
        }
        let min = match name {
            "print" | "sprint" => 1,
            _ if with_delim => 3,
            _ => 0,
        };
        if v.is_empty() && matches!(self.peek(), Tok::Op(")")) {
            if min > 0 {
                return Err(self.error("expected literal string or number"));
            }
            self.bump();
            return Ok(v);
        }
        if !v.is_empty() {
            if self.eat_op(")") {
                if v.len() < min {
                    return Err(self.error("expected literal string or number"));
                }
                return Ok(v);
            }
            if !self.eat_op(",") {
                return Err(self.error("expected one of ', )'"));
            }
        }
        loop {
            self.hist_ok =
                matches!(self.peek(), Tok::Ident(w) if w == "@hist_log" || w == "@hist_linear");
            v.push(self.expr()?);
            self.hist_ok = false;
            if self.eat_op(")") {
                if v.len() < min {
                    return Err(self.error("expected literal string or number"));
                }
                return Ok(v);
            }
            if !self.eat_op(",") {
                return Err(self.error("expected one of ', )'"));
            }
        }
    }

    /// `->member` and `[index]` steps after a target value; a trailing `$`/`$$` on the
    /// last member sets `pretty`.
    fn target_path(&mut self, pretty: &mut u8) -> PResult<Vec<TargetStep>> {
        let mut path = Vec::new();
        loop {
            if self.eat_op("->") {
                let t = self.tok().clone();
                let Tok::Ident(m) = &t.tok else {
                    return Err(self.error("expected field name"));
                };
                if m.starts_with('$') || m.starts_with('@') {
                    return Err(self.error("expected field name"));
                }
                self.bump();
                let base = m.trim_end_matches('$');
                let p = m.len() - base.len();
                if p > 2 {
                    return Err(self.error_at("expected '$' or '$$' pretty-printing suffix", &t));
                }
                path.push(TargetStep::Member(base.to_string(), t.span));
                if p > 0 {
                    *pretty = p as u8;
                    break;
                }
            } else if self.eat_op("[") {
                let e = self.expr()?;
                self.expect_op("]")?;
                path.push(TargetStep::Index(Box::new(e)));
            } else if let Tok::Ident(w) = self.peek() {
                // `$p->a[3]$`: the suffix lexes as its own `$` word; it must touch
                // the path (`$p->a[3] $x` is two values).
                let touching = self.span().start == self.prev_span().end;
                if !touching || !w.bytes().all(|b| b == b'$') {
                    break;
                }
                let p = w.len();
                let t = self.bump();
                if p > 2 {
                    return Err(self.error_at("expected '$' or '$$' pretty-printing suffix", &t));
                }
                *pretty = p as u8;
                break;
            } else {
                break;
            }
        }
        Ok(path)
    }

    fn string_lit(&mut self) -> PResult<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            _ => Err(self.error("expected literal string")),
        }
    }

    fn at_op(&mut self, w: String, start: Span) -> PResult<Expr> {
        let hist_ok = std::mem::replace(&mut self.hist_ok, false);
        let head = self.bump();
        let stat = match w.as_str() {
            "@count" => Some(StatOp::Count),
            "@sum" => Some(StatOp::Sum),
            "@min" => Some(StatOp::Min),
            "@max" => Some(StatOp::Max),
            "@avg" => Some(StatOp::Avg),
            "@variance" => Some(StatOp::Variance),
            "@hist_log" => Some(StatOp::HistLog),
            "@hist_linear" => Some(StatOp::HistLinear),
            _ => None,
        };
        if let Some(op) = stat {
            self.expect_op("(")?;
            let e = self.expr()?;
            let mut args = Vec::new();
            if op == StatOp::HistLinear {
                for _ in 0..3 {
                    self.expect_op(",")?;
                    args.push(self.expr()?);
                }
            } else if op == StatOp::Variance && self.eat_op(",") {
                args.push(self.expr()?);
            }
            self.expect_op(")")?;
            if self.is_op("[") && !matches!(op, StatOp::HistLog | StatOp::HistLinear) {
                return Err(self.error("only a histogram can be indexed"));
            }
            let span = self.since(start);
            let hist = matches!(op, StatOp::HistLog | StatOp::HistLinear);
            if hist && !hist_ok && !self.is_op("[") {
                // stap reports it at the operator, with `at:` (an explicit token).
                let mut d = Diagnostic::error(
                    "parse error",
                    "base histogram operator where expression expected",
                    head.span,
                );
                d.labels[0].message = format!("{AT_TOKEN}operator '{w}'");
                self.diags.push(d);
                return Err(Bail);
            }
            if hist && self.eat_op("[") {
                let hist = self.mk(
                    ExprKind::Stat {
                        op,
                        expr: Box::new(e),
                        args,
                    },
                    span,
                );
                let index = self.expr()?;
                self.expect_op("]")?;
                let span = self.since(start);
                return Ok(self.mk(
                    ExprKind::HistBucket {
                        hist: Box::new(hist),
                        index: Box::new(index),
                    },
                    span,
                ));
            }
            return Ok(self.mk(
                ExprKind::Stat {
                    op,
                    expr: Box::new(e),
                    args,
                },
                span,
            ));
        }
        match w.as_str() {
            "@cast" => {
                self.expect_op("(")?;
                let e = self.expr()?;
                self.expect_op(",")?;
                let type_name = self.string_lit()?;
                let module = if self.eat_op(",") {
                    Some(self.string_lit()?)
                } else {
                    None
                };
                self.expect_op(")")?;
                let mut pretty = 0;
                let path = self.target_path(&mut pretty)?;
                let span = self.since(start);
                Ok(self.mk(
                    ExprKind::Cast {
                        expr: Box::new(e),
                        type_name,
                        module,
                        path,
                        pretty,
                    },
                    span,
                ))
            }
            "@var" => {
                self.expect_op("(")?;
                let name = self.string_lit()?;
                let module = if self.eat_op(",") {
                    Some(self.string_lit()?)
                } else {
                    None
                };
                self.expect_op(")")?;
                let mut pretty = 0;
                let path = self.target_path(&mut pretty)?;
                if pretty != 0 {
                    let t = self.toks[self.pos - 1].clone();
                    return Err(self.error_at("pretty printing of @var is not supported", &t));
                }
                let span = self.since(start);
                Ok(self.mk(ExprKind::GlobalVar { name, module, path }, span))
            }
            "@entry" | "@defined" => {
                self.expect_op("(")?;
                let e = Box::new(self.expr()?);
                self.expect_op(")")?;
                let span = self.since(start);
                let kind = if w == "@entry" {
                    ExprKind::Entry(e)
                } else {
                    ExprKind::Defined(e)
                };
                Ok(self.mk(kind, span))
            }
            "@probewrite" => {
                self.expect_op("(")?;
                let v = self.name("expected identifier")?;
                self.expect_op(")")?;
                let span = self.since(start);
                Ok(self.mk(ExprKind::ProbeWrite(v), span))
            }
            _ => Err(self.error_at(format!("unknown operator {w}"), &head)),
        }
    }
}

/// Parses an integer the way the lexer does (decimal, `0x` hex, `0` octal, optional
/// sign, surrounding blanks ignored): script arguments, `-D`/`-G` values.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        u64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<u64>().ok()?
    } as i64;
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Marks a label's token as one the error names explicitly: rendered `at:`, not `saw:`.
pub(crate) const AT_TOKEN: char = '\u{1}';

/// The calls stap's parser treats as print statements (`print_format`).
fn is_print_family(name: &str) -> bool {
    matches!(
        name,
        "print"
            | "println"
            | "printf"
            | "printd"
            | "printdln"
            | "sprint"
            | "sprintln"
            | "sprintf"
            | "sprintd"
            | "sprintdln"
    )
}

/// Checks a printf format as stap's parser does (`parse_print_fmt`): one flag of `-+ #0`, a
/// width and a precision (digits or `*`), an optional `l`, then one of
/// `d i o u x X s p c b m M`; `%%` only bare.
pub(crate) fn check_format(fmt: &str) -> Result<(), &'static str> {
    const BAD: &str = "invalid or missing conversion specifier";
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        if i == b.len() {
            return Err(BAD);
        }
        if b[i] == b'%' {
            i += 1;
            continue;
        }
        // One flag only: stap rejects `%+-5d` and `%0#x` but takes `%-05d`, whose `0`
        // belongs to the width.
        if i < b.len() && b"-+ #0".contains(&b[i]) {
            i += 1;
        }
        if i < b.len() && b[i] == b'*' {
            i += 1;
        } else {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            if i < b.len() && b[i] == b'*' {
                i += 1;
            } else {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        if i == b.len() {
            return Err("trailing incomplete print format conversion");
        }
        if b[i] == b'l' {
            i += 1;
            if i == b.len() {
                // stap accepts a trailing `%l` as a conversion of its own.
                return Ok(());
            }
        }
        if !b"dioux XspcbmM".contains(&b[i]) || b[i] == b' ' {
            return Err(BAD);
        }
        i += 1;
    }
    Ok(())
}
