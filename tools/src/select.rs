//! Which token a command works on: `--token LABEL`, `--slot N`,
//! `--serial S`, or an RFC 7512 `pkcs11:` URI given to `--token` (two
//! tokens may share a label: `C_InitToken` allows it). Also writes the
//! `pkcs11:` URIs `objects` prints for pasting into OpenSSL.

use clap::Args;

use crate::p11::{Fail, Result};

/// Token selection flags, flattened into every command that works on one
/// existing token.
#[derive(Args, Clone, Default, PartialEq, Eq)]
#[group(required = true, multiple = false)]
pub struct TokenArgs {
    /// Label of the token, or an RFC 7512 URI naming it
    /// (pkcs11:token=…;serial=…;slot-id=…)
    #[arg(long, value_name = "LABEL|URI")]
    pub token: Option<String>,
    /// Slot ID of the token (as `ferrohsm tokens` lists it)
    #[arg(long, value_name = "N")]
    pub slot: Option<u64>,
    /// Serial number of the token (as `ferrohsm tokens` lists it)
    #[arg(long, value_name = "SERIAL")]
    pub serial: Option<String>,
}

/// What a token must have to be chosen (every given field must match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// `CKA_LABEL` of the token (unpadded).
    pub label: Option<String>,
    /// Serial number (unpadded).
    pub serial: Option<String>,
    /// Slot ID.
    pub slot: Option<u64>,
    /// Manufacturer ID (URI `manufacturer=`).
    pub manufacturer: Option<String>,
    /// Model (URI `model=`).
    pub model: Option<String>,
}

/// One token as the selector sees it.
pub struct Candidate<'a> {
    /// Slot ID.
    pub slot: u64,
    /// Label, unpadded.
    pub label: &'a str,
    /// Serial, unpadded.
    pub serial: &'a str,
    /// Manufacturer ID, unpadded (`None` when unknown: the store does not keep it).
    pub manufacturer: Option<&'a str>,
    /// Model, unpadded (`None` when unknown).
    pub model: Option<&'a str>,
}

impl TokenArgs {
    /// The criteria these flags give.
    pub fn want(&self) -> Result<Want> {
        if let Some(s) = self.slot {
            return Ok(Want {
                slot: Some(s),
                ..Want::default()
            });
        }
        if let Some(s) = &self.serial {
            return Ok(Want {
                serial: Some(s.clone()),
                ..Want::default()
            });
        }
        match self.token.as_deref() {
            Some(t) if t.starts_with("pkcs11:") => parse_uri(t).map_err(|m| {
                Fail::Msg(format!(
                    "--token {t:?}: {m} (RFC 7512: pkcs11:token=LABEL;serial=S;slot-id=N)"
                ))
            }),
            Some(t) => Ok(Want {
                label: Some(t.to_string()),
                ..Want::default()
            }),
            None => Err("name a token with --token, --slot or --serial".into()),
        }
    }

    /// The flag naming the token again, for a hint to copy into a shell
    /// (`--token ca`, `--slot 3`, `--serial 1a2b`).
    pub fn flag(&self) -> String {
        match (&self.token, self.slot, &self.serial) {
            (_, Some(s), _) => format!("--slot {s}"),
            (_, _, Some(s)) => format!("--serial {}", shell_word(s)),
            (Some(t), _, _) => format!("--token {}", shell_word(t)),
            _ => String::new(),
        }
    }

    /// Selection by label, as internal callers (the demo) name tokens.
    pub fn labelled(label: &str) -> TokenArgs {
        TokenArgs {
            token: Some(label.to_string()),
            ..TokenArgs::default()
        }
    }

