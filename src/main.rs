use std::process::ExitCode;

use clap::Parser;
use tollgate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tollgate::app::init_logging();
    let result = match cli.command {
        None => tollgate::app::run(cli.run),
        Some(Command::Run(args)) => tollgate::app::run(args),
        Some(Command::Check(args)) => return tollgate::check::run(&args),
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
