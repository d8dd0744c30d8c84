//! `ferrohsm`: manage FerroHSM tokens and run the demo.
//!
//! Most commands work through the real `libferrohsm_pkcs11.so` (loaded with
//! the `cryptoki` crate, found as `ferrohsm_pkcs11::locate` says), exactly as
//! any other PKCS#11 application would, so they run safely beside other
//! processes using the same tokens. `backup`, `restore`, `audit`, `pending`,
//! `cancel-deletion`, `delete-token` and `rotate-storage-key` need the storage
//! key or the audit files themselves and work on the token store directly
//! (under its locks), counting their PIN checks as logins; `register` and
//! `unregister` write and remove a p11-kit file. A token is named by label
//! (`--token`), `--slot`, `--serial` or an RFC 7512 `pkcs11:` URI. PINs never come from the command line: from an
//! environment variable, a file, or a prompt without echo.
//!
//! Exit codes: 0 success; 1 failure, with one line on stderr saying why;
//! 2 bad usage.
#![forbid(unsafe_code)]

mod archive;
mod delete_token;
mod demo;
#[cfg(test)]
mod fuzz_replay;
mod import;
mod install;
mod keys;
mod lifecycle;
mod out;
mod p11;
mod pin;
mod register;
mod select;
mod tokens;
mod unregister;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::p11::Fail;
use crate::select::TokenArgs;

const ENVIRONMENT: &str = "\
Environment:
  FERROHSM_DIR     data directory (default $XDG_DATA_HOME/ferrohsm or ~/.local/share/ferrohsm)
  FERROHSM_CONF    TOML config file
  FERROHSM_POLICY  key policy of new tokens: hsm (default) or spec
  FERROHSM_LOG     module log: LEVEL or LEVEL:FILE
  FERROHSM_MODULE  path of the libferrohsm_pkcs11.so to load

PINs are never given on the command line: use --pin-env VAR / --pin-file FILE
(and the --so-pin-* / --new-pin-* forms), or type them at the prompt.
Exit status: 0 success, 1 failure (one line on stderr), 2 bad usage.";

/// Manage FerroHSM tokens through the PKCS#11 module.
#[derive(Parser)]
#[command(name = "ferrohsm", version, after_help = ENVIRONMENT)]
#[command(arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Initialise a new token (in the free slot) and set its SO and user PINs
    Init(InitArgs),
    /// List slots and tokens: labels, serials, PIN flags, public object counts
    Tokens(TokensArgs),
    /// List the objects of a token with their pkcs11: URIs; never shows values
    Objects(ObjectsArgs),
    /// Generate a sensitive, non-extractable key or key pair in a token
    Keygen(KeygenArgs),
    /// Import a private key (with its certificate chain), certificate or raw
    /// AES key into a token
    Import(ImportArgs),
    /// Write a public key as SubjectPublicKeyInfo PEM
    ExportPublic(ExportArgs),
    /// Write a certificate as PEM
    ExportCert(ExportArgs),
    /// Delete every object with a label (on hsm tokens keys wait out the
    /// deletion period first)
    Delete(DeleteArgs),
    /// Change the user PIN, or the SO PIN with --so
    SetPin(SetPinArgs),
    /// Set a new user PIN as the SO (C_InitPIN): unlocks a locked user PIN
    InitPin(InitPinArgs),
    /// Write a whole token into one sealed file (needs the SO PIN)
    Backup(BackupArgs),
    /// Restore a token from a backup file into a new slot (needs its SO PIN)
    Restore(RestoreArgs),
    /// Delete a token and every object in it for good (needs its SO PIN)
    DeleteToken(DeleteTokenArgs),
    /// Check or read a token's tamper-evident audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// List the keys scheduled for deletion and when they go (purges those
    /// whose period is over)
    Pending(PendingArgs),
    /// Restore a key scheduled for deletion (a key pair together)
    CancelDeletion(CancelDeletionArgs),
    /// Re-seal every record of a token under a new storage key (SO and user PIN)
    RotateStorageKey(RotateArgs),
    /// Register the module with p11-kit (writes ferrohsm.module)
    Register(RegisterArgs),
    /// Remove the p11-kit registration that `register` wrote
    Unregister(UnregisterArgs),
    /// Load the module, create a demo token and show it at work
    Demo(DemoArgs),
    /// Write the man pages and shell completions (for packaging)
    #[command(hide = true)]
    GenerateDocs(install::GenerateDocsArgs),
}

/// Where a user PIN comes from (prompted when neither is given).
#[derive(Args, Clone, Debug, Default)]
struct PinArgs {
    /// Read the user PIN from this environment variable
    #[arg(long, value_name = "VAR")]
    pin_env: Option<String>,
    /// Read the user PIN from this file (one trailing newline is ignored)
    #[arg(long, value_name = "FILE", conflicts_with = "pin_env")]
    pin_file: Option<PathBuf>,
}

