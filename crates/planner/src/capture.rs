//! Capture planning: walks a probe handler and turns every expression that needs
//! target data into record fields (ops) and the [`Decode`]s the runtime reads them with.

use std::collections::{BTreeMap, HashMap};

use capture_plan::{
    CapturePlan, ContextNeeds, Decode, DwarfReg, FieldPlan, FileAddr, Op, PrettyPart, ProbeSite,
    SiteBinding, SiteId, SiteKind,
};
use debuginfo::{DebugInfo, DieRef, Location, Type, TypeKind, Variable};
use script_syntax::ast::{
    BinaryOp, Block, Expr, ExprKind, ProbePoint, TargetExpr, TargetStep, UnaryOp,
};
use script_syntax::visit::{walk_block, walk_expr, Walk};
use script_syntax::Diagnostic;

use crate::resolve::{SiteSpec, SpecKind};
use crate::{Planned, Session};

/// Marks a field index as belonging to the return plan until the entry plan's length
/// is known.
const RET_FLAG: u32 = 1 << 31;

/// At most this many values are captured for one pretty-printed expression (stap
/// limits its generated sprintf to 32 arguments the same way).
const PRETTY_MAX_VALUES: u32 = 32;

/// Array elements shown by the pretty printer before `, ...`.
const PRETTY_MAX_ELEMS: u64 = 5;

/// Which of a site's two plans a field goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Which {
    Entry,
    Return,
}

/// Where a target value is, during path resolution.
#[derive(Clone, Debug)]
enum Val {
    /// In memory at the address the ops compute.
    Mem(Vec<Op>),
    /// In a register.
    Reg(u16),
    /// The ops compute the value.
    Value(Vec<Op>),
    /// A constant.
    Const(u64),
}

/// A resolved target value: where it is, its type, its bitfield slice, its plan.
#[derive(Clone, Debug)]
struct TVal {
    val: Val,
    ty: Option<DieRef>,
    bits: Option<(u8, u8, u8)>,
    which: Which,
    /// Script spelling for labels and messages, e.g. `$r->name`.
    label: String,
    /// For SDT arguments, which have no DWARF type: (size, signed).
    sdt: Option<(u8, bool)>,
}

/// Probes without a target context (`begin`, `end`, `error`, timers) cannot use
/// target data; returns one error per such expression.
pub(crate) fn check_no_context(body: &Block, cond: Option<&Expr>) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    let mut f = |e: &Expr| {
        let bad = match &e.kind {
            ExprKind::Target(t) => Some(format!("${}", t.name)),
            ExprKind::Entry(_) => Some("@entry".to_string()),
            ExprKind::GlobalVar { name, .. } => Some(format!("@var(\"{name}\")")),
            ExprKind::Cast { type_name, .. } => Some(format!("@cast(..., \"{type_name}\")")),
            ExprKind::Defined(_) => return Walk::Known(false),
            _ => None,
        };
        if let Some(what) = bad {
            errs.push(Diagnostic::error(
                "semantic error",
                format!(
                    "unresolved target-symbol expression: '{what}' is not available in this probe"
                ),
                e.span,
            ));
            return Walk::Skip;
        }
        Walk::Descend
    };
    if let Some(c) = cond {
        let _ = walk_expr(c, &mut f);
    }
    walk_block(body, &mut f);
    errs
}

/// The script functions a handler calls, directly or through other functions, in
/// the order found (each once, so recursion ends).
pub(crate) fn called_functions(
    body: &Block,
    cond: Option<&Expr>,
    functions: &HashMap<String, Block>,
) -> Vec<String> {
    let mut called: Vec<String> = Vec::new();
    let note = |e: &Expr, called: &mut Vec<String>| {
        if let ExprKind::Call { name, .. } = &e.kind {
            if functions.contains_key(name) && !called.contains(name) {
                called.push(name.clone());
            }
        }
        Walk::Descend
    };
    if let Some(c) = cond {
        walk_expr(c, &mut |e| note(e, &mut called));
    }
    walk_block(body, &mut |e| note(e, &mut called));
    let mut next = 0;
    while let Some(b) = called.get(next).and_then(|n| functions.get(n)) {
        next += 1;
        walk_block(b, &mut |e| note(e, &mut called));
    }
    called
}

/// Like [`check_no_context`] for the functions a probe without target context
/// calls: their `@var` and `@cast` cannot be captured anywhere. (`$name` in a
/// function is reported once for the whole script.)
pub(crate) fn check_functions_no_context(
    body: &Block,
    cond: Option<&Expr>,
    functions: &HashMap<String, Block>,
) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    for name in called_functions(body, cond, functions) {
        let Some(b) = functions.get(&name) else {
            continue;
        };
        for d in check_no_context(b, None) {
            if d.message.contains("'$") {
                continue;
            }
            errs.push(d.with_note(format!(
                "function '{name}' is called by a probe without a target context (begin, end, error, timer)"
            )));
        }
    }
    errs
}

/// Sets the context a call to the named function needs from the backend.
pub(crate) fn note_context_call(name: &str, needs: &mut ContextNeeds) {
    match name {
        // The runtime keeps what it last read of a process in /proc, under its name,
        // for handlers that run after it exited.
        "execname" | "cmdline_str" | "cmdline_arg" | "cmdline_args" | "env_var" | "uid" | "gid"
        | "euid" | "egid" | "pgrp" | "sid" | "ngroups" | "ns_uid" | "ns_gid" | "ns_euid"
        | "ns_egid" | "ns_pgrp" | "ns_sid" => needs.comm = true,
        "ppid" | "ns_ppid" | "pexecname" => needs.ppid = true,
        "cpu" | "cpuid" => needs.cpu = true,
        _ => {}
    }
}

/// String-copying functions: (bound argument index if any).
fn string_fn(name: &str) -> Option<Option<usize>> {
    match name {
        "user_string"
        | "user_string2"
        | "user_string_warn"
        | "user_string_quoted"
        | "kernel_string"
        | "kernel_string2"
        | "kernel_string_quoted" => Some(None),
        "user_string_n"
        | "user_string_n2"
        | "user_string_n_warn"
        | "user_string_n_quoted"
        | "kernel_string_n" => Some(Some(1)),
        n if wide_fn(n).is_some() => Some(None),
        _ => None,
    }
}

/// The UTF-16 and UTF-32 string functions: their code unit in bytes. They copy
/// MAXSTRINGLEN units whole (a NUL byte does not end them); the runtime decodes.
fn wide_fn(name: &str) -> Option<u32> {
    match name {
        "user_string_utf16"
        | "user_string2_utf16"
        | "kernel_string_utf16"
        | "kernel_string2_utf16" => Some(2),
        "user_string_utf32"
        | "user_string2_utf32"
        | "kernel_string_utf32"
        | "kernel_string2_utf32" => Some(4),
        _ => None,
    }
}

/// stap's argument functions: (width in bytes, 0 = the target's word; signed).
fn arg_fn(name: &str) -> Option<(u8, bool)> {
    Some(match name {
        "int_arg" | "s32_arg" => (4, true),
        "uint_arg" | "u32_arg" => (4, false),
        "long_arg" | "returnval" => (0, true),
        "ulong_arg" | "pointer_arg" => (0, false),
        "longlong_arg" | "s64_arg" => (8, true),
        "ulonglong_arg" | "u64_arg" => (8, false),
        _ => return None,
    })
}

/// Whether a function's return type is one `$return` can read: not void, and not the
/// nameless `DW_TAG_unspecified_type` assembler units give their functions (gdb shows
/// those as `void`).
fn has_return_type(di: &DebugInfo, t: Option<debuginfo::DieRef>) -> bool {
    let Some(t) = t else {
        return false;
    };
    let ty = di.type_of(Some(t));
    !(matches!(ty.kind, TypeKind::Other) && ty.name.is_empty())
}

/// Memory-reading functions: (width, signed). `long` and pointer reads are the
/// target's word (`word`: 4 on a 32-bit kernel such as GNU Mach, 8 on x86_64), as
/// stap's `kernel_long`/`user_long` read a C `long` of the target.
fn mem_fn(name: &str, word: u8) -> Option<(u8, bool)> {
    Some(match name {
        "user_long" | "kernel_long" | "user_long_error" | "user_long_warn" => (word, true),
        "user_ulong" | "kernel_pointer" | "user_ulong_error" | "user_ulong_warn" => (word, false),
        "user_char" | "user_int8" | "kernel_char" | "user_char_error" | "user_int8_error"
        | "user_char_warn" => (1, true),
        "user_uint8" | "user_uint8_error" => (1, false),
        "user_short" | "user_int16" | "kernel_short" | "user_short_error" | "user_int16_error"
        | "user_short_warn" => (2, true),
        "user_ushort" | "user_uint16" | "user_ushort_error" | "user_uint16_error"
        | "user_ushort_warn" => (2, false),
        "user_int" | "user_int32" | "kernel_int" | "user_int_error" | "user_int32_error"
        | "user_int_warn" => (4, true),
        "user_uint32" | "user_uint32_error" => (4, false),
        "user_int64" | "user_int64_error" => (8, true),
        "user_uint64" | "user_uint64_error" => (8, false),
        _ => return None,
    })
}

fn contains_target(e: &Expr) -> bool {
    let mut found = false;
    walk_expr(e, &mut |x| {
        if matches!(
            x.kind,
            ExprKind::Target(_)
                | ExprKind::Entry(_)
                | ExprKind::GlobalVar { .. }
                | ExprKind::Cast { .. }
        ) {
            found = true;
        }
        if let ExprKind::Call { name, .. } = &x.kind {
            if arg_fn(name).is_some() || matches!(name.as_str(), "register" | "u_register") {
                found = true;
            }
        }
        if found {
            Walk::Skip
        } else {
            Walk::Descend
        }
    });
    found
}

