//! LMFast's Rust core. Pure-Rust kernels live in their own modules and are tested with
//! `cargo test`; `python.rs` is the thin PyO3 layer, compiled only with the `python` feature.

pub mod bpe;
pub mod filters;
pub mod hashing;
pub mod jsonl;
pub mod minhash;
pub mod pipeline;
pub mod repetition;
pub mod text;
pub mod tokenize;
pub mod words;

#[cfg(feature = "python")]
mod python;
