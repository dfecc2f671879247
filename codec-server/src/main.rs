//! The `tcodec` binary.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod codec_cmd;
mod keys_cmd;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Keys(args) => keys_cmd::run(args),
        cli::Command::Encode(args) => codec_cmd::run(args, codec_cmd::Direction::Encode),
        cli::Command::Decode(args) => codec_cmd::run(args, codec_cmd::Direction::Decode),
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
