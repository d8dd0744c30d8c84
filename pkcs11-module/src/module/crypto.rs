//! Using keys and digests: `C_Digest*`, `C_Encrypt*`/`C_Decrypt*`,
//! `C_Sign*`/`C_Verify*`, `C_SignRecover`/`C_VerifyRecover`, `C_GenerateRandom`,
//! `C_SeedRandom`, and `usable_key`,
//! the one check of a key against a mechanism and a usage.
#![forbid(unsafe_code)]

use std::sync::Arc;

use cryptoki_sys::*;

use super::slot::Session;
use super::state::Module;
use crate::audit::{self};
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::mechanism::{self, Dir, Mechanism, MechanismArg};
use crate::object::Object;
use crate::object::policy::Reading;
use crate::object::policy::{self};
use crate::secret;
use crate::session::{
    self, After, CipherState, DigestState, OutBuf, RecoverState, SignState, drive, single_part,
};

impl Module {
    /// `C_DigestInit`.
    pub fn digest_init(&self, h: CK_SESSION_HANDLE, mech: &MechanismArg) -> Result<()> {
        let s = self.session(h)?;
        if s.ops.lock().digest.is_some() {
            return Err(Error::OperationActive);
        }
        self.mechanism_row(&s, mech.ty, CKF_DIGEST, "C_DigestInit")?;
        let op = mechanism::digest_op(mech)?;
        let mut ops = s.ops.lock();
        if ops.digest.is_some() {
            return Err(Error::OperationActive);
        }
        ops.digest = Some(DigestState {
            op,
            multipart: false,
            mech: mech.ty,
            keyed: false,
        });
        Ok(())
    }

    /// `C_Digest`: single-part; the NULL-buffer size query keeps it alive.
    pub fn digest(&self, h: CK_SESSION_HANDLE, input: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        single_part(
            &mut ops.digest,
            out,
            |d| d.op.output_len(),
            |d, buf| {
                d.op.update(input);
                d.op.finish(buf);
                Ok(buf.len())
            },
        )
    }

