//! Unit tests of the audit log: the chain and its verification, rotation,
//! recovery after a killed writer or a torn state slot, concurrent
//! appenders, export/import, times.
#![forbid(unsafe_code)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::record::StoreError;
use crate::seal::AuditKey;

use super::chain::{SLOT, State, encode_slot, hex, line_seq};
use super::files::{CURRENT, STATE};
use super::{
    AuditError, AuditEvent, AuditLog, AuditObject, AuditOptions, BadLine, VerifyReport, parse_time,
    rfc3339,
};

fn root() -> AuditKey {
    AuditKey::from_bytes([7u8; 32])
}

fn ev(i: u64) -> AuditEvent {
    AuditEvent {
        session: Some(i),
        user: Some("user".into()),
        mechanism: i.is_multiple_of(2).then(|| "CKM_AES_GCM".to_string()),
        object: Some(AuditObject {
            handle: Some(i),
            label: Some(format!("key {i}")),
            ..AuditObject::default()
        }),
        detail: Some(format!("event number {i}")),
        ..AuditEvent::now("C_Encrypt", "CKR_OK")
    }
}

/// A started log with `calls` appends of 1, 2, 3, … events.
fn setup(calls: u64, options: AuditOptions) -> (tempfile::TempDir, AuditLog, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::new(&tmp.path().join("audit"), options);
    log.start(&root()).unwrap();
    let mut n = 0;
    for c in 1..=calls {
        let events: Vec<_> = (0..c).map(|k| ev(n + k + 1)).collect();
        log.append(&events).unwrap();
        n += c;
    }
    (tmp, log, n)
}

fn current(log: &AuditLog) -> PathBuf {
    log.dir().join(CURRENT)
}

fn lines_of(path: &Path) -> Vec<Vec<u8>> {
    fs::read(path)
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn bad(log: &AuditLog) -> BadLine {
    log.verify(&root())
        .unwrap()
        .first_bad
        .expect("expected a bad line")
}

fn seqs(log: &AuditLog) -> Vec<u64> {
    log.read().unwrap().iter().map(|l| l.seq).collect()
}

#[test]
fn append_verify_round_trip() {
    let (_t, log, n) = setup(4, AuditOptions::default());
    assert_eq!(n, 10);
    let report = log.verify(&root()).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            lines: 10,
            files: 1,
            first_bad: None
        }
    );
    let lines = log.read().unwrap();
    assert_eq!(lines.len(), 10);
    for (i, l) in lines.iter().enumerate() {
        let i = i as u64 + 1;
        assert_eq!((l.seq, l.line, l.file.as_str()), (i, i, CURRENT));
        assert_eq!(l.event, ev(i).clone_with_time(&l.event.time));
    }
    // The stored form: seq first, no nulls, chain last.
    let first = &lines_of(&current(&log))[0];
    let text = std::str::from_utf8(first).unwrap();
    assert!(text.starts_with("{\"seq\":1,\"time\":\""), "{text}");
    assert!(!text.contains("null"));
    assert!(text.ends_with("\"}\n"));
    assert_eq!(log.read_state().unwrap().seq, 10);
}

impl AuditEvent {
    fn clone_with_time(mut self, time: &str) -> AuditEvent {
        self.time = time.to_string();
        self
    }
}

#[test]
fn empty_log_verifies_and_not_started_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::new(&tmp.path().join("audit"), AuditOptions::default());
    assert!(!log.is_started());
    assert_eq!(log.append(&[ev(1)]), Err(AuditError::NotStarted));
    assert_eq!(log.verify(&root()), Err(AuditError::NotStarted));
    assert_eq!(log.read(), Err(AuditError::NotStarted));
    log.start(&root()).unwrap();
    assert!(log.is_started());
    let report = log.verify(&root()).unwrap();
    assert_eq!((report.lines, report.first_bad), (0, None));
    // An empty log under another root: the state gives it away.
    let other = log.verify(&AuditKey::from_bytes([8; 32])).unwrap();
    assert!(
        other
            .first_bad
            .unwrap()
            .reason
            .starts_with("state does not match")
    );
}

#[test]
fn edited_byte_is_found() {
    let (_t, log, _) = setup(3, AuditOptions::default());
    let path = current(&log);
    let mut lines = lines_of(&path);
    let pos = lines[3].windows(9).position(|w| w == b"C_Encrypt").unwrap();
    lines[3][pos + 2] = b'D';
    fs::write(&path, lines.concat()).unwrap();
    let b = bad(&log);
    assert_eq!((b.file.as_str(), b.line, b.seq), (CURRENT, 4, Some(4)));
    assert_eq!(b.reason, "altered (chain value does not match)");
    // Breaking the JSON itself is reported as such.
    lines[3][0] = b'[';
    fs::write(&path, lines.concat()).unwrap();
    assert_eq!(bad(&log).reason, "malformed");
    assert_eq!(bad(&log).line, 4);
}

