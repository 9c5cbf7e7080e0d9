//! DWARF types as plain data: sizes, signedness, members (with bitfields), arrays,
//! enums, and their C spelling for `-L` listings and messages.

use gimli::AttributeValue;

use crate::{DebugInfo, DieRef};

/// A struct or union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its name (empty for anonymous members).
    pub name: String,
    /// Its type.
    pub ty: Option<DieRef>,
    /// Byte offset of the member (or of its bitfield's storage unit).
    pub offset: u64,
    /// For bitfields: (lowest bit within the storage unit, bit count, storage bytes).
    /// The storage unit starts at `offset` and is 1, 2, 4 or 8 bytes wide.
    pub bits: Option<(u8, u8, u8)>,
}

/// One enumerator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enumerator {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: i64,
}

/// What kind of type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    /// `void` (also a missing type reference).
    Void,
    /// An integer, character, boolean or float.
    Base {
        /// Signed integer or signed char.
        signed: bool,
        /// A character type (`char`, `signed char`, `unsigned char`).
        is_char: bool,
        /// A floating-point type.
        is_float: bool,
    },
    /// A pointer (or reference).
    Pointer(Option<DieRef>),
    /// A struct, class or union.
    Struct {
        /// Members in declaration order.
        members: Vec<Member>,
        /// A union.
        is_union: bool,
    },
    /// An array; `dims` are element counts per dimension (`None` if unknown).
    Array {
        /// Element type.
        elem: Option<DieRef>,
        /// Element counts, outermost first.
        dims: Vec<Option<u64>>,
    },
    /// An enum.
    Enum {
        /// Underlying type is signed.
        signed: bool,
        /// Its values.
        enumerators: Vec<Enumerator>,
    },
    /// A typedef of the target.
    Typedef(Option<DieRef>),
    /// `const`, `volatile`, `restrict` or `atomic` of the target.
    Qualified(Option<DieRef>),
    /// A function type.
    Function,
    /// Something else.
    Other,
}

/// A type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    /// The name as written in C (`int`, `struct req`, `char*`).
    pub name: String,
    /// Size in bytes, if known.
    pub size: Option<u64>,
    /// What it is.
    pub kind: TypeKind,
}

impl DebugInfo {
    /// The type at `r` (`None` means void).
    pub fn type_of(&self, r: Option<DieRef>) -> Type {
        use std::sync::atomic::Ordering;
        // Type names and sizes recurse through pointers, typedefs and arrays; malformed
        // DWARF can make that a cycle, so the depth is bounded.
        let depth = self.type_depth.fetch_add(1, Ordering::Relaxed);
        let t = if depth > 64 {
            other()
        } else {
            self.type_of_inner(r)
        };
        self.type_depth.fetch_sub(1, Ordering::Relaxed);
        t
    }

    fn type_of_inner(&self, r: Option<DieRef>) -> Type {
        let Some(r) = r else {
            return Type {
                name: "void".into(),
                size: None,
                kind: TypeKind::Void,
            };
        };
        let (Some(e), Some(unit)) = (self.entry(r), self.unit(r.unit)) else {
            return other();
        };
        let name = e
            .attr_value(gimli::DW_AT_name)
            .map(|v| self.attr_str(unit, v))
            .unwrap_or_default();
        let size = e
            .attr_value(gimli::DW_AT_byte_size)
            .and_then(|v| v.udata_value());
        let target = e
            .attr_value(gimli::DW_AT_type)
            .and_then(|v| self.resolve_ref(r.unit, v));
        let tag = e.tag();
        let kind = match tag {
            gimli::DW_TAG_base_type => {
                let enc = match e.attr_value(gimli::DW_AT_encoding) {
                    Some(AttributeValue::Encoding(x)) => x,
                    _ => gimli::DW_ATE_signed,
                };
                TypeKind::Base {
                    signed: enc == gimli::DW_ATE_signed || enc == gimli::DW_ATE_signed_char,
                    is_char: enc == gimli::DW_ATE_signed_char || enc == gimli::DW_ATE_unsigned_char,
                    is_float: enc == gimli::DW_ATE_float,
                }
            }
            gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_rvalue_reference_type => TypeKind::Pointer(target),
            gimli::DW_TAG_typedef => TypeKind::Typedef(target),
            gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_restrict_type
            | gimli::DW_TAG_atomic_type => TypeKind::Qualified(target),
            gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type => {
                TypeKind::Struct {
                    members: self.members(r),
                    is_union: tag == gimli::DW_TAG_union_type,
                }
            }
            gimli::DW_TAG_array_type => TypeKind::Array {
                elem: target,
                dims: self.array_dims(r),
            },
            gimli::DW_TAG_enumeration_type => {
                let signed = match target.map(|t| self.type_of(Some(t)).kind) {
                    Some(TypeKind::Base { signed, .. }) => signed,
                    _ => false,
                };
                TypeKind::Enum {
                    signed,
                    enumerators: self.enumerators(r),
                }
            }
            gimli::DW_TAG_subroutine_type => TypeKind::Function,
            _ => TypeKind::Other,
        };
        let size = match (&kind, size) {
            (_, Some(s)) => Some(s),
            (TypeKind::Pointer(_), None) => Some(u64::from(self.addr_size)),
            (TypeKind::Typedef(t) | TypeKind::Qualified(t), None) => self.type_of(*t).size,
            (TypeKind::Array { elem, dims }, None) => {
                let es = self.type_of(*elem).size;
                es.and_then(|es| {
                    dims.iter()
                        .try_fold(es, |acc, d| d.and_then(|d| acc.checked_mul(d)))
                })
            }
            _ => None,
        };
        let name = self.spell(&kind, tag, name, target, r);
        Type { name, size, kind }
    }