/// Builds one site's plans.
struct Builder<'a> {
    site: &'a SiteSpec,
    di: Option<&'a DebugInfo>,
    /// Variables in scope where the entry plan runs.
    vars: Vec<Variable>,
    max_string: u32,
    /// Pages of user stack a backtrace copies (`-D MAXUSTACKBYTES`).
    stack_pages: u32,
    entry: Vec<FieldPlan>,
    ret: Vec<FieldPlan>,
    dedupe: HashMap<(Which, String), u32>,
    captures: BTreeMap<u32, Decode>,
    needs: ContextNeeds,
    errors: Vec<Diagnostic>,
    user_functions: &'a std::collections::HashSet<String>,
    function_needs: ContextNeeds,
    /// Bodies of the script's functions.
    functions: &'a HashMap<String, Block>,
    /// Script functions the handler calls, directly or through other functions, in
    /// the order found; each is planned once per site (recursion ends there).
    called: Vec<String>,
    /// Walking a function body: `$name` and `@entry` are not legal there (the
    /// session reports `$name` once), `@var` and `@cast` are.
    in_function: bool,
    /// Walking the operand of `@entry(...)`: everything in it is evaluated at the
    /// function's entry, memory reads of `user_int(...)` and `@cast` included.
    in_entry: bool,
    /// Target variables that are not in scope (`$nosuch`): stap adds an `unresolved
    /// type` error where nothing else gives them a type.
    unresolved: Vec<script_syntax::ast::ExprId>,
}

/// Plans one resolved site: adds its `ProbeSite`, `SiteBinding` and listing line.
pub(crate) fn plan_site(
    sess: &Session<'_>,
    site: &SiteSpec,
    point: &ProbePoint,
    body: &Block,
    probe: u32,
    out: &mut Planned,
) -> Result<(), Vec<Diagnostic>> {
    let di = site.di.as_deref();
    let vars = match (di, &site.func, site.kind) {
        // A mark's context is its SDT arguments, not the DWARF scope around it.
        _ if site.sdt.is_some() => Vec::new(),
        (Some(di), Some(f), SpecKind::Return) => di.variables_at_entry(f),
        (Some(di), Some(f), _) => di.variables_at(f, site.addr),
        _ => Vec::new(),
    };
    let mut b = Builder {
        site,
        di,
        vars,
        max_string: sess.opts.max_string.clamp(1, capture_plan::MAX_FIELD_BYTES),
        stack_pages: crate::ustack::stack_pages(sess.opts.max_ustack_bytes),
        entry: Vec::new(),
        ret: Vec::new(),
        dedupe: HashMap::new(),
        captures: BTreeMap::new(),
        needs: ContextNeeds::default(),
        errors: Vec::new(),
        user_functions: &sess.user_functions,
        function_needs: sess.function_needs,
        functions: &sess.functions,
        called: Vec::new(),
        in_function: false,
        in_entry: false,
        unresolved: Vec::new(),
    };
    if let Some(c) = &point.condition {
        walk_expr(c, &mut |e| b.visit(e));
    }
    walk_block(body, &mut |e| b.visit(e));
    add_unresolved_types(&mut b.errors, &b.unresolved, body);
    // The functions' target expressions are captured here too, under their own
    // expression ids: the runtime runs a function with its caller's record.
    b.in_function = true;
    let mut next = 0;
    while let Some(name) = b.called.get(next).cloned() {
        next += 1;
        if let Some(fb) = b.functions.get(&name) {
            walk_block(fb, &mut |e| b.visit(e));
        }
    }
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    let n_entry = b.entry.len() as u32;
    let mut captures = std::mem::take(&mut b.captures);
    for d in captures.values_mut() {
        fix_fields(d, n_entry);
        merge_text(d);
    }
    let id = SiteId(out.plans.sites.len() as u32);
    let kind = match site.kind {
        SpecKind::Entry => SiteKind::Entry,
        SpecKind::Return => SiteKind::Return {
            return_plan: CapturePlan {
                fields: std::mem::take(&mut b.ret),
            },
        },
        SpecKind::ProcessBegin => SiteKind::ProcessBegin,
        SpecKind::ProcessEnd => SiteKind::ProcessEnd,
        SpecKind::SyscallEntry => SiteKind::SyscallEntry,
        SpecKind::SyscallReturn => SiteKind::SyscallReturn,
        SpecKind::ThreadBegin => SiteKind::ThreadBegin,
        SpecKind::ThreadEnd => SiteKind::ThreadEnd,
    };
    out.plans.sites.push(ProbeSite {
        id,
        module: site.module.clone(),
        addr: FileAddr(site.addr),
        kind,
        plan: CapturePlan {
            fields: std::mem::take(&mut b.entry),
        },
        needs: b.needs,
    });
    out.bindings.push(SiteBinding {
        site: id,
        probe,
        pp: site.pp.clone(),
        function: site
            .func
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        captures,
        // The resolved point; `plan` names an alias instead.
        pn: String::new(),
    });
    if !out.listing.contains(&site.pp) {
        out.listing.push(site.pp.clone());
    }
    // A marker guarded by a semaphore only evaluates its arguments while the counter
    // is nonzero: the backend raises it while the session runs (once per module and
    // address, whatever the number of marks and handlers sharing it).
    if let Some(sem) = site.sdt.as_ref().map(|p| p.semaphore).filter(|a| *a != 0) {
        let known = out.plans.sites.iter().any(|s| {
            s.kind == SiteKind::Semaphore && s.module == site.module && s.addr == FileAddr(sem)
        });
        if !known {
            let id = SiteId(out.plans.sites.len() as u32);
            out.plans.sites.push(ProbeSite {
                id,
                module: site.module.clone(),
                addr: FileAddr(sem),
                kind: SiteKind::Semaphore,
                plan: CapturePlan { fields: Vec::new() },
                needs: Default::default(),
            });
            out.bindings.push(SiteBinding {
                site: id,
                probe,
                pp: format!("{} semaphore", site.pp),
                function: String::new(),
                captures: Default::default(),
                pn: String::new(),
            });
        }
    }
    Ok(())
}

/// Joins adjacent text parts of a pretty decode (`"x=", " "` becomes `"x= "`).
fn merge_text(d: &mut Decode) {
    if let Decode::Pretty(parts) = d {
        let mut out: Vec<PrettyPart> = Vec::with_capacity(parts.len());
        for p in parts.drain(..) {
            match (out.last_mut(), p) {
                (Some(PrettyPart::Text(a)), PrettyPart::Text(b)) => a.push_str(&b),
                (_, p) => out.push(p),
            }
        }
        *parts = out;
    }
}

fn fix_fields(d: &mut Decode, n_entry: u32) {
    let fix = |f: &mut u32| {
        if *f & RET_FLAG != 0 {
            *f = n_entry + (*f & !RET_FLAG);
        }
    };
    match d {
        Decode::Int { field, .. }
        | Decode::Bitfield { field, .. }
        | Decode::Str { field }
        | Decode::Bytes { field } => fix(field),
        Decode::Pretty(parts) => {
            for p in parts {
                match p {
                    PrettyPart::Text(_) => {}
                    PrettyPart::Dec(d)
                    | PrettyPart::Hex(d)
                    | PrettyPart::Quoted(d)
                    | PrettyPart::Char(d) => fix_fields(d, n_entry),
                }
            }
        }
        Decode::Backtrace { regs, stack, .. } => {
            for f in regs.iter_mut().flatten() {
                fix(f);
            }
            fix(stack);
        }
    }
}

/// stap's `unresolved type` errors for target variables not in scope whose type
/// nothing else decides: an argument of the print family (`println($nosuch)`), and
/// that call itself. Each goes right after the variable's own error (where stap
/// prints it, whatever the call's position).
fn add_unresolved_types(
    errors: &mut Vec<Diagnostic>,
    unresolved: &[script_syntax::ast::ExprId],
    body: &Block,
) {
    if unresolved.is_empty() {
        return;
    }
    let mut found: Vec<(script_syntax::ast::Span, script_syntax::ast::Span)> = Vec::new();
    walk_block(body, &mut |e| {
        if let ExprKind::Call { name, args } = &e.kind {
            if matches!(
                name.as_str(),
                "print" | "println" | "printd" | "printdln" | "sprint" | "sprintln"
            ) {
                for a in args {
                    if unresolved.contains(&a.id) {
                        found.push((a.span, e.span));
                    }
                }
            }
        }
        Walk::Descend
    });
    for (arg, call) in found {
        let Some(at) = errors
            .iter()
            .position(|d| d.labels.first().is_some_and(|l| l.span == arg))
        else {
            continue;
        };
        let ut = |span| Diagnostic::error("semantic error", "unresolved type ", span);
        errors.insert(at + 1, ut(arg));
        errors.insert(at + 2, ut(call));
    }
}

fn sem(msg: impl Into<String>, e: &Expr) -> Diagnostic {
    Diagnostic::error("semantic error", msg, e.span)
}

