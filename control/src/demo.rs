//! `ferry demo`: placeholder until the demo lands.
use std::process::ExitCode;

pub fn main(_once: bool) -> ExitCode {
    ExitCode::SUCCESS
}