    /// Follows typedefs and qualifiers to the underlying type.
    /// A struct or union only declared here (`struct req;`) resolves to its
    /// definition elsewhere in the file, as stap does.
    pub fn strip(&self, mut r: Option<DieRef>) -> (Option<DieRef>, Type) {
        for _ in 0..32 {
            let t = self.type_of(r);
            match t.kind {
                TypeKind::Typedef(n) | TypeKind::Qualified(n) => r = n,
                TypeKind::Struct { ref members, .. }
                    if members.is_empty() && r.is_some_and(|d| self.is_declaration(d)) =>
                {
                    return match self.find_type(&t.name) {
                        Some(def) if Some(def) != r => (Some(def), self.type_of(Some(def))),
                        _ => (r, t),
                    };
                }
                _ => return (r, t),
            }
        }
        (r, other())
    }

    fn is_declaration(&self, d: DieRef) -> bool {
        self.entry(d)
            .is_some_and(|e| e.attr_value(gimli::DW_AT_declaration).is_some())
    }

    /// The name of a type as stap spells it (dwflpp's `dwarf_type_name`, which it
    /// uses in `-L` listings and in its messages alike): qualifiers and pointers are
    /// suffixes (`char const*`, `char* const`), an array is `ELEM[]` whatever its
    /// dimensions, a pointer to a function is `RET (*) (PARAMS)`.
    fn spell(
        &self,
        kind: &TypeKind,
        tag: gimli::DwTag,
        name: String,
        target: Option<DieRef>,
        die: DieRef,
    ) -> String {
        match kind {
            TypeKind::Base { .. } | TypeKind::Typedef(_) | TypeKind::Other => name,
            TypeKind::Void => "void".into(),
            TypeKind::Pointer(_) => {
                let sfx = match tag {
                    gimli::DW_TAG_reference_type => "&",
                    gimli::DW_TAG_rvalue_reference_type => "&&",
                    _ => "*",
                };
                let inner = self.type_of(target);
                match (inner.kind, target) {
                    (TypeKind::Function, Some(f)) => {
                        let ret = self.type_of(self.subroutine_return(f)).name;
                        format!("{ret} ({sfx}) ({})", self.subroutine_params(f))
                    }
                    _ => format!("{}{sfx}", inner.name),
                }
            }
            TypeKind::Qualified(_) => {
                let q = match tag {
                    gimli::DW_TAG_const_type => "const",
                    gimli::DW_TAG_volatile_type => "volatile",
                    gimli::DW_TAG_restrict_type => "restrict",
                    _ => "_Atomic",
                };
                format!("{} {q}", self.type_of(target).name)
            }
            TypeKind::Struct { is_union, .. } => {
                let kw = if *is_union { "union" } else { "struct" };
                if name.is_empty() {
                    format!("{kw} {{...}}")
                } else {
                    format!("{kw} {name}")
                }
            }
            TypeKind::Enum { .. } => {
                if name.is_empty() {
                    "enum {...}".into()
                } else {
                    format!("enum {name}")
                }
            }
            TypeKind::Array { .. } => format!("{}[]", self.type_of(target).name),
            TypeKind::Function => {
                // What stap says of a function type itself (`int () (int, char)`).
                let ret = self.type_of(target).name;
                format!("{ret} () ({})", self.subroutine_params(die))
            }
        }
    }

    /// The return type of the subroutine type `f` (`None`: void).
    fn subroutine_return(&self, f: DieRef) -> Option<DieRef> {
        let e = self.entry(f)?;
        e.attr_value(gimli::DW_AT_type)
            .and_then(|v| self.resolve_ref(f.unit, v))
    }

    /// The parameter types of the subroutine type `f`, as stap lists them: `void`
    /// for none, `...` for unspecified ones.
    fn subroutine_params(&self, f: DieRef) -> String {
        let mut ps = Vec::new();
        for c in self.children(f) {
            match c.tag() {
                gimli::DW_TAG_formal_parameter => {
                    let t = c
                        .attr_value(gimli::DW_AT_type)
                        .and_then(|v| self.resolve_ref(f.unit, v));
                    ps.push(self.type_of(t).name);
                }
                gimli::DW_TAG_unspecified_parameters => ps.push("...".into()),
                _ => {}
            }
        }
        if ps.is_empty() {
            "void".into()
        } else {
            ps.join(", ")
        }
    }