    /// The label given with `--token LABEL`, if the token was named so.
    pub fn label(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.starts_with("pkcs11:"))
    }

    /// Chooses the one token of `all` that matches; errors name what was
    /// asked and, when several match, how to tell them apart.
    pub fn choose<'a, T>(
        &self,
        all: impl IntoIterator<Item = (Candidate<'a>, T)>,
    ) -> Result<(u64, T)> {
        let want = self.want()?;
        let mut found: Vec<(u64, String, T)> = all
            .into_iter()
            .filter(|(c, _)| want.matches(c))
            .map(|(c, t)| (c.slot, c.serial.to_string(), t))
            .collect();
        match found.len() {
            0 => Err(Fail::Msg(format!(
                "no token {} (`ferrohsm tokens` lists them)",
                self.described()
            ))),
            1 => {
                let (slot, _, t) = found.remove(0);
                Ok((slot, t))
            }
            _ => Err(Fail::Msg(format!(
                "several tokens match {}: {}; choose one with --slot N or --serial S",
                self.described(),
                found
                    .iter()
                    .map(|(slot, serial, _)| format!("slot {slot} (serial {serial})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// How an error names what was asked: `labelled "ca"`, `in slot 3`, ...
    fn described(&self) -> String {
        match (&self.token, self.slot, &self.serial) {
            (_, Some(s), _) => format!("in slot {s}"),
            (_, _, Some(s)) => format!("with serial {s:?}"),
            (Some(t), _, _) if t.starts_with("pkcs11:") => format!("matching {t}"),
            (Some(t), _, _) => format!("labelled {t:?}"),
            _ => "named".into(),
        }
    }
}

/// Messages name the token as the user did: the label in quotes (as
/// before tokens could be named otherwise), or the slot, serial or URI.
impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.token, self.slot, &self.serial) {
            (_, Some(s), _) => write!(f, "in slot {s}"),
            (_, _, Some(s)) => write!(f, "with serial {s:?}"),
            (Some(t), _, _) if t.starts_with("pkcs11:") => write!(f, "{t}"),
            (Some(t), _, _) => write!(f, "{t:?}"),
            _ => f.write_str("(none)"),
        }
    }
}

impl std::fmt::Display for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl Want {
    /// Whether `c` has everything asked.
    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        self.label.as_deref().is_none_or(|l| l == c.label)
            && self.serial.as_deref().is_none_or(|s| s == c.serial)
            && self.slot.is_none_or(|s| s == c.slot)
            && self
                .manufacturer
                .as_deref()
                .is_none_or(|m| c.manufacturer.is_none_or(|cm| cm == m))
            && self
                .model
                .as_deref()
                .is_none_or(|m| c.model.is_none_or(|cm| cm == m))
    }
}

/// Parses the token part of an RFC 7512 URI. Object attributes (`object`,
/// `id`, `type`) and library attributes are allowed and ignored (an object
/// URI names its token too); the query (`?pin-value=…`) is ignored.
pub fn parse_uri(uri: &str) -> std::result::Result<Want, String> {
    let rest = uri.strip_prefix("pkcs11:").ok_or("not a pkcs11: URI")?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    let mut want = Want::default();
    for part in path.split(';').filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not NAME=VALUE"))?;
        // Binary values (`id`) are not text: decode only what is read.
        let ignored = matches!(
            name,
            "object"
                | "id"
                | "type"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer"
        );
        if ignored {
            continue;
        }
        let value = percent_decode(value)?;
        match name {
            "token" => want.label = Some(value),
            "serial" => want.serial = Some(value),
            "manufacturer" => want.manufacturer = Some(value),
            "model" => want.model = Some(value),
            "slot-id" => {
                want.slot = Some(
                    value
                        .parse()
                        .map_err(|_| format!("slot-id {value:?} is not a number"))?,
                );
            }
            "object"
            | "id"
            | "type"
            | "library-manufacturer"
            | "library-description"
            | "library-version"
            | "slot-description"
            | "slot-manufacturer" => {}
            other => return Err(format!("unknown attribute {other:?}")),
        }
    }
    if want == Want::default() {
        return Err("it names no token".into());
    }
    Ok(want)
}

/// `s` as one shell word: as it is when it is plain, else single-quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+=".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `%XX` escapes decoded; the result must be UTF-8.
fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Percent-encodes a path attribute value (RFC 7512 `pchar` minus what
/// would end the attribute: unreserved characters and `:[]@!$&'()*+,=`
/// except `;`, `/`, `?`, `#`, `%` stay as they are).
pub fn percent_encode(b: &[u8]) -> String {
    let mut out = String::new();
    for &c in b {
        let keep = c.is_ascii_alphanumeric() || b"-._~:[]@!$&'()*+,=".contains(&c);
        if keep {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Every byte as `%XX`, the way RFC 7512 writes binary `id`s.
pub fn percent_encode_all(b: &[u8]) -> String {
    b.iter().map(|c| format!("%{c:02X}")).collect()
}

/// The `pkcs11:` URI of an object: token (by label and serial, so a shared
/// label still names one token), id, object label and type.
pub fn object_uri(token: &str, serial: &str, id: &[u8], label: &str, class: &str) -> String {
    let mut uri = format!(
        "pkcs11:token={};serial={}",
        percent_encode(token.as_bytes()),
        percent_encode(serial.as_bytes())
    );
    if !id.is_empty() {
        uri.push_str(&format!(";id={}", percent_encode_all(id)));
    }
    if !label.is_empty() {
        uri.push_str(&format!(";object={}", percent_encode(label.as_bytes())));
    }
    let ty = match class {
        "private-key" => Some("private"),
        "public-key" => Some("public"),
        "secret-key" => Some("secret-key"),
        "certificate" => Some("cert"),
        "data" => Some("data"),
        _ => None,
    };
    if let Some(t) = ty {
        uri.push_str(&format!(";type={t}"));
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse() {
        let w = parse_uri("pkcs11:token=my%20ca;serial=00ab;slot-id=3?pin-value=1").unwrap();
        assert_eq!(w.label.as_deref(), Some("my ca"));
        assert_eq!(w.serial.as_deref(), Some("00ab"));
        assert_eq!(w.slot, Some(3));
        let w = parse_uri("pkcs11:token=ca;object=k;type=private;id=%01").unwrap();
        assert_eq!(w.label.as_deref(), Some("ca"));
        assert!(parse_uri("pkcs11:object=k").is_err());
        assert!(parse_uri("pkcs11:slot-id=x").is_err());
        assert!(parse_uri("pkcs11:tokn=ca").is_err());
        assert!(parse_uri("pkcs11:token=%zz").is_err());
    }

    #[test]
    fn object_uris_round_trip() {
        let u = object_uri("my ca;1", "ab12", &[1, 0xfe], "k/1", "private-key");
        assert_eq!(
            u,
            "pkcs11:token=my%20ca%3B1;serial=ab12;id=%01%FE;object=k%2F1;type=private"
        );
        let w = parse_uri(&u).unwrap();
        assert_eq!(w.label.as_deref(), Some("my ca;1"));
        assert_eq!(w.serial.as_deref(), Some("ab12"));
    }

    #[test]
    fn choosing() {
        let a = |slot, label, serial| {
            (
                Candidate {
                    slot,
                    label,
                    serial,
                    manufacturer: None,
                    model: None,
                },
                slot,
            )
        };
        let all = || vec![a(0, "dup", "s0"), a(1, "dup", "s1"), a(2, "x", "s2")];
        let by = |t: TokenArgs| t.choose(all()).map(|(s, _)| s);
        let label = |l: &str| TokenArgs {
            token: Some(l.into()),
            ..TokenArgs::default()
        };
        assert_eq!(by(label("x")).ok(), Some(2));
        let Err(Fail::Msg(m)) = by(label("dup")) else {
            panic!("ambiguous label chosen")
        };
        assert!(m.contains("slot 0 (serial s0), slot 1 (serial s1)"), "{m}");
        assert_eq!(
            by(TokenArgs {
                slot: Some(1),
                ..TokenArgs::default()
            })
            .ok(),
            Some(1)
        );
        assert_eq!(
            by(TokenArgs {
                serial: Some("s0".into()),
                ..TokenArgs::default()
            })
            .ok(),
            Some(0)
        );
        assert_eq!(by(label("pkcs11:token=dup;serial=s1")).ok(), Some(1));
        assert!(by(label("pkcs11:token=dup;slot-id=2")).is_err());
    }
}
