#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod config;
mod error;
pub mod escaped;
pub mod handlers;
pub mod metrics;
pub mod readiness;
pub mod serve;

pub use app::{AppState, app};
pub use error::ServerError;
pub use serve::run;
