//! `ferrohsm`: manage FerroHSM tokens and run the demo.
#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

const USAGE: &str = "usage: ferrohsm <command> [options]

commands:
  demo [--temp]   load the module, create a demo token, log in, digest, list
                  (--temp: use a throw-away data directory instead of the default)
  help            this text

environment: FERROHSM_DIR (data directory), FERROHSM_CONF (config file),
FERROHSM_POLICY (hsm|spec, key policy of new tokens), FERROHSM_LOG (level[:file]),
FERROHSM_MODULE (path of libferrohsm_pkcs11.so to load)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => match &args[1..] {
            [] => demo::run(false),
            [t] if t == "--temp" => demo::run(true),
            _ => return usage_error(),
        },
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => return usage_error(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrohsm: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
