//! The `Module` value itself: what it holds, how it is made, and the lookups
//! every room uses (`slot`, `session`, handles).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki_sys::*;
use ferrohsm_store::Store;
use parking_lot::RwLock;

use super::slot::{Session, Slot};
use crate::audit::Auditor;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::{Level, Logger};
use crate::secret;

/// The token world of one process.
pub struct Module {
    pub(super) config: Config,
    /// The module's log.
    pub log: Arc<Logger>,
    pub(super) store: Arc<dyn Store>,
    /// The tokens' audit logs.
    pub(super) audit: Auditor,
    pub(super) slots: RwLock<Vec<Arc<Slot>>>,
    pub(super) sessions: RwLock<HashMap<CK_SESSION_HANDLE, Arc<Session>>>,
    pub(super) next_handle: AtomicU64,
    /// The key that authenticates saved operation states
    /// (`C_GetOperationState`), drawn at random when the module starts: a
    /// state is only taken back by the process that made it.
    pub(super) state_key: zeroize::Zeroizing<[u8; 32]>,
}

impl Module {
    /// Opens the token world held by `store`: one slot per initialised token in
    /// slot-ID order, then a spare slot for `C_InitToken`.
    pub fn new(config: Config, store: Arc<dyn Store>) -> Result<Module> {
        let log = Arc::new(Logger::new(config.log_level, &config.log_target));
        let audit = Auditor::new(store.clone(), log.clone(), config.audit.clone());
        let mut state_key = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut state_key[..]).map_err(|e| {
            log!(log, Level::Error, "OS random generator failed: {e}");
            Error::DeviceError
        })?;
        let module = Module {
            config,
            log,
            audit,
            store,
            slots: RwLock::new(Vec::new()),
            sessions: RwLock::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            state_key,
        };
        // Reserve the key region now, so the log says at once whether keys
        // can be locked in RAM here.
        secret::init();
        if let Some(w) = &module.config.log_warning {
            log!(module.log, Level::Warn, "{w}");
        }
        log!(module.log, Level::Debug, "{}", secret::status());
        module.adopt_tokens()?;
        module.purge_due();
        log!(
            module.log,
            Level::Info,
            "initialised with data directory {}",
            module.config.data_dir.display()
        );
        Ok(module)
    }

    /// What `C_Initialize` does: reads the configuration (`FERROHSM_CONF` and
    /// the environment), opens the store on the data directory and builds the
    /// `Module`; failures are logged through a `Logger` (the configured one
    /// when the configuration could be read). `threads` is FALSE when the
    /// application passed `CKF_LIBRARY_CANT_CREATE_OS_THREADS`: the store then
    /// closes each token database after each call instead of keeping it open
    /// for a closer thread, and the audit log writes queued events inline.
    pub fn initialize(threads: bool) -> Result<Module> {
        let mut config = Config::from_env().map_err(|e| {
            let (level, target) = std::env::var("FERROHSM_LOG")
                .ok()
                .and_then(|spec| crate::logging::parse_spec(&spec).ok())
                .unwrap_or((Level::Warn, crate::logging::LogTarget::Stderr));
            let log = Logger::new(level.max(Level::Error), &target);
            log!(log, Level::Error, "C_Initialize failed: {e}");
            Error::FunctionFailed
        })?;
        config.audit.threads = threads;
        let options = ferrohsm_store::SledOptions {
            lock_deadline: config.store_lock_timeout,
            audit_max_file_bytes: config.audit.max_file_bytes,
            linger: if threads {
                ferrohsm_store::SledOptions::default().linger
            } else {
                std::time::Duration::ZERO
            },
            ..ferrohsm_store::SledOptions::default()
        };
        let store = ferrohsm_store::SledStore::open(&config.data_dir, options).map_err(|e| {
            let log = Logger::new(config.log_level.max(Level::Error), &config.log_target);
            log!(
                log,
                Level::Error,
                "C_Initialize failed: cannot open the data directory {}: {e}",
                config.data_dir.display()
            );
            Error::DeviceError
        })?;
        // What opening the store changed to make the data directory owner-only.
        let notes = store.notes().to_vec();
        let module = Module::new(config, Arc::new(store))?;
        for note in &notes {
            log!(module.log, Level::Info, "{note}");
        }
        if !threads {
            log!(
                module.log,
                Level::Info,
                "CKF_LIBRARY_CANT_CREATE_OS_THREADS: no store or audit thread; token databases close after each call"
            );
        }
        Ok(module)
    }

    /// Closes any token database the store keeps open between calls; the
    /// fork handler calls it so that a child inherits no database lock.
    pub fn release_store(&self) {
        self.store.release();
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(super) fn new_handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn slot(&self, id: CK_SLOT_ID) -> Result<Arc<Slot>> {
        self.slots
            .read()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or(Error::SlotIdInvalid)
    }

    pub(super) fn session(&self, h: CK_SESSION_HANDLE) -> Result<Arc<Session>> {
        self.sessions
            .read()
            .get(&h)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)
    }
}
