#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod base64;
mod model;
mod process;
mod writer;

pub use model::{ExternalJson, PayloadJson, PayloadsJson, Str};
pub use process::{
    Answer, Direction, Limits, PayloadError, ProcessError, References, Storage, Stored, process,
    process_with, references,
};
pub use writer::WriteError;
