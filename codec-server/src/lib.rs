//! The tcodec codec server: answers the Temporal Web UI's and CLI's `POST …/encode`
//! and `POST …/decode` requests with [`tcodec::Codec`], per namespace, behind SSO.
//!
//! The server itself is not written yet; this crate holds its place in the
//! workspace so that dependencies already point the right way
//! (`keys` ← `codec` ← `codec-server`).
