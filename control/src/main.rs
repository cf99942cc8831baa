use std::process::ExitCode;

use clap::Parser;

use ferry_control::cli::Cli;
use ferry_control::commands;

fn main() -> ExitCode {
    commands::dispatch(Cli::parse())
}
