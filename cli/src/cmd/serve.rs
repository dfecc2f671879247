//! `tcodec serve`: the codec server, configured by a TOML file.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tcodec_server::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config)?;
    // The binary alone picks the TLS crypto provider: aws-lc-rs.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(tcodec_server::run(config, provider))?;
    Ok(())
}

/// Logs to standard error, as text or JSON, filtered by `log.level`.
fn init_logging(config: &Config) -> anyhow::Result<()> {
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
    Ok(())
}