/// Where an SO PIN comes from (prompted when neither is given).
#[derive(Args, Clone, Debug, Default)]
struct SoPinArgs {
    /// Read the SO PIN from this environment variable
    #[arg(long, value_name = "VAR")]
    so_pin_env: Option<String>,
    /// Read the SO PIN from this file (one trailing newline is ignored)
    #[arg(long, value_name = "FILE", conflicts_with = "so_pin_env")]
    so_pin_file: Option<PathBuf>,
}

/// Where a new PIN comes from (prompted twice when neither is given).
#[derive(Args, Clone, Debug, Default)]
struct NewPinArgs {
    /// Read the new PIN from this environment variable
    #[arg(long, value_name = "VAR")]
    new_pin_env: Option<String>,
    /// Read the new PIN from this file (one trailing newline is ignored)
    #[arg(long, value_name = "FILE", conflicts_with = "new_pin_env")]
    new_pin_file: Option<PathBuf>,
}

/// Key policy of a new token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Policy {
    /// Every private and secret key is sensitive; extractable defaults to false
    Hsm,
    /// The PKCS#11 specification's own (permissive) defaults
    Spec,
}

#[derive(Args)]
struct InitArgs {
    /// Token label (up to 32 bytes)
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// Key policy of the token (default: FERROHSM_POLICY, the config file, else hsm)
    #[arg(long, value_enum)]
    policy: Option<Policy>,
    #[command(flatten)]
    so: SoPinArgs,
    #[command(flatten)]
    pin: PinArgs,
}

#[derive(Args)]
struct TokensArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ObjectsArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    pin: PinArgs,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

/// Kinds of key `keygen` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KeyKind {
    /// AES, 128-bit
    Aes128,
    /// AES, 192-bit
    Aes192,
    /// AES, 256-bit
    Aes256,
    /// EC key pair on NIST P-256
    EcP256,
    /// EC key pair on NIST P-384
    EcP384,
    /// RSA key pair, 2048-bit modulus
    Rsa2048,
    /// RSA key pair, 3072-bit modulus
    Rsa3072,
    /// RSA key pair, 4096-bit modulus (takes a while)
    Rsa4096,
}

/// What a key may be used for (`CKA_ENCRYPT`, `CKA_SIGN`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Usage {
    /// CKA_ENCRYPT
    Encrypt,
    /// CKA_DECRYPT
    Decrypt,
    /// CKA_SIGN
    Sign,
    /// CKA_VERIFY
    Verify,
    /// CKA_WRAP
    Wrap,
    /// CKA_UNWRAP
    Unwrap,
    /// CKA_DERIVE
    Derive,
}

#[derive(Args)]
struct KeygenArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Key type
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: KeyKind,
    /// Label of the new key (both halves of a pair)
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// CKA_ID in hex (default for pairs: SHA-1 of the public key, as X.509 key identifiers)
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    id: Option<HexId>,
    /// Usage flags, comma separated (default: aes encrypt,decrypt,wrap,unwrap;
    /// ec sign,verify; rsa sign,verify,encrypt,decrypt)
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    usage: Vec<Usage>,
    #[command(flatten)]
    pin: PinArgs,
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Label of the new object(s)
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// CKA_ID in hex (default: SHA-1 of the public key; none for AES keys)
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    id: Option<HexId>,
    /// FILE is a raw AES key: exactly 16, 24 or 32 bytes
    #[arg(long)]
    aes: bool,
    /// Usage flags, comma separated (defaults as for keygen)
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    usage: Vec<Usage>,
    #[command(flatten)]
    pin: PinArgs,
    /// PKCS#8, PKCS#1 or SEC1 private key, or X.509 certificate (PEM or DER)
    file: PathBuf,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Label of the public key or certificate
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// Only the object with this CKA_ID (hex)
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    id: Option<HexId>,
    /// Write the PEM here instead of standard output (an existing file is
    /// not overwritten without --force)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Overwrite the --out file if it exists
    #[arg(long, requires = "out")]
    force: bool,
}

#[derive(Args)]
struct DeleteArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Delete the objects with this label
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// Only the objects with this CKA_ID (hex)
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    id: Option<HexId>,
    #[command(flatten)]
    pin: PinArgs,
}

#[derive(Args)]
struct SetPinArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Change the SO PIN (the old one from --so-pin-env/--so-pin-file)
    #[arg(long, conflicts_with_all = ["pin_env", "pin_file"])]
    so: bool,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    so_pin: SoPinArgs,
    #[command(flatten)]
    new_pin: NewPinArgs,
}

#[derive(Args)]
struct InitPinArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    so_pin: SoPinArgs,
    #[command(flatten)]
    new_pin: NewPinArgs,
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// The backup file to create (an existing file is not overwritten)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    so: SoPinArgs,
}

#[derive(Args)]
struct DeleteTokenArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    so: SoPinArgs,
}

#[derive(Args)]
struct RestoreArgs {
    /// The backup file
    file: PathBuf,
    /// Label of the restored token (default: the label it had)
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    #[command(flatten)]
    so: SoPinArgs,
}

