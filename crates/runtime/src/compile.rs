//! Elaboration: resolves names, infers types (long / string / stats) the way stap does,
//! checks calls, formats and regexes, and compiles the AST into the IR of [`crate::ir`].
//!
//! Inference runs to a fixpoint over every probe and function body: an assignment,
//! a call argument, a comparison or a printf conversion fixes the type of an untyped
//! variable, parameter, array key/value or function return. A second walk then compiles
//! with all types known and reports mismatches and unresolved names.

use std::collections::HashMap;

use capture_plan::{Decode, SiteBinding};
use script_syntax::ast::{
    AssignOp, BinaryOp, Expr, ExprKind, FileId, FunctionBody, Item, Literal, ProbeDecl, Span,
    StatOp, Stmt, StmtKind, TypeName, UnaryOp,
};
use script_syntax::visit::{self, Node, Walk};
use script_syntax::{Diagnostic, SourceMap};

use crate::format::{parse_format, Conv, Piece};
use crate::ir::*;
use crate::stats::HistSpec;

/// Limits that influence compilation.
pub(crate) struct CompileLimits {
    pub(crate) maxmapentries: usize,
}

const SEM: &str = "semantic error";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sym {
    Local(usize),
    Global(usize),
}

struct LocalInfo {
    ty: Option<Ty>,
    span: Span,
}

#[derive(Default)]
struct Scope {
    locals: Vec<LocalInfo>,
    names: HashMap<String, usize>,
    nparams: usize,
    /// Slot of each local once types are known.
    slots: Vec<Option<u32>>,
    frame: FrameSize,
}

struct GInfo {
    name: String,
    span: Span,
    size: Option<i64>,
    init: Option<Literal>,
    ty: Option<Ty>,
    arity: Option<usize>,
    keys: Vec<Option<Ty>>,
    read: bool,
    written: bool,
    hist: HistSpec,
    /// Where the array's arity was first inferred (for stap's chained error).
    arity_at: Option<Span>,
    /// Two histogram kinds were asked of this aggregate (reported once, as stap does).
    hist_conflict: bool,
    shift: Option<u32>,
    kind: Option<GlobalKind>,
}

struct FInfo<'a> {
    ret: Option<Ty>,
    scope: usize,
    body: &'a FunctionBody,
    /// Reachable from a probe: stap elides functions nobody calls, so their untyped
    /// parameters are no error.
    called: bool,
}

/// Signature of a runtime builtin: argument types and return type.
struct Sig {
    f: Builtin,
    args: &'static [Ty],
    ret: Ty,
}

/// The builtin a call names, given its argument count: the tapset overloads
/// `assert(cond)` and `assert(cond, msg)`.
fn overload(name: &str, nargs: usize) -> &str {
    match (name, nargs) {
        ("assert", 2) => "assert\u{0}2",
        _ => crate::tapfns::overload(name, nargs).unwrap_or(name),
    }
}

fn builtin_sig(name: &str) -> Option<Sig> {
    use Builtin as B;
    use Ty::{Long as L, Str as S};
    let (f, args, ret): (Builtin, &'static [Ty], Ty) = match name {
        "pid" => (B::Pid, &[], L),
        "tid" => (B::Tid, &[], L),
        "ppid" => (B::Ppid, &[], L),
        "execname" => (B::Execname, &[], S),
        "uaddr" | "addr" => (B::Uaddr, &[], L),
        "cpu" | "cpuid" => (B::Cpu, &[], L),
        "probefunc" | "ppfunc" => (B::Probefunc, &[], S),
        "pp" => (B::Pp, &[], S),
        "gettimeofday_ns" => (B::Time(1), &[], L),
        "gettimeofday_us" => (B::Time(1_000), &[], L),
        "gettimeofday_ms" => (B::Time(1_000_000), &[], L),
        "gettimeofday_s" => (B::Time(1_000_000_000), &[], L),
        "target" => (B::Target, &[], L),
        "exit" => (B::Exit, &[], L),
        "error" => (B::Error, &[S], L),
        "warn" => (B::Warn, &[S], L),
        "log" => (B::Log, &[S], L),
        "strlen" => (B::Strlen, &[S], L),
        "substr" => (B::Substr, &[S, L, L], S),
        "isinstr" => (B::Isinstr, &[S, S], L),
        "strtol" => (B::Strtol, &[S, L], L),
        "str_replace" => (B::StrReplace, &[S, S, S], S),
        "tokenize" => (B::Tokenize, &[S, S], S),
        "text_str" => (B::TextStr, &[S], S),
        "text_strn" => (B::TextStrn, &[S, L, L], S),
        "string_quoted" => (B::StringQuoted, &[S], S),
        "stringat" => (B::Stringat, &[S, L], L),
        "isdigit" => (B::Isdigit, &[S], L),
        "toupper" => (B::Toupper, &[S], S),
        "tolower" => (B::Tolower, &[S], S),
        "abs" => (B::Abs, &[L], L),
        "randint" => (B::Randint, &[L], L),
        "matched" => (B::Matched, &[L], S),
        "string" => (B::LongToString, &[L], S),
        "ascii" => (B::Ascii, &[L], S),
        "ctime" => (B::Ctime, &[L], S),
        "tz_gmtoff" => (B::TzGmtoff, &[], L),
        "tz_name" => (B::TzName, &[], S),
        "tz_ctime" => (B::TzCtime, &[L], S),
        "system" => (B::System, &[S], L),
        "strpos" => (B::Strpos, &[S, S], L),
        "assert" => (B::Assert, &[L], L),
        // The two-argument `assert(cond, msg)` (see `overload`).
        "assert\u{0}2" => (B::Assert, &[L, S], L),
        "matched_str" => (B::MatchedStr, &[], S),
        "msecs_to_string" => (B::DurationString(1_000), &[L], S),
        "usecs_to_string" => (B::DurationString(1_000_000), &[L], S),
        "nsecs_to_string" => (B::DurationString(1_000_000_000), &[L], S),
        "is_return" => (B::IsReturn, &[], L),
        "abort" => (B::Abort, &[], L),
        "thread_indent" => (B::ThreadIndent, &[L], S),
        "indent" => (B::Indent, &[L], S),
        "local_clock_ns" | "cpu_clock_ns" | "get_cycles" => (B::Time(1), &[], L),
        "local_clock_us" | "cpu_clock_us" => (B::Time(1_000), &[], L),
        "local_clock_ms" | "cpu_clock_ms" => (B::Time(1_000_000), &[], L),
        "local_clock_s" | "cpu_clock_s" => (B::Time(1_000_000_000), &[], L),
        "errno_str" => (B::ErrnoStr, &[L], S),
        "errno_p" => (B::ErrnoP, &[L], L),
        "return_str" => (B::ReturnStr, &[L, L], S),
        "ansi_clear_screen" => (B::Ansi(AnsiFn::ClearScreen), &[], L),
        "ansi_set_color" => (B::Ansi(AnsiFn::SetColor), &[L], L),
        "ansi_set_color2" => (B::Ansi(AnsiFn::SetColor2), &[L, L], L),
        "ansi_set_color3" => (B::Ansi(AnsiFn::SetColor3), &[L, L, L], L),
        "ansi_reset_color" => (B::Ansi(AnsiFn::ResetColor), &[], L),
        "ansi_new_line" => (B::Ansi(AnsiFn::NewLine), &[], L),
        "ansi_cursor_move" => (B::Ansi(AnsiFn::CursorMove), &[L, L], L),
        "ansi_cursor_hide" => (B::Ansi(AnsiFn::CursorHide), &[], L),
        "ansi_cursor_save" => (B::Ansi(AnsiFn::CursorSave), &[], L),
        "ansi_cursor_restore" => (B::Ansi(AnsiFn::CursorRestore), &[], L),
        "ansi_cursor_show" => (B::Ansi(AnsiFn::CursorShow), &[], L),
        // stap: registers exist in user-mode probes (here, every target site).
        "user_mode" | "registers_valid" => (B::UserMode, &[], L),
        "is_myproc" => (B::IsMyproc, &[], L),
        "stp_pid" => (B::StpPid, &[], L),
        "remote_id" => (B::RemoteId, &[], L),
        "remote_uri" => (B::RemoteUri, &[], S),
        "pn" => (B::Pn, &[], S),
        "print_char" => (B::PrintChar, &[L], L),
        "thread_indent_depth" => (B::IndentDepth(true), &[L], L),
        "indent_depth" => (B::IndentDepth(false), &[L], L),
        _ if crate::tapfns::signature(name).is_some() => {
            let (c, args, ret) = crate::tapfns::signature(name)?;
            let args: &'static [Ty] = match args {
                [] => &[],
                [false] => &[L],
                [true] => &[S],
                _ => &[L, L, S],
            };
            (B::Ctx(c), args, if ret { S } else { L })
        }
        _ => {
            use crate::ustack::{UArg, UFn};
            let u = UFn::by_name(name).filter(|u| !u.captured())?;
            let args: &'static [Ty] = match u.arg() {
                UArg::None => &[],
                UArg::Long => &[L],
                UArg::Str => &[S],
            };
            (B::Ustack(u), args, if u.returns_string() { S } else { L })
        }
    };
    Some(Sig { f, args, ret })
}

/// Functions that read target memory: they only work when the planner captured the
/// call, and their type is fixed here.
fn capture_only(name: &str) -> Option<(Ty, FaultKind)> {
    let t = match name {
        "user_string" | "user_string_n" | "user_string_quoted" | "user_string_n_quoted" => {
            (Ty::Str, FaultKind::UserString)
        }
        "user_string2" | "user_string_n2" => (Ty::Str, FaultKind::UserString),
        "user_string_utf16" | "user_string2_utf16" => (Ty::Str, FaultKind::Wide(2, false)),
        "user_string_utf32" | "user_string2_utf32" => (Ty::Str, FaultKind::Wide(4, false)),
        "kernel_string_utf16" | "kernel_string2_utf16" => (Ty::Str, FaultKind::Wide(2, true)),
        "kernel_string_utf32" | "kernel_string2_utf32" => (Ty::Str, FaultKind::Wide(4, true)),
        "user_char_error" | "user_short_error" | "user_ushort_error" | "user_int_error"
        | "user_long_error" | "user_ulong_error" | "user_int8_error" | "user_uint8_error"
        | "user_int16_error" | "user_uint16_error" | "user_int32_error" | "user_uint32_error"
        | "user_int64_error" | "user_uint64_error" => (Ty::Long, FaultKind::Deref),
        "user_string_warn" | "user_string2_warn" | "user_string_n_warn" | "user_string2_n_warn" => {
            (Ty::Str, FaultKind::Warn)
        }
        "kernel_string" | "kernel_string_n" | "kernel_string2" | "kernel_string_quoted" => {
            (Ty::Str, FaultKind::KernelString)
        }
        "user_char" | "user_short" | "user_int" | "user_long" | "user_int8" | "user_int16"
        | "user_int32" | "user_int64" | "user_uint8" | "user_uint16" | "user_uint32"
        | "user_uint64" | "user_ushort" | "user_ulong" | "kernel_char" | "kernel_short"
        | "kernel_int" | "kernel_long" | "kernel_pointer" => (Ty::Long, FaultKind::UserRead),
        // stap's words for each: `user_char_warn` alone says "at".
        "user_char_warn" => (Ty::Long, FaultKind::WarnRead("char copy fault at")),
        "user_short_warn" => (Ty::Long, FaultKind::WarnRead("short copy fault")),
        "user_ushort_warn" => (Ty::Long, FaultKind::WarnRead("unsigned short copy fault")),
        "user_int_warn" => (Ty::Long, FaultKind::WarnRead("int copy fault")),
        "user_long_warn" => (Ty::Long, FaultKind::WarnRead("long copy fault")),
        "user_ulong_warn" => (Ty::Long, FaultKind::WarnRead("unsigned long copy fault")),
        _ => return None,
    };
    Some(t)
}

