//! `blit-cli`: the `blit` command. Parses arguments (`args`), turns them into an engine
//! spec (`options`), runs the transfer, and presents it (`progress`, `output`,
//! `history`). `main.rs` only maps the result to an exit code.

pub mod args;
pub mod hints;
pub mod history;
pub mod jobs;
pub mod options;
pub mod output;
pub mod progress;
pub mod remote;
pub mod scan;

use std::io::{BufRead, IsTerminal, Write};

use std::sync::Arc;

use anyhow::{Context, bail};
use blit_core::agent::DataOptions;
use blit_core::{Endpoint, Mode, Transfer};
use clap::{ArgMatches, FromArgMatches};

use crate::args::{Cli, Command, Diagnostics, TransferArgs};

/// Exit status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Some entries failed; the rest was transferred.
    Partial,
}

/// Parses the process arguments and runs the command.
pub fn run() -> anyhow::Result<Outcome> {
    let matches = args::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let sub = matches.subcommand().map(|(_, m)| m);
    match cli.command {
        Command::Copy(a) => transfer(Mode::Copy, &a, sub.context("missing arguments")?),
        Command::Mirror(a) => transfer(Mode::Mirror, &a, sub.context("missing arguments")?),
        Command::Move(a) => transfer(Mode::Move, &a, sub.context("missing arguments")?),
        Command::Scan { timeout } => {
            let timeout = std::time::Duration::try_from_secs_f64(timeout)
                .context("--timeout must be a non-negative number of seconds")?;
            scan::scan(timeout).map(|()| Outcome::Success)
        }
        Command::List { agent, remote } => remote::list(&agent, &remote).map(|()| Outcome::Success),
        Command::Ls { path, remote } => remote::ls(&path, &remote).map(|()| Outcome::Success),
        Command::Find {
            path,
            glob,
            limit,
            remote,
        } => remote::find(&path, &glob, limit, &remote).map(|()| Outcome::Success),
        Command::Du {
            path,
            max_depth,
            remote,
        } => remote::du(&path, max_depth, &remote).map(|()| Outcome::Success),
        Command::Df { path, remote } => remote::df(&path, &remote).map(|()| Outcome::Success),
        Command::Rm {
            path,
            recursive,
            dry_run,
            yes,
            remote,
        } => remote::rm(&path, recursive, dry_run, yes, &remote).map(|()| Outcome::Success),
        Command::Jobs { what } => jobs::run(what).map(|()| Outcome::Success),
        Command::Completions { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut args::command(), "blit", &mut out);
            remote::completion_hook(shell, &mut out)?;
            Ok(Outcome::Success)
        }
        Command::CompleteRemote { word, remote } => {
            // Completion must never print errors into the user's command line.
            let _ = remote::complete(&word, &remote);
            Ok(Outcome::Success)
        }
        Command::Diagnostics {
            what: Diagnostics::Perf { limit, json },
        } => {
            history::show(limit, json);
            Ok(Outcome::Success)
        }
    }
}

fn transfer(mode: Mode, args: &TransferArgs, matches: &ArgMatches) -> anyhow::Result<Outcome> {
    let spec = options::spec(mode, args, matches)?;
    let out = options::output(args, std::io::stderr().is_terminal());
    if !args.dry_run && !args.yes {
        confirm(mode)?;
    }
    let workers = spec.options.limits.workers;
    let printer = Arc::new(output::EventPrinter::new(
        out.verbose,
        args.dry_run,
        out.json,
    ));
    let stats = Arc::new(blit_core::Stats::default());
    let bars = out
        .progress
        .then(|| progress::Progress::start(stats.clone()));
    let result = match (&spec.source, &spec.destination) {
        (Endpoint::Local(_), Endpoint::Local(_)) => Transfer::with_stats(spec, stats)
            .run(&*printer)
            .map_err(anyhow::Error::from),
        _ => remote::RemoteTransfer {
            spec: &spec,
            data: DataOptions {
                streams: args.streams,
                force_grpc: args.force_grpc,
            },
            remote: &args.remote,
            stats,
            observer: printer.clone(),
        }
        .run(),
    };
    if let Some(bars) = bars {
        bars.finish();
    }
    let report = result?;
    if out.json {
        output::json(&report);
    }
    output::summary(&report, &args.source, &args.destination);
    if out.history {
        history::record(&history::Record::from_report(&report, workers));
    }
    Ok(if report.is_partial() {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}

/// Destructive runs ask first on a terminal; without one they need `--yes`.
fn confirm(mode: Mode) -> anyhow::Result<()> {
    let what = match mode {
        Mode::Copy => return Ok(()),
        Mode::Mirror => "mirror deletes destination entries that are not in the source",
        Mode::Move => "move removes source files once their copies are confirmed",
    };
    confirm_with(what)
}

/// Asks "Continue?" about `what` on a terminal; without one, refuses (the caller's
/// `--yes` skips the question).
pub fn confirm_with(what: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("{what}; pass --yes to confirm (there is no terminal to ask on)");
    }
    eprint!("blit: {what}. Continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("cancelled; nothing was changed")
    }
}
