//! PINs: from an environment variable, a file, or a prompt without echo on
//! the terminal. Never from the command line. Held in zeroizing strings.

use std::io::IsTerminal;
use std::path::Path;

use zeroize::Zeroizing;

use crate::p11::{Fail, Result};
use crate::{NewPinArgs, PinArgs, SoPinArgs};

/// Where one PIN comes from, and the flags that would have named it.
pub struct Source<'a> {
    env: Option<&'a str>,
    file: Option<&'a Path>,
    /// The flags, for the message when there is no source and no terminal.
    flags: &'static str,
}

impl<'a> Source<'a> {
    /// The user PIN flags.
    pub fn from_user(a: &'a PinArgs) -> Self {
        Source {
            env: a.pin_env.as_deref(),
            file: a.pin_file.as_deref(),
            flags: "--pin-env VAR or --pin-file FILE",
        }
    }

    /// The SO PIN flags.
    pub fn from_so(a: &'a SoPinArgs) -> Self {
        Source {
            env: a.so_pin_env.as_deref(),
            file: a.so_pin_file.as_deref(),
            flags: "--so-pin-env VAR or --so-pin-file FILE",
        }
    }

    /// The new-PIN flags of `set-pin`.
    pub fn from_new(a: &'a NewPinArgs) -> Self {
        Source {
            env: a.new_pin_env.as_deref(),
            file: a.new_pin_file.as_deref(),
            flags: "--new-pin-env VAR or --new-pin-file FILE",
        }
    }
}

fn from_env(var: &str) -> Result<Zeroizing<String>> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Zeroizing::new(v)),
        Ok(_) => Err(Fail::Msg(format!("environment variable {var} is empty"))),
        Err(std::env::VarError::NotPresent) => {
            Err(Fail::Msg(format!("environment variable {var} is not set")))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(Fail::Msg(format!(
            "environment variable {var} is not valid UTF-8"
        ))),
    }
}

fn from_file(path: &Path) -> Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read PIN file {}: {e}", path.display()))?,
    );
    let mut s = Zeroizing::new(
        std::str::from_utf8(&bytes)
            .map_err(|_| format!("PIN file {} is not valid UTF-8", path.display()))?
            .to_string(),
    );
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    if s.is_empty() {
        return Err(Fail::Msg(format!("PIN file {} is empty", path.display())));
    }
    Ok(s)
}

fn prompt(text: &str) -> Result<Zeroizing<String>> {
    let pin = Zeroizing::new(
        rpassword::prompt_password(format!("{text}: "))
            .map_err(|e| format!("cannot read the PIN from the terminal: {e}"))?,
    );
    if pin.is_empty() {
        return Err("no PIN entered".into());
    }
    Ok(pin)
}

fn no_terminal(what: &str, flags: &str) -> Fail {
    Fail::Msg(format!(
        "no {what} given: use {flags} (standard input is not a terminal, so there is no prompt)"
    ))
}

/// `what` with its first letter in upper case, for a prompt.
fn capitalised(what: &str) -> String {
    let mut c = what.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn read(what: &str, src: &Source<'_>, twice: bool) -> Result<Zeroizing<String>> {
    if let Some(var) = src.env {
        return from_env(var);
    }
    if let Some(file) = src.file {
        return from_file(file);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal(what, src.flags));
    }
    let first = prompt(&capitalised(what))?;
    if twice {
        let again = prompt(&format!("{} (again)", capitalised(what)))?;
        if *first != *again {
            return Err("the two PINs entered differ".into());
        }
    }
    Ok(first)
}

/// A PIN the token already has: from the source, else prompted once.
/// `what` names it in the prompt and messages (`user PIN for token "t"`).
pub fn existing(what: &str, src: Source<'_>) -> Result<Zeroizing<String>> {
    read(what, &src, false)
}

/// A PIN being set: from the source, else prompted twice.
pub fn new(what: &str, src: Source<'_>) -> Result<Zeroizing<String>> {
    read(what, &src, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_pins_lose_one_newline() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pin");
        std::fs::write(&f, "abcd\n").unwrap();
        assert_eq!(from_file(&f).unwrap().as_str(), "abcd");
        std::fs::write(&f, "abcd\r\n").unwrap();
        assert_eq!(from_file(&f).unwrap().as_str(), "abcd");
        std::fs::write(&f, "ab cd\n\n").unwrap();
        assert_eq!(from_file(&f).unwrap().as_str(), "ab cd\n");
        std::fs::write(&f, "\n").unwrap();
        assert!(from_file(&f).is_err());
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(from_file(&f).is_err());
        assert!(from_file(&d.path().join("missing")).is_err());
    }
}