/// `ferrohsm audit …`.
#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the whole log (needs the user PIN, or the SO
    /// PIN with --so-pin-*); names the first bad line
    Verify(AuditVerifyArgs),
    /// Print the log, optionally only one key's events or recent ones
    Show(AuditShowArgs),
}

#[derive(Args)]
struct AuditVerifyArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    so: SoPinArgs,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AuditShowArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Only events about the object with this label
    #[arg(long, value_name = "LABEL")]
    key: Option<String>,
    /// Only events at or after this time (2026-12-03 or 2026-12-03T17:00:00Z)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PendingArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    so: SoPinArgs,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CancelDeletionArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// Label of the key to restore
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// CKA_ID of the key, when several pending keys share the label
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    id: Option<HexId>,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    so: SoPinArgs,
}

#[derive(Args)]
struct RotateArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    so: SoPinArgs,
    #[command(flatten)]
    pin: PinArgs,
}

#[derive(Args)]
struct RegisterArgs {
    /// Directory to write ferrohsm.module into (default:
    /// $XDG_CONFIG_HOME/pkcs11/modules, else ~/.config/pkcs11/modules)
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
}

#[derive(Args)]
struct UnregisterArgs {
    /// Directory holding ferrohsm.module (default: as for register)
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Use a throw-away data directory instead of the default one
    #[arg(long)]
    temp: bool,
    /// (internal) this run is the child of `demo --temp`, in the temporary directory
    #[arg(long, hide = true, requires = "temp")]
    in_temp_dir: bool,
}

/// A `CKA_ID` given in hex on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HexId(Vec<u8>);

/// Parses a hex `CKA_ID` (an optional `0x` prefix, `:` separators allowed).
fn parse_hex(s: &str) -> Result<HexId, String> {
    hex_bytes(s).map(HexId)
}

/// The bytes of a hex string (an optional `0x` prefix, `:` separators allowed).
fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let t = s.strip_prefix("0x").unwrap_or(s).replace(':', "");
    if !t.len().is_multiple_of(2) {
        return Err("hex needs an even number of digits".into());
    }
    (0..t.len())
        .step_by(2)
        .map(|i| {
            t.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("not a hex byte: {:?}", t.get(i..i + 2).unwrap_or("")))
        })
        .collect()
}

/// Reports a usage error of subcommand `sub` the way clap does, and exits
/// with status 2.
fn usage_error(sub: &str, msg: &str) -> ! {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let mut cmd = cli.find_subcommand(sub).cloned().unwrap_or(cli);
    cmd.error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--version` also names the module this program loads, and its version.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            return install::print_version();
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Init(a) => tokens::init(&a),
        Command::Tokens(a) => tokens::list(&a),
        Command::Objects(a) => tokens::objects(&a),
        Command::Keygen(a) => keys::keygen(&a),
        Command::Import(a) => keys::import(&a),
        Command::ExportPublic(a) => keys::export_public(&a),
        Command::ExportCert(a) => keys::export_cert(&a),
        Command::Delete(a) => tokens::delete(&a),
        Command::SetPin(a) => tokens::set_pin(&a),
        Command::InitPin(a) => tokens::init_pin(&a),
        Command::Backup(a) => archive::backup(&a),
        Command::Restore(a) => archive::restore(&a),
        Command::DeleteToken(a) => delete_token::delete_token(&a),
        Command::Audit(AuditCommand::Verify(a)) => lifecycle::audit_verify(&a),
        Command::Audit(AuditCommand::Show(a)) => lifecycle::audit_show(&a),
        Command::Pending(a) => lifecycle::pending(&a),
        Command::CancelDeletion(a) => lifecycle::cancel_deletion(&a),
        Command::RotateStorageKey(a) => lifecycle::rotate(&a),
        Command::Register(a) => register::register(&a),
        Command::Unregister(a) => unregister::unregister(&a),
        Command::Demo(a) => demo::run(a.temp, a.in_temp_dir).map_err(Fail::Msg),
        Command::GenerateDocs(a) => install::generate_docs(&a).map_err(Fail::Msg),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Msg(m)) => {
            eprintln!("ferrohsm: {m}");
            ExitCode::from(1)
        }
        Err(Fail::Exit(code)) => ExitCode::from(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ids_parse_as_one_value() {
        let cli = Cli::try_parse_from([
            "ferrohsm", "keygen", "--token", "t", "--type", "aes128", "--label", "k", "--id",
            "0102",
        ])
        .unwrap();
        match cli.command {
            Command::Keygen(k) => assert_eq!(k.id, Some(HexId(vec![1, 2]))),
            _ => panic!("not keygen"),
        }
    }

    #[test]
    fn hex_parsing() {
        assert_eq!(hex_bytes("0a0B").unwrap(), vec![0x0a, 0x0b]);
        assert_eq!(parse_hex("0x01:02").unwrap(), HexId(vec![1, 2]));
        assert_eq!(hex_bytes("").unwrap(), Vec::<u8>::new());
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("é1").is_err());
    }
}
