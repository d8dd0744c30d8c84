//! Fuzz entry point for the audit log's decoders (see `crate::fuzzing`):
//! the state file's slots, stored lines (suffix, sequence number, chain
//! check against a fixed root), the recovery scan of a log's tail, and RFC
//! 3339 times.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::seal::AuditKey;
use crate::time::{parse_time, rfc3339};

use super::chain::{
    LineIn, SLOT, State, check_line, decode_slot, encode_slot, line_seq, split_line,
};
use super::event::{AuditEvent, AuditObject};
use super::files::{AuditLog, AuditOptions, CURRENT, STATE, read_tail, rotated_seq};

/// The audit root of the seed corpus: lines in `fuzz/corpus/audit_log/` were
/// chained under it, so a mutated line gets through the chain check only if
/// the mutation kept it authentic.
const ROOT: [u8; 32] = [0x42; 32];

thread_local! {
    static TAIL: RefCell<Option<(PathBuf, File)>> = const { RefCell::new(None) };
}

/// See the module documentation.
pub(crate) fn audit(data: &[u8]) {
    let root = AuditKey::from_bytes(ROOT);
    for slot in [data.get(..SLOT), data.get(SLOT..2 * SLOT), Some(data)]
        .into_iter()
        .flatten()
    {
        if let Some(s) = decode_slot(slot) {
            let again = decode_slot(&encode_slot(&s)).expect("an encoded slot decodes");
            assert!(
                again.seq == s.seq && again.chain == s.chain && again.key == s.key,
                "state slot round trip"
            );
        }
    }
    let mut state = State::initial(&root);
    for line in data.split(|&b| b == b'\n') {
        if let Some((head, _)) = split_line(line) {
            assert!(line.starts_with(head), "split_line head is not a prefix");
        }
        let seq = line_seq(line);
        let _ = serde_json::from_slice::<LineIn>(line);
        let before = state.seq;
        if let Ok(s) = check_line(line, &mut state) {
            assert_eq!(Some(s), seq, "a checked line has another seq");
            assert_eq!(state.seq, before + 1, "the chain advanced by more than one");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for word in text.split(['"', ' ', '\n']) {
            if let Some(t) = parse_time(word) {
                let shown = rfc3339(t);
                assert!(parse_time(&shown).is_some(), "{shown} does not parse back");
            }
        }
        let _ = rotated_seq(text);
    }
    tail(data);
}

/// The recovery scan over `data` as the current log file.
fn tail(data: &[u8]) {
    TAIL.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (path, file) = cell.get_or_insert_with(|| {
            let path = std::env::temp_dir().join(format!(
                "ferrohsm-fuzz-audit-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .expect("a scratch file");
            // Unlinked at once: the descriptor keeps it until the thread ends.
            let _ = fs::remove_file(&path);
            (path, file)
        });
        file.set_len(0).expect("truncates");
        file.write_all_at(data, 0).expect("writes");
        let seq = data.first().map_or(0, |&b| u64::from(b % 8));
        if let Ok((keep, rest)) = read_tail(file, data.len() as u64, seq, path) {
            let keep = keep as usize;
            assert!(keep <= data.len(), "keeps more than the file");
            assert!(keep == 0 || data[keep - 1] == b'\n', "keeps a partial line");
            assert!(
                data[..keep].ends_with(&rest),
                "the tail is not the end of the kept part"
            );
        }
    });
}

/// Seeds for `fuzz/corpus/audit_log/`: a real log chained under [`ROOT`]
/// (lines and state file), and a few times.
pub(crate) fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = std::env::temp_dir().join(format!("ferrohsm-fuzz-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let log = AuditLog::new(&dir, AuditOptions::default());
    log.start(&AuditKey::from_bytes(ROOT)).expect("starts");
    let mut events = Vec::new();
    for (i, f) in ["C_Login", "C_GenerateKey", "C_SignInit"]
        .iter()
        .enumerate()
    {
        let mut e = AuditEvent::now(f, "CKR_OK");
        e.session = Some(i as u64 + 1);
        e.user = Some("user".into());
        e.mechanism = (i == 2).then(|| "CKM_ECDSA".into());
        e.object = (i > 0).then(|| AuditObject {
            handle: Some(7),
            label: Some("key \"one\"".into()),
            id: Some("0a0b".into()),
            class: Some("CKO_PRIVATE_KEY".into()),
            key_type: Some("CKK_EC".into()),
            unique_id: Some("00000000000000ff".into()),
        });
        e.count = (i == 2).then_some(3);
        e.first = e.count.map(|_| "2026-01-02T03:04:05.678Z".into());
        e.last = e.first.clone();
        e.detail = Some("seed".into());
        events.push(e);
    }
    log.append(&events).expect("appends");
    let lines = fs::read(dir.join(CURRENT)).expect("the log");
    let state = fs::read(dir.join(STATE)).expect("the state");
    let _ = fs::remove_dir_all(&dir);
    let mut state_then_log = state.clone();
    state_then_log.extend_from_slice(&lines);
    vec![
        ("log".into(), lines.clone()),
        ("state".into(), state),
        ("state-then-log".into(), state_then_log),
        (
            "first-line".into(),
            lines.split(|&b| b == b'\n').next().unwrap_or(&[]).to_vec(),
        ),
        (
            "times".into(),
            b"2026-01-02T03:04:05.678Z 1970-01-01T00:00:00Z 2024-02-29T23:59:59.999Z".to_vec(),
        ),
    ]
}
