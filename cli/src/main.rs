//! `blit`: copy, mirror and move files. Exit codes: 0 success, 1 partial, 2 error.

use std::process::ExitCode;

fn main() -> ExitCode {
    blit_core::sys::raise_fd_limit();
    match blit_cli::run() {
        Ok(blit_cli::Outcome::Success) => ExitCode::SUCCESS,
        Ok(blit_cli::Outcome::Partial) => ExitCode::from(1),
        Err(e) => {
            eprintln!("blit: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