    fn children(&self, r: DieRef) -> Vec<gimli::DebuggingInformationEntry<R>> {
        let mut out = Vec::new();
        let Some(u) = self.unit(r.unit) else {
            return out;
        };
        let Ok(mut cursor) = u.entries_at_offset(gimli::UnitOffset(r.offset)) else {
            return out;
        };
        let mut first = true;
        while let Ok(Some(e)) = cursor.next_dfs() {
            if first {
                first = false;
                if !e.has_children() {
                    break;
                }
                continue;
            }
            if e.depth() <= 0 {
                break;
            }
            if e.depth() == 1 {
                out.push(e.clone());
            }
        }
        out
    }

    fn members(&self, r: DieRef) -> Vec<Member> {
        let mut out = Vec::new();
        let Some(unit) = self.unit(r.unit) else {
            return out;
        };
        for e in self.children(r) {
            if e.tag() != gimli::DW_TAG_member {
                continue;
            }
            let name = e
                .attr_value(gimli::DW_AT_name)
                .map(|v| self.attr_str(unit, v))
                .unwrap_or_default();
            let ty = e
                .attr_value(gimli::DW_AT_type)
                .and_then(|v| self.resolve_ref(r.unit, v));
            let loc = e
                .attr_value(gimli::DW_AT_data_member_location)
                .and_then(|v| v.udata_value())
                .unwrap_or(0);
            let bit_size = e
                .attr_value(gimli::DW_AT_bit_size)
                .and_then(|v| v.udata_value());
            let member = match bit_size {
                None => Member {
                    name,
                    ty,
                    offset: loc,
                    bits: None,
                },
                Some(bits) => {
                    // Absolute bit position of the field's lowest bit from the start of
                    // the struct (little-endian numbering).
                    let abs = if let Some(dbo) = e
                        .attr_value(gimli::DW_AT_data_bit_offset)
                        .and_then(|v| v.udata_value())
                    {
                        dbo
                    } else {
                        // DWARF 2-4: DW_AT_bit_offset counts from the most significant
                        // bit of a storage unit of DW_AT_byte_size (or the type's size).
                        let storage = e
                            .attr_value(gimli::DW_AT_byte_size)
                            .and_then(|v| v.udata_value())
                            .or_else(|| self.type_of(ty).size)
                            .unwrap_or(4);
                        let bo = e
                            .attr_value(gimli::DW_AT_bit_offset)
                            .and_then(|v| v.udata_value())
                            .unwrap_or(0);
                        loc.saturating_mul(8)
                            .saturating_add(storage.saturating_mul(8))
                            .saturating_sub(bo.saturating_add(bits))
                    };
                    let byte = abs / 8;
                    let lo = (abs % 8) as u8;
                    let need = u64::from(lo).saturating_add(bits);
                    let storage: u8 = match need {
                        0..=8 => 1,
                        9..=16 => 2,
                        17..=32 => 4,
                        _ => 8,
                    };
                    Member {
                        name,
                        ty,
                        offset: byte,
                        bits: Some((lo, bits.min(64) as u8, storage)),
                    }
                }
            };
            out.push(member);
        }
        out
    }

    fn array_dims(&self, r: DieRef) -> Vec<Option<u64>> {
        let mut dims = Vec::new();
        for e in self.children(r) {
            if e.tag() != gimli::DW_TAG_subrange_type {
                continue;
            }
            let count = e
                .attr_value(gimli::DW_AT_count)
                .and_then(|v| v.udata_value())
                .or_else(|| {
                    let upper = e.attr_value(gimli::DW_AT_upper_bound)?;
                    let upper = match upper {
                        AttributeValue::Sdata(s) if s < 0 => return None,
                        v => v.udata_value()?,
                    };
                    let lower = e
                        .attr_value(gimli::DW_AT_lower_bound)
                        .and_then(|v| v.udata_value())
                        .unwrap_or(0);
                    let n = upper.checked_add(1)?;
                    Some(n - lower.min(n))
                });
            dims.push(count);
        }
        if dims.is_empty() {
            dims.push(None);
        }
        dims
    }

    fn enumerators(&self, r: DieRef) -> Vec<Enumerator> {
        let mut out = Vec::new();
        let Some(unit) = self.unit(r.unit) else {
            return out;
        };
        for e in self.children(r) {
            if e.tag() != gimli::DW_TAG_enumerator {
                continue;
            }
            let name = e
                .attr_value(gimli::DW_AT_name)
                .map(|v| self.attr_str(unit, v))
                .unwrap_or_default();
            let value = match e.attr_value(gimli::DW_AT_const_value) {
                Some(AttributeValue::Sdata(s)) => s,
                Some(AttributeValue::Data1(x)) => i64::from(x),
                Some(AttributeValue::Data2(x)) => i64::from(x),
                Some(AttributeValue::Data4(x)) => i64::from(x),
                Some(AttributeValue::Data8(x)) => x as i64,
                Some(v) => v.udata_value().unwrap_or(0) as i64,
                None => 0,
            };
            out.push(Enumerator { name, value });
        }
        out
    }
}

use crate::R;

fn other() -> Type {
    Type {
        name: "?".into(),
        size: None,
        kind: TypeKind::Other,
    }
}
