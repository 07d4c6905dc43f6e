use std::process::ExitCode;

use clap::Parser;
use tollgate::cli::{Cli, Command};

mod allocator;

/// mimalloc: the proxy allocates per request and per reload from many threads; glibc's
/// arenas contend and fragment under that load.
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tollgate::app::init_logging();
    let result = match cli.command {
        None => tollgate::app::run(cli.run),
        Some(Command::Run(args)) => tollgate::app::run(args),
        Some(Command::Check(args)) => return tollgate::check::run(&args),
        Some(Command::Explain(args)) => return tollgate::explain::run(&args),
        Some(Command::Health(args)) => return tollgate::health::run(&args),
        Some(Command::Demo(args)) => tollgate::demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
