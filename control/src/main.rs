//! The `ferry` binary: parses the command line and runs it with
//! [`commands::dispatch`]. Everything else is in the `ferry_control` library.

use std::process::ExitCode;

use clap::Parser;

use ferry_control::cli::Cli;
use ferry_control::commands;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    commands::dispatch(Cli::parse())
}
