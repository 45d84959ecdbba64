//! `weir-supervisor`: the small program each task runs under (see the
//! `weir_supervisor` crate). The agent finds it next to `weir` and falls
//! back to `weir executor` without it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match weir_supervisor::Args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            weir_supervisor::say(&format!("{e}\n{}", weir_supervisor::USAGE));
            return ExitCode::from(2);
        }
    };
    match weir_supervisor::run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            weir_supervisor::say(&e);
            ExitCode::from(1)
        }
    }
}
