#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod compress;
mod error;
pub mod legacy;
mod payload;
mod policy;
pub mod storage;
pub mod view;
pub mod wire;
pub mod xaes;

pub use bytes::Bytes;
pub use codec::{
    Codec, CodecOptions, Decoded, Decoder, Encoder, PARALLEL_MIN_BYTES, PayloadParts, Prepared,
    available_threads,
};
pub use compress::{Compression, looks_incompressible};
pub use error::{CodecError, Malformed};
pub use payload::{ExternalPayloadDetails, Payload};
pub use policy::{DecodePolicy, Plaintext};
pub use tcodec_keys as keys;
pub use tcodec_keys::display_chain;
pub use view::PayloadView;
pub use wire::MAX_LAYERS;

/// The repository README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
