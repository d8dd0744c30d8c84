//! X.509 certificate objects: the DER in `CKA_VALUE` is parsed (RustCrypto
//! `x509-cert`), and `CKA_SUBJECT`, `CKA_ISSUER`, `CKA_SERIAL_NUMBER` and
//! `CKA_PUBLIC_KEY_INFO` are filled from it, or must agree with it when the
//! caller gave them: a certificate object never describes a different
//! certificate than the one it holds.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use der::{Decode, Encode};
use ferrohsm_store::AttrValue;
use x509_cert::Certificate;

use super::attrs::Attrs;
use crate::error::{Error, Result};

/// Checks and completes the attributes of an imported X.509 certificate.
pub fn check_x509(attrs: &mut Attrs) -> Result<()> {
    let der = match attrs.get(&CKA_VALUE) {
        Some(AttrValue::Bytes(v)) => v.clone(),
        _ => return Err(Error::TemplateIncomplete),
    };
    let cert = Certificate::from_der(&der).map_err(|_| Error::AttributeValueInvalid)?;
    let tbs = cert.tbs_certificate();
    let enc = |r: der::Result<Vec<u8>>| r.map_err(|_| Error::AttributeValueInvalid);
    let fields = [
        (CKA_SUBJECT, enc(tbs.subject().to_der())?),
        (CKA_ISSUER, enc(tbs.issuer().to_der())?),
        (CKA_SERIAL_NUMBER, enc(tbs.serial_number().to_der())?),
        (
            CKA_PUBLIC_KEY_INFO,
            enc(tbs.subject_public_key_info().to_der())?,
        ),
    ];
    for (ty, value) in fields {
        match attrs.get(&ty) {
            Some(AttrValue::Bytes(given)) if !given.is_empty() && !confirms(ty, given, &value) => {
                return Err(Error::AttributeValueInvalid);
            }
            // The caller's form is kept: clients find the certificate by it.
            Some(AttrValue::Bytes(given)) if !given.is_empty() => {}
            _ => {
                attrs.insert(ty, AttrValue::Bytes(value));
            }
        }
    }
    Ok(())
}

/// Whether a caller's value of `ty` describes the certificate's `der`. The
/// spec says `CKA_SERIAL_NUMBER` is the DER INTEGER, but Java's SunPKCS11
/// (`keytool -genkeypair`) stores the INTEGER's content bytes; SoftHSMv2
/// takes both, so both are accepted when the certificate confirms them.
fn confirms(ty: CK_ATTRIBUTE_TYPE, given: &[u8], der: &[u8]) -> bool {
    given == der
        || (ty == CKA_SERIAL_NUMBER
            && der::asn1::AnyRef::from_der(der).is_ok_and(|any| any.value() == given))
}
