#![doc = include_str!("../README.md")]

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cmd;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        // `history check` has exit statuses of its own.
        cli::Command::History { command } => return cmd::history::run(command),
        cli::Command::Keys(args) => cmd::keys::run(args),
        cli::Command::Encode(args) => cmd::codec::run(args, tcodec_json::Direction::Encode),
        cli::Command::Decode(args) => cmd::codec::run(args, tcodec_json::Direction::Decode),
        cli::Command::Serve { config } => cmd::serve::run(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line.
            eprintln!("tcodec: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
