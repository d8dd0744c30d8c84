//! Templates: the C encoding of attribute values (`decode`, `encode`), a
//! caller's template entries (`RawAttr`), the stored form of attribute-array
//! values (`CKA_WRAP_TEMPLATE`, …), and the decoding of a whole template
//! against the attribute table.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;

use super::attrs::Attrs;
use super::rules::{Kind, Rule, attr_name, rule_for};
use crate::error::{Error, Result};

/// Decodes C bytes as the attribute's kind.
pub fn decode(kind: Kind, raw: &[u8]) -> Result<AttrValue> {
    const UL: usize = std::mem::size_of::<CK_ULONG>();
    match kind {
        Kind::Bool if raw.len() == 1 => Ok(AttrValue::Bool(raw[0] != 0)),
        Kind::Ulong if raw.len() == UL => {
            let mut b = [0u8; UL];
            b.copy_from_slice(raw);
            Ok(AttrValue::Ulong(CK_ULONG::from_ne_bytes(b)))
        }
        Kind::Bytes => Ok(AttrValue::Bytes(raw.to_vec())),
        Kind::Date if raw.is_empty() || (raw.len() == 8 && raw.iter().all(u8::is_ascii_digit)) => {
            Ok(AttrValue::Bytes(raw.to_vec()))
        }
        Kind::Template if decode_template_value(raw).is_some() => {
            Ok(AttrValue::Bytes(raw.to_vec()))
        }
        Kind::Mechanisms if raw.len().is_multiple_of(UL) => Ok(AttrValue::Mechanisms(
            raw.chunks_exact(UL)
                .map(|c| {
                    let mut b = [0u8; UL];
                    b.copy_from_slice(c);
                    CK_ULONG::from_ne_bytes(b)
                })
                .collect(),
        )),
        _ => Err(Error::AttributeValueInvalid),
    }
}

/// The form in which an attribute-array value (`CKA_WRAP_TEMPLATE`, …) is
/// passed between `ffi` and the policy and stored: for each attribute its
/// type and length (u64, little-endian) and its C bytes.
pub fn encode_template(attrs: &[RawAttr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in attrs {
        out.extend_from_slice(&a.ty.to_le_bytes());
        out.extend_from_slice(&(a.value.len() as u64).to_le_bytes());
        out.extend_from_slice(&a.value);
    }
    out
}

/// Parses the form of [`encode_template`]; `None` if malformed.
pub fn decode_template_value(mut raw: &[u8]) -> Option<Vec<RawAttr>> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let ty = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
        let len = u64::from_le_bytes(raw.get(8..16)?.try_into().ok()?) as usize;
        let value = raw.get(16..16usize.checked_add(len)?)?;
        out.push(RawAttr::new(ty as CK_ATTRIBUTE_TYPE, value));
        raw = &raw[16 + len..];
    }
    Some(out)
}

/// Whether the attributes of an object match an attribute-array value
/// (`CKA_WRAP_TEMPLATE`): each listed attribute has exactly that C encoding.
pub fn matches_template(attrs: &Attrs, template: &[RawAttr]) -> bool {
    template
        .iter()
        .all(|t| attrs.get(&t.ty).is_some_and(|v| encode(v) == *t.value))
}

/// Encodes a value as the C caller expects it.
pub fn encode(v: &AttrValue) -> Vec<u8> {
    match v {
        AttrValue::Bool(b) => vec![u8::from(*b)],
        AttrValue::Ulong(u) => (*u as CK_ULONG).to_ne_bytes().to_vec(),
        AttrValue::Bytes(b) => b.clone(),
        AttrValue::Mechanisms(m) => m
            .iter()
            .flat_map(|x| (*x as CK_ULONG).to_ne_bytes())
            .collect(),
    }
}

/// One attribute of a caller's template, as raw C bytes.
#[derive(Clone)]
pub struct RawAttr {
    /// `CKA_*`.
    pub ty: CK_ATTRIBUTE_TYPE,
    /// The bytes at `pValue` (may be key material: zeroized on drop).
    pub value: zeroize::Zeroizing<Vec<u8>>,
}

impl RawAttr {
    /// A template entry from a type and bytes.
    pub fn new(ty: CK_ATTRIBUTE_TYPE, value: &[u8]) -> RawAttr {
        RawAttr {
            ty,
            value: zeroize::Zeroizing::new(value.to_vec()),
        }
    }

    /// A `CK_BBOOL` entry.
    pub fn bool(ty: CK_ATTRIBUTE_TYPE, v: bool) -> RawAttr {
        RawAttr::new(ty, &[u8::from(v)])
    }

    /// A `CK_ULONG` entry.
    pub fn ulong(ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> RawAttr {
        RawAttr::new(ty, &v.to_ne_bytes())
    }

    /// The value as a `CK_ULONG`, if it has that size.
    pub fn as_ulong(&self) -> Option<CK_ULONG> {
        let b: [u8; std::mem::size_of::<CK_ULONG>()] = self.value.as_slice().try_into().ok()?;
        Some(CK_ULONG::from_ne_bytes(b))
    }
}

impl std::fmt::Debug for RawAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(<{} bytes>)", attr_name(self.ty), self.value.len())
    }
}

/// Decodes a template into typed values for an object of the given identity;
/// the same type twice with different values is `CKR_TEMPLATE_INCONSISTENT`.
pub(super) fn decode_template(
    template: &[RawAttr],
    cls: u8,
    kt: Option<CK_KEY_TYPE>,
) -> Result<Vec<(&'static Rule, AttrValue)>> {
    let mut out: Vec<(&'static Rule, AttrValue)> = Vec::with_capacity(template.len());
    for a in template {
        let r = rule_for(a.ty, cls, kt).ok_or(Error::AttributeTypeInvalid)?;
        let v = decode(r.kind, &a.value)?;
        if let (Some(ok), AttrValue::Ulong(u)) = (r.values, &v)
            && !ok(*u as CK_ULONG)
        {
            return Err(Error::AttributeValueInvalid);
        }
        if let Some((_, prev)) = out.iter().find(|(p, _)| p.ty == a.ty) {
            if *prev != v {
                return Err(Error::TemplateInconsistent);
            }
            continue;
        }
        out.push((r, v));
    }
    Ok(out)
}

/// Reads the class and key type from a template (and the mechanism's implied
/// ones, for generation), before anything else is checked.
pub(super) fn template_identity(
    template: &[RawAttr],
    implied: &[(CK_ATTRIBUTE_TYPE, CK_ULONG)],
) -> Result<Attrs> {
    let mut id = Attrs::new();
    for (ty, v) in implied {
        id.insert(*ty, AttrValue::Ulong(*v));
    }
    for a in template
        .iter()
        .filter(|a| a.ty == CKA_CLASS || a.ty == CKA_KEY_TYPE)
    {
        let v = decode(Kind::Ulong, &a.value)?;
        match id.get(&a.ty) {
            Some(prev) if *prev != v => return Err(Error::TemplateInconsistent),
            _ => {
                id.insert(a.ty, v);
            }
        }
    }
    Ok(id)
}
