//! `cordon`, the command line of a microsegmentation policy engine: check, test,
//! simulate and explain Istio AuthorizationPolicy sets against the exact
//! `cordon_filter.wasm` that ships, produce its configuration, and discover, audit and
//! map the reach of policies from traffic.
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
        // A bad traffic line makes it 2, after the work (`--skip-bad-lines`: as it is).
        Ok(code) => cli::bad_lines_exit(code),
        // The reader of standard output went away (`cordon simulate … | head -1`): it has
        // what it wanted, so the command ends quietly.
        Err(error) if cli::term::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cordon: {error:#}");
            ExitCode::from(2)
        }
    }
}
