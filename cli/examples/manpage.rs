//! Writes `blit.1` (and one page per subcommand) from the clap definitions.
//! Run through `hack/gen-man.sh`.

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map_or_else(|| std::path::PathBuf::from("target/man"), Into::into);
    std::fs::create_dir_all(&out)?;
    clap_mangen::generate_to(blit_cli::args::command(), &out)?;
    println!("man pages written to {}", out.display());
    Ok(())
}
