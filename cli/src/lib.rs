//! `blit-cli`: the `blit` command. Parses arguments (`args`), turns them into an engine
//! spec (`options`), runs the transfer, and presents it (`progress`, `output`,
//! `history`). `main.rs` only maps the result to an exit code.

pub mod args;
pub mod history;
pub mod options;
pub mod output;
pub mod progress;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use blit_core::{Mode, Transfer};
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
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut args::command(), "blit", &mut std::io::stdout());
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
    let workers = spec.limits.workers;
    let transfer = Transfer::new(spec);
    let bars = out
        .progress
        .then(|| progress::Progress::start(transfer.stats()));
    let printer = output::EventPrinter::new(out.verbose, args.dry_run, out.json);
    let result = transfer.run(&printer);
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
