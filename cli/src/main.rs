//! `blit`: copy, mirror and move files. Exit codes: 0 success, 1 partial, 2 error.

use std::process::ExitCode;

fn main() -> ExitCode {
    raise_fd_limit();
    match blit_cli::run() {
        Ok(blit_cli::Outcome::Success) => ExitCode::SUCCESS,
        Ok(blit_cli::Outcome::Partial) => ExitCode::from(1),
        Err(e) => {
            eprintln!("blit: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Workers keep a few directories open each; lift the soft descriptor limit to the hard
/// one so wide trees never run into the traditional 1,024.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
