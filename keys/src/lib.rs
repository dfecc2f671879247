//! Key management for tcodec.
//!
//! This crate owns everything about *which* key protects a payload: key ids, the
//! data-encryption keys (DEKs) themselves, their lifecycle states, and the
//! [`KeySource`] trait through which the codec asks for them. It does no payload
//! cryptography; that lives in the `tcodec` crate.
//!
//! Key material is held in [`DataKey`] and [`LegacyKey`], which zeroize their
//! bytes on drop and never print them in `Debug` output.
#![forbid(unsafe_code)]

pub mod document;
mod error;
mod file;
pub mod kek;
mod key;
mod key_id;
mod memory;
pub mod ops;
mod source;
pub mod store;

pub use error::{KeyError, display_chain};
pub use file::{FileKeyring, InMemory, Watcher};
pub use key::{DataKey, LegacyKey, SecretBytes32};
pub use key_id::{InvalidKeyId, KeyId};
pub use memory::MemoryKeyring;
pub use source::{KeySource, KeyState};
