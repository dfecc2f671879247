//! The tcodec codec server: answers the Temporal Web UI's and CLI's `POST …/encode`
//! and `POST …/decode` requests with [`tcodec::Codec`], per namespace, behind SSO.
//!
//! [`routes::app`] is the router (tests call it in-process); [`server::serve`]
//! puts it on a socket with TLS and graceful shutdown; [`config::Config`] is the
//! TOML configuration.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod json;
pub mod metrics;
pub mod routes;
pub mod server;
