//! `rampart`: the command line tool of the rampart resilience middleware. See the crate docs
//! (`rampart_cli`) and `rampart --help`.
//!
//! Output goes through [`output::out`] rather than `println!`, so that a closed pipe
//! (`rampart dlq list | head`) ends the command quietly instead of panicking; no
//! `print_stdout` allowance is needed.

use std::process::ExitCode;

use clap::Parser as _;

mod cli;
mod dlq;
mod error;
mod format;
mod output;

use cli::{Cli, Command};
use error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return CliError::new(format!("cannot start the async runtime: {e}")).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let Some(store) = cli.store.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Err(CliError::usage(
            "no dead-letter store given: pass --store URL (e.g. --store sqlite:dlq.db) or set \
             RAMPART_STORE",
        ));
    };
    match cli.command {
        Command::Dlq(cmd) => dlq::run(store, cmd).await,
    }
}
