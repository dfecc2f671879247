#![doc = include_str!("../README.md")]
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
pub use file::{
    FileKeyring, InMemory, KEYRING_ENV, WATCH_INTERVAL, Watcher, keyring_path_from_env,
};
pub use key::{DataKey, LegacyKey, SecretBytes32};
pub use key_id::{InvalidKeyId, KeyId};
pub use memory::MemoryKeyring;
pub use source::{KeySource, KeyState, Transition};
