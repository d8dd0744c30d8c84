//! Output helpers: standard output that tolerates a closed pipe, hex, tables.

use std::io::Write;

use crate::p11::{Fail, Result};

/// Writes `text` to standard output. A closed pipe (`ferrohsm tokens | head`)
/// is not an error; anything else is.
pub fn stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Fail::Msg(format!("writing to standard output: {e}"))),
    }
}

/// Serialises `value` as pretty JSON, followed by a newline, to standard output.
pub fn json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)
        .map_err(|e| Fail::Msg(format!("encoding JSON: {e}")))?;
    s.push('\n');
    stdout(&s)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lays out rows as left-aligned columns separated by two spaces (the last
/// column is not padded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', width[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A token label as stored: up to 32 bytes, space padded.
pub fn token_label(label: &str) -> Result<[u8; 32]> {
    let b = label.as_bytes();
    if b.is_empty() || b.len() > 32 {
        return Err(Fail::Msg(format!(
            "a token label must be 1 to 32 bytes long ({label:?} has {})",
            b.len()
        )));
    }
    let mut out = [b' '; 32];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// A space-padded field as text, padding removed.
pub fn padded(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "".into()],
        ]);
        assert_eq!(t, "A     BB  C\nlong  x\n");
    }

    #[test]
    fn labels_are_padded_and_bounded() {
        assert_eq!(&token_label("ab").unwrap()[..3], b"ab ");
        assert!(token_label("").is_err());
        assert!(token_label(&"x".repeat(33)).is_err());
        assert_eq!(padded(&token_label("ab").unwrap()), "ab");
    }
}
