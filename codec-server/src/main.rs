//! The `tcodec` binary.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tcodec_server::config::{Config, LogFormat};
use tcodec_server::metrics::Endpoint;
use tracing_subscriber::EnvFilter;

mod cli;
mod codec_cmd;
mod keys_cmd;

fn main() -> ExitCode {
    // The binary alone picks the TLS crypto provider (aws-lc-rs).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Keys(args) => keys_cmd::run(args),
        cli::Command::Encode(args) => codec_cmd::run(args, Endpoint::Encode),
        cli::Command::Decode(args) => codec_cmd::run(args, Endpoint::Decode),
        cli::Command::Serve { config } => serve(&config),
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

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let filter = EnvFilter::try_new(&config.log.level).with_context(|| {
        format!(
            "config field `log.level`: {:?} is not a valid filter",
            config.log.level
        )
    })?;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => subscriber.json().flatten_event(true).init(),
        LogFormat::Text => subscriber.init(),
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(tcodec_server::server::run(config))
}
