//! `cordon`: test, replay and benchmark AuthorizationPolicy sets against the exact
//! `cordon_filter.wasm` that ships, and produce its configuration.
//!
//! Exit codes: 0 success; 1 the command ran and found failures (failed test cases,
//! warnings under `--strict`, changed decisions under `--fail-on-change`); 2 bad input
//! or usage (unreadable files, invalid policies, a missing module).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    match cli::run(arguments) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cordon: {error:#}");
            ExitCode::from(2)
        }
    }
}