/// Names offered in "did you mean" notes, besides user functions.
const KNOWN_FUNCS: &[&str] = &[
    "pid",
    "tid",
    "ppid",
    "execname",
    "uaddr",
    "cpu",
    "probefunc",
    "ppfunc",
    "pp",
    "gettimeofday_ns",
    "gettimeofday_us",
    "gettimeofday_ms",
    "gettimeofday_s",
    "target",
    "exit",
    "error",
    "warn",
    "log",
    "strlen",
    "substr",
    "isinstr",
    "strtol",
    "str_replace",
    "tokenize",
    "text_str",
    "text_strn",
    "string_quoted",
    "stringat",
    "isdigit",
    "toupper",
    "tolower",
    "abs",
    "randint",
    "matched",
    "printf",
    "sprintf",
    "print",
    "println",
    "printd",
    "printdln",
    "sprint",
    "sprintln",
    "sprintd",
    "sprintdln",
    "print_char",
    "user_string",
    "user_string_n",
    "user_string2",
    "user_string_quoted",
    "kernel_string",
    "user_long",
    "user_int",
    "user_char",
    "user_short",
    "errno_str",
    "return_str",
    "ansi_clear_screen",
    "ansi_set_color",
    "ansi_reset_color",
    "ansi_cursor_move",
    "user_mode",
    "is_myproc",
    "pn",
    "ctime",
    "tz_ctime",
    "tz_gmtoff",
    "tz_name",
    "system",
    "strpos",
    "assert",
    "matched_str",
    "msecs_to_string",
    "usecs_to_string",
    "nsecs_to_string",
    "thread_indent",
    "uid",
    "gid",
    "euid",
    "egid",
    "pgrp",
    "sid",
    "cmdline_str",
    "cmdline_arg",
    "cmdline_args",
    "env_var",
    "pexecname",
    "bytes_to_string",
    "signal_str",
    "proc_mem_size",
    "proc_mem_rss",
    "proc_mem_string",
    "mem_page_size",
    "num_online_cpus",
    "probe_type",
    "user_string_utf16",
    "user_string_utf32",
    "user_long_error",
    "user_int_error",
];

const KEYWORDS: &[&str] = &[
    "if", "else", "while", "for", "foreach", "in", "limit", "delete", "return", "next", "break",
    "continue", "try", "catch", "probe", "global", "function", "private", "long", "string",
];

const OPERATORS: &[&str] = &[
    ">>>=", "<<<", ">>>", "<<=", ">>=", "==", "!=", "<=", ">=", "&&", "||", "++", "--", "+=", "-=",
    "*=", "/=", "%=", "&=", "|=", "^=", ".=", "=~", "!~", "<<", ">>", "->",
];

fn fill(slot: &mut Option<Ty>, t: Option<Ty>, changed: &mut bool) {
    if slot.is_none() && t.is_some() {
        *slot = t;
        *changed = true;
    }
}

/// Levenshtein distance, for "did you mean".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let c = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + c);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The kind of each of a probe's points.
fn probe_kinds(p: &ProbeDecl) -> Vec<ProbeKind> {
    p.points
        .iter()
        .map(
            |pt| match pt.components.first().map(|c| c.name.as_str()).unwrap_or("") {
                "begin" => ProbeKind::Begin,
                "end" => ProbeKind::End,
                "error" => ProbeKind::Error,
                "timer" => ProbeKind::Timer,
                _ => ProbeKind::Site,
            },
        )
        .collect()
}

/// Parses a number the way stap's lexer does: decimal, `0x` hex, `0` octal.
pub(crate) use script_syntax::parse_int as parse_number;

pub(crate) struct Compiler<'a> {
    script: &'a script_syntax::ast::Script,
    sources: &'a SourceMap,
    args: &'a [String],
    limits: CompileLimits,
    diags: Vec<Diagnostic>,
    scopes: Vec<Scope>,
    globals: Vec<GInfo>,
    gnames: HashMap<String, usize>,
    funcs: Vec<FInfo<'a>>,
    fnames: HashMap<String, usize>,
    probes: Vec<(&'a ProbeDecl, usize)>,
    cap_ty: HashMap<u32, Ty>,
    cap_slot: HashMap<u32, u32>,
    capture_ids: Vec<u32>,
    toks: Vec<String>,
    regexes: Vec<regex::Regex>,
    /// Token of the statement being compiled (array errors are reported near it).
    cur_stmt: Tok,
    changed: bool,
    n_glong: u32,
    n_gstr: u32,
    n_stats: u32,
    arrays: Vec<ArrayMeta>,
    stats: Vec<StatMeta>,
}