impl<'a> Builder<'a> {
    fn visit(&mut self, e: &Expr) -> Walk {
        if let ExprKind::Assign { target: t, .. } | ExprKind::IncDec { target: t, .. } = &e.kind {
            if matches!(
                t.kind,
                ExprKind::Target(_) | ExprKind::GlobalVar { .. } | ExprKind::Cast { .. }
            ) {
                // The design is read-only: a capture plan has no write operation.
                self.errors.push(sem(
                    format!(
                        "cannot write to target variable '{}': snaptap never modifies the traced program",
                        self.sess_snippet(t)
                    ),
                    t,
                ));
                return Walk::Skip;
            }
        }
        if self.in_function && matches!(e.kind, ExprKind::Target(_) | ExprKind::Entry(_)) {
            return Walk::Skip;
        }
        match &e.kind {
            ExprKind::Unary {
                op: UnaryOp::AddressOf,
                expr: inner,
            } => {
                match self.address_of(e, inner) {
                    Ok(d) => {
                        self.captures.insert(e.id.0, d);
                    }
                    Err(d) => self.errors.push(d),
                }
                Walk::Skip
            }
            ExprKind::Target(t) => {
                match self.target_decode(e, t) {
                    Ok(d) => {
                        self.captures.insert(e.id.0, d);
                    }
                    Err(d) => self.errors.push(d),
                }
                Walk::Skip
            }
            ExprKind::Entry(inner) => {
                if self.site.kind != SpecKind::Return {
                    self.errors
                        .push(sem("@entry is only valid in .return probes", e));
                    return Walk::Skip;
                }
                // Target values in a return probe are captured at entry anyway, and
                // inside `@entry` so are the memory reads of calls and `@cast`; so
                // `@entry(X)` is X's capture, both ids decode the same field.
                let before = self.errors.len();
                let outer = std::mem::replace(&mut self.in_entry, true);
                self.visit_expr_as_value(inner);
                self.in_entry = outer;
                if self.errors.len() == before {
                    if let Some(d) = self.captures.get(&inner.id.0).cloned() {
                        self.captures.insert(e.id.0, d);
                    }
                }
                Walk::Skip
            }
            ExprKind::Defined(inner) => {
                // Never an error: capture when possible, and the runtime answers 1 iff
                // the inner expression's id is captured.
                let saved = self.errors.len();
                walk_expr(inner, &mut |x| self.visit(x));
                if self.errors.len() > saved {
                    self.errors.truncate(saved);
                    self.captures.remove(&inner.id.0);
                }
                Walk::Known(self.captures.contains_key(&inner.id.0))
            }
            ExprKind::Call { name, args } => {
                note_context_call(name, &mut self.needs);
                if self.user_functions.contains(name) {
                    if !self.called.contains(name) {
                        self.called.push(name.clone());
                    }
                    let f = self.function_needs;
                    self.needs.comm |= f.comm;
                    self.needs.ppid |= f.ppid;
                    self.needs.cpu |= f.cpu;
                }
                if matches!(name.as_str(), "printf" | "sprintf") {
                    if let Some(walk) = self.printf_memory(name, args) {
                        return walk;
                    }
                }
                if crate::ustack::needs_stack(name) {
                    // Registers at the return stop in a return probe: the stack of
                    // the caller the function returned to, as stap shows it.
                    let which = if self.late_reads() {
                        Which::Return
                    } else {
                        Which::Entry
                    };
                    let pages = self.stack_pages;
                    let d = crate::ustack::backtrace_fields(pages, &mut |ops, label| {
                        self.add_field(which, ops, label)
                    });
                    self.captures.insert(e.id.0, d);
                    // ucallers(n)'s argument is evaluated by the handler.
                    return Walk::Descend;
                }
                match name.as_str() {
                    "register" | "u_register" | "uaddr" => {
                        match self.capture_register(e, name, args) {
                            Ok(d) => {
                                self.captures.insert(e.id.0, d);
                            }
                            Err(d) => self.errors.push(d),
                        }
                        return Walk::Skip;
                    }
                    n if arg_fn(n).is_some() => {
                        match self.capture_arg(e, name, args) {
                            Ok(d) => {
                                self.captures.insert(e.id.0, d);
                            }
                            Err(d) => self.errors.push(d),
                        }
                        return Walk::Skip;
                    }
                    _ => {}
                }
                if string_fn(name).is_some() || mem_fn(name, 8).is_some() {
                    match self.capture_call(e, name, args) {
                        Ok(Some(d)) => {
                            self.captures.insert(e.id.0, d);
                            // Other arguments (like user_string2's error text) may
                            // still contain captures of their own.
                            for a in args.iter().skip(1) {
                                walk_expr(a, &mut |x| self.visit(x));
                            }
                            return Walk::Skip;
                        }
                        Ok(None) => {}
                        Err(d) => {
                            self.errors.push(d);
                            return Walk::Skip;
                        }
                    }
                }
                Walk::Descend
            }
            ExprKind::GlobalVar { .. } | ExprKind::Cast { .. } => {
                let r = self
                    .resolve_tval(e)
                    .unwrap_or_else(|| Err(sem("internal: not a target value", e)))
                    .and_then(|(tv, pretty)| {
                        let di = self.require_di(e, &tv.label)?;
                        if pretty > 0 {
                            let mut parts = Vec::new();
                            self.pretty(e, di, &tv, pretty, &mut parts);
                            Ok(Decode::Pretty(parts))
                        } else {
                            self.scalar(e, di, &tv)
                        }
                    });
                match r {
                    Ok(d) => {
                        self.captures.insert(e.id.0, d);
                    }
                    Err(d) => self.errors.push(d),
                }
                Walk::Skip
            }
            _ => Walk::Descend,
        }
    }

    fn is_syscall(&self) -> bool {
        matches!(
            self.site.kind,
            SpecKind::SyscallEntry | SpecKind::SyscallReturn
        )
    }

