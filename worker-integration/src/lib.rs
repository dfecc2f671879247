//! tcodec for Temporal workers: plugs [`tcodec::Codec`] into the Temporal Rust SDK's
//! `PayloadCodec` and `DataConverter`.
//!
//! The SDK integration is not written yet; this crate holds its place in the
//! workspace so that dependencies already point the right way
//! (`keys` ← `codec` ← `worker-integration`).
