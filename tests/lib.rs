//! End-to-end tests of tcodec against real components; the tests are in
//! `worker.rs`, their fixtures in `support/`. This library is empty.
#![forbid(unsafe_code)]