#[test]
fn deleted_line_is_found() {
    let (_t, log, _) = setup(3, AuditOptions::default());
    let path = current(&log);
    let mut lines = lines_of(&path);
    lines.remove(2);
    fs::write(&path, lines.concat()).unwrap();
    let b = bad(&log);
    assert_eq!((b.line, b.seq), (3, Some(4)));
    assert_eq!(b.reason, "out of order: expected seq 3");
}

#[test]
fn swapped_lines_are_found() {
    let (_t, log, _) = setup(3, AuditOptions::default());
    let path = current(&log);
    let mut lines = lines_of(&path);
    lines.swap(1, 4);
    fs::write(&path, lines.concat()).unwrap();
    let b = bad(&log);
    assert_eq!((b.line, b.seq), (2, Some(5)));
    assert_eq!(b.reason, "out of order: expected seq 2");
}

#[test]
fn removed_last_line_is_found() {
    let (_t, log, n) = setup(3, AuditOptions::default());
    let path = current(&log);
    let mut lines = lines_of(&path);
    lines.pop();
    fs::write(&path, lines.concat()).unwrap();
    let b = bad(&log);
    assert_eq!((b.file.as_str(), b.line, b.seq), (CURRENT, n, Some(n)));
    assert_eq!(
        b.reason,
        format!("lines missing at the end: state says {n}")
    );
}

#[test]
fn altered_state_is_found() {
    let (_t, log, n) = setup(2, AuditOptions::default());
    let forged = State {
        seq: n,
        chain: [1; 32],
        key: Zeroizing::new([2; 32]),
    };
    let slot = encode_slot(&forged);
    fs::write(log.dir().join(STATE), [&slot[..], &slot[..]].concat()).unwrap();
    assert_eq!(
        bad(&log).reason,
        "state does not match the log (tail removed or state altered)"
    );
}

#[test]
fn other_root_fails_on_line_one() {
    let (_t, log, _) = setup(2, AuditOptions::default());
    let report = log.verify(&AuditKey::from_bytes([9; 32])).unwrap();
    let b = report.first_bad.unwrap();
    assert_eq!((b.file.as_str(), b.line, b.seq), (CURRENT, 1, Some(1)));
    assert_eq!(b.reason, "altered (chain value does not match)");
}

#[test]
fn rotation_keeps_the_chain_and_a_missing_file_is_found() {
    let options = AuditOptions {
        max_file_bytes: 1000,
    };
    let (_t, log, n) = setup(6, options);
    let names = log.log_files().unwrap();
    assert!(names.len() >= 4, "{names:?}");
    assert_eq!(names.last().unwrap(), CURRENT);
    assert_eq!(names[0], "log.000000000001.jsonl");
    for name in &names[..names.len() - 1] {
        let first = lines_of(&log.dir().join(name))[0].clone();
        let seq = line_seq(first.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(*name, format!("log.{seq:012}.jsonl"));
    }
    let report = log.verify(&root()).unwrap();
    assert_eq!(report.first_bad, None);
    assert_eq!((report.lines, report.files), (n, names.len()));
    assert_eq!(seqs(&log), (1..=n).collect::<Vec<_>>());

    let gone = &names[1];
    fs::remove_file(log.dir().join(gone)).unwrap();
    let b = bad(&log);
    assert_eq!((b.file.as_str(), b.line), (names[2].as_str(), 1));
    assert!(b.reason.starts_with("out of order"), "{}", b.reason);
    fs::remove_file(log.dir().join(&names[0])).unwrap();
    let b = bad(&log);
    assert_eq!(b.reason, "out of order: expected seq 1");
}

#[test]
fn partial_trailing_line_is_dropped_by_the_next_append() {
    let (_t, log, n) = setup(2, AuditOptions::default());
    let path = current(&log);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":4,\"time\":\"2026-").unwrap();
    drop(f);
    // Never acknowledged, so not a fault.
    assert_eq!(log.verify(&root()).unwrap().first_bad, None);
    log.append(&[ev(4)]).unwrap();
    assert_eq!(log.verify(&root()).unwrap().first_bad, None);
    assert_eq!(seqs(&log), (1..=n + 1).collect::<Vec<_>>());
    assert!(fs::read(&path).unwrap().ends_with(b"\"}\n"));
}

