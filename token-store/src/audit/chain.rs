//! The forward-secure keyed hash chain: the per-line key (from the root,
//! then replaced by a one-way function of itself once used), the chain value
//! of a line, the stored line format (`…,"chain":"<64 hex>"}`) and its check,
//! and the checksummed 256-byte encoding of the chain state in the `state`
//! file's slots.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::seal::AuditKey;

use super::event::AuditEvent;

pub(super) type HmacSha256 = Hmac<Sha256>;

const K1_LABEL: &[u8] = b"ferrohsm/audit/v1/k1";
const EVOLVE_LABEL: &[u8] = b"ferrohsm/audit/v1/evolve";

/// The stored line ends with `,"chain":"<64 hex>"}`: 10 + 64 + 2 bytes.
pub(super) const CHAIN_PREFIX: &[u8] = b",\"chain\":\"";
const SUFFIX_LEN: usize = 10 + 64 + 2;

pub(super) const SLOT: usize = 256;
const SLOT_JSON: usize = 224;

/// The chain position after the line with sequence number `seq`. Holds the
/// key of the *next* line, so it is never printed.
pub(super) struct State {
    pub(super) seq: u64,
    pub(super) chain: [u8; 32],
    pub(super) key: Zeroizing<[u8; 32]>,
}

impl State {
    pub(super) fn initial(root: &AuditKey) -> State {
        let mut mac = new_mac(root.bytes());
        mac.update(K1_LABEL);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&mac.finalize().into_bytes());
        State {
            seq: 0,
            chain: [0u8; 32],
            key,
        }
    }

    /// Moves past one line whose chain value is `chain`; the used key is
    /// overwritten by its successor, which is what makes old lines safe.
    pub(super) fn advance(&mut self, chain: [u8; 32]) {
        let mut h = Sha256::new();
        h.update(EVOLVE_LABEL);
        h.update(&self.key[..]);
        let mut next = h.finalize();
        self.key.copy_from_slice(&next);
        next.zeroize();
        self.chain = chain;
        self.seq += 1;
    }

    /// The chain value of a line with this body, keyed with the current key.
    pub(super) fn mac(&self, body_without_brace: &[u8]) -> HmacSha256 {
        let mut mac = new_mac(&self.key[..]);
        mac.update(&self.chain);
        mac.update(body_without_brace);
        mac.update(b"}");
        mac
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

#[derive(Serialize)]
pub(super) struct LineOut<'a> {
    pub(super) seq: u64,
    #[serde(flatten)]
    pub(super) event: &'a AuditEvent,
}

#[derive(Deserialize)]
pub(super) struct LineIn {
    pub(super) seq: u64,
    #[serde(flatten)]
    pub(super) event: AuditEvent,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// Why a line did not continue the chain.
pub(super) enum Fault {
    Malformed,
    OutOfOrder,
    Altered,
}

impl Fault {
    pub(super) fn reason(&self, expected: u64) -> String {
        match self {
            Fault::Malformed => "malformed".to_string(),
            Fault::OutOfOrder => format!("out of order: expected seq {expected}"),
            Fault::Altered => "altered (chain value does not match)".to_string(),
        }
    }
}

/// Splits a stored line (without `\n`) into the body minus its final `}` and
/// the stored chain value, or `None` if the suffix is not exactly ours.
pub(super) fn split_line(line: &[u8]) -> Option<(&[u8], [u8; 32])> {
    if line.len() < SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
        return None;
    }
    let cut = line.len() - SUFFIX_LEN;
    let (head, tail) = line.split_at(cut);
    let hex = tail.strip_prefix(CHAIN_PREFIX)?.strip_suffix(b"\"}")?;
    Some((head, unhex32(hex)?))
}

/// The seq of a stored line, if it is well-formed JSON with our suffix.
pub(super) fn line_seq(line: &[u8]) -> Option<u64> {
    split_line(line)?;
    serde_json::from_slice::<SeqOnly>(line).ok().map(|s| s.seq)
}

/// Checks one stored line against `state`; on success advances it.
pub(super) fn check_line(line: &[u8], state: &mut State) -> Result<u64, (Fault, Option<u64>)> {
    let (head, chain) = split_line(line).ok_or((Fault::Malformed, None))?;
    let seq = serde_json::from_slice::<SeqOnly>(line)
        .map_err(|_| (Fault::Malformed, None))?
        .seq;
    if seq != state.seq + 1 {
        return Err((Fault::OutOfOrder, Some(seq)));
    }
    state
        .mac(head)
        .verify_slice(&chain)
        .map_err(|_| (Fault::Altered, Some(seq)))?;
    state.advance(chain);
    Ok(seq)
}

pub(super) fn hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

fn unhex32(s: &[u8]) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Encodes one state slot: JSON padded to 224 bytes, then its SHA-256.
pub(super) fn encode_slot(state: &State) -> Zeroizing<Vec<u8>> {
    // Capacity fixed up front so no reallocation leaves a key copy behind.
    let mut json = Zeroizing::new(String::with_capacity(SLOT));
    json.push_str("{\"seq\":");
    let _ = write!(json, "{}", state.seq);
    json.push_str(",\"chain\":\"");
    hex(&state.chain, &mut json);
    json.push_str("\",\"key\":\"");
    hex(&state.key[..], &mut json);
    json.push_str("\"}");
    let mut slot = Zeroizing::new(Vec::with_capacity(SLOT));
    slot.extend_from_slice(json.as_bytes());
    slot.resize(SLOT_JSON, b' ');
    let sum = Sha256::digest(&slot[..]);
    slot.extend_from_slice(&sum);
    slot
}

pub(super) fn decode_slot(slot: &[u8]) -> Option<State> {
    #[derive(Deserialize)]
    struct Raw {
        seq: u64,
        chain: String,
        key: String,
    }
    if slot.len() != SLOT || Sha256::digest(&slot[..SLOT_JSON])[..] != slot[SLOT_JSON..] {
        return None;
    }
    let mut raw: Raw = serde_json::from_slice(&slot[..SLOT_JSON]).ok()?;
    let key = unhex32(raw.key.as_bytes()).map(Zeroizing::new);
    raw.key.zeroize();
    Some(State {
        seq: raw.seq,
        chain: unhex32(raw.chain.as_bytes())?,
        key: key?,
    })
}
