//! The tcodec codec server: answers the Temporal Web UI's and CLI's `POST …/encode`
//! and `POST …/decode` requests with [`tcodec::Codec`], per namespace, behind SSO.
//!
//! Built so far: the codec protocol's JSON ([`json`]), used by `tcodec encode`
//! and `tcodec decode`. The HTTP server follows.
#![forbid(unsafe_code)]

pub mod json;