#[test]
fn state_one_write_behind_is_caught_up() {
    let (_t, log, n) = setup(2, AuditOptions::default());
    let state_path = log.dir().join(STATE);
    let old = fs::read(&state_path).unwrap();
    log.append(&[ev(4), ev(5)]).unwrap();
    fs::write(&state_path, &old).unwrap();
    assert_eq!(log.read_state().unwrap().seq, n);
    // Lines past the state that verify are a killed writer's, not a fault.
    assert_eq!(log.verify(&root()).unwrap().first_bad, None);
    log.append(&[ev(6)]).unwrap();
    assert_eq!(log.read_state().unwrap().seq, n + 3);
    assert_eq!(log.verify(&root()).unwrap().first_bad, None);
    assert_eq!(seqs(&log), (1..=n + 3).collect::<Vec<_>>());
}

#[test]
fn unverifiable_lines_past_the_state_are_not_adopted() {
    let (_t, log, n) = setup(2, AuditOptions::default());
    let state_path = log.dir().join(STATE);
    let old = fs::read(&state_path).unwrap();
    log.append(&[ev(4), ev(5)]).unwrap();
    fs::write(&state_path, &old).unwrap();
    let path = current(&log);
    let mut lines = lines_of(&path);
    let i = lines.len() - 1;
    let pos = lines[i].windows(9).position(|w| w == b"C_Encrypt").unwrap();
    lines[i][pos] = b'X';
    fs::write(&path, lines.concat()).unwrap();
    log.append(&[ev(6)]).unwrap();
    // seq 4 adopted, seq 5 left in place, the new line continues from 4.
    assert_eq!(log.read_state().unwrap().seq, n + 2);
    let b = bad(&log);
    assert_eq!((b.line, b.seq), (n + 2, Some(n + 2)));
    assert_eq!(b.reason, "altered (chain value does not match)");
}

#[test]
fn torn_state_slot_falls_back_to_the_other() {
    let (_t, log, n) = setup(2, AuditOptions::default());
    let state_path = log.dir().join(STATE);
    let old = fs::read(&state_path).unwrap();
    log.append(&[ev(4)]).unwrap();
    let new_seq = n + 1;
    // Both slots now hold the newest state: no old key stays on disk.
    let now = fs::read(&state_path).unwrap();
    assert_eq!(now[..SLOT], now[SLOT..]);
    assert!(!now.windows(SLOT).any(|w| old.windows(SLOT).any(|o| o == w)));

    // The valid slot with the higher seq wins.
    let newest = (new_seq % 2) as usize * SLOT;
    let mut mixed = old.clone();
    mixed[newest..newest + SLOT].copy_from_slice(&now[..SLOT]);
    fs::write(&state_path, &mixed).unwrap();
    assert_eq!(log.read_state().unwrap().seq, new_seq);

    // A crash while the newest slot was being written: it is garbled and
    // the other still holds the state before.
    let mut torn = old.clone();
    torn[newest + 10..newest + 40].fill(b'#');
    fs::write(&state_path, &torn).unwrap();
    assert_eq!(log.read_state().unwrap().seq, n);
    log.append(&[ev(5)]).unwrap();
    assert_eq!(log.read_state().unwrap().seq, n + 2);
    assert_eq!(log.verify(&root()).unwrap().first_bad, None);
    assert_eq!(seqs(&log), (1..=n + 2).collect::<Vec<_>>());

    // Both slots garbled: nothing to trust.
    fs::write(&state_path, vec![b'#'; 2 * SLOT]).unwrap();
    assert!(matches!(log.append(&[ev(6)]), Err(AuditError::Corrupt(_))));
}

#[test]
fn concurrent_appenders_share_one_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let options = AuditOptions {
        max_file_bytes: 8 * 1024,
    };
    AuditLog::new(&dir, options).start(&root()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let dir = dir.clone();
            s.spawn(move || {
                let log = AuditLog::new(&dir, options);
                for i in 0..50 {
                    log.append(&[ev(t * 1000 + i)]).unwrap();
                }
            });
        }
    });
    let log = AuditLog::new(&dir, options);
    let report = log.verify(&root()).unwrap();
    assert_eq!(report.first_bad, None);
    assert_eq!(report.lines, 200);
    assert!(report.files > 1);
    assert_eq!(seqs(&log), (1..=200).collect::<Vec<_>>());
}