    /// The register of a system call site's context variable and whether it is
    /// signed: `$syscall` (the number), `$arg1`..`$arg6` (the x86_64 Linux argument
    /// registers), `$return` at the exit. All are `long`s, as in stap.
    fn syscall_reg(&self, e: &Expr, t: &TargetExpr) -> Result<(DwarfReg, bool), Diagnostic> {
        let ret = self.site.kind == SpecKind::SyscallReturn;
        let reg = match t.name.as_str() {
            "syscall" => Some(DwarfReg::SYSCALL_NR),
            "return" if ret => Some(DwarfReg::RAX),
            name => name
                .strip_prefix("arg")
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| SYSCALL_ARG_REGS.get(i))
                .map(|r| DwarfReg(*r)),
        };
        let Some(reg) = reg else {
            return Err(sem(
                format!(
                    "unable to find '${}' in probe point {} (alternatives: {})",
                    t.name,
                    self.site.pp,
                    syscall_var_names(ret).join(" ")
                ),
                e,
            ));
        };
        if t.pretty > 0 || !t.path.is_empty() {
            return Err(sem(
                format!(
                    "'${}' is a long at {}: it has no members and no pretty form",
                    t.name, self.site.pp
                ),
                e,
            ));
        }
        Ok((reg, true))
    }

    /// A short spelling of a target expression for messages.
    fn sess_snippet(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Target(t) => format!("${}", t.name),
            ExprKind::GlobalVar { name, .. } => format!("@var(\"{name}\")"),
            _ => "@cast(...)".to_string(),
        }
    }

    fn visit_expr_as_value(&mut self, e: &Expr) {
        let _ = walk_expr(e, &mut |x| self.visit(x));
    }

    fn require_di(&self, e: &Expr, what: &str) -> Result<&'a DebugInfo, Diagnostic> {
        match (self.di, &self.site.func) {
            (Some(di), Some(_)) => Ok(di),
            (Some(di), None) if self.site.sdt.is_some() => Ok(di),
            _ => Err(sem(
                format!(
                    "unresolved target-symbol expression: '{what}' is not available in probe point {}",
                    self.site.pp
                ),
                e,
            )),
        }
    }

    fn add_field(&mut self, which: Which, ops: Vec<Op>, label: &str) -> u32 {
        let key = (which, format!("{ops:?}"));
        if let Some(i) = self.dedupe.get(&key) {
            return *i;
        }
        let list = match which {
            Which::Entry => &mut self.entry,
            Which::Return => &mut self.ret,
        };
        let idx = list.len() as u32;
        list.push(FieldPlan {
            ops: ops.clone(),
            label: label.to_string(),
        });
        let idx = match which {
            Which::Entry => idx,
            Which::Return => idx | RET_FLAG,
        };
        self.dedupe.insert(key, idx);
        idx
    }

    /// `$x`, `$p->a[3]`, `$return`, `$$parms`, `$x$`...
    fn target_decode(&mut self, e: &Expr, t: &TargetExpr) -> Result<Decode, Diagnostic> {
        if self.is_syscall() {
            let (reg, signed) = self.syscall_reg(e, t)?;
            let field = self.add_field(
                Which::Entry,
                vec![Op::Reg(reg), Op::EmitValue(8)],
                &format!("${}", t.name),
            );
            return Ok(Decode::Int {
                field,
                size: 8,
                signed,
            });
        }
        if let Some(name) = &self.site.plt {
            return crate::dynelf::plt_var(&self.site.pp, name, t).map_err(|m| sem(m, e));
        }
        let spelled = format!("${}", t.name);
        let di = self.require_di(e, &spelled)?;
        if let Some(which) = t.name.strip_prefix('$') {
            return self.meta_vars(e, di, which, t.pretty);
        }
        let tv = self.resolve_target(e, di, t)?;
        if t.pretty > 0 {
            let mut parts = Vec::new();
            self.pretty(e, di, &tv, t.pretty, &mut parts);
            return Ok(Decode::Pretty(parts));
        }
        self.scalar(e, di, &tv)
    }

    /// Resolves `@var(...)->path` and `@cast(...)->path` to a value and its pretty level.
    fn resolve_tval(&mut self, e: &Expr) -> Option<Result<(TVal, u8), Diagnostic>> {
        Some(match &e.kind {
            ExprKind::GlobalVar { name, module, path } => self
                .global_var(e, name, module.as_deref(), path)
                .map(|t| (t, 0)),
            ExprKind::Cast {
                expr,
                type_name,
                module,
                path,
                pretty,
            } => self
                .cast(e, expr, type_name, module.as_deref(), path)
                .map(|t| (t, *pretty)),
            _ => return None,
        })
    }

    fn same_module(&self, e: &Expr, module: Option<&str>) -> Result<(), Diagnostic> {
        let Some(m) = module else {
            return Ok(());
        };
        let canon = crate::resolve::resolve_path(m).map_err(|why| sem(why, e))?;
        if canon != self.site.module {
            return Err(sem(
                format!(
                    "module '{m}' is not supported here yet: only the probed module {} can be named",
                    self.site.module.display()
                ),
                e,
            ));
        }
        Ok(())
    }

    fn apply_path(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        mut tv: TVal,
        path: &[TargetStep],
    ) -> Result<TVal, Diagnostic> {
        for step in path {
            tv = match step {
                TargetStep::Member(name, _) => self.member(e, di, tv, name)?,
                TargetStep::Index(idx) => self.index(e, di, tv, idx)?,
            };
        }
        Ok(tv)
    }

    fn global_var(
        &mut self,
        e: &Expr,
        name: &str,
        module: Option<&str>,
        path: &[TargetStep],
    ) -> Result<TVal, Diagnostic> {
        let di = self.require_di(e, &format!("@var(\"{name}\")"))?;
        self.same_module(e, module)?;
        let (var, file) = match name.split_once('@') {
            Some((v, f)) => (v, Some(f)),
            None => (name, None),
        };
        let Some(v) = di.global_at(var, file, self.site.addr) else {
            let close = debuginfo::close_matches(
                var,
                &di.global_names()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            );
            let mut msg = format!(
                "unable to find global '{var}' in {}",
                self.site.module.display()
            );
            if !close.is_empty() {
                msg.push_str(&format!(" (alternatives: {})", close.join(" ")));
            }
            return Err(sem(msg, e));
        };
        let val = loc_to_val(&v.location).map_err(|why| {
            sem(
                format!("unable to find location for global '{var}': {why}"),
                e,
            )
        })?;
        let tv = TVal {
            sdt: None,
            val,
            ty: v.ty,
            bits: None,
            which: Which::Entry,
            label: format!("@var(\"{name}\")"),
        };
        self.apply_path(e, di, tv, path)
    }

    fn cast(
        &mut self,
        e: &Expr,
        addr: &Expr,
        type_name: &str,
        module: Option<&str>,
        path: &[TargetStep],
    ) -> Result<TVal, Diagnostic> {
        let di = self.require_di(e, "@cast")?;
        self.same_module(e, module)?;
        let ty = di.find_type(type_name).ok_or_else(|| {
            sem(
                format!(
                    "type definition '{type_name}' not found in {}",
                    self.site.module.display()
                ),
                e,
            )
        })?;
        // `@cast` is a memory read of the handler: in a return probe it happens at
        // the return, as the calls do.
        let (ops, which) = self.lower_late(addr)?;
        let tv = TVal {
            sdt: None,
            val: Val::Mem(ops),
            ty: Some(ty),
            bits: None,
            which,
            label: format!("@cast(..., \"{type_name}\")"),
        };
        self.apply_path(e, di, tv, path)
    }

    fn resolve_target(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        t: &TargetExpr,
    ) -> Result<TVal, Diagnostic> {
        let mut tv = self.base(e, di, &t.name)?;
        for step in &t.path {
            tv = match step {
                TargetStep::Member(name, _) => self.member(e, di, tv, name)?,
                TargetStep::Index(idx) => self.index(e, di, tv, idx)?,
            };
        }
        Ok(tv)
    }

    fn base(&mut self, e: &Expr, di: &DebugInfo, name: &str) -> Result<TVal, Diagnostic> {
        if let Some(p) = &self.site.sdt {
            return sdt_arg(p, name, &self.site.pp, e);
        }
        let func = self
            .site
            .func
            .as_ref()
            .ok_or_else(|| sem("no function", e))?;
        if name == "return" {
            if self.site.kind != SpecKind::Return {
                return Err(sem(
                    format!(
                        "unable to find local 'return' near pc {:#x} in {}: $return is only available in .return probes",
                        self.site.addr, func.name
                    ),
                    e,
                ));
            }
            if func.return_type.is_none() {
                return Err(sem(
                    format!(
                        "function '{}' returns void: $return is not available",
                        func.name
                    ),
                    e,
                ));
            }
            if !has_return_type(di, func.return_type) {
                return Err(sem(
                    format!(
                        "function '{}' has no return type in its debug info (DW_TAG_unspecified_type, as assembler sources give): $return is not available; register(\"rax\") reads the return register",
                        func.name
                    ),
                    e,
                ));
            }
            // 32-bit code returns 8-byte values in edx:eax.
            let wide32 = di.address_size() == 4 && di.strip(func.return_type).1.size == Some(8);
            let val = if wide32 {
                Val::Value(vec![
                    Op::Reg(DwarfReg(1)),
                    Op::Const(0xffff_ffff),
                    Op::And,
                    Op::Const(32),
                    Op::Shl,
                    Op::Reg(DwarfReg::RAX),
                    Op::Const(0xffff_ffff),
                    Op::And,
                    Op::Or,
                ])
            } else {
                Val::Reg(DwarfReg::RAX.0)
            };
            return Ok(TVal {
                sdt: None,
                val,
                ty: func.return_type,
                bits: None,
                which: Which::Return,
                label: "$return".into(),
            });
        }
        if !di.has_debug_info() {
            return Err(sem(
                format!(
                    "no debug information in {}: target variable '${name}' is not available (compile with -g)",
                    self.site.module.display()
                ),
                e,
            ));
        }
        let Some(v) = self.vars.iter().find(|v| v.name == name) else {
            let alts: Vec<String> = self.vars.iter().map(|v| format!("${}", v.name)).collect();
            // stap's words (dwflpp's literal_stmt_for_local), its doubled parenthesis
            // included: the scope's DIE offset, the module, the unit's file.
            let alts = if alts.is_empty() {
                "<no alternatives>".to_string()
            } else {
                format!("alternatives: {})", alts.join(" "))
            };
            let msg = format!(
                "unable to find local '{name}', [man error::dwarf] dieoffset {:#x} in {}, near pc {:#x} in {} {} ({alts})",
                di.die_offset(func.die).unwrap_or(0),
                self.site.module.display(),
                self.site.addr,
                func.name,
                func.cu_name,
            );
            self.unresolved.push(e.id);
            return Err(sem(msg, e));
        };
        let val = loc_to_val(&v.location).map_err(|why| {
            sem(
                format!(
                    "unable to find location for variable '${name}' at {}: {why}",
                    self.site.pp
                ),
                e,
            )
        })?;
        Ok(TVal {
            sdt: None,
            val,
            ty: v.ty,
            bits: None,
            which: Which::Entry,
            label: format!("${name}"),
        })
    }

    /// Ops that push the value of a scalar (integer, enum, pointer, bitfield).
    fn load_value(&self, e: &Expr, di: &DebugInfo, tv: &TVal) -> Result<Vec<Op>, Diagnostic> {
        let (_, t) = tv_type(di, tv);
        let (size, signed) = scalar_shape(&t).ok_or_else(|| {
            sem(
                format!(
                    "'{}' has type '{}' and cannot be used as a number",
                    tv.label, t.name
                ),
                e,
            )
        })?;
        let mut ops = match &tv.val {
            Val::Mem(a) => {
                let mut ops = a.clone();
                let n = tv.bits.map_or(size, |b| b.2);
                ops.push(Op::Deref(n));
                ops
            }
            Val::Reg(r) => vec![Op::Reg(DwarfReg(*r))],
            Val::Value(v) => v.clone(),
            Val::Const(c) => vec![Op::Const(*c)],
        };
        if let Some((lo, n, _)) = tv.bits {
            if lo > 0 {
                ops.push(Op::Const(u64::from(lo)));
                ops.push(Op::Shr);
            }
            if n < 64 {
                ops.push(Op::Const((1u64 << n) - 1));
                ops.push(Op::And);
            }
            if signed && n > 0 && n < 64 {
                ops.push(Op::SignExtend(n));
            }
            return Ok(ops);
        }
        if size < 8 && !matches!(tv.val, Val::Mem(_)) {
            ops.push(Op::Const((1u64 << (size * 8)) - 1));
            ops.push(Op::And);
        }
        if signed && size < 8 {
            ops.push(Op::SignExtend(size * 8));
        }
        Ok(ops)
    }

    /// The address of a value in memory (for arrays and `user_string($array)`).
    fn address(&self, e: &Expr, tv: &TVal) -> Result<Vec<Op>, Diagnostic> {
        match &tv.val {
            Val::Mem(a) if tv.bits.is_none() => Ok(a.clone()),
            _ => Err(sem(
                format!(
                    "'{}' has no address (it is held in a register or computed)",
                    tv.label
                ),
                e,
            )),
        }
    }

    /// The value of a pointer (or the address of an array) and the type it points to.
    fn pointer_target(
        &self,
        e: &Expr,
        di: &DebugInfo,
        tv: &TVal,
    ) -> Result<(Vec<Op>, Option<DieRef>, Type), Diagnostic> {
        let (_, t) = tv_type(di, tv);
        match t.kind {
            TypeKind::Pointer(p) => {
                let ops = self.load_value(e, di, tv)?;
                Ok((ops, p, di.strip(p).1))
            }
            TypeKind::Array { elem, .. } => Ok((self.address(e, tv)?, elem, di.strip(elem).1)),
            _ => Err(sem(
                format!(
                    "'{}' has type '{}', not a pointer or array",
                    tv.label, t.name
                ),
                e,
            )),
        }
    }

    fn member(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        tv: TVal,
        name: &str,
    ) -> Result<TVal, Diagnostic> {
        let (_, t) = tv_type(di, &tv);
        let (base, st) = match t.kind {
            TypeKind::Pointer(p) => {
                let ops = self.load_value(e, di, &tv)?;
                (ops, di.strip(p).1)
            }
            TypeKind::Struct { .. } => (self.address(e, &tv)?, t),
            _ => {
                return Err(sem(
                    format!(
                        "'{}' has type '{}': cannot access member '{name}' of a non-struct",
                        tv.label, t.name
                    ),
                    e,
                ))
            }
        };
        let TypeKind::Struct { members, .. } = &st.kind else {
            return Err(sem(
                format!(
                    "'{}' does not point to a struct or union (it points to '{}')",
                    tv.label, st.name
                ),
                e,
            ));
        };
        let Some((off, m)) = find_member(di, members, name, 0) else {
            let alts: Vec<&str> = members
                .iter()
                .map(|m| m.name.as_str())
                .filter(|n| !n.is_empty())
                .collect();
            return Err(sem(
                format!(
                    "unable to find member '{name}' for {} (alternatives: {})",
                    st.name,
                    alts.join(" ")
                ),
                e,
            ));
        };
        let mut ops = base;
        if off != 0 {
            ops.push(Op::Const(off));
            ops.push(Op::Add);
        }
        Ok(TVal {
            sdt: None,
            val: Val::Mem(ops),
            ty: m.ty,
            bits: m.bits,
            which: tv.which,
            label: format!("{}->{name}", tv.label),
        })
    }

    fn index(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        tv: TVal,
        idx: &Expr,
    ) -> Result<TVal, Diagnostic> {
        let (base, elem, et) = self.pointer_target(e, di, &tv)?;
        let stride = et.size.filter(|s| *s > 0).ok_or_else(|| {
            sem(
                format!("'{}': element type '{}' has no size", tv.label, et.name),
                e,
            )
        })?;
        let mut ops = base;
        let label = match &idx.kind {
            ExprKind::Number(n) => {
                let off = (*n as u64).wrapping_mul(stride);
                if off != 0 {
                    ops.push(Op::Const(off));
                    ops.push(Op::Add);
                }
                format!("{}[{n}]", tv.label)
            }
            _ => {
                let (iops, which) = if tv.which == Which::Return {
                    self.lower_late(idx)?
                } else {
                    self.lower_value(idx)?
                };
                if which != tv.which {
                    return Err(sem("cannot mix $return with values captured at entry", idx));
                }
                ops.extend(iops);
                if stride != 1 {
                    ops.push(Op::Const(stride));
                    ops.push(Op::Mul);
                }
                ops.push(Op::Add);
                format!("{}[...]", tv.label)
            }
        };
        Ok(TVal {
            sdt: None,
            val: Val::Mem(ops),
            ty: elem,
            bits: None,
            which: tv.which,
            label,
        })
    }

    /// True when the handler's own memory reads (`user_int(...)`, `@cast`) happen at
    /// a later stop than the target values they use: in a return probe, outside
    /// `@entry`.
    fn late_reads(&self) -> bool {
        self.site.kind == SpecKind::Return && !self.in_entry
    }

    /// Lowers an address or index that a memory read of the handler uses, for the
    /// stop where that read happens. In a return probe (outside `@entry`) that is the
    /// return: each target value (`$p`, `$p->f`, `@var(...)`, `@entry(...)`) keeps
    /// stap's rule and is evaluated at the entry, into an entry field the return
    /// plan reads back with `Op::EntryField`; `$return` is read at the return;
    /// arithmetic combines them there. Elsewhere it is [`Builder::lower_value`].
    fn lower_late(&mut self, e: &Expr) -> Result<(Vec<Op>, Which), Diagnostic> {
        if !self.late_reads() {
            return self.lower_value(e);
        }
        let ops = match &e.kind {
            ExprKind::Number(n) => vec![Op::Const(*n as u64)],
            ExprKind::Unary {
                op: op @ (UnaryOp::Neg | UnaryOp::BitNot | UnaryOp::Plus),
                expr,
            } => {
                let (mut ops, _) = self.lower_late(expr)?;
                match op {
                    UnaryOp::Neg => ops.push(Op::Neg),
                    UnaryOp::BitNot => ops.push(Op::Not),
                    _ => {}
                }
                ops
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let Some(op) = arith_op(*op) else {
                    return self.lower_value(e);
                };
                let (mut a, _) = self.lower_late(lhs)?;
                let (b, _) = self.lower_late(rhs)?;
                a.extend(b);
                a.push(op);
                a
            }
            _ => {
                let (ops, which) = self.lower_value(e)?;
                if which == Which::Return {
                    ops
                } else {
                    let mut spill = ops;
                    spill.push(Op::EmitValue(8));
                    let label = format!("{} at entry", self.label_of(e));
                    vec![Op::EntryField(self.add_field(Which::Entry, spill, &label))]
                }
            }
        };
        Ok((ops, Which::Return))
    }

    /// A short label for an expression in plan dumps.
    fn label_of(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Target(t) => {
                let mut l = format!("${}", t.name);
                for step in &t.path {
                    match step {
                        TargetStep::Member(m, _) => l.push_str(&format!("->{m}")),
                        TargetStep::Index(_) => l.push_str("[...]"),
                    }
                }
                l
            }
            ExprKind::Entry(_) => "@entry(...)".to_string(),
            _ => self.sess_snippet(e),
        }
    }

    /// Lowers a script expression built from target values, numbers and arithmetic to
    /// ops that compute it in the target (used for string addresses and indexes).
    fn lower_value(&mut self, e: &Expr) -> Result<(Vec<Op>, Which), Diagnostic> {
        match &e.kind {
            ExprKind::Number(n) => Ok((vec![Op::Const(*n as u64)], Which::Entry)),
            ExprKind::Entry(inner) => {
                let outer = std::mem::replace(&mut self.in_entry, true);
                let r = self.lower_value(inner);
                self.in_entry = outer;
                r
            }
            ExprKind::Target(t) if self.is_syscall() => {
                let (reg, _) = self.syscall_reg(e, t)?;
                Ok((vec![Op::Reg(reg)], Which::Entry))
            }
            ExprKind::Target(t) => {
                let di = self.require_di(e, &format!("${}", t.name))?;
                if t.pretty > 0 || t.name.starts_with('$') {
                    return Err(sem("a pretty-printed value is a string, not a number", e));
                }
                let tv = self.resolve_target(e, di, t)?;
                let (_, ty) = tv_type(di, &tv);
                let ops = if matches!(ty.kind, TypeKind::Array { .. }) {
                    self.address(e, &tv)?
                } else {
                    self.load_value(e, di, &tv)?
                };
                Ok((ops, tv.which))
            }
            ExprKind::GlobalVar { .. } | ExprKind::Cast { .. } => {
                let (tv, pretty) = self
                    .resolve_tval(e)
                    .unwrap_or_else(|| Err(sem("internal: not a target value", e)))?;
                if pretty > 0 {
                    return Err(sem("a pretty-printed value is a string, not a number", e));
                }
                let di = self.require_di(e, &tv.label)?;
                let (_, ty) = tv_type(di, &tv);
                let ops = if matches!(ty.kind, TypeKind::Array { .. }) {
                    self.address(e, &tv)?
                } else {
                    self.load_value(e, di, &tv)?
                };
                Ok((ops, tv.which))
            }
            ExprKind::Call { name, args }
                if arg_fn(name).is_some() || matches!(name.as_str(), "register" | "u_register") =>
            {
                let (mut ops, size, signed, which) = self.register_value(e, name, args)?;
                if size < 8 {
                    if signed {
                        ops.push(Op::SignExtend(size * 8));
                    } else {
                        ops.push(Op::Const((1u64 << (size * 8)) - 1));
                        ops.push(Op::And);
                    }
                }
                Ok((ops, which))
            }
            ExprKind::Unary {
                op: UnaryOp::AddressOf,
                expr,
            } => self.address_ops(e, expr),
            ExprKind::Unary { op, expr } => {
                let (mut ops, w) = self.lower_value(expr)?;
                match op {
                    UnaryOp::Neg => ops.push(Op::Neg),
                    UnaryOp::BitNot => ops.push(Op::Not),
                    UnaryOp::Plus | UnaryOp::AddressOf => {}
                    UnaryOp::Not => return Err(sem("cannot compute '!' at the probe", e)),
                }
                Ok((ops, w))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let Some(op) = arith_op(*op) else {
                    return Err(sem(
                        "this operator cannot be computed at the probe; only + - * & | ^ << >> on target values",
                        e,
                    ));
                };
                let (mut a, wa) = self.lower_value(lhs)?;
                let (b, wb) = self.lower_value(rhs)?;
                let w = if matches!(lhs.kind, ExprKind::Number(_)) { wb } else { wa };
                if wa != wb && !matches!(lhs.kind, ExprKind::Number(_)) && !matches!(rhs.kind, ExprKind::Number(_)) {
                    return Err(sem("cannot mix $return with values captured at entry", e));
                }
                a.extend(b);
                a.push(op);
                Ok((a, w))
            }
            _ => Err(sem(
                "this address cannot be computed at the probe: it must be built from target variables ($...), numbers and arithmetic, because snaptap cannot read target memory after the probe",
                e,
            )),
        }
    }

    /// `&X`: the address of a target expression as an unsigned long field.
    fn address_of(&mut self, e: &Expr, inner: &Expr) -> Result<Decode, Diagnostic> {
        let (mut ops, which) = self.address_ops(e, inner)?;
        ops.push(Op::EmitValue(8));
        let label = format!("&{}", self.label_of(inner));
        let field = self.add_field(which, ops, &label);
        Ok(Decode::Int {
            field,
            size: 8,
            signed: false,
        })
    }

    /// Ops computing the address of a target expression (`&$x`, `&$p->f`, `&$a[3]`,
    /// `&@var("g")`, `&@cast(p, "t")->f`), with stap's errors for what has none: a
    /// value in a register, computed or constant, a bit field, pretty-printed and
    /// context variables. Like the value, the address of a target expression in a
    /// return probe is taken at the entry.
    fn address_ops(&mut self, e: &Expr, inner: &Expr) -> Result<(Vec<Op>, Which), Diagnostic> {
        let no = |what: &str, at: &Expr| sem(format!("cannot take address of {what}"), at);
        let tv = match &inner.kind {
            ExprKind::Target(_) if self.is_syscall() => {
                return Err(no("context variable", inner));
            }
            ExprKind::Target(t) => {
                if t.name.starts_with('$') {
                    return Err(no("context variable", inner));
                }
                if t.pretty > 0 {
                    return Err(no("pretty-printed variable", inner));
                }
                if self.site.sdt.is_some() {
                    return Err(no("sdt variable", inner));
                }
                let di = self.require_di(inner, &format!("${}", t.name))?;
                self.resolve_target(inner, di, t)?
            }
            ExprKind::GlobalVar { .. } | ExprKind::Cast { .. } => {
                let (tv, pretty) = self
                    .resolve_tval(inner)
                    .unwrap_or_else(|| Err(sem("internal: not a target value", inner)))?;
                if pretty > 0 {
                    return Err(no("pretty-printed variable", inner));
                }
                tv
            }
            // stap accepts `&` only on target symbols: anything else has no type to
            // take the address of.
            _ => return Err(sem("unknown type in dereference: operator '&'", e)),
        };
        if tv.bits.is_some() {
            return Err(sem("cannot take the address of a bit field", inner));
        }
        match tv.val {
            Val::Mem(ops) => Ok((ops, tv.which)),
            Val::Reg(_) => Err(no("object in register", inner)),
            Val::Value(_) => Err(no("computed value", inner)),
            Val::Const(_) => Err(no("constant value", inner)),
        }
    }

    /// `printf`/`sprintf` with `%m`/`%M` conversions: each such argument is an
    /// address whose bytes (the precision, default 1, as stap's `vsprintf` reads) are
    /// copied at the probe, keyed by the argument's id (a `Decode::Bytes`); the other
    /// arguments are visited as usual. `None` when the format has no such conversion
    /// (or is not a literal: the runtime reports that).
    fn printf_memory(&mut self, name: &str, args: &[Expr]) -> Option<Walk> {
        let Some(ExprKind::String(fmt)) = args.first().map(|a| &a.kind) else {
            return None;
        };
        let convs = crate::printf::memory_conversions(fmt);
        if convs.is_empty() {
            return None;
        }
        let rest = &args[1..];
        let mut planned = vec![false; rest.len()];
        for c in convs {
            let Some(arg) = rest.get(c.arg) else {
                // Too few arguments: the runtime reports stap's error.
                continue;
            };
            planned[c.arg] = true;
            let len = match c.len {
                crate::printf::MemLen::Bytes(n) => n,
                crate::printf::MemLen::Arg(i) => match rest.get(i).map(|a| &a.kind) {
                    Some(ExprKind::Number(n)) if *n > 0 => {
                        (*n).min(i64::from(crate::printf::MAX_MEMORY_BYTES)) as u32
                    }
                    Some(ExprKind::Number(_)) => 1,
                    _ => {
                        self.errors.push(sem(
                            format!(
                                "{name}: the precision of %{} must be a literal number here: it bounds the copy made at the probe",
                                c.conv
                            ),
                            rest.get(i).unwrap_or(arg),
                        ));
                        continue;
                    }
                },
            };
            if !contains_target(arg) {
                self.errors.push(sem(
                    format!(
                        "{name}: the address printed by %{} must be computed from target variables ($...) at the probe; snaptap cannot read target memory later",
                        c.conv
                    ),
                    arg,
                ));
                continue;
            }
            match self.lower_late(arg) {
                Ok((mut ops, which)) => {
                    ops.push(Op::EmitBytes(len));
                    let field = self.add_field(which, ops, &format!("%{} bytes", c.conv));
                    self.captures.insert(arg.id.0, Decode::Bytes { field });
                }
                Err(d) => self.errors.push(d),
            }
        }
        for (a, done) in rest.iter().zip(planned) {
            if !done {
                walk_expr(a, &mut |x| self.visit(x));
            }
        }
        Some(Walk::Skip)
    }

    /// `register("rax")`, `u_register("edi")`, `uaddr()`: a register at the probe.
    /// 32-bit names read the low half, sign-extended by `register` and zero-extended
    /// by `u_register`, as stap does.
    fn capture_register(
        &mut self,
        e: &Expr,
        name: &str,
        args: &[Expr],
    ) -> Result<Decode, Diagnostic> {
        // PLT sites have registers (the call's arguments) but no DWARF.
        if !self.is_syscall() && self.site.plt.is_none() {
            self.require_di(e, name)?;
        }
        self.capture_arg(e, name, args)
    }

    /// A register-like value as one field: `register("rdi")`, `uaddr()`, and stap's
    /// dwarfless argument functions (`int_arg(n)`, `pointer_arg(n)`, `returnval()`...):
    /// the argument register or stack slot of the calling convention.
    fn capture_arg(&mut self, e: &Expr, name: &str, args: &[Expr]) -> Result<Decode, Diagnostic> {
        let (mut ops, size, signed, which) = self.register_value(e, name, args)?;
        ops.push(Op::EmitValue(size));
        let field = self.add_field(which, ops, name);
        Ok(Decode::Int {
            field,
            size,
            signed,
        })
    }

    /// Ops pushing a register-like value (`register("rdi")`, `uaddr()`, `int_arg(2)`,
    /// `returnval()`), its width in bytes, its signedness and when it is read. The
    /// argument functions follow the System V calling convention at the function's
    /// first instruction (as stap's do: they are meant for entry probes, such as
    /// functions known only from the symbol table): on x86_64 arguments 1-6 are in
    /// rdi, rsi, rdx, rcx, r8, r9 and the rest on the stack above the return address;
    /// on i386 every argument is on the stack.
    fn register_value(
        &mut self,
        e: &Expr,
        name: &str,
        args: &[Expr],
    ) -> Result<(Vec<Op>, u8, bool, Which), Diagnostic> {
        let which = if self.late_reads() {
            Which::Return
        } else {
            Which::Entry
        };
        if name == "uaddr" {
            return Ok((vec![Op::Reg(DwarfReg::RIP)], 8, false, which));
        }
        if matches!(name, "register" | "u_register") {
            let Some(ExprKind::String(r)) = args.first().map(|a| &a.kind) else {
                return Err(sem(
                    format!("{name}: the register name must be a literal string"),
                    e,
                ));
            };
            let (reg, size) = register_number(r).ok_or_else(|| {
                sem(
                    format!(
                        "{name}: unknown register '{r}' (x86_64 names such as rax, edi, r8, rip)"
                    ),
                    e,
                )
            })?;
            return Ok((
                vec![Op::Reg(DwarfReg(reg))],
                size,
                name == "register",
                which,
            ));
        }
        let Some((width, signed)) = arg_fn(name) else {
            return Err(sem(format!("{name}: not an argument function"), e));
        };
        let word = self.di.map_or(8, |d| d.address_size());
        let width = if width == 0 { word } else { width };
        if name == "returnval" {
            return Ok((vec![Op::Reg(DwarfReg::RAX)], width.min(word), signed, which));
        }
        let n = match args.first().map(|a| &a.kind) {
            Some(ExprKind::Number(n)) if (1..=32).contains(n) => *n as u64,
            _ => {
                return Err(sem(
                    format!("{name}: the argument number must be a literal from 1 to 32 (it is read at the probe)"),
                    args.first().unwrap_or(e),
                ))
            }
        };
        const REGS: [u16; 6] = [5, 4, 1, 2, 8, 9];
        let ops = if word == 8 && n <= 6 {
            vec![Op::Reg(DwarfReg(REGS[n as usize - 1]))]
        } else {
            // Above the return address: x86_64's 7th argument at rsp+8, i386's 1st at
            // esp+4; each slot one word.
            let slot = if word == 8 { n - 6 } else { n };
            vec![
                Op::Reg(DwarfReg::RSP),
                Op::Const(slot * u64::from(word)),
                Op::Add,
                Op::Deref(width),
            ]
        };
        Ok((ops, width, signed, which))
    }

    /// `user_string($p)`, `user_int($p + 4)`... Returns `None` when the first argument
    /// has no target data (the runtime then reports its own error).
    fn capture_call(
        &mut self,
        e: &Expr,
        name: &str,
        args: &[Expr],
    ) -> Result<Option<Decode>, Diagnostic> {
        let Some(addr_arg) = args.first() else {
            return Ok(None);
        };
        if !contains_target(addr_arg) {
            return Err(sem(
                format!(
                    "{name}: the address must be computed from target variables ($...) at the probe; snaptap cannot read target memory later"
                ),
                addr_arg,
            ));
        }
        // The call runs in the handler, so in a return probe it reads memory at the
        // return, through the entry values of the target variables it names.
        let (ops, which) = self.lower_late(addr_arg)?;
        let label = format!("{name}(...)");
        if let Some(bound_idx) = string_fn(name) {
            let mut max = self.max_string;
            if let Some(i) = bound_idx {
                match args.get(i).map(|a| &a.kind) {
                    Some(ExprKind::Number(n)) if *n >= 0 => max = max.min(*n as u32),
                    _ => {
                        return Err(sem(
                            format!("{name}: the length must be a literal number (it bounds the copy made at the probe)"),
                            args.get(i).unwrap_or(e),
                        ))
                    }
                }
            }
            let mut ops = ops;
            if let Some(unit) = wide_fn(name) {
                ops.push(Op::EmitBytes(max.saturating_mul(unit)));
                let field = self.add_field(which, ops, &label);
                return Ok(Some(Decode::Bytes { field }));
            }
            ops.push(Op::EmitString(max));
            let field = self.add_field(which, ops, &label);
            return Ok(Some(Decode::Str { field }));
        }
        let word = self.di.map_or(8, |d| d.address_size());
        if let Some((size, signed)) = mem_fn(name, word) {
            let mut ops = ops;
            ops.push(Op::EmitBytes(u32::from(size)));
            let field = self.add_field(which, ops, &label);
            return Ok(Some(Decode::Int {
                field,
                size,
                signed,
            }));
        }
        Ok(None)
    }

    /// A scalar value as one field.
    fn scalar(&mut self, e: &Expr, di: &DebugInfo, tv: &TVal) -> Result<Decode, Diagnostic> {
        let (_, t) = tv_type(di, tv);
        if let TypeKind::Array { .. } = t.kind {
            // Arrays used as values are their address, as in C and stap.
            let mut ops = self.address(e, tv)?;
            ops.push(Op::EmitValue(8));
            let field = self.add_field(tv.which, ops, &tv.label);
            return Ok(Decode::Int {
                field,
                size: 8,
                signed: false,
            });
        }
        let Some((size, signed)) = scalar_shape(&t) else {
            let hint = if matches!(t.kind, TypeKind::Struct { .. }) {
                format!("; access a member, or use '{}$' to print it", tv.label)
            } else {
                String::new()
            };
            return Err(sem(
                format!(
                    "'{}' has type '{}', which cannot be used as a value{hint}",
                    tv.label, t.name
                ),
                e,
            ));
        };
        let (ops, decode_size) = match (&tv.val, tv.bits) {
            (Val::Mem(a), Some((_, _, storage))) => {
                let mut ops = a.clone();
                ops.push(Op::EmitBytes(u32::from(storage)));
                (ops, storage)
            }
            (Val::Mem(a), None) => {
                let mut ops = a.clone();
                ops.push(Op::EmitBytes(u32::from(size)));
                (ops, size)
            }
            (Val::Reg(r), _) => (vec![Op::Reg(DwarfReg(*r)), Op::EmitValue(size)], size),
            (Val::Value(v), _) => {
                let mut ops = v.clone();
                ops.push(Op::EmitValue(size));
                (ops, size)
            }
            (Val::Const(c), _) => (vec![Op::Const(*c), Op::EmitValue(size)], size),
        };
        let field = self.add_field(tv.which, ops, &tv.label);
        Ok(match tv.bits {
            Some((lo, n, _)) if matches!(tv.val, Val::Mem(_)) => Decode::Bitfield {
                field,
                size: decode_size,
                signed,
                bit_offset: lo,
                bit_size: n,
            },
            _ => Decode::Int {
                field,
                size,
                signed,
            },
        })
    }

    /// `$$parms`, `$$locals`, `$$vars`, `$$return` (with `$`/`$$` suffixes).
    fn meta_vars(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        which: &str,
        pretty: u8,
    ) -> Result<Decode, Diagnostic> {
        let mut parts = Vec::new();
        if let Some(p) = &self.site.sdt {
            match which {
                "name" => return Ok(Decode::Pretty(vec![PrettyPart::Text(p.name.clone())])),
                "provider" => {
                    return Ok(Decode::Pretty(vec![PrettyPart::Text(p.provider.clone())]))
                }
                _ => {}
            }
        }
        let sdt_names: Option<Vec<String>> = self
            .site
            .sdt
            .as_ref()
            .map(|p| (1..=p.args.len()).map(|i| format!("arg{i}")).collect());
        let names: Vec<String> = match which {
            "return" => vec!["return".into()],
            "parms" | "vars" if sdt_names.is_some() => sdt_names.unwrap_or_default(),
            "parms" | "locals" | "vars" => {
                let (params, locals) = (which != "locals", which != "parms");
                self.vars
                    .iter()
                    .filter(|v| (v.is_param && params) || (!v.is_param && locals))
                    .map(|v| v.name.clone())
                    .collect()
            }
            _ => {
                return Err(sem(
                    format!("unknown context variable '$${which}' (alternatives: $$parms $$locals $$vars $$return)"),
                    e,
                ))
            }
        };
        // stap: each variable as `name=%#x`, or with a `$`/`$$` suffix as `name=%s` of
        // its pretty-printed value; a variable it cannot read prints as `?`.
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                parts.push(PrettyPart::Text(" ".into()));
            }
            parts.push(PrettyPart::Text(format!("{name}=")));
            match self.base(e, di, name) {
                Ok(tv) if pretty > 0 => self.pretty(e, di, &tv, pretty, &mut parts),
                Ok(tv) => self.hex_value(e, di, &tv, &mut parts),
                Err(d) if which == "return" => return Err(d),
                Err(_) => parts.push(PrettyPart::Text("?".into())),
            }
        }
        Ok(Decode::Pretty(parts))
    }

    /// `%#x` of a variable for plain `$$vars`: integers and pointers in hex, arrays
    /// as their address, anything else `?`.
    fn hex_value(&mut self, e: &Expr, di: &DebugInfo, tv: &TVal, parts: &mut Vec<PrettyPart>) {
        match self.scalar(e, di, tv) {
            Ok(d) => parts.push(PrettyPart::Hex(d)),
            Err(_) => parts.push(PrettyPart::Text("?".into())),
        }
    }

    /// `$x$` (`level` 1) or `$x$$` (2): the value pretty-printed as stap does.
    fn pretty(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        tv: &TVal,
        level: u8,
        parts: &mut Vec<PrettyPart>,
    ) {
        let mut budget = PRETTY_MAX_VALUES;
        self.pretty_value(e, di, tv, true, level > 1, &mut budget, parts)
    }

    /// Appends the parts printing one value, following stap's pretty printer: chars as
    /// `'c'`, integers and enums in decimal, char pointers and char arrays as quoted
    /// strings, other pointers in hex except at the top, where the pointee is printed;
    /// structs as `{.a=1, .b=2}` expanded at the top (or everywhere with `$$`) and as
    /// `{...}` below; other arrays as `[a, b, c, ...]` at the top (or with `$$`, the
    /// first few elements) and `[...]` below; floats and unknown types as `?`. At most
    /// `budget` values are captured; the rest prints as `...`.
    fn pretty_value(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        tv: &TVal,
        top: bool,
        full: bool,
        budget: &mut u32,
        parts: &mut Vec<PrettyPart>,
    ) {
        let (_, t) = tv_type(di, tv);
        // Nesting is bounded by the value budget for real types; this bounds
        // malformed (cyclic) DWARF too.
        if tv.label.len() > 512 {
            parts.push(PrettyPart::Text("?".into()));
            return;
        }
        if tv.bits.is_some() {
            // Bitfields always print numerically, even when their type is a char.
            return self.pretty_scalar(e, di, tv, false, budget, parts);
        }
        match &t.kind {
            TypeKind::Base { is_float: true, .. } => parts.push(PrettyPart::Text("?".into())),
            TypeKind::Base { is_char: true, .. } if t.size == Some(1) => {
                if *budget == 0 {
                    parts.push(PrettyPart::Text("...".into()));
                    return;
                }
                *budget -= 1;
                match self.scalar(e, di, tv) {
                    Ok(d) => parts.push(PrettyPart::Char(d)),
                    Err(_) => parts.push(PrettyPart::Text("?".into())),
                }
            }
            TypeKind::Base { .. } | TypeKind::Enum { .. } => {
                self.pretty_scalar(e, di, tv, false, budget, parts)
            }
            TypeKind::Struct { members, .. } => {
                parts.push(PrettyPart::Text("{".into()));
                if !(top || full) {
                    parts.push(PrettyPart::Text("...}".into()));
                    return;
                }
                let Ok(addr) = self.address(e, tv) else {
                    parts.push(PrettyPart::Text("...}".into()));
                    return;
                };
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        parts.push(PrettyPart::Text(", ".into()));
                    }
                    if *budget == 0 {
                        parts.push(PrettyPart::Text("...".into()));
                        break;
                    }
                    let mut ops = addr.clone();
                    if m.offset != 0 {
                        ops.push(Op::Const(m.offset));
                        ops.push(Op::Add);
                    }
                    let mtv = TVal {
                        sdt: None,
                        val: Val::Mem(ops),
                        ty: m.ty,
                        bits: m.bits,
                        which: tv.which,
                        label: format!("{}->{}", tv.label, m.name),
                    };
                    let name = if m.name.is_empty() {
                        match di.strip(m.ty).1.kind {
                            TypeKind::Struct { is_union: true, .. } => "<union>".to_string(),
                            _ => "<struct>".to_string(),
                        }
                    } else {
                        format!(".{}", m.name)
                    };
                    parts.push(PrettyPart::Text(format!("{name}=")));
                    self.pretty_value(e, di, &mtv, false, full, budget, parts);
                }
                parts.push(PrettyPart::Text("}".into()));
            }
            TypeKind::Array { elem, dims } => {
                if !(top || full) {
                    parts.push(PrettyPart::Text("[...]".into()));
                    return;
                }
                let et = di.strip(*elem).1;
                let Ok(addr) = self.address(e, tv) else {
                    parts.push(PrettyPart::Text("[...]".into()));
                    return;
                };
                if matches!(et.kind, TypeKind::Base { is_char: true, .. }) && et.size == Some(1) {
                    let n = dims
                        .first()
                        .copied()
                        .flatten()
                        .unwrap_or(u64::from(self.max_string));
                    let mut ops = addr;
                    ops.push(Op::EmitString((n.min(u64::from(self.max_string))) as u32));
                    let field = self.add_field(tv.which, ops, &tv.label);
                    parts.push(PrettyPart::Quoted(Decode::Str { field }));
                    return;
                }
                let count = match dims.as_slice() {
                    [Some(n)] => *n,
                    _ => 1,
                };
                let stride = et.size.unwrap_or(0);
                parts.push(PrettyPart::Text("[".into()));
                let shown = count.min(PRETTY_MAX_ELEMS);
                for i in 0..shown {
                    if i > 0 {
                        parts.push(PrettyPart::Text(", ".into()));
                    }
                    if *budget == 0 {
                        parts.push(PrettyPart::Text("...".into()));
                        break;
                    }
                    let mut ops = addr.clone();
                    if i > 0 {
                        ops.push(Op::Const(i.wrapping_mul(stride)));
                        ops.push(Op::Add);
                    }
                    let etv = TVal {
                        sdt: None,
                        val: Val::Mem(ops),
                        ty: *elem,
                        bits: None,
                        which: tv.which,
                        label: format!("{}[{i}]", tv.label),
                    };
                    self.pretty_value(e, di, &etv, false, full, budget, parts);
                }
                if count > shown {
                    parts.push(PrettyPart::Text(", ...".into()));
                }
                parts.push(PrettyPart::Text("]".into()));
            }
            TypeKind::Pointer(p) => {
                let (pref, pt) = di.strip(*p);
                let pointee_known =
                    pref.is_some() && !matches!(pt.kind, TypeKind::Void | TypeKind::Other);
                if pointee_known
                    && matches!(pt.kind, TypeKind::Base { is_char: true, .. })
                    && pt.size == Some(1)
                {
                    if let Ok(mut ops) = self.load_value(e, di, tv) {
                        if *budget == 0 {
                            parts.push(PrettyPart::Text("...".into()));
                            return;
                        }
                        *budget -= 1;
                        ops.push(Op::EmitString(self.max_string));
                        let field = self.add_field(tv.which, ops, &tv.label);
                        parts.push(PrettyPart::Quoted(Decode::Str { field }));
                        return;
                    }
                }
                if top && pointee_known && pt.kind != TypeKind::Function {
                    if let Ok(ops) = self.load_value(e, di, tv) {
                        let pointee = TVal {
                            sdt: None,
                            val: Val::Mem(ops),
                            ty: *p,
                            bits: None,
                            which: tv.which,
                            label: format!("*{}", tv.label),
                        };
                        return self.pretty_value(e, di, &pointee, top, full, budget, parts);
                    }
                }
                if pt.kind == TypeKind::Function {
                    parts.push(PrettyPart::Text("<function>:".into()));
                }
                self.pretty_scalar(e, di, tv, true, budget, parts)
            }
            _ => parts.push(PrettyPart::Text("?".into())),
        }
    }

    fn pretty_scalar(
        &mut self,
        e: &Expr,
        di: &DebugInfo,
        tv: &TVal,
        hex: bool,
        budget: &mut u32,
        parts: &mut Vec<PrettyPart>,
    ) {
        if *budget == 0 {
            parts.push(PrettyPart::Text("...".into()));
            return;
        }
        *budget -= 1;
        match self.scalar(e, di, tv) {
            Ok(d) if hex => parts.push(PrettyPart::Hex(d)),
            Ok(d) => parts.push(PrettyPart::Dec(d)),
            Err(_) => parts.push(PrettyPart::Text("?".into())),
        }
    }
}

