//! One module per command group.

pub mod codec;
pub mod history;
pub mod keys;
pub mod serve;
