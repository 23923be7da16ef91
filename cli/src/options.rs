//! From parsed arguments to a validated `TransferSpec` plus the CLI's own settings.

use blit_core::{
    Compare, Endpoint, Filter, Limits, Mode, Preserve, Reflink, RuleKind, TransferSpec,
};
use clap::ArgMatches;

use crate::args::{ReflinkArg, TransferArgs};

/// How the CLI presents a run.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub verbose: bool,
    pub json: bool,
    pub progress: bool,
    pub history: bool,
}

/// Builds the engine's spec. `matches` are the subcommand's, used to keep --include and
/// --exclude in the order they were given (first match wins, as in rsync).
pub fn spec(mode: Mode, args: &TransferArgs, matches: &ArgMatches) -> anyhow::Result<TransferSpec> {
    let mut spec = TransferSpec::new(
        Endpoint::parse(args.source.as_os_str()).map_err(anyhow::Error::msg)?,
        Endpoint::parse(args.destination.as_os_str()).map_err(anyhow::Error::msg)?,
    );
    let options = &mut spec.options;
    options.mode = mode;
    options.compare = if args.checksum {
        Compare::Checksum
    } else if args.ignore_times {
        Compare::IgnoreTimes
    } else if args.size_only {
        Compare::SizeOnly
    } else {
        Compare::SizeMtime
    };
    options.filter = filter(matches)?;
    options.preserve = Preserve {
        hard_links: args.hard_links,
        xattrs: args.xattrs,
        owner: !args.no_owner,
    };
    options.limits = Limits {
        workers: args
            .workers
            .map_or_else(blit_core::spec::default_workers, usize::from),
        max_delete: args.max_delete,
        modify_window_ns: (args.modify_window.max(0.0) * 1e9) as u64,
        bandwidth: args.bwlimit,
    };
    options.reflink = match args.reflink {
        ReflinkArg::Auto => Reflink::Auto,
        ReflinkArg::Always => Reflink::Always,
        ReflinkArg::Never => Reflink::Never,
    };
    options.resume = args.resume;
    options.dry_run = args.dry_run;
    Ok(spec)
}

/// The --include/--exclude rules in command-line order.
fn filter(matches: &ArgMatches) -> Result<Filter, blit_core::Error> {
    let mut rules: Vec<(usize, RuleKind, &String)> = Vec::new();
    for (id, kind) in [
        ("include", RuleKind::Include),
        ("exclude", RuleKind::Exclude),
    ] {
        if let (Some(indices), Some(values)) =
            (matches.indices_of(id), matches.get_many::<String>(id))
        {
            rules.extend(indices.zip(values).map(|(i, v)| (i, kind, v)));
        }
    }
    rules.sort_by_key(|(i, _, _)| *i);
    let mut filter = Filter::new();
    for (_, kind, pattern) in rules {
        filter.add(kind, pattern)?;
    }
    Ok(filter)
}

/// Presentation settings; progress defaults to on when stderr is a terminal.
pub fn output(args: &TransferArgs, stderr_is_tty: bool) -> Output {
    Output {
        verbose: args.verbose || args.dry_run,
        json: args.json,
        progress: !args.no_progress && !args.json && (args.progress || stderr_is_tty),
        history: !args.no_history && !args.dry_run,
    }
}