/// The plan op computing a script arithmetic operator, if the probe can compute it.
fn arith_op(op: BinaryOp) -> Option<Op> {
    Some(match op {
        BinaryOp::Add => Op::Add,
        BinaryOp::Sub => Op::Sub,
        BinaryOp::Mul => Op::Mul,
        BinaryOp::BitAnd => Op::And,
        BinaryOp::BitOr => Op::Or,
        BinaryOp::BitXor => Op::Xor,
        BinaryOp::Shl => Op::Shl,
        BinaryOp::Shr => Op::Sar,
        BinaryOp::UShr => Op::Shr,
        _ => return None,
    })
}

fn loc_to_val(loc: &Location) -> Result<Val, String> {
    Ok(match loc {
        Location::Memory(ops) => Val::Mem(ops.clone()),
        Location::Register(r) => Val::Reg(*r),
        Location::Value(ops) => Val::Value(ops.clone()),
        Location::Constant(bytes) => {
            let mut b = [0u8; 8];
            for (i, x) in bytes.iter().take(8).enumerate() {
                b[i] = *x;
            }
            Val::Const(u64::from_le_bytes(b))
        }
        Location::Unavailable(why) => return Err(why.clone()),
    })
}

/// `$argN` of an SDT probe.
fn sdt_arg(p: &debuginfo::SdtProbe, name: &str, pp: &str, e: &Expr) -> Result<TVal, Diagnostic> {
    let arg = name
        .strip_prefix("arg")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .and_then(|n| p.args.get(n - 1));
    let Some(arg) = arg else {
        let alts: Vec<String> = (1..=p.args.len()).map(|i| format!("$arg{i}")).collect();
        let mut msg = format!("unable to find '${name}' in probe point {pp}");
        if alts.is_empty() {
            msg.push_str(" (the probe has no arguments)");
        } else {
            msg.push_str(&format!(
                " (alternatives: {} $$name $$provider $$parms)",
                alts.join(" ")
            ));
        }
        return Err(sem(msg, e));
    };
    let val = loc_to_val(&arg.location).map_err(|why| {
        sem(
            format!(
                "unable to find location for '${name}' ({}) at {pp}: {why}",
                arg.text
            ),
            e,
        )
    })?;
    Ok(TVal {
        val,
        ty: None,
        bits: None,
        which: Which::Entry,
        label: format!("${name}"),
        sdt: Some((arg.size, arg.signed)),
    })
}