#[test]
fn export_import_verifies() {
    let options = AuditOptions {
        max_file_bytes: 1500,
    };
    let (t, log, n) = setup(5, options);
    let files = log.export().unwrap();
    assert!(files.iter().any(|(name, _)| name == STATE));
    assert!(files.len() > 2);
    let restored = AuditLog::new(&t.path().join("restored/audit"), options);
    restored.import(&files).unwrap();
    assert_eq!(restored.verify(&root()).unwrap().first_bad, None);
    assert_eq!(seqs(&restored), (1..=n).collect::<Vec<_>>());
    restored.append(&[ev(n + 1)]).unwrap();
    assert_eq!(restored.verify(&root()).unwrap().first_bad, None);
    // Only into an empty directory.
    assert!(matches!(restored.import(&files), Err(AuditError::Io(_))));

    let other = AuditLog::new(&t.path().join("other"), options);
    for name in [
        "../state",
        "a/state",
        "lock",
        "log.x.jsonl",
        "..",
        "notes.txt",
    ] {
        let r = other.import(&[(name.to_string(), vec![]), (STATE.into(), vec![])]);
        assert!(matches!(r, Err(AuditError::Corrupt(_))), "{name}");
    }
    assert!(!other.dir().exists());
}

#[test]
fn start_moves_an_old_log_aside() {
    let (t, log, n) = setup(2, AuditOptions::default());
    log.start(&root()).unwrap();
    assert_eq!(log.verify(&root()).unwrap().lines, 0);
    let aside: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".old"))
        .collect();
    assert_eq!(aside.len(), 1);
    let old = AuditLog::new(&aside[0], AuditOptions::default());
    let report = old.verify(&root()).unwrap();
    assert_eq!((report.lines, report.first_bad), (n, None));
}

#[test]
fn root_key_never_reaches_the_files() {
    let (_t, log, _) = setup(
        4,
        AuditOptions {
            max_file_bytes: 800,
        },
    );
    let root = root();
    let mut root_hex = String::new();
    hex(root.bytes(), &mut root_hex);
    let k1 = State::initial(&root);
    let mut k1_hex = String::new();
    hex(&k1.key[..], &mut k1_hex);
    for (name, bytes) in log.export().unwrap() {
        for needle in [&root.bytes()[..], root_hex.as_bytes(), k1_hex.as_bytes()] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{name}");
        }
    }
    assert_eq!(format!("{root:?}"), "AuditKey(<redacted>)");
}

#[test]
fn time_round_trip() {
    let cases = [
        ("1970-01-01T00:00:00.000Z", 0i64),
        ("2000-02-29T12:34:56.789Z", 951_827_696_789),
        ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
        ("2026-12-03T17:05:01.123Z", 1_796_317_501_123),
        ("1969-12-31T23:59:59.500Z", -500),
        ("1900-03-01T00:00:00.000Z", -2_203_891_200_000),
    ];
    for (text, ms) in cases {
        let t = if ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
        };
        assert_eq!(rfc3339(t), text);
        assert_eq!(parse_time(text), Some(t), "{text}");
    }
    let at = |s| parse_time(s).unwrap();
    assert_eq!(at("2024-02-29"), at("2024-02-29T00:00:00Z"));
    assert_eq!(at("2024-02-29T01:30:00+01:30"), at("2024-02-29T00:00:00Z"));
    assert_eq!(at("2024-02-28T22:00:00-02:00"), at("2024-02-29"));
    assert_eq!(
        at("2024-03-01T00:00:00.5Z"),
        at("2024-03-01") + Duration::from_millis(500)
    );
    assert_eq!(
        rfc3339(at("2024-12-31T23:59:59.123456789+00:00")),
        "2024-12-31T23:59:59.123Z"
    );
    for bad in [
        "2023-02-29",
        "1900-02-29",
        "2024-13-01",
        "2024-00-10",
        "2024-04-31",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00+0100",
        "2024-01-01 00:00:00Z",
        "2024-1-01",
        "",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
    assert!(parse_time("2000-02-29").is_some());
    // Every day for some years survives a round trip through both.
    let mut t = at("1999-12-25T06:07:08.009Z");
    for _ in 0..3000 {
        assert_eq!(parse_time(&rfc3339(t)), Some(t));
        t += Duration::from_secs(86_400 + 3601);
    }
}

#[test]
fn errors_convert_to_store_errors() {
    assert!(matches!(
        StoreError::from(AuditError::NotStarted),
        StoreError::Io(_)
    ));
    assert!(matches!(
        StoreError::from(AuditError::Corrupt("x".into())),
        StoreError::Corrupt(_)
    ));
}
