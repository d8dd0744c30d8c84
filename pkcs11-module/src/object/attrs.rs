//! An object's attributes as stored (`Attrs`) and the two typed reads
//! everything needs. A leaf: the mechanism families, certificates and the
//! policy table all read attributes, and none of them needs the others for it.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;

/// Attributes of one object, keyed by type.
pub type Attrs = BTreeMap<CK_ATTRIBUTE_TYPE, AttrValue>;

/// A `CK_ULONG` attribute, if present with that type.
pub fn get_ulong(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> Option<CK_ULONG> {
    match attrs.get(&ty) {
        Some(AttrValue::Ulong(v)) => Some(*v as CK_ULONG),
        _ => None,
    }
}

/// A boolean attribute, FALSE when absent.
pub fn get_bool(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> bool {
    matches!(attrs.get(&ty), Some(AttrValue::Bool(true)))
}
