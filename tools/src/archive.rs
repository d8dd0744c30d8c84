//! `backup` and `restore`: whole tokens as sealed files, through the token
//! store itself (`ferrohsm_store::backup`), not the module.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use ferrohsm_pkcs11::config::Config;
use ferrohsm_store::backup::{self, BackupError, BackupOptions};
use ferrohsm_store::{SledOptions, SledStore, Store, TokenRecord};

use crate::out::{self, hex, padded};
use crate::p11::{Fail, Result};
use crate::pin::{self, Source};
use crate::select::{Candidate, TokenArgs};
use crate::{BackupArgs, RestoreArgs};

/// The module's configuration and its store, as the module would open them.
pub fn open_store() -> Result<(Config, SledStore)> {
    let config = Config::from_env().map_err(|e| format!("configuration: {e}"))?;
    let options = SledOptions {
        lock_deadline: config.store_lock_timeout,
        audit_max_file_bytes: config.audit.max_file_bytes,
        ..SledOptions::default()
    };
    let store = SledStore::open(&config.data_dir, options).map_err(|e| e.to_string())?;
    Ok((config, store))
}

/// The one token `sel` names in the store (an error names the data
/// directory when there is none, and refuses an ambiguous choice).
pub fn find_token(config: &Config, store: &SledStore, sel: &TokenArgs) -> Result<TokenRecord> {
    let tokens = store.tokens().map_err(|e| e.to_string())?;
    if let Some(label) = sel.label() {
        out::token_label(label)?;
    }
    let labels: Vec<(String, String)> = tokens
        .iter()
        .map(|t| (padded(&t.label), padded(&t.serial)))
        .collect();
    let candidates = tokens.iter().zip(&labels).map(|(t, (label, serial))| {
        (
            Candidate {
                slot: t.slot_id,
                label,
                serial,
                manufacturer: None,
                model: None,
            },
            t.clone(),
        )
    });
    sel.choose(candidates).map(|(_, t)| t).map_err(|f| match f {
        Fail::Msg(m) if m.starts_with("no token") => Fail::Msg(
            format!(
                "{} in {}",
                m.trim_end_matches(" (`ferrohsm tokens` lists them)"),
                config.data_dir.display()
            ) + " (`ferrohsm tokens` lists them)",
        ),
        other => other,
    })
}

/// A backup error as one line, with the PKCS#11 name where there is one.
pub fn explain(e: &BackupError) -> String {
    match e {
        BackupError::WrongPin => format!("{e} (CKR_PIN_INCORRECT)"),
        BackupError::PinLocked => format!("{e} (CKR_PIN_LOCKED)"),
        _ => e.to_string(),
    }
}

/// `ferrohsm backup`.
pub fn backup(a: &BackupArgs) -> Result<()> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &a.token)?;
    // Create the file first (new, owner-only), so a bad path costs no SO
    // PIN attempt; it is removed again if anything after fails.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{} already exists: not overwriting it", a.out.display())
            }
            _ => format!("cannot create {}: {e}", a.out.display()),
        })?;
    let made = (|| -> Result<_> {
        let so = pin::existing(
            &format!("SO PIN for token {:?}", a.token),
            Source::from_so(&a.so),
        )?;
        let options = BackupOptions {
            kdf: config.kdf,
            max_login_failures: config.max_login_failures,
        };
        let (bytes, summary) = crate::keys::with_progress("sealing the backup", || {
            backup::create_backup(&store, token.slot_id, so.as_bytes(), &options)
        })
        .map_err(|e| format!("backup of token {:?}: {}", a.token, explain(&e)))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
        Ok(summary)
    })();
    let summary = match made {
        Ok(s) => s,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&a.out);
            return Err(e);
        }
    };
    out::stdout(&format!(
        "backed up token {:?} (slot {}, serial {}, {} objects) to {}; restoring it needs this SO PIN\n",
        a.token,
        summary.slot_id,
        padded(&summary.serial),
        summary.objects,
        a.out.display()
    ))
}

/// `ferrohsm restore`.
pub fn restore(a: &RestoreArgs) -> Result<()> {
    let label = a.label.as_deref().map(out::token_label).transpose()?;
    let file =
        std::fs::read(&a.file).map_err(|e| format!("cannot read {}: {e}", a.file.display()))?;
    if !file.starts_with(backup::MAGIC) {
        return Err(Fail::Msg(format!(
            "{}: not a FerroHSM backup file",
            a.file.display()
        )));
    }
    let (_, store) = open_store()?;
    let so = pin::existing(
        &format!("SO PIN of the token in {}", a.file.display()),
        Source::from_so(&a.so),
    )?;
    let summary = crate::keys::with_progress("restoring the token", || {
        backup::restore_backup(&store, &file, so.as_bytes(), label)
    })
    .map_err(|e| format!("restore {}: {}", a.file.display(), explain(&e)))?;
    out::stdout(&format!(
        "restored token {:?} (serial {}, token id {}, {} objects) into slot {}\n",
        padded(&summary.label),
        padded(&summary.serial),
        hex(&summary.token_id),
        summary.objects,
        summary.slot_id
    ))
}