/// The (typedef- and qualifier-stripped) type of a value; SDT arguments are integers
/// of their declared width.
fn tv_type(di: &DebugInfo, tv: &TVal) -> (Option<DieRef>, Type) {
    match tv.sdt {
        Some((size, signed)) => (
            None,
            Type {
                name: "long".into(),
                size: Some(u64::from(size)),
                kind: TypeKind::Base {
                    signed,
                    is_char: false,
                    is_float: false,
                },
            },
        ),
        None => di.strip(tv.ty),
    }
}

/// DWARF number and width of an x86_64 register name (64- or 32-bit spelling).
fn register_number(name: &str) -> Option<(u16, u8)> {
    const R64: [&str; 17] = [
        "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15", "rip",
    ];
    const R32: [&str; 16] = [
        "eax", "edx", "ecx", "ebx", "esi", "edi", "ebp", "esp", "r8d", "r9d", "r10d", "r11d",
        "r12d", "r13d", "r14d", "r15d",
    ];
    let n = name.to_ascii_lowercase();
    if let Some(i) = R64.iter().position(|r| *r == n) {
        return Some((i as u16, 8));
    }
    if n == "ip" {
        return Some((16, 8));
    }
    R32.iter().position(|r| *r == n).map(|i| (i as u16, 4))
}

