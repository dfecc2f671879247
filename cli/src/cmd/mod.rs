//! One module per command group.

pub mod codec;
pub mod keys;
pub mod serve;
