//! The `nmflow` command (see the library's documentation).

fn main() -> std::process::ExitCode {
    nmflow::main()
}