    /// `C_DigestUpdate`.
    pub fn digest_update(&self, h: CK_SESSION_HANDLE, input: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.digest, |d| {
            d.multipart = true;
            d.op.update(input);
            Ok(((), After::Keep))
        })
    }

    /// `C_DigestKey`: digests the value of a secret key whose value may be
    /// revealed anyway; a sensitive or unextractable key (every secret key of
    /// an `hsm` token), and any key that is not a secret key, is
    /// `CKR_KEY_INDIGESTIBLE`, which ends the digest.
    ///
    /// Why refuse sensitive keys although PKCS#11 allows digesting them: a
    /// digest of a key is a key check value anyone can test guesses against
    /// offline (fatal for a low-entropy or partly known key: a password
    /// turned into a generic secret, a key derived from known data), and
    /// with `C_DigestUpdate` before and after it the caller also chooses
    /// what surrounds the key, so `SHA-1(prefix || key)` and friends become
    /// oracles no sensitive key should answer. SoftHSMv2 refuses the same
    /// keys (sensitive or unextractable) with the same code.
    pub fn digest_key(&self, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> Result<()> {
        let s = self.session(h)?;
        let k = s
            .slot
            .token
            .read()
            .object(key)
            .map_err(|_| Error::KeyHandleInvalid)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.digest, |d| {
            if k.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
                return Err(Error::KeyIndigestible);
            }
            match secret::scope(|| policy::read(&k.attrs, CKA_VALUE)) {
                Reading::Value(v) => {
                    d.multipart = true;
                    d.keyed = true;
                    d.op.update(&v);
                    Ok(((), After::Keep))
                }
                _ => {
                    log!(
                        self.log,
                        Level::Info,
                        "session {h}: C_DigestKey refused for protected {}",
                        k.describe()
                    );
                    Err(Error::KeyIndigestible)
                }
            }
        })
    }

    /// `C_DigestFinal`.
    pub fn digest_final(&self, h: CK_SESSION_HANDLE, out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.digest, |d| {
            let Some(buf) = out.offer(d.op.output_len())? else {
                return Ok(((), After::Keep));
            };
            d.op.finish(buf);
            Ok(((), After::End))
        })
    }

    /// The key named by an `*Init` call, checked against the mechanism row and
    /// the key's own rules: handle, key type, usage flag, allowed mechanisms.
    pub(super) fn usable_key(
        &self,
        s: &Session,
        key: CK_OBJECT_HANDLE,
        mech: &MechanismArg,
        row: &Mechanism,
        usage: CK_ATTRIBUTE_TYPE,
        func: &'static str,
    ) -> Result<Arc<Object>> {
        let k = s
            .slot
            .token
            .read()
            .object(key)
            .map_err(|_| Error::KeyHandleInvalid)?;
        let check = || -> Result<()> {
            let kt = k.ulong(CKA_KEY_TYPE).ok_or(Error::KeyTypeInconsistent)?;
            if !row.key_types.contains(&kt) {
                return Err(Error::KeyTypeInconsistent);
            }
            if !k.flag(usage) {
                return Err(Error::KeyFunctionNotPermitted);
            }
            if let Some(ferrohsm_store::AttrValue::Mechanisms(allowed)) =
                k.attrs.get(&CKA_ALLOWED_MECHANISMS)
                && !allowed.is_empty()
                && !allowed.contains(&mech.ty)
            {
                return Err(Error::MechanismInvalid);
            }
            Ok(())
        };
        check().inspect_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {}: {func} with {} refused for {}: {e}",
                s.handle,
                row.name,
                k.describe()
            );
            if self.audit.enabled() {
                let mut ev = self.event::<()>(s, func, &Err(*e));
                ev.mechanism = Some(row.name.into());
                ev.object = Some(audit::describe(&k));
                ev.detail = Some("policy refusal: key not usable for this".into());
                self.audit.record(s.slot.id, ev, false);
            }
        })?;
        self.audit
            .key_use(s.slot.id, s.handle, s.slot.user_name(), func, mech.ty, &k);
        Ok(k)
    }

    /// `C_EncryptInit` / `C_DecryptInit`.
    pub fn cipher_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        key: CK_OBJECT_HANDLE,
        dir: Dir,
    ) -> Result<()> {
        let s = self.session(h)?;
        if s.ops.lock().cipher(dir).is_some() {
            return Err(Error::OperationActive);
        }
        let (usage, func, flag) = match dir {
            Dir::Encrypt => (CKA_ENCRYPT, "C_EncryptInit", CKF_ENCRYPT),
            Dir::Decrypt => (CKA_DECRYPT, "C_DecryptInit", CKF_DECRYPT),
        };
        let row = self.mechanism_row(&s, mech.ty, flag, func)?;
        let build = row.cipher.ok_or(Error::MechanismInvalid)?;
        let k = self.usable_key(&s, key, mech, row, usage, func)?;
        let op = build(&mech.param, &k, dir)?;
        let mut ops = s.ops.lock();
        let slot = ops.cipher(dir);
        if slot.is_some() {
            return Err(Error::OperationActive);
        }
        *slot = Some(CipherState {
            op,
            multipart: false,
        });
        Ok(())
    }

    /// `C_Encrypt` / `C_Decrypt`: single-part.
    pub fn cipher(
        &self,
        h: CK_SESSION_HANDLE,
        dir: Dir,
        input: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        single_part(
            ops.cipher(dir),
            out,
            |c| c.op.single_len(input.len()),
            |c, buf| c.op.single(input, buf),
        )
    }

    /// `C_EncryptUpdate` / `C_DecryptUpdate`.
    pub fn cipher_update(
        &self,
        h: CK_SESSION_HANDLE,
        dir: Dir,
        input: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(ops.cipher(dir), |c| {
            c.multipart = true;
            let n = match out.offer(c.op.update_len(input.len()))? {
                Some(buf) => c.op.update(input, buf)?,
                None => return Ok(((), After::Keep)),
            };
            out.truncate(n);
            Ok(((), After::Keep))
        })
    }

    /// `C_EncryptFinal` / `C_DecryptFinal`.
    pub fn cipher_final(&self, h: CK_SESSION_HANDLE, dir: Dir, out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(ops.cipher(dir), |c| {
            let n = match out.offer(c.op.final_len())? {
                Some(buf) => c.op.finish(buf)?,
                None => return Ok(((), After::Keep)),
            };
            out.truncate(n);
            Ok(((), After::End))
        })
    }

    /// `C_SignInit` / `C_VerifyInit`: MACs, RSA and ECDSA alike.
    pub fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        key: CK_OBJECT_HANDLE,
        verify: bool,
    ) -> Result<()> {
        let s = self.session(h)?;
        let busy = |ops: &mut session::Ops| {
            if verify {
                ops.verify.is_some()
            } else {
                ops.sign.is_some()
            }
        };
        if busy(&mut s.ops.lock()) {
            return Err(Error::OperationActive);
        }
        let (usage, func, flag) = if verify {
            (CKA_VERIFY, "C_VerifyInit", CKF_VERIFY)
        } else {
            (CKA_SIGN, "C_SignInit", CKF_SIGN)
        };
        let row = self.mechanism_row(&s, mech.ty, flag, func)?;
        let build = row.sign.ok_or(Error::MechanismInvalid)?;
        let k = self.usable_key(&s, key, mech, row, usage, func)?;
        let op = build(&mech.param, &k, verify)?;
        let mut ops = s.ops.lock();
        if busy(&mut ops) {
            return Err(Error::OperationActive);
        }
        let state = Some(SignState {
            op,
            multipart: false,
        });
        if verify {
            ops.verify = state;
        } else {
            ops.sign = state;
        }
        Ok(())
    }

    /// `C_Sign`: single-part signature or MAC.
    pub fn sign(&self, h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        single_part(
            &mut ops.sign,
            out,
            |m| m.op.sig_len(),
            |m, buf| {
                m.op.update(data)?;
                m.op.sign(buf)?;
                Ok(buf.len())
            },
        )
    }

    /// `C_SignUpdate` / `C_VerifyUpdate`.
    pub fn sign_update(&self, h: CK_SESSION_HANDLE, verify: bool, data: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let slot = if verify {
            &mut ops.verify
        } else {
            &mut ops.sign
        };
        drive(slot, |m| {
            if !m.op.multi_part() {
                return Err(Error::FunctionNotSupported);
            }
            m.multipart = true;
            m.op.update(data)?;
            Ok(((), After::Keep))
        })
    }

    /// `C_SignFinal`.
    pub fn sign_final(&self, h: CK_SESSION_HANDLE, out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.sign, |m| {
            if !m.op.multi_part() {
                return Err(Error::FunctionNotSupported);
            }
            let Some(buf) = out.offer(m.op.sig_len())? else {
                return Ok(((), After::Keep));
            };
            m.op.sign(buf)?;
            Ok(((), After::End))
        })
    }

    /// `C_Verify`: single-part; a wrong signature or MAC is `CKR_SIGNATURE_INVALID`.
    pub fn verify(&self, h: CK_SESSION_HANDLE, data: &[u8], signature: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.verify, |m| {
            if m.multipart {
                return Err(Error::OperationActive);
            }
            m.op.update(data)?;
            m.op.verify(signature)?;
            Ok(((), After::End))
        })
    }

    /// `C_VerifyFinal`.
    pub fn verify_final(&self, h: CK_SESSION_HANDLE, signature: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.verify, |m| {
            if !m.op.multi_part() {
                return Err(Error::FunctionNotSupported);
            }
            m.op.verify(signature)?;
            Ok(((), After::End))
        })
    }

    /// `C_GenerateRandom`: bytes from the OS CSPRNG.
    pub fn generate_random(&self, h: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
        self.session(h)?;
        getrandom::fill(out).map_err(|e| {
            log!(self.log, Level::Error, "OS random generator failed: {e}");
            Error::DeviceError
        })
    }

    /// `C_SeedRandom`: accepted and ignored (`CKR_OK` on a valid session).
    /// Random bytes come from the OS generator (`getrandom`), which seeds
    /// itself from the kernel's entropy and needs no seed; mixing in an
    /// application's bytes could not make it stronger, and clients (OpenSSL's
    /// engine, Java's SunPKCS11, test suites) treat a refusal as an error.
    /// `ffi` has already checked the seed pointer (NULL with a non-zero
    /// length is `CKR_ARGUMENTS_BAD`).
    pub fn seed_random(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        self.session(h)?;
        Ok(())
    }

    /// `C_SignRecoverInit` / `C_VerifyRecoverInit`: the row's `recover`
    /// builder, a key with `CKA_SIGN_RECOVER` / `CKA_VERIFY_RECOVER`.
    pub fn recover_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        key: CK_OBJECT_HANDLE,
        verify: bool,
    ) -> Result<()> {
        let s = self.session(h)?;
        if s.ops.lock().recover(verify).is_some() {
            return Err(Error::OperationActive);
        }
        let (flag, name) = if verify {
            (CKF_VERIFY_RECOVER, "C_VerifyRecoverInit")
        } else {
            (CKF_SIGN_RECOVER, "C_SignRecoverInit")
        };
        let row = self.mechanism_row(&s, mech.ty, flag, name)?;
        let build = row.recover.ok_or(Error::MechanismInvalid)?;
        let (usage, func) = if verify {
            (CKA_VERIFY_RECOVER, "C_VerifyRecoverInit")
        } else {
            (CKA_SIGN_RECOVER, "C_SignRecoverInit")
        };
        let k = self.usable_key(&s, key, mech, row, usage, func)?;
        let op = build(&mech.param, &k, verify)?;
        let mut ops = s.ops.lock();
        let slot = ops.recover(verify);
        if slot.is_some() {
            return Err(Error::OperationActive);
        }
        *slot = Some(RecoverState { op });
        Ok(())
    }

    /// `C_SignRecover` / `C_VerifyRecover`: single-part, with the size-query
    /// rules. A signature's length is known before signing; the data in a
    /// signature only after the (cheap, public-key) recovery, which a size
    /// query therefore runs.
    pub fn recover(
        &self,
        h: CK_SESSION_HANDLE,
        verify: bool,
        input: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(ops.recover(verify), |r| {
            if let Some(n) = r.op.known_len(input.len())
                && out.offer(n)?.is_none()
            {
                return Ok(((), After::Keep));
            }
            let result = r.op.run(input)?;
            let Some(buf) = out.offer(result.len())? else {
                return Ok(((), After::Keep));
            };
            buf.copy_from_slice(&result);
            Ok(((), After::End))
        })
    }
}