fn decode_ty(d: &Decode) -> Ty {
    match d {
        Decode::Int { .. } | Decode::Bitfield { .. } => Ty::Long,
        Decode::Str { .. }
        | Decode::Bytes { .. }
        | Decode::Pretty(_)
        | Decode::Backtrace { .. } => Ty::Str,
    }
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(
        script: &'a script_syntax::ast::Script,
        sources: &'a SourceMap,
        bindings: &[SiteBinding],
        args: &'a [String],
        limits: CompileLimits,
    ) -> Compiler<'a> {
        let mut c = Compiler {
            script,
            sources,
            args,
            limits,
            diags: Vec::new(),
            scopes: Vec::new(),
            globals: Vec::new(),
            gnames: HashMap::new(),
            funcs: Vec::new(),
            fnames: HashMap::new(),
            probes: Vec::new(),
            cap_ty: HashMap::new(),
            cap_slot: HashMap::new(),
            capture_ids: Vec::new(),
            toks: Vec::new(),
            regexes: Vec::new(),
            cur_stmt: 0,
            changed: false,
            n_glong: 0,
            n_gstr: 0,
            n_stats: 0,
            arrays: Vec::new(),
            stats: Vec::new(),
        };
        for b in bindings {
            for (id, d) in &b.captures {
                let t = decode_ty(d);
                match c.cap_ty.get(id) {
                    Some(&old) if old != t => {
                        c.diags.push(Diagnostic::error(
                            SEM,
                            format!(
                                "captured expression #{id} has different types at different sites ({} vs. {})",
                                old.name(),
                                t.name()
                            ),
                            expr_span(script, *id),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        c.cap_ty.insert(*id, t);
                    }
                }
            }
        }
        c
    }

    /// Whether `name` is a global whose histogram kinds conflict (already reported).
    fn hist_conflict(&self, name: &str) -> bool {
        self.gnames
            .get(name)
            .is_some_and(|&g| self.globals[g].hist_conflict)
    }

    fn err(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(SEM, msg, span));
    }

    // ----- tokens for runtime error messages -----

    fn loc(&self, file: FileId, pos: u32) -> String {
        let name = self
            .sources
            .file(file)
            .map(|f| f.name.as_str())
            .unwrap_or("<unknown>");
        let (l, c) = self.sources.line_col(Span {
            file,
            start: pos,
            end: pos,
        });
        format!("{name}:{l}:{c}")
    }

    fn describe(&self, file: FileId, pos: u32) -> String {
        let text = self
            .sources
            .file(file)
            .map(|f| f.text.as_str())
            .unwrap_or("");
        let p = (pos as usize).min(text.len());
        let rest = text.get(p..).unwrap_or("");
        let loc = self.loc(file, pos);
        let first = rest.chars().next().unwrap_or(' ');
        if first == '@' {
            let w: String = rest
                .chars()
                .enumerate()
                .take_while(|(i, ch)| *i == 0 || ch.is_ascii_alphanumeric() || *ch == '_')
                .map(|(_, ch)| ch)
                .collect();
            return format!("operator '{w}' at {loc}");
        }
        if first.is_ascii_alphabetic() || first == '_' || first == '$' {
            let w: String = rest
                .chars()
                .enumerate()
                .take_while(|(i, ch)| {
                    ch.is_ascii_alphanumeric()
                        || *ch == '_'
                        || (*i == 0 && (*ch == '$' || *ch == '@'))
                        || (*i == 1 && *ch == '$')
                })
                .map(|(_, ch)| ch)
                .collect();
            if KEYWORDS.contains(&w.as_str()) {
                return format!("keyword at {loc}");
            }
            return format!("identifier '{w}' at {loc}");
        }
        if first.is_ascii_digit() {
            let w: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            return format!("number '{w}' at {loc}");
        }
        if first == '"' {
            let w: String = rest[1..].chars().take_while(|c| *c != '"').collect();
            return format!("string '{w}' at {loc}");
        }
        for op in OPERATORS {
            if rest.starts_with(op) {
                return format!("operator '{op}' at {loc}");
            }
        }
        format!("operator '{first}' at {loc}")
    }

    fn tok_at(&mut self, file: FileId, pos: u32) -> Tok {
        let d = self.describe(file, pos);
        self.toks.push(d);
        (self.toks.len() - 1) as Tok
    }

    /// The token of operator `op` found between `from` and `to` (falls back to `from`).
    fn op_tok(&mut self, op: &str, file: FileId, from: u32, to: u32) -> Tok {
        let text = self
            .sources
            .file(file)
            .map(|f| f.text.as_str())
            .unwrap_or("");
        let (a, b) = (
            (from as usize).min(text.len()),
            (to as usize).min(text.len()),
        );
        let pos = text
            .get(a..b.max(a))
            .and_then(|s| s.find(op))
            .map(|i| (a + i) as u32)
            .unwrap_or(from);
        self.tok_at(file, pos)
    }

    fn expr_tok(&mut self, e: &Expr) -> Tok {
        let f = e.span.file;
        match &e.kind {
            ExprKind::Binary { op, lhs, rhs } => {
                let s = binop_text(*op);
                self.op_tok(s, f, lhs.span.end, rhs.span.start)
            }
            ExprKind::Assign { op, target, value } => {
                let s = match op {
                    AssignOp::Set => "=",
                    AssignOp::Aggregate => "<<<",
                    AssignOp::Compound(b) => compound_text(*b),
                };
                self.op_tok(s, f, target.span.end, value.span.start)
            }
            ExprKind::IncDec {
                prefix: false,
                increment,
                target,
            } => {
                let s = if *increment { "++" } else { "--" };
                self.op_tok(s, f, target.span.end, e.span.end)
            }
            _ => self.tok_at(f, e.span.start),
        }
    }

    /// stap's statement token is the statement's first token (`parse_expr_statement`
    /// peeks it); MAXACTION and array errors are reported near it.
    fn stmt_tok(&mut self, s: &Stmt) -> Tok {
        self.tok_at(s.span.file, s.span.start)
    }

    // ----- symbols -----

    fn new_scope(&mut self) -> usize {
        self.scopes.push(Scope::default());
        self.scopes.len() - 1
    }

    fn add_local(&mut self, sc: usize, name: &str, ty: Option<Ty>, span: Span) -> usize {
        let s = &mut self.scopes[sc];
        s.locals.push(LocalInfo { ty, span });
        let i = s.locals.len() - 1;
        s.names.insert(name.to_string(), i);
        i
    }

    fn sym(&mut self, sc: usize, name: &str, span: Span) -> Sym {
        if let Some(&i) = self.scopes[sc].names.get(name) {
            if i < self.scopes[sc].nparams {
                return Sym::Local(i);
            }
        }
        if let Some(&g) = self.gnames.get(name) {
            return Sym::Global(g);
        }
        if let Some(&i) = self.scopes[sc].names.get(name) {
            return Sym::Local(i);
        }
        Sym::Local(self.add_local(sc, name, None, span))
    }

    fn sym_ty(&mut self, sc: usize, s: Sym) -> &mut Option<Ty> {
        match s {
            Sym::Local(i) => &mut self.scopes[sc].locals[i].ty,
            Sym::Global(g) => &mut self.globals[g].ty,
        }
    }

    // ----- pass 1: declarations -----

    pub(crate) fn declare(&mut self) {
        let script = self.script;
        for item in &script.items {
            match item {
                Item::Global(g) => {
                    if self.gnames.contains_key(&g.name) {
                        self.err(format!("duplicate global variable '{}'", g.name), g.span);
                        continue;
                    }
                    let ty = match &g.init {
                        Some(Literal::Number(_)) => Some(Ty::Long),
                        Some(Literal::String(_)) => Some(Ty::Str),
                        None => None,
                    };
                    self.gnames.insert(g.name.clone(), self.globals.len());
                    self.globals.push(GInfo {
                        name: g.name.clone(),
                        span: g.span,
                        size: g.size,
                        init: g.init.clone(),
                        ty,
                        arity: if g.init.is_some() { Some(0) } else { None },
                        keys: Vec::new(),
                        read: false,
                        written: false,
                        hist: HistSpec::None,
                        arity_at: None,
                        hist_conflict: false,
                        shift: None,
                        kind: None,
                    });
                }
                Item::Function(f) => {
                    if self.fnames.contains_key(&f.name) {
                        self.err(format!("duplicate function '{}'", f.name), f.span);
                        continue;
                    }
                    let sc = self.new_scope();
                    for p in &f.params {
                        let ty = p.ty.map(|t| match t {
                            TypeName::Long => Ty::Long,
                            TypeName::String => Ty::Str,
                        });
                        self.add_local(sc, &p.name, ty, p.span);
                    }
                    self.scopes[sc].nparams = f.params.len();
                    if let FunctionBody::EmbeddedC(span) = &f.body {
                        self.err(
                            "embedded C code is not supported: snaptap runs handlers in its own process, not in the kernel",
                            *span,
                        );
                    }
                    let ret = f.ret.map(|t| match t {
                        TypeName::Long => Ty::Long,
                        TypeName::String => Ty::Str,
                    });
                    self.fnames.insert(f.name.clone(), self.funcs.len());
                    self.funcs.push(FInfo {
                        ret,
                        scope: sc,
                        body: &f.body,
                        called: false,
                    });
                }
                Item::Probe(p) => {
                    let sc = self.new_scope();
                    self.probes.push((p, sc));
                }
                // Aliases are expanded by the driver (script_syntax::expand_aliases); the
                // declarations themselves run nothing.
                Item::Alias(_) => {}
                Item::Embedded(span) => {
                    self.err(
                        "embedded C code is not supported: snaptap runs handlers in its own process, not in the kernel",
                        *span,
                    );
                }
            }
        }
    }

    // ----- pass 2: inference -----

    pub(crate) fn infer_all(&mut self) {
        for _ in 0..64 {
            self.changed = false;
            for i in 0..self.funcs.len() {
                if !self.funcs[i].called {
                    continue;
                }
                let sc = self.funcs[i].scope;
                if let FunctionBody::Script(b) = self.funcs[i].body {
                    for s in &b.stmts {
                        self.inf_stmt(sc, s, Some(i));
                    }
                }
            }
            for i in 0..self.probes.len() {
                let (p, sc) = self.probes[i];
                for pt in &p.points {
                    if let Some(c) = &pt.condition {
                        self.inf(sc, c, Some(Ty::Long));
                    }
                }
                for s in &p.body.stmts {
                    self.inf_stmt(sc, s, None);
                }
            }
            if !self.changed {
                break;
            }
        }
    }

    fn global_array(&mut self, name: &str, nkeys: usize, at: Span) -> Option<usize> {
        let g = *self.gnames.get(name)?;
        let gi = &mut self.globals[g];
        if gi.arity.is_none() && nkeys > 0 {
            gi.arity = Some(nkeys);
            gi.arity_at = Some(at);
            gi.keys = vec![None; nkeys];
            self.changed = true;
        }
        Some(g)
    }

    fn inf_keys(&mut self, sc: usize, g: usize, keys: &[Expr]) {
        for (i, k) in keys.iter().enumerate() {
            let kt = self.globals[g].keys.get(i).copied().flatten();
            let t = self.inf(sc, k, kt);
            if let Some(slot) = self.globals[g].keys.get_mut(i) {
                let mut ch = false;
                fill(slot, t, &mut ch);
                self.changed |= ch;
            }
        }
    }

    fn mark_stats(&mut self, sc: usize, target: &Expr) {
        let mut ch = false;
        match &target.kind {
            ExprKind::Var(n) => {
                if let Some(&g) = self.gnames.get(n) {
                    if self.globals[g].arity.is_none() {
                        self.globals[g].arity = Some(0);
                        ch = true;
                    }
                    fill(&mut self.globals[g].ty, Some(Ty::Stats), &mut ch);
                }
            }
            ExprKind::Index { array, keys } => {
                if let Some(g) = self.global_array(array, keys.len(), target.span) {
                    self.inf_keys(sc, g, keys);
                    fill(&mut self.globals[g].ty, Some(Ty::Stats), &mut ch);
                }
            }
            _ => {}
        }
        self.changed |= ch;
    }

    fn inf_stmt(&mut self, sc: usize, s: &Stmt, func: Option<usize>) {
        match &s.kind {
            StmtKind::Block(b) => {
                for s in &b.stmts {
                    self.inf_stmt(sc, s, func);
                }
            }
            StmtKind::Expr(e) => {
                self.inf(sc, e, None);
            }
            StmtKind::If { cond, then, els } => {
                self.inf(sc, cond, Some(Ty::Long));
                self.inf_stmt(sc, then, func);
                if let Some(e) = els {
                    self.inf_stmt(sc, e, func);
                }
            }
            StmtKind::While { cond, body } => {
                self.inf(sc, cond, Some(Ty::Long));
                self.inf_stmt(sc, body, func);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                if let Some(e) = init {
                    self.inf(sc, e, None);
                }
                if let Some(e) = cond {
                    self.inf(sc, e, Some(Ty::Long));
                }
                if let Some(e) = step {
                    self.inf(sc, e, None);
                }
                self.inf_stmt(sc, body, func);
            }
            StmtKind::Foreach {
                keys,
                value,
                array,
                slice,
                histogram: Some(h),
                limit,
                body,
                ..
            } => {
                // Bucket numbers and counts are longs.
                self.inf(sc, h, None);
                for n in keys.iter().chain(value.iter()) {
                    let at = crate::lint::word_span(self.sources, s.span, n);
                    let sy = self.sym(sc, n, at);
                    let mut ch = false;
                    fill(self.sym_ty(sc, sy), Some(Ty::Long), &mut ch);
                    self.changed |= ch;
                }
                let _ = (array, slice);
                if let Some(l) = limit {
                    self.inf(sc, l, Some(Ty::Long));
                }
                self.inf_stmt(sc, body, func);
            }
            StmtKind::Foreach {
                keys,
                value,
                array,
                slice,
                limit,
                body,
                ..
            } => {
                if let Some(g) = self.global_array(array, keys.len(), s.span) {
                    for (i, e) in slice.iter().enumerate() {
                        if let Some(e) = e {
                            let kt = self.globals[g].keys.get(i).copied().flatten();
                            let t = self.inf(sc, e, kt);
                            let mut ch = false;
                            if let Some(slot) = self.globals[g].keys.get_mut(i) {
                                fill(slot, t, &mut ch);
                            }
                            self.changed |= ch;
                        }
                    }
                    for (i, k) in keys.iter().enumerate() {
                        let at = crate::lint::word_span(self.sources, s.span, k);
                        let sy = self.sym(sc, k, at);
                        let kt = self.globals[g].keys.get(i).copied().flatten();
                        let mut ch = false;
                        fill(self.sym_ty(sc, sy), kt, &mut ch);
                        let vt = *self.sym_ty(sc, sy);
                        if let Some(slot) = self.globals[g].keys.get_mut(i) {
                            fill(slot, vt, &mut ch);
                        }
                        self.changed |= ch;
                    }
                    if let Some(v) = value {
                        let at = crate::lint::word_span(self.sources, s.span, v);
                        let sy = self.sym(sc, v, at);
                        let gt = self.globals[g].ty;
                        let mut ch = false;
                        if gt != Some(Ty::Stats) {
                            fill(self.sym_ty(sc, sy), gt, &mut ch);
                            let vt = *self.sym_ty(sc, sy);
                            fill(&mut self.globals[g].ty, vt, &mut ch);
                        }
                        self.changed |= ch;
                    }
                }
                if let Some(l) = limit {
                    self.inf(sc, l, Some(Ty::Long));
                }
                self.inf_stmt(sc, body, func);
            }
            StmtKind::Return(Some(e)) => {
                let want = func.and_then(|f| self.funcs[f].ret);
                let t = self.inf(sc, e, want);
                if let Some(f) = func {
                    let mut ch = false;
                    fill(&mut self.funcs[f].ret, t, &mut ch);
                    self.changed |= ch;
                }
            }
            StmtKind::Delete(e) => {
                self.inf(sc, e, None);
            }
            StmtKind::Try { body, var, catch } => {
                for s in &body.stmts {
                    self.inf_stmt(sc, s, func);
                }
                if let Some(v) = var {
                    let at = crate::lint::word_after(self.sources, s.span, "catch", v);
                    let sy = self.sym(sc, v, at);
                    let mut ch = false;
                    fill(self.sym_ty(sc, sy), Some(Ty::Str), &mut ch);
                    self.changed |= ch;
                }
                for s in &catch.stmts {
                    self.inf_stmt(sc, s, func);
                }
            }
            _ => {}
        }
    }

    fn inf(&mut self, sc: usize, e: &Expr, want: Option<Ty>) -> Option<Ty> {
        use Ty::{Long, Str};
        match &e.kind {
            ExprKind::Number(_) => Some(Long),
            ExprKind::String(_) => Some(Str),
            ExprKind::Var(n) => {
                let s = self.sym(sc, n, e.span);
                if let Sym::Global(g) = s {
                    if self.globals[g].arity.unwrap_or(0) > 0 {
                        return None;
                    }
                    if want.is_some() && self.globals[g].arity.is_none() {
                        self.globals[g].arity = Some(0);
                        self.changed = true;
                    }
                }
                let mut ch = false;
                let want = if want == Some(Ty::Stats) { None } else { want };
                let slot = self.sym_ty(sc, s);
                fill(slot, want, &mut ch);
                let t = *slot;
                self.changed |= ch;
                t
            }
            ExprKind::ScriptArg { as_string, .. } => Some(if *as_string { Str } else { Long }),
            ExprKind::ArgCount => Some(Long),
            ExprKind::Index { array, keys } => {
                let g = self.global_array(array, keys.len(), e.span)?;
                self.inf_keys(sc, g, keys);
                let mut ch = false;
                fill(&mut self.globals[g].ty, want, &mut ch);
                self.changed |= ch;
                self.globals[g].ty
            }
            ExprKind::Call { name, args } => {
                if let Some(u) = crate::ustack::UFn::by_name(name).filter(|u| u.captured()) {
                    if !self.fnames.contains_key(name) {
                        for a in args {
                            self.inf(sc, a, Some(Long));
                        }
                        return Some(if u.returns_string() { Str } else { Long });
                    }
                }
                if let Some(&t) = self.cap_ty.get(&e.id.0) {
                    for a in args {
                        self.inf(sc, a, None);
                    }
                    return Some(t);
                }
                if let Some(&f) = self.fnames.get(name) {
                    if !self.funcs[f].called {
                        self.funcs[f].called = true;
                        self.changed = true;
                    }
                    let fsc = self.funcs[f].scope;
                    for (i, a) in args.iter().enumerate() {
                        let pt = self.scopes[fsc].locals.get(i).and_then(|l| l.ty);
                        let t = self.inf(sc, a, pt);
                        if i < self.scopes[fsc].nparams {
                            let mut ch = false;
                            fill(&mut self.scopes[fsc].locals[i].ty, t, &mut ch);
                            self.changed |= ch;
                        }
                    }
                    let mut ch = false;
                    fill(&mut self.funcs[f].ret, want, &mut ch);
                    self.changed |= ch;
                    return self.funcs[f].ret;
                }
                match name.as_str() {
                    "printf" | "sprintf" => {
                        if let Some(first) = args.first() {
                            self.inf(sc, first, Some(Str));
                            if let ExprKind::String(f) = &first.kind {
                                if let Ok(pieces) = parse_format(f) {
                                    let wants = format_arg_types(&pieces);
                                    let mem = memory_args(&pieces);
                                    for (i, a) in args[1..].iter().enumerate() {
                                        // A `%m` address is the probe's business.
                                        if !mem.contains(&i) {
                                            self.inf(sc, a, wants.get(i).copied());
                                        }
                                    }
                                }
                            }
                        }
                        Some(if name == "sprintf" { Str } else { Long })
                    }
                    "print" | "println" | "sprint" | "sprintln" | "printd" | "printdln"
                    | "sprintd" | "sprintdln" => {
                        for (i, a) in args.iter().enumerate() {
                            let w = if i == 0 && name.trim_start_matches('s').starts_with("printd")
                            {
                                Some(Str)
                            } else {
                                None
                            };
                            self.inf(sc, a, w);
                        }
                        Some(if name.starts_with('s') { Str } else { Long })
                    }
                    _ => {
                        if let Some(sig) = builtin_sig(overload(name, args.len())) {
                            for (i, a) in args.iter().enumerate() {
                                self.inf(sc, a, sig.args.get(i).copied());
                            }
                            Some(sig.ret)
                        } else if let Some((t, _)) = capture_only(name) {
                            for a in args {
                                self.inf(sc, a, None);
                            }
                            Some(t)
                        } else if crate::tapfns::refusal(name).is_some() {
                            // A type, so that the refusal itself is what gets reported
                            // rather than an untyped variable it was assigned to.
                            for a in args {
                                self.inf(sc, a, None);
                            }
                            Some(Long)
                        } else {
                            for a in args {
                                self.inf(sc, a, None);
                            }
                            None
                        }
                    }
                }
            }
            ExprKind::Target(_) | ExprKind::GlobalVar { .. } => self.cap_ty.get(&e.id.0).copied(),
            ExprKind::Cast { expr, .. } => {
                self.inf(sc, expr, Some(Long));
                self.cap_ty.get(&e.id.0).copied()
            }
            ExprKind::Entry(inner) => {
                if let Some(&t) = self.cap_ty.get(&e.id.0) {
                    return Some(t);
                }
                self.inf(sc, inner, want)
            }
            ExprKind::Defined(_) | ExprKind::ProbeWrite(_) => Some(Long),
            ExprKind::Stat { expr, args, .. } => {
                self.mark_stats(sc, expr);
                for a in args {
                    self.inf(sc, a, Some(Long));
                }
                Some(Long)
            }
            ExprKind::HistBucket { hist, index } => {
                self.inf(sc, hist, None);
                self.inf(sc, index, Some(Long));
                Some(Long)
            }
            ExprKind::Unary { expr, .. } => {
                self.inf(sc, expr, Some(Long));
                Some(Long)
            }
            ExprKind::Binary { op, lhs, rhs } => match op {
                BinaryOp::Concat => {
                    self.inf(sc, lhs, Some(Str));
                    self.inf(sc, rhs, Some(Str));
                    Some(Str)
                }
                BinaryOp::Match | BinaryOp::NotMatch => {
                    self.inf(sc, lhs, Some(Str));
                    self.inf(sc, rhs, Some(Str));
                    Some(Long)
                }
                BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge => {
                    let lt = self.inf(sc, lhs, None);
                    let rt = self.inf(sc, rhs, lt);
                    if lt.is_none() && rt.is_some() {
                        self.inf(sc, lhs, rt);
                    }
                    Some(Long)
                }
                _ => {
                    self.inf(sc, lhs, Some(Long));
                    self.inf(sc, rhs, Some(Long));
                    Some(Long)
                }
            },
            ExprKind::Ternary { cond, then, els } => {
                self.inf(sc, cond, Some(Long));
                let t = self.inf(sc, then, want);
                let el = self.inf(sc, els, t.or(want));
                let t = if t.is_none() {
                    self.inf(sc, then, el)
                } else {
                    t
                };
                t.or(el)
            }
            ExprKind::Assign { op, target, value } => match op {
                AssignOp::Set => {
                    let tt = self.inf(sc, target, None);
                    let vt = self.inf(sc, value, tt.or(want));
                    let tt = if tt.is_none() {
                        self.inf(sc, target, vt)
                    } else {
                        tt
                    };
                    tt.or(vt)
                }
                AssignOp::Compound(BinaryOp::Concat) => {
                    self.inf(sc, target, Some(Str));
                    self.inf(sc, value, Some(Str));
                    Some(Str)
                }
                AssignOp::Compound(_) => {
                    self.inf(sc, target, Some(Long));
                    self.inf(sc, value, Some(Long));
                    Some(Long)
                }
                AssignOp::Aggregate => {
                    self.mark_stats(sc, target);
                    self.inf(sc, value, Some(Long));
                    Some(Long)
                }
            },
            ExprKind::IncDec { target, .. } => {
                self.inf(sc, target, Some(Long));
                Some(Long)
            }
            ExprKind::In { keys, array } => {
                if let Some(g) = self.global_array(array, keys.len(), e.span) {
                    self.inf_keys(sc, g, keys);
                } else {
                    for k in keys {
                        self.inf(sc, k, None);
                    }
                }
                Some(Long)
            }
            ExprKind::Wildcard | ExprKind::Error => None,
        }
    }

    // ----- slots -----

    pub(crate) fn assign_slots(&mut self) {
        for sc in &mut self.scopes {
            let mut fs = FrameSize::default();
            sc.slots = sc
                .locals
                .iter()
                .map(|l| match l.ty {
                    Some(Ty::Long) => {
                        fs.longs += 1;
                        Some(fs.longs - 1)
                    }
                    Some(Ty::Str) => {
                        fs.strs += 1;
                        Some(fs.strs - 1)
                    }
                    _ => None,
                })
                .collect();
            sc.frame = fs;
        }
        for g in 0..self.globals.len() {
            let gi = &self.globals[g];
            let arity = gi.arity.unwrap_or(if gi.size.is_some() { 1 } else { 0 });
            let ty = gi.ty.unwrap_or(Ty::Long);
            let kind = if arity == 0 {
                match ty {
                    Ty::Long => {
                        self.n_glong += 1;
                        GlobalKind::Scalar(Ty::Long, self.n_glong - 1)
                    }
                    Ty::Str => {
                        self.n_gstr += 1;
                        GlobalKind::Scalar(Ty::Str, self.n_gstr - 1)
                    }
                    Ty::Stats => {
                        self.n_stats += 1;
                        self.stats.push(StatMeta {
                            hist: gi.hist,
                            shift: gi.shift.unwrap_or(0),
                        });
                        GlobalKind::Scalar(Ty::Stats, self.n_stats - 1)
                    }
                }
            } else {
                let keys: Vec<Ty> = (0..arity)
                    .map(|i| gi.keys.get(i).copied().flatten().unwrap_or(Ty::Long))
                    .collect();
                let max = gi
                    .size
                    .map(|s| s.max(1) as usize)
                    .unwrap_or(self.limits.maxmapentries);
                self.arrays.push(ArrayMeta {
                    keys,
                    val: ty,
                    max,
                    declared: gi.size.is_some(),
                    hist: gi.hist,
                    shift: gi.shift.unwrap_or(0),
                });
                GlobalKind::Array((self.arrays.len() - 1) as u32)
            };
            self.globals[g].kind = Some(kind);
        }
    }

    /// Histogram specs and @variance shifts are properties of the global: collect them
    /// before slots are assigned.
    pub(crate) fn collect_hists(&mut self) {
        let script = self.script;
        let mut found: Vec<(String, Option<HistSpec>, Option<u32>, Span)> = Vec::new();
        let mut visit = |e: &Expr| {
            if let ExprKind::Stat { op, expr, args } = &e.kind {
                let name = match &expr.kind {
                    ExprKind::Var(n) => n.clone(),
                    ExprKind::Index { array, .. } => array.clone(),
                    _ => return,
                };
                let lit = |a: &Expr| -> Option<i64> {
                    match &a.kind {
                        ExprKind::Number(n) => Some(*n),
                        ExprKind::Unary {
                            op: UnaryOp::Neg,
                            expr,
                        } => match expr.kind {
                            ExprKind::Number(n) => Some(n.wrapping_neg()),
                            _ => None,
                        },
                        _ => None,
                    }
                };
                match op {
                    StatOp::HistLog => found.push((name, Some(HistSpec::Log), None, e.span)),
                    StatOp::HistLinear => {
                        let v: Vec<Option<i64>> = args.iter().map(lit).collect();
                        let spec = match v.as_slice() {
                            [Some(a), Some(b), Some(c)] => Some(HistSpec::linear(*a, *b, *c)),
                            _ => None,
                        };
                        match spec {
                            Some(Ok(s)) => found.push((name, Some(s), None, e.span)),
                            Some(Err(m)) => found.push((format!("\0{m}"), None, None, e.span)),
                            None => found.push((
                                "\0@hist_linear needs three literal numbers (start, stop, interval)".into(),
                                None,
                                None,
                                e.span,
                            )),
                        }
                    }
                    StatOp::Variance => {
                        let shift = args.first().and_then(lit).unwrap_or(0).clamp(0, 62) as u32;
                        found.push((name, None, Some(shift), e.span));
                    }
                    _ => {}
                }
            }
        };
        for item in &script.items {
            match item {
                Item::Probe(p) => walk_block_exprs(&p.body.stmts, &mut visit),
                Item::Function(f) => {
                    if let FunctionBody::Script(b) = &f.body {
                        walk_block_exprs(&b.stmts, &mut visit);
                    }
                }
                _ => {}
            }
        }
        for (name, spec, shift, span) in found {
            if let Some(m) = name.strip_prefix('\0') {
                self.err(m.to_string(), span);
                continue;
            }
            let Some(&g) = self.gnames.get(&name) else {
                continue;
            };
            if let Some(spec) = spec {
                let gi = &mut self.globals[g];
                if gi.hist == HistSpec::None {
                    gi.hist = spec;
                } else if gi.hist != spec {
                    gi.hist_conflict = true;
                    // stap names the translated global in this message.
                    self.err(
                        format!("multiple histogram types declared on '__global_{name}'"),
                        span,
                    );
                }
            }
            if let Some(s) = shift {
                let gi = &mut self.globals[g];
                if gi.shift.is_none() {
                    gi.shift = Some(s);
                } else if gi.shift != Some(s) {
                    self.err(
                        format!("inconsistent @variance bit shifts for aggregate '{name}'"),
                        span,
                    );
                }
            }
        }
    }

    // ----- pass 3: compile -----

    fn var_ref(
        &mut self,
        sc: usize,
        name: &str,
        span: Span,
        reading: bool,
    ) -> Option<(VarRef, Ty)> {
        match self.sym(sc, name, span) {
            Sym::Local(i) => {
                let (ty, slot) = (
                    self.scopes[sc].locals[i].ty,
                    self.scopes[sc].slots.get(i).copied().flatten(),
                );
                match (ty, slot) {
                    (Some(t), Some(s)) => Some((VarRef::Local(s), t)),
                    (Some(Ty::Stats), _) => {
                        self.err(
                            format!("aggregate '{name}' must be a global variable"),
                            span,
                        );
                        None
                    }
                    _ => {
                        // stap's message, trailing space included.
                        self.err("unresolved type ", span);
                        None
                    }
                }
            }
            Sym::Global(g) => {
                if reading {
                    self.globals[g].read = true;
                } else {
                    self.globals[g].written = true;
                }
                // A global nobody assigns or initialises has no type: stap's error at
                // the use (it defaults to nothing, unlike snaptap's storage).
                if reading
                    && self.globals[g].ty.is_none()
                    && self.globals[g].init.is_none()
                    && !self.globals[g].written
                {
                    self.err("unresolved type ", span);
                    return None;
                }
                match self.globals[g].kind.clone() {
                    Some(GlobalKind::Scalar(t, s)) => {
                        if t == Ty::Stats {
                            self.err(
                                format!("aggregate '{name}' can only be used with <<< and @count, @sum, ..."),
                                span,
                            );
                            return None;
                        }
                        Some((VarRef::Global(s), t))
                    }
                    _ => {
                        self.err(format!("array '{name}' used as a scalar"), span);
                        None
                    }
                }
            }
        }
    }

    fn array_ref(&mut self, name: &str, nkeys: usize, span: Span) -> Option<(u32, usize)> {
        let Some(&g) = self.gnames.get(name) else {
            self.err(
                format!(
                    "unresolved arity-{nkeys} global array {name}, missing global declaration?"
                ),
                span,
            );
            return None;
        };
        match self.globals[g].kind.clone() {
            Some(GlobalKind::Array(a)) => {
                let n = self.arrays[a as usize].keys.len();
                if nkeys != n && nkeys != usize::MAX {
                    // stap's words, then where it first inferred the arity.
                    self.err(format!("inconsistent arity ({n} vs {nkeys})"), span);
                    if let Some(at) = self.globals[g].arity_at {
                        self.err(format!("arity {n} first inferred here"), at);
                    }
                    return None;
                }
                Some((a, g))
            }
            _ => {
                self.err(format!("scalar '{name}' used as an array"), span);
                None
            }
        }
    }

    fn keys(&mut self, sc: usize, arr: u32, keys: &[Expr]) -> Option<Vec<(Ex, Ty)>> {
        let kt = self.arrays[arr as usize].keys.clone();
        let mut out = Vec::new();
        let mut ok = true;
        for (k, t) in keys.iter().zip(kt) {
            match self.cx_as(sc, k, t) {
                Some(e) => out.push((e, t)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The aggregate and histogram layout of an `@hist_log(x)` / `@hist_linear(x, ...)`
    /// expression; the layout is the global's (checked to be of the same kind).
    fn hist_ref(&mut self, sc: usize, hist: &Expr) -> Option<(AggRef, HistSpec)> {
        let ExprKind::Stat { op, expr, .. } = &hist.kind else {
            self.err("expected a histogram", hist.span);
            return None;
        };
        let agg = self.agg_ref(sc, expr, true)?;
        let gname = match &expr.kind {
            ExprKind::Var(n) | ExprKind::Index { array: n, .. } => n.clone(),
            _ => String::new(),
        };
        let spec = self
            .gnames
            .get(&gname)
            .map(|&g| self.globals[g].hist)
            .unwrap_or(HistSpec::None);
        let ok = matches!(
            (op, spec),
            (StatOp::HistLog, HistSpec::Log) | (StatOp::HistLinear, HistSpec::Linear { .. })
        );
        if !ok {
            // An invalid histogram spec was reported already; say nothing more.
            if spec != HistSpec::None && !self.hist_conflict(&gname) {
                self.err(
                    format!("inconsistent histogram type for aggregate '{gname}'"),
                    hist.span,
                );
            }
            return None;
        }
        Some((agg, spec))
    }

    /// Keys of a slice (`a[*, k]`): `None` for each `*`.
    fn slice_keys(&mut self, sc: usize, arr: u32, keys: &[Expr]) -> Option<Vec<Option<(Ex, Ty)>>> {
        let kt = self.arrays[arr as usize].keys.clone();
        let mut out = Vec::new();
        for (k, t) in keys.iter().zip(kt) {
            out.push(match k.kind {
                ExprKind::Wildcard => None,
                _ => Some((self.cx_as(sc, k, t)?, t)),
            });
        }
        Some(out)
    }

    /// stap's pair of errors for a variable given a value of another type: the
    /// conflict at the variable, then where its type was first inferred.
    fn type_conflict(&mut self, sc: usize, target: &Expr, found: Ty, first: Ty) {
        self.err(format!("type mismatch ({})", found.name()), target.span);
        let first_at = match &target.kind {
            ExprKind::Var(n) => match self.scopes[sc].names.get(n) {
                Some(&i) => Some(self.scopes[sc].locals[i].span),
                None => self.gnames.get(n).map(|&g| self.globals[g].span),
            },
            ExprKind::Index { array, .. } => self
                .gnames
                .get(array)
                .map(|&g| self.globals[g].arity_at.unwrap_or(self.globals[g].span)),
            _ => None,
        };
        if let Some(at) = first_at {
            self.err(
                format!("type was first inferred here ({})", first.name()),
                at,
            );
        }
    }

    fn cx_as(&mut self, sc: usize, e: &Expr, want: Ty) -> Option<Ex> {
        let (x, t) = self.cx(sc, e)?;
        if t != want {
            self.err(
                format!(
                    "type mismatch: expected {} but found {}",
                    want.name(),
                    t.name()
                ),
                e.span,
            );
            return None;
        }
        Some(x)
    }

    fn lval(&mut self, sc: usize, e: &Expr) -> Option<(LVal, Ty)> {
        match &e.kind {
            ExprKind::Var(n) => {
                let (v, t) = self.var_ref(sc, n, e.span, false)?;
                Some((LVal::Var(v), t))
            }
            ExprKind::Index { array, keys } => {
                let (arr, g) = self.array_ref(array, keys.len(), e.span)?;
                self.globals[g].written = true;
                let ks = self.keys(sc, arr, keys)?;
                let t = self.arrays[arr as usize].val;
                if t == Ty::Stats {
                    self.err(
                        format!("aggregate '{array}' can only be updated with <<<"),
                        e.span,
                    );
                    return None;
                }
                Some((LVal::Elem { arr, keys: ks }, t))
            }
            _ => {
                self.err(
                    "left side of assignment is not a variable or array element",
                    e.span,
                );
                None
            }
        }
    }

    fn agg_ref(&mut self, sc: usize, e: &Expr, reading: bool) -> Option<AggRef> {
        match &e.kind {
            ExprKind::Var(n) => {
                let Some(&g) = self.gnames.get(n) else {
                    self.err(format!("aggregate '{n}' must be a global variable"), e.span);
                    return None;
                };
                if reading {
                    self.globals[g].read = true;
                } else {
                    self.globals[g].written = true;
                }
                match self.globals[g].kind.clone() {
                    Some(GlobalKind::Scalar(Ty::Stats, s)) => Some(AggRef::Scalar(s)),
                    _ => {
                        self.err(format!("'{n}' is not a statistics aggregate"), e.span);
                        None
                    }
                }
            }
            ExprKind::Index { array, keys } => {
                let (arr, g) = self.array_ref(array, keys.len(), e.span)?;
                if reading {
                    self.globals[g].read = true;
                } else {
                    self.globals[g].written = true;
                }
                if self.arrays[arr as usize].val != Ty::Stats {
                    self.err(format!("'{array}' is not an array of aggregates"), e.span);
                    return None;
                }
                let ks = self.keys(sc, arr, keys)?;
                Some(AggRef::Elem { arr, keys: ks })
            }
            _ => {
                self.err(
                    "aggregate operand must be a global or an array element",
                    e.span,
                );
                None
            }
        }
    }

    /// `ubacktrace()` and the other functions of the stack captured at the probe.
    fn ustack_call(
        &mut self,
        sc: usize,
        e: &Expr,
        u: crate::ustack::UFn,
        args: &[Expr],
    ) -> Option<(Ex, Ty)> {
        let want = usize::from(u.arg() != crate::ustack::UArg::None);
        if args.len() != want {
            self.err(
                format!(
                    "function '{name}' called with {} argument(s), expects {want}",
                    args.len(),
                    name = match u {
                        crate::ustack::UFn::Ucallers => "ucallers",
                        _ => "ubacktrace",
                    }
                ),
                e.span,
            );
            return None;
        }
        let arg = match args.first() {
            Some(a) => Some(Box::new(self.cx_as(sc, a, Ty::Long)?)),
            None => None,
        };
        // Probes without a process (begin, end, timers) have no capture: the
        // functions then answer as stap does without a user context.
        let cap = self.cap_ty.contains_key(&e.id.0).then(|| {
            let next = self.capture_ids.len() as u32;
            let cap = *self.cap_slot.entry(e.id.0).or_insert(next);
            if cap == next {
                self.capture_ids.push(e.id.0);
            }
            cap
        });
        let tok = self.tok_at(e.span.file, e.span.start);
        let ty = if u.returns_string() {
            Ty::Str
        } else {
            Ty::Long
        };
        Some((
            Ex::UStack {
                f: u,
                cap,
                arg,
                tok,
            },
            ty,
        ))
    }

    fn capture(
        &mut self,
        e: &Expr,
        fault: FaultKind,
        fallback: Option<Box<Ex>>,
    ) -> Option<(Ex, Ty)> {
        let t = *self.cap_ty.get(&e.id.0)?;
        let next = self.capture_ids.len() as u32;
        let cap = *self.cap_slot.entry(e.id.0).or_insert(next);
        if cap == next {
            self.capture_ids.push(e.id.0);
        }
        let tok = self.tok_at(e.span.file, e.span.start);
        Some((
            Ex::Capture {
                cap,
                tok,
                fault,
                fallback,
            },
            t,
        ))
    }

    fn cx(&mut self, sc: usize, e: &Expr) -> Option<(Ex, Ty)> {
        use Ty::{Long, Str};
        match &e.kind {
            ExprKind::Number(n) => Some((Ex::Num(*n), Long)),
            ExprKind::String(s) => Some((Ex::Str(s.clone()), Str)),
            ExprKind::Var(n) => {
                let (v, t) = self.var_ref(sc, n, e.span, true)?;
                Some((Ex::Var(v), t))
            }
            ExprKind::ScriptArg { index, as_string } => {
                let Some(a) = self.args.get((*index as usize).wrapping_sub(1)) else {
                    self.err(
                        format!(
                            "command line argument index {} out of range [1-{}]",
                            index,
                            self.args.len()
                        ),
                        e.span,
                    );
                    return None;
                };
                if *as_string {
                    Some((Ex::Str(a.clone()), Str))
                } else {
                    match parse_number(a) {
                        Some(v) => Some((Ex::Num(v), Long)),
                        None => {
                            self.err(
                                format!("command line argument ${index} is not a number: '{a}' (use @{index} for a string)"),
                                e.span,
                            );
                            None
                        }
                    }
                }
            }
            ExprKind::ArgCount => Some((Ex::Num(self.args.len() as i64), Long)),
            ExprKind::Index { array, keys } => {
                let (arr, g) = self.array_ref(array, keys.len(), e.span)?;
                self.globals[g].read = true;
                let t = self.arrays[arr as usize].val;
                if t == Ty::Stats {
                    self.err(
                        format!("aggregate element '{array}[...]' can only be used with @count, @sum, ..."),
                        e.span,
                    );
                    return None;
                }
                let ks = self.keys(sc, arr, keys)?;
                Some((Ex::Index { arr, keys: ks }, t))
            }
            ExprKind::In { keys, array } => {
                let (arr, g) = self.array_ref(array, keys.len(), e.span)?;
                self.globals[g].read = true;
                if keys.iter().any(|k| matches!(k.kind, ExprKind::Wildcard)) {
                    let ks = self.slice_keys(sc, arr, keys)?;
                    return Some((Ex::InSlice { arr, keys: ks }, Long));
                }
                let ks = self.keys(sc, arr, keys)?;
                Some((Ex::In { arr, keys: ks }, Long))
            }
            ExprKind::Call { name, args } => self.call(sc, e, name, args),
            ExprKind::Target(_) | ExprKind::GlobalVar { .. } | ExprKind::Cast { .. } => {
                if let Some(r) = self.capture(e, FaultKind::Deref, None) {
                    return Some(r);
                }
                let tok = self.tok_at(e.span.file, e.span.start);
                let text = self.sources.snippet(e.span).to_string();
                Some((
                    Ex::Fail {
                        msg: format!(
                            "internal error: target expression '{text}' was not captured at this probe"
                        ),
                        tok,
                    },
                    Long,
                ))
            }
            ExprKind::Entry(inner) => {
                if let Some(r) = self.capture(e, FaultKind::Deref, None) {
                    return Some(r);
                }
                self.cx(sc, inner)
            }
            ExprKind::Defined(inner) => {
                let mut x: &Expr = inner;
                while let ExprKind::Entry(i) = &x.kind {
                    x = i;
                }
                match &x.kind {
                    ExprKind::Target(_) | ExprKind::GlobalVar { .. } | ExprKind::Cast { .. } => {
                        match self.cap_ty.contains_key(&x.id.0) {
                            true => {
                                let next = self.capture_ids.len() as u32;
                                let cap = *self.cap_slot.entry(x.id.0).or_insert(next);
                                if cap == next {
                                    self.capture_ids.push(x.id.0);
                                }
                                Some((Ex::Defined(cap), Long))
                            }
                            false => Some((Ex::Num(0), Long)),
                        }
                    }
                    _ => Some((Ex::Num(1), Long)),
                }
            }
            ExprKind::ProbeWrite(_) => Some((Ex::Num(0), Long)),
            ExprKind::Stat { op, expr, args: _ } => {
                let f = match op {
                    StatOp::Count => StatFn::Count,
                    StatOp::Sum => StatFn::Sum,
                    StatOp::Min => StatFn::Min,
                    StatOp::Max => StatFn::Max,
                    StatOp::Avg => StatFn::Avg,
                    StatOp::Variance => {
                        let g = match &expr.kind {
                            ExprKind::Var(n) | ExprKind::Index { array: n, .. } => {
                                self.gnames.get(n).copied()
                            }
                            _ => None,
                        };
                        StatFn::Variance(g.and_then(|g| self.globals[g].shift).unwrap_or(0))
                    }
                    StatOp::HistLog | StatOp::HistLinear => {
                        self.err(
                            "histograms can only be printed: use print(@hist_log(x)) or println(...)",
                            e.span,
                        );
                        return None;
                    }
                };
                let agg = self.agg_ref(sc, expr, true)?;
                let tok = self.tok_at(e.span.file, e.span.start);
                Some((Ex::Stat { f, agg, tok }, Long))
            }
            ExprKind::Unary {
                op: UnaryOp::AddressOf,
                ..
            } => {
                // The probe computed the address: a capture of this expression.
                let c = self.capture(e, FaultKind::Deref, None);
                if c.is_none() {
                    self.err("unknown type in dereference: operator '&'", e.span);
                }
                c
            }
            ExprKind::Unary { op, expr } => {
                let x = self.cx_as(sc, expr, Long)?;
                Some((
                    match op {
                        UnaryOp::Neg => Ex::Neg(Box::new(x)),
                        UnaryOp::Plus => x,
                        UnaryOp::Not => Ex::Not(Box::new(x)),
                        UnaryOp::BitNot => Ex::BitNot(Box::new(x)),
                        UnaryOp::AddressOf => return None,
                    },
                    Long,
                ))
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(sc, e, *op, lhs, rhs),
            ExprKind::Ternary { cond, then, els } => {
                let c = self.cx_as(sc, cond, Long)?;
                let (t, tt) = self.cx(sc, then)?;
                let el = self.cx_as(sc, els, tt)?;
                Some((Ex::Cond(Box::new(c), Box::new(t), Box::new(el)), tt))
            }
            ExprKind::Assign { op, target, value } => {
                let tok = self.cur_stmt;
                match op {
                    AssignOp::Aggregate => {
                        let agg = self.agg_ref(sc, target, false)?;
                        let v = self.cx_as(sc, value, Long)?;
                        Some((
                            Ex::AggAdd {
                                agg,
                                val: Box::new(v),
                                tok,
                            },
                            Long,
                        ))
                    }
                    AssignOp::Set => {
                        let (lv, t) = self.lval(sc, target)?;
                        let (v, vt) = self.cx(sc, value)?;
                        if vt != t {
                            self.type_conflict(sc, target, vt, t);
                            return None;
                        }
                        Some((
                            Ex::Assign {
                                lv,
                                ty: t,
                                op: None,
                                concat: false,
                                val: Box::new(v),
                                tok,
                            },
                            t,
                        ))
                    }
                    AssignOp::Compound(b) => {
                        let (lv, t) = self.lval(sc, target)?;
                        if *b == BinaryOp::Concat {
                            if t != Str {
                                self.err(
                                    format!(
                                        "type mismatch: expected string but found {}",
                                        t.name()
                                    ),
                                    target.span,
                                );
                                return None;
                            }
                            let v = self.cx_as(sc, value, Str)?;
                            return Some((
                                Ex::Assign {
                                    lv,
                                    ty: Str,
                                    op: None,
                                    concat: true,
                                    val: Box::new(v),
                                    tok,
                                },
                                Str,
                            ));
                        }
                        if t != Long {
                            self.err(
                                format!("type mismatch: expected long but found {}", t.name()),
                                target.span,
                            );
                            return None;
                        }
                        let lop = long_op(*b);
                        let Some(lop) = lop else {
                            self.err("invalid compound assignment operator", e.span);
                            return None;
                        };
                        let v = self.cx_as(sc, value, Long)?;
                        Some((
                            Ex::Assign {
                                lv,
                                ty: Long,
                                op: Some(lop),
                                concat: false,
                                val: Box::new(v),
                                tok,
                            },
                            Long,
                        ))
                    }
                }
            }
            ExprKind::IncDec {
                prefix,
                increment,
                target,
            } => {
                let tok = self.cur_stmt;
                let (lv, t) = self.lval(sc, target)?;
                if t != Long {
                    self.err(
                        format!("type mismatch: expected long but found {}", t.name()),
                        target.span,
                    );
                    return None;
                }
                Some((
                    Ex::IncDec {
                        lv,
                        delta: if *increment { 1 } else { -1 },
                        prefix: *prefix,
                        tok,
                    },
                    Long,
                ))
            }
            ExprKind::Wildcard => {
                self.err(
                    "'*' may only be an array index in delete, in or a foreach array slice",
                    e.span,
                );
                None
            }
            ExprKind::HistBucket { hist, index } => {
                let (agg, spec) = self.hist_ref(sc, hist)?;
                let idx = self.cx_as(sc, index, Long)?;
                let tok = self.tok_at(e.span.file, e.span.start);
                Some((
                    Ex::HistBucket {
                        agg,
                        spec,
                        idx: Box::new(idx),
                        tok,
                    },
                    Long,
                ))
            }
            ExprKind::Error => None,
        }
    }

    fn binary(
        &mut self,
        sc: usize,
        e: &Expr,
        op: BinaryOp,
        lhs: &Expr,
        rhs: &Expr,
    ) -> Option<(Ex, Ty)> {
        use Ty::{Long, Str};
        let cmp = |op| match op {
            BinaryOp::Eq => Some(Cmp::Eq),
            BinaryOp::Ne => Some(Cmp::Ne),
            BinaryOp::Lt => Some(Cmp::Lt),
            BinaryOp::Le => Some(Cmp::Le),
            BinaryOp::Gt => Some(Cmp::Gt),
            BinaryOp::Ge => Some(Cmp::Ge),
            _ => None,
        };
        if let Some(c) = cmp(op) {
            let (l, lt) = self.cx(sc, lhs)?;
            let r = self.cx_as(sc, rhs, lt)?;
            return Some((
                match lt {
                    Str => Ex::CmpS(c, Box::new(l), Box::new(r)),
                    _ => Ex::CmpL(c, Box::new(l), Box::new(r)),
                },
                Long,
            ));
        }
        match op {
            BinaryOp::Concat => {
                let l = self.cx_as(sc, lhs, Str)?;
                let r = self.cx_as(sc, rhs, Str)?;
                Some((Ex::Concat(Box::new(l), Box::new(r)), Str))
            }
            BinaryOp::Match | BinaryOp::NotMatch => {
                let l = self.cx_as(sc, lhs, Str)?;
                let ExprKind::String(pat) = &rhs.kind else {
                    self.err("regular expression must be a literal string", rhs.span);
                    return None;
                };
                let re = match regex::Regex::new(pat) {
                    Ok(r) => r,
                    Err(err) => {
                        // The regex crate explains over several lines, its last one being
                        // the reason; a diagnostic message is one line.
                        let text = err.to_string();
                        let why = text
                            .lines()
                            .last()
                            .map_or("", |l| l.trim_start_matches("error: "))
                            .to_string();
                        self.err(
                            format!("invalid regular expression '{pat}': {why}"),
                            rhs.span,
                        );
                        return None;
                    }
                };
                self.regexes.push(re);
                Some((
                    Ex::Match {
                        re: (self.regexes.len() - 1) as u32,
                        s: Box::new(l),
                        negate: op == BinaryOp::NotMatch,
                    },
                    Long,
                ))
            }
            BinaryOp::And | BinaryOp::Or => {
                let l = self.cx_as(sc, lhs, Long)?;
                let r = self.cx_as(sc, rhs, Long)?;
                Some((
                    if op == BinaryOp::And {
                        Ex::LAnd(Box::new(l), Box::new(r))
                    } else {
                        Ex::LOr(Box::new(l), Box::new(r))
                    },
                    Long,
                ))
            }
            _ => {
                let lop = long_op(op)?;
                let tok = self.expr_tok(e);
                let l = self.cx_as(sc, lhs, Long)?;
                let r = self.cx_as(sc, rhs, Long)?;
                Some((
                    Ex::Bin {
                        op: lop,
                        l: Box::new(l),
                        r: Box::new(r),
                        tok,
                    },
                    Long,
                ))
            }
        }
    }

    fn args_any(&mut self, sc: usize, args: &[Expr]) -> Option<Vec<(Ex, Ty)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for a in args {
            match self.cx(sc, a) {
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn call(&mut self, sc: usize, e: &Expr, name: &str, args: &[Expr]) -> Option<(Ex, Ty)> {
        use Ty::{Long, Str};
        if let Some(u) = crate::ustack::UFn::by_name(name).filter(|u| u.captured()) {
            if !self.fnames.contains_key(name) {
                return self.ustack_call(sc, e, u, args);
            }
        }
        if self.cap_ty.contains_key(&e.id.0) {
            let (_, fk) = capture_only(name).unwrap_or((Ty::Long, FaultKind::Deref));
            let fallback = match (name, fk) {
                (
                    "user_string2" | "user_string_n2" | "user_string2_utf16" | "user_string2_utf32"
                    | "kernel_string2",
                    _,
                ) => {
                    let last = args.last()?;
                    Some(Box::new(self.cx_as(sc, last, Str)?))
                }
                ("user_string2_warn" | "user_string2_n_warn", _) => {
                    let last = args.last()?;
                    Some(Box::new(self.cx_as(sc, last, Str)?))
                }
                (_, FaultKind::Warn) => Some(Box::new(Ex::Str(String::new()))),
                // `user_string_utf16(addr, err_msg)`: stap's overload with a fallback.
                (_, FaultKind::Wide(..)) if args.len() == 2 => {
                    let last = args.last()?;
                    Some(Box::new(self.cx_as(sc, last, Str)?))
                }
                _ => None,
            };
            return self.capture(e, fk, fallback);
        }
        let tok = self.tok_at(e.span.file, e.span.start);
        if let Some(&f) = self.fnames.get(name) {
            let fsc = self.funcs[f].scope;
            let np = self.scopes[fsc].nparams;
            if args.len() != np {
                // stap's words, with the function's declaration as a second location.
                let mut d = Diagnostic::error(
                    SEM,
                    format!("arity mismatch found (function '{name}' takes {np} args)"),
                    e.span,
                );
                let decl = self.script.items.iter().find_map(|i| match i {
                    Item::Function(fd) if fd.name == name => Some(fd.span),
                    _ => None,
                });
                if let Some(at) = decl {
                    let at = crate::lint::word_span(self.sources, at, name);
                    d.labels.push(script_syntax::Label {
                        span: at,
                        message: String::new(),
                    });
                }
                self.diags.push(d);
                return None;
            }
            let mut cargs = Vec::new();
            for (i, a) in args.iter().enumerate() {
                let Some(pt) = self.scopes[fsc].locals[i].ty else {
                    let pspan = self.scopes[fsc].locals[i].span;
                    self.err("unresolved type ", pspan);
                    return None;
                };
                cargs.push((self.cx_as(sc, a, pt)?, pt));
            }
            let Some(ret) = self.funcs[f].ret else {
                // stap: a function with no return value is a long (returns 0).
                return Some((
                    Ex::Call {
                        func: f as u32,
                        args: cargs,
                        tok,
                    },
                    Long,
                ));
            };
            return Some((
                Ex::Call {
                    func: f as u32,
                    args: cargs,
                    tok,
                },
                ret,
            ));
        }
        match name {
            "printf" | "sprintf" => {
                let Some(first) = args.first() else {
                    self.err(format!("{name} needs a format string"), e.span);
                    return None;
                };
                let ExprKind::String(fmt) = &first.kind else {
                    self.err("format string must be a literal string", first.span);
                    return None;
                };
                let pieces = match parse_format(fmt) {
                    Ok(p) => p,
                    Err(m) => {
                        // stap checks formats while parsing.
                        self.diags
                            .push(Diagnostic::error("parse error", m, first.span));
                        return None;
                    }
                };
                let wants = format_arg_types(&pieces);
                if wants.len() != args.len() - 1 {
                    // stap's wording; how many were expected is in the format itself.
                    self.err("Wrong number of args to formatted print operator", e.span);
                    return None;
                }
                let mem = memory_convs(&pieces);
                let mut cargs = Vec::new();
                for (i, (a, w)) in args[1..].iter().zip(wants).enumerate() {
                    if let Some(&(_, conv)) = mem.iter().find(|(at, _)| *at == i) {
                        // `%m`/`%M` show memory the probe copied from the address
                        // (the planner keys the bytes by the argument's id).
                        let Some(c) = self.capture(a, FaultKind::UserRead, None) else {
                            self.err(
                                format!("format conversion %{conv} needs an address computed from target variables ($...) at a probe: the memory is copied there"),
                                a.span,
                            );
                            return None;
                        };
                        cargs.push(c);
                        continue;
                    }
                    cargs.push((self.cx_as(sc, a, w)?, w));
                }
                Some((
                    Ex::Printf {
                        fmt: pieces,
                        args: cargs,
                    },
                    if name == "sprintf" { Str } else { Long },
                ))
            }
            "print" | "println" | "sprint" | "sprintln" | "printd" | "printdln" | "sprintd"
            | "sprintdln" => {
                // print(@hist_log(x)) prints the histogram.
                if (name == "print" || name == "println") && args.len() == 1 {
                    if let ExprKind::Stat {
                        op: op @ (StatOp::HistLog | StatOp::HistLinear),
                        expr,
                        ..
                    } = &args[0].kind
                    {
                        let agg = self.agg_ref(sc, expr, true)?;
                        let gname = match &expr.kind {
                            ExprKind::Var(n) | ExprKind::Index { array: n, .. } => n.clone(),
                            _ => String::new(),
                        };
                        let spec = self
                            .gnames
                            .get(&gname)
                            .map(|&g| self.globals[g].hist)
                            .unwrap_or(HistSpec::None);
                        let ok = matches!(
                            (op, spec),
                            (StatOp::HistLog, HistSpec::Log)
                                | (StatOp::HistLinear, HistSpec::Linear { .. })
                        );
                        if !ok {
                            // An invalid histogram spec was reported already; say nothing more.
                            if spec != HistSpec::None && !self.hist_conflict(&gname) {
                                self.err(
                                    format!("inconsistent histogram type for aggregate '{gname}'"),
                                    args[0].span,
                                );
                            }
                            return None;
                        }
                        let tok = self.tok_at(args[0].span.file, args[0].span.start);
                        return Some((Ex::PrintHist { agg, spec, tok }, Long));
                    }
                }
                let kind = match name {
                    "print" | "sprint" => PrintKind::Print,
                    "println" | "sprintln" => PrintKind::Println,
                    "printd" | "sprintd" => PrintKind::Printd,
                    _ => PrintKind::Printdln,
                };
                if matches!(kind, PrintKind::Printd | PrintKind::Printdln) {
                    match args.first() {
                        Some(a) => {
                            if !matches!(a.kind, ExprKind::String(_)) {
                                self.err("delimiter must be a literal string", a.span);
                                return None;
                            }
                        }
                        None => {
                            self.err(format!("{name} needs a delimiter"), e.span);
                            return None;
                        }
                    }
                }
                let cargs = self.args_any(sc, args)?;
                let to_string = name.starts_with('s');
                Some((
                    Ex::Print { kind, args: cargs },
                    if to_string { Str } else { Long },
                ))
            }
            _ => {
                if let Some(sig) = builtin_sig(overload(name, args.len())) {
                    if args.len() != sig.args.len() {
                        self.err(
                            format!(
                                "arity mismatch found (function '{name}' takes {} args)",
                                sig.args.len()
                            ),
                            e.span,
                        );
                        return None;
                    }
                    let mut cargs = Vec::new();
                    for (a, t) in args.iter().zip(sig.args) {
                        cargs.push((self.cx_as(sc, a, *t)?, *t));
                    }
                    return Some((
                        Ex::Builtin {
                            f: sig.f,
                            args: cargs,
                            tok,
                        },
                        sig.ret,
                    ));
                }
                if let Some((t, _)) = capture_only(name) {
                    return Some((
                        Ex::Fail {
                            msg: format!(
                                "internal error: {name}() reads target memory and was not captured at this probe"
                            ),
                            tok,
                        },
                        t,
                    ));
                }
                if let Some(m) = crate::tapfns::refusal(name) {
                    self.err(m, e.span);
                    return None;
                }
                // stap: "unresolved function NAME (similar: a, b, ...)", the five
                // nearest names by edit distance.
                let mut names: Vec<&str> = self
                    .fnames
                    .keys()
                    .map(|s| s.as_str())
                    .chain(KNOWN_FUNCS.iter().copied())
                    .collect();
                names.sort_unstable();
                names.dedup();
                let sugs = crate::lint::similar(name, &names);
                let d = Diagnostic::error(SEM, format!("unresolved function {name}{sugs}"), e.span);
                self.diags.push(d);
                None
            }
        }
    }

    fn stmt(&mut self, sc: usize, s: &Stmt, in_func: bool, ret: Option<Ty>) -> Option<St> {
        let tok_needed = !matches!(
            s.kind,
            StmtKind::Block(_) | StmtKind::Empty | StmtKind::Error
        );
        let tok = if tok_needed { self.stmt_tok(s) } else { 0 };
        if tok_needed {
            self.cur_stmt = tok;
        }
        Some(match &s.kind {
            StmtKind::Block(b) => St::Block(self.block(sc, &b.stmts, in_func, ret)),
            StmtKind::Expr(e) => {
                let (x, t) = self.cx(sc, e)?;
                St::Expr(x, t, tok)
            }
            StmtKind::If { cond, then, els } => {
                let c = self.cx_as(sc, cond, Ty::Long);
                let t = self.stmt(sc, then, in_func, ret);
                let el = match els {
                    Some(e) => Some(Box::new(self.stmt(sc, e, in_func, ret)?)),
                    None => None,
                };
                St::If(c?, Box::new(t?), el, tok)
            }
            StmtKind::While { cond, body } => {
                let c = self.cx_as(sc, cond, Ty::Long);
                let b = self.stmt(sc, body, in_func, ret);
                St::While(c?, Box::new(b?), tok)
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                let init = match init {
                    Some(e) => Some(self.cx(sc, e)?),
                    None => None,
                };
                let cond = match cond {
                    Some(e) => Some(self.cx_as(sc, e, Ty::Long)?),
                    None => None,
                };
                let step = match step {
                    Some(e) => Some(self.cx(sc, e)?),
                    None => None,
                };
                let body = Box::new(self.stmt(sc, body, in_func, ret)?);
                St::For {
                    init,
                    cond,
                    step,
                    body,
                    tok,
                }
            }
            StmtKind::Foreach {
                keys,
                value,
                histogram: Some(h),
                sort,
                limit,
                body,
                ..
            } => {
                let (agg, spec) = self.hist_ref(sc, h)?;
                let [key] = keys.as_slice() else {
                    self.err("a histogram has one index, its bucket number", h.span);
                    return None;
                };
                let k_at = crate::lint::word_span(self.sources, s.span, key);
                let (kv, _) = self.var_ref(sc, key, k_at, false)?;
                let val = match value {
                    Some(v) => {
                        let v_at = crate::lint::word_span(self.sources, s.span, v);
                        Some(self.var_ref(sc, v, v_at, false)?.0)
                    }
                    None => None,
                };
                let limit = match limit {
                    Some(l) => Some(self.cx_as(sc, l, Ty::Long)?),
                    None => None,
                };
                let body = Box::new(self.stmt(sc, body, in_func, ret)?);
                St::ForeachHist {
                    agg,
                    spec,
                    key: kv,
                    val,
                    sort: sort.map(|s| Sort {
                        key: s.key,
                        desc: s.descending,
                        agg: StatFn::Count,
                    }),
                    limit,
                    body,
                    tok,
                }
            }
            StmtKind::Foreach {
                keys,
                value,
                array,
                slice,
                sort,
                limit,
                body,
                histogram: None,
            } => {
                let array_at = crate::lint::word_after(self.sources, s.span, "in", array);
                if !slice.is_empty() && slice.len() != keys.len() {
                    self.err(
                        format!(
                            "unresolved arity-{} global array {array}, missing global declaration?",
                            slice.len()
                        ),
                        array_at,
                    );
                    return None;
                }
                let (arr, g) = self.array_ref(array, keys.len(), array_at)?;
                self.globals[g].read = true;
                let meta = self.arrays[arr as usize].clone();
                let mut cslice = Vec::new();
                for (e, kt) in slice.iter().zip(meta.keys.iter()) {
                    cslice.push(match e {
                        Some(e) => Some((self.cx_as(sc, e, *kt)?, *kt)),
                        None => None,
                    });
                }
                let mut kv = Vec::new();
                for (k, kt) in keys.iter().zip(meta.keys.iter()) {
                    let k_at = crate::lint::word_span(self.sources, s.span, k);
                    let (v, t) = self.var_ref(sc, k, k_at, false)?;
                    if t != *kt {
                        self.err(
                            format!(
                                "type mismatch: expected {} but found {}",
                                kt.name(),
                                t.name()
                            ),
                            k_at,
                        );
                        return None;
                    }
                    kv.push((v, t));
                }
                let val = match value {
                    Some(v) => {
                        let v_at = crate::lint::word_span(self.sources, s.span, v);
                        if meta.val == Ty::Stats {
                            self.err("foreach value of an aggregate array is not supported", v_at);
                            return None;
                        }
                        let (vr, t) = self.var_ref(sc, v, v_at, false)?;
                        if t != meta.val {
                            self.err(
                                format!(
                                    "type mismatch: expected {} but found {}",
                                    meta.val.name(),
                                    t.name()
                                ),
                                v_at,
                            );
                            return None;
                        }
                        Some((vr, t))
                    }
                    None => None,
                };
                if let Some(sp) = sort {
                    if let Some(k) = sp.key {
                        if k >= keys.len() {
                            self.err("foreach sort index out of range", s.span);
                            return None;
                        }
                    }
                }
                let limit = match limit {
                    Some(l) => Some(self.cx_as(sc, l, Ty::Long)?),
                    None => None,
                };
                let body = Box::new(self.stmt(sc, body, in_func, ret)?);
                St::Foreach {
                    arr,
                    keys: kv,
                    val,
                    slice: cslice,
                    sort: sort.map(|s| Sort {
                        key: s.key,
                        desc: s.descending,
                        agg: match s.aggregate {
                            Some(StatOp::Sum) => StatFn::Sum,
                            Some(StatOp::Min) => StatFn::Min,
                            Some(StatOp::Max) => StatFn::Max,
                            Some(StatOp::Avg) => StatFn::Avg,
                            _ => StatFn::Count,
                        },
                    }),
                    limit,
                    body,
                    tok,
                }
            }
            StmtKind::Break => St::Break(tok),
            StmtKind::Continue => St::Continue(tok),
            StmtKind::Next => St::Next(tok),
            StmtKind::Return(e) => {
                if !in_func {
                    // stap rejects `return` in a probe; treat it like `next` would be
                    // friendlier, but matching stap keeps scripts portable.
                    self.err("return statement outside a function", s.span);
                    return None;
                }
                match e {
                    Some(e) => {
                        let want = ret.unwrap_or(Ty::Long);
                        let x = self.cx_as(sc, e, want)?;
                        St::Return(Some((x, want)), tok)
                    }
                    None => St::Return(None, tok),
                }
            }
            StmtKind::Delete(e) => match &e.kind {
                ExprKind::Var(n) => {
                    if let Some(&g) = self.gnames.get(n) {
                        self.globals[g].written = true;
                        match self.globals[g].kind.clone() {
                            Some(GlobalKind::Array(a)) => St::DelArray(a, tok),
                            Some(GlobalKind::Scalar(Ty::Stats, s)) => {
                                St::DelVar(VarRef::Global(s), Ty::Stats, tok)
                            }
                            Some(GlobalKind::Scalar(t, s)) => St::DelVar(VarRef::Global(s), t, tok),
                            None => St::Nop,
                        }
                    } else {
                        let (v, t) = self.var_ref(sc, n, e.span, false)?;
                        St::DelVar(v, t, tok)
                    }
                }
                ExprKind::Index { array, keys } => {
                    let (arr, g) = self.array_ref(array, keys.len(), e.span)?;
                    self.globals[g].written = true;
                    if keys.iter().any(|k| matches!(k.kind, ExprKind::Wildcard)) {
                        let ks = self.slice_keys(sc, arr, keys)?;
                        St::DelSlice(arr, ks, tok)
                    } else {
                        let ks = self.keys(sc, arr, keys)?;
                        St::DelElem(arr, ks, tok)
                    }
                }
                _ => {
                    self.err(
                        "delete needs a variable, an array or an array element",
                        e.span,
                    );
                    return None;
                }
            },
            StmtKind::Try { body, var, catch } => {
                let b = self.block(sc, &body.stmts, in_func, ret);
                let v = match var {
                    Some(v) => Some(self.var_ref(sc, v, s.span, false)?.0),
                    None => None,
                };
                let c = self.block(sc, &catch.stmts, in_func, ret);
                St::Try {
                    body: Box::new(St::Block(b)),
                    var: v,
                    catch: Box::new(St::Block(c)),
                }
            }
            StmtKind::Empty | StmtKind::Error => St::Nop,
        })
    }

    fn block(&mut self, sc: usize, stmts: &[Stmt], in_func: bool, ret: Option<Ty>) -> Vec<St> {
        stmts
            .iter()
            .filter_map(|s| self.stmt(sc, s, in_func, ret))
            .collect()
    }

    pub(crate) fn compile(mut self) -> Result<Program, Vec<Diagnostic>> {
        self.declare();
        self.collect_hists();
        self.infer_all();
        // Function return types nobody fixed default to long (stap: "void" functions).
        self.assign_slots();
        let mut funcs = Vec::new();
        for i in 0..self.funcs.len() {
            let sc = self.funcs[i].scope;
            let ret = self.funcs[i].ret;
            if !self.funcs[i].called {
                funcs.push(Func {
                    params: Vec::new(),
                    frame: FrameSize::default(),
                    body: St::Nop,
                });
                continue;
            }
            let body = match self.funcs[i].body {
                FunctionBody::Script(b) => St::Block(self.block(sc, &b.stmts, true, ret)),
                FunctionBody::EmbeddedC(_) => St::Nop,
            };
            let np = self.scopes[sc].nparams;
            let mut params = Vec::new();
            for p in 0..np {
                let l = &self.scopes[sc].locals[p];
                match (l.ty, self.scopes[sc].slots[p]) {
                    (Some(t), Some(s)) => params.push((s, t)),
                    _ => {
                        let sp = l.span;
                        self.err("unresolved type ", sp);
                    }
                }
            }
            funcs.push(Func {
                params,
                frame: self.scopes[sc].frame,
                body,
            });
        }
        let mut handlers = Vec::new();
        for i in 0..self.probes.len() {
            let (p, sc) = self.probes[i];
            let cond = match p.points.as_slice() {
                [one] => one
                    .condition
                    .as_ref()
                    .and_then(|c| self.cx_as(sc, c, Ty::Long)),
                _ => None,
            };
            let body = St::Block(self.block(sc, &p.body.stmts, false, None));
            handlers.push(Handler {
                kind: probe_kinds(p).first().copied().unwrap_or(ProbeKind::Site),
                kinds: probe_kinds(p),
                frame: self.scopes[sc].frame,
                cond,
                body,
            });
        }
        if !self.diags.is_empty() {
            return Err(self.diags);
        }
        let mut inits = Vec::new();
        let mut globals = Vec::new();
        // In stap's order: the end-of-run printout of unread globals follows it.
        for g in self
            .globals_in_use_order()
            .into_iter()
            .map(|i| &self.globals[i])
        {
            let kind = g.kind.clone().unwrap_or(GlobalKind::Scalar(Ty::Long, 0));
            if let (Some(init), GlobalKind::Scalar(_, slot)) = (&g.init, &kind) {
                match init {
                    Literal::Number(n) => inits.push(Init::L(*slot, *n)),
                    Literal::String(s) => inits.push(Init::S(*slot, s.clone())),
                }
            }
            let _ = g.span;
            globals.push(GlobalMeta {
                name: g.name.clone(),
                kind,
                autoprint: g.written && !g.read,
            });
        }
        let elab = self.elaboration();
        Ok(Program {
            elab,
            handlers,
            funcs,
            globals,
            arrays: self.arrays,
            stats: self.stats,
            n_glong: self.n_glong,
            n_gstr: self.n_gstr,
            inits,
            regexes: self.regexes,
            toks: self.toks,
            capture_ids: self.capture_ids,
        })
    }
}

/// Calls `note` with every global-looking name in `stmts`, in the order stap's symbol
/// resolution meets them (statement by statement, an assignment's target first, a
/// foreach's array before its body).
pub(crate) fn names_in_order(stmts: &[Stmt], note: &mut dyn FnMut(&str)) {
    visit::walk_nodes(stmts, &mut |n| {
        match n {
            Node::Stmt(Stmt {
                kind: StmtKind::Foreach { array, .. },
                ..
            }) => note(array),
            Node::Expr(e) => note_global_name(e, note),
            Node::Stmt(_) => {}
        }
        Walk::SkipPath
    });
}

/// Calls `note` with the name `e` uses if it may be a global (a variable or array).
fn note_global_name(e: &Expr, note: &mut dyn FnMut(&str)) {
    match &e.kind {
        ExprKind::Var(n) => note(n),
        ExprKind::Index { array, .. } | ExprKind::In { array, .. } => note(array),
        _ => {}
    }
}

impl Compiler<'_> {
    /// Global indexes in the order stap's `-p2` lists them and prints the written but
    /// unread ones at the end: as symbol resolution first meets them, in the script's
    /// functions, then its probes; globals never met follow in declaration order.
    fn globals_in_use_order(&self) -> Vec<usize> {
        let mut order = Vec::new();
        let mut seen = vec![false; self.globals.len()];
        let mut note = |n: &str| {
            if let Some(&g) = self.gnames.get(n) {
                if !seen[g] {
                    seen[g] = true;
                    order.push(g);
                }
            }
        };
        for f in &self.funcs {
            if let FunctionBody::Script(b) = f.body {
                names_in_order(&b.stmts, &mut note);
            }
        }
        for (p, _) in &self.probes {
            for pt in &p.points {
                if let Some(c) = &pt.condition {
                    walk_expr(c, &mut |x| note_global_name(x, &mut note));
                }
            }
            names_in_order(&p.body.stmts, &mut note);
        }
        for (g, s) in seen.iter().enumerate() {
            if !s {
                order.push(g);
            }
        }
        order
    }

    /// The `# globals` and `# functions` sections of `stap -p2` and each probe's
    /// `# locals`, in stap's spelling (`arr[10]:long [long, string]`, `f:long (a:long)`).
    /// Elided declarations (unused globals, uncalled functions) are left out as stap
    /// leaves them out; stap's own tapset functions are not listed.
    fn elaboration(&self) -> crate::Elaboration {
        use std::fmt::Write as _;
        let ty = |t: Option<Ty>| match t {
            Some(Ty::Long) => "long",
            Some(Ty::Str) => "string",
            Some(Ty::Stats) => "stats",
            None => "unknown",
        };
        let mut globals = String::new();
        for g in self
            .globals_in_use_order()
            .into_iter()
            .map(|i| &self.globals[i])
        {
            if !g.read && !g.written {
                continue;
            }
            let size = g.size.map(|n| format!("[{n}]")).unwrap_or_default();
            let _ = write!(globals, "{}{size}:{}", g.name, ty(g.ty));
            if g.arity.unwrap_or(0) > 0 || g.size.is_some() {
                let keys: Vec<&str> = g.keys.iter().map(|k| ty(*k)).collect();
                let _ = write!(globals, " [{}]", keys.join(", "));
            }
            globals.push('\n');
        }
        let locals_of = |sc: usize, skip: usize| -> String {
            let scope = &self.scopes[sc];
            let mut names: Vec<(&String, &usize)> = scope.names.iter().collect();
            names.sort_by_key(|(_, i)| **i);
            let mut out = String::new();
            for (n, i) in names.into_iter().filter(|(_, i)| **i >= skip) {
                let _ = writeln!(out, "  {n}:{}", ty(scope.locals[*i].ty));
            }
            if out.is_empty() {
                out
            } else {
                format!("  # locals\n{out}")
            }
        };
        let mut fnames: Vec<(&String, &usize)> = self.fnames.iter().collect();
        fnames.sort();
        let mut functions = String::new();
        for (name, &i) in fnames {
            let f = &self.funcs[i];
            if !f.called || !matches!(f.body, FunctionBody::Script(_)) {
                continue;
            }
            let sc = &self.scopes[f.scope];
            let mut pnames: Vec<(&String, &usize)> =
                sc.names.iter().filter(|(_, i)| **i < sc.nparams).collect();
            pnames.sort_by_key(|(_, i)| **i);
            let params: Vec<String> = pnames
                .iter()
                .map(|(n, i)| format!("{n}:{}", ty(sc.locals[**i].ty)))
                .collect();
            let _ = writeln!(functions, "{name}:{} ({})", ty(f.ret), params.join(", "));
            functions.push_str(&locals_of(f.scope, sc.nparams));
        }
        let probe_locals = self
            .probes
            .iter()
            .map(|(_, sc)| locals_of(*sc, 0))
            .collect();
        crate::Elaboration {
            globals,
            functions,
            probe_locals,
        }
    }
}

/// The argument types a parsed format expects (a `*` takes a long).
/// Positions (among the arguments after the format) of the `%m`/`%M` addresses.
fn memory_args(pieces: &[Piece]) -> Vec<usize> {
    memory_convs(pieces).into_iter().map(|(i, _)| i).collect()
}

/// The `%m`/`%M` conversions: (argument position, `m` or `M`).
fn memory_convs(pieces: &[Piece]) -> Vec<(usize, char)> {
    use crate::format::Num;
    let mut v = Vec::new();
    let mut i = 0;
    for p in pieces {
        if let Piece::Spec {
            width, prec, conv, ..
        } = p
        {
            i += usize::from(*width == Num::Star) + usize::from(*prec == Num::Star);
            if conv.is_memory() {
                v.push((i, if *conv == Conv::Mem { 'm' } else { 'M' }));
            }
            i += 1;
        }
    }
    v
}

pub(crate) fn format_arg_types(pieces: &[Piece]) -> Vec<Ty> {
    use crate::format::Num;
    let mut v = Vec::new();
    for p in pieces {
        if let Piece::Spec {
            width, prec, conv, ..
        } = p
        {
            if *width == Num::Star {
                v.push(Ty::Long);
            }
            if *prec == Num::Star {
                v.push(Ty::Long);
            }
            v.push(if conv.wants_string() {
                Ty::Str
            } else {
                Ty::Long
            });
        }
    }
    v
}

fn long_op(op: BinaryOp) -> Option<LOp> {
    Some(match op {
        BinaryOp::Add => LOp::Add,
        BinaryOp::Sub => LOp::Sub,
        BinaryOp::Mul => LOp::Mul,
        BinaryOp::Div => LOp::Div,
        BinaryOp::Mod => LOp::Mod,
        BinaryOp::Shl => LOp::Shl,
        BinaryOp::Shr => LOp::Shr,
        BinaryOp::UShr => LOp::UShr,
        BinaryOp::BitAnd => LOp::And,
        BinaryOp::BitOr => LOp::Or,
        BinaryOp::BitXor => LOp::Xor,
        _ => return None,
    })
}

fn binop_text(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Mod => "%",
        BinaryOp::Shl => "<<",
        BinaryOp::Shr => ">>",
        BinaryOp::UShr => ">>>",
        BinaryOp::BitAnd => "&",
        BinaryOp::BitOr => "|",
        BinaryOp::BitXor => "^",
        BinaryOp::And => "&&",
        BinaryOp::Or => "||",
        BinaryOp::Eq => "==",
        BinaryOp::Ne => "!=",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Concat => ".",
        BinaryOp::Match => "=~",
        BinaryOp::NotMatch => "!~",
    }
}

fn compound_text(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+=",
        BinaryOp::Sub => "-=",
        BinaryOp::Mul => "*=",
        BinaryOp::Div => "/=",
        BinaryOp::Mod => "%=",
        BinaryOp::Shl => "<<=",
        BinaryOp::Shr => ">>=",
        BinaryOp::BitAnd => "&=",
        BinaryOp::BitOr => "|=",
        BinaryOp::BitXor => "^=",
        BinaryOp::Concat => ".=",
        _ => "=",
    }
}

/// Where the expression with id `id` is in the script (probe bodies and conditions,
/// function bodies); the start of the first file when no expression has that id.
fn expr_span(script: &script_syntax::ast::Script, id: u32) -> Span {
    let mut found = None;
    let mut look = |e: &Expr| {
        if e.id.0 == id && found.is_none() {
            found = Some(e.span);
        }
    };
    for item in &script.items {
        match item {
            Item::Probe(p) => {
                for pt in &p.points {
                    if let Some(c) = &pt.condition {
                        walk_expr(c, &mut look);
                    }
                }
                walk_block_exprs(&p.body.stmts, &mut look);
            }
            Item::Function(f) => {
                if let FunctionBody::Script(b) = &f.body {
                    walk_block_exprs(&b.stmts, &mut look);
                }
            }
            _ => {}
        }
    }
    found.unwrap_or_default()
}

// The handler never evaluates the index expressions of a target path (`$a[i]`,
// `@cast(p, "t")[i]`): the planner lowers them into the capture plan and the probe
// point evaluates them, so the runtime's walks leave them out (`Walk::SkipPath`).
// Walking them would, for instance, declare histograms or order globals for
// expressions no handler runs.

/// Calls `f` on every expression (pre-order) of the statements that the handler
/// evaluates.
pub(crate) fn walk_block_exprs(stmts: &[Stmt], f: &mut dyn FnMut(&Expr)) {
    visit::walk_nodes(stmts, &mut |n| {
        if let Node::Expr(e) = n {
            f(e);
        }
        Walk::SkipPath
    });
}

/// Calls `f` on `e` and every expression under it that the handler evaluates.
fn walk_expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    visit::walk_expr(e, &mut |x| {
        f(x);
        Walk::SkipPath
    });
}