/// Finds a member by name, looking into anonymous struct/union members; returns its
/// byte offset from the outer struct.
fn find_member(
    di: &DebugInfo,
    members: &[debuginfo::Member],
    name: &str,
    depth: u32,
) -> Option<(u64, debuginfo::Member)> {
    if depth > 8 {
        return None;
    }
    for m in members {
        if m.name == name {
            return Some((m.offset, m.clone()));
        }
    }
    for m in members.iter().filter(|m| m.name.is_empty()) {
        if let TypeKind::Struct { members: inner, .. } = di.strip(m.ty).1.kind {
            if let Some((off, found)) = find_member(di, &inner, name, depth + 1) {
                return Some((m.offset + off, found));
            }
        }
    }
    None
}

/// (size, signed) of a type usable as a `long`: integers, chars, bools, enums,
/// pointers, and floats as their bits. Structs, arrays and void are not.
fn scalar_shape(t: &Type) -> Option<(u8, bool)> {
    let size = t.size.filter(|s| matches!(s, 1 | 2 | 4 | 8))? as u8;
    match t.kind {
        TypeKind::Base {
            signed,
            is_float: false,
            ..
        } => Some((size, signed)),
        // Floating-point values are their IEEE bits, as stap's fp_* tapset expects
        // (fp32_to_fp64 widens a float's 32 bits).
        TypeKind::Base { is_float: true, .. } if size == 4 || size == 8 => Some((size, false)),
        TypeKind::Enum { signed, .. } => Some((size, signed)),
        TypeKind::Pointer(_) => Some((size, false)),
        _ => None,
    }
}

