//! `cargo run --release -p ferry-benches --bin harness -- [--quick] [--runs N]`: see README.

fn main() -> std::process::ExitCode {
    ferry_benches::main()
}