/// DWARF numbers of the x86_64 Linux system call argument registers: rdi, rsi,
/// rdx, r10, r8, r9.
const SYSCALL_ARG_REGS: [u16; 6] = [5, 4, 1, 10, 8, 9];

/// The context variables of a system call site, as `-L` and error messages list them.
fn syscall_var_names(ret: bool) -> Vec<String> {
    let mut v = vec!["$syscall".to_string()];
    v.extend((1..=6).map(|i| format!("$arg{i}")));
    if ret {
        v.push("$return".into());
    }
    v
}

/// ` $name:type` for each variable visible at a site (stap `-L`).
pub(crate) fn var_listing(site: &SiteSpec) -> String {
    if matches!(site.kind, SpecKind::SyscallEntry | SpecKind::SyscallReturn) {
        return syscall_var_names(site.kind == SpecKind::SyscallReturn)
            .iter()
            .map(|v| format!(" {v}:long"))
            .collect();
    }
    // stap's -L shows the syscall variables for every utrace-style point, though
    // only `.syscall` probes can use them.
    if matches!(
        site.kind,
        SpecKind::ProcessBegin | SpecKind::ProcessEnd | SpecKind::ThreadBegin | SpecKind::ThreadEnd
    ) {
        return syscall_var_names(false)
            .iter()
            .map(|v| format!(" {v}:long"))
            .collect();
    }
    if let Some(p) = &site.sdt {
        return (1..=p.args.len())
            .map(|i| format!(" $arg{i}:long"))
            .collect();
    }
    let (Some(di), Some(f)) = (site.di.as_deref(), site.func.as_ref()) else {
        return String::new();
    };
    let vars = match site.kind {
        SpecKind::Return => di.variables_at_entry(f),
        _ => di.variables_listed_at(f, site.addr),
    };
    let mut s = String::new();
    // stap lists only what has a location at the probe address.
    let located = vars
        .iter()
        .filter(|v| !matches!(v.location, debuginfo::Location::Unavailable(_)));
    for v in located {
        s.push_str(&format!(" ${}:{}", v.name, di.type_of(v.ty).name));
    }
    if site.kind == SpecKind::Return && has_return_type(di, f.return_type) {
        s.push_str(&format!(" $return:{}", di.type_of(f.return_type).name));
    }
    s
}
