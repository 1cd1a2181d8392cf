//! chargpt: the ten character-level language models of the blog post, V1 (bigram) to
//! V10 (a small GPT), on libtorch. The module tree follows the ideas:
//! data (text → tokens → batches), layers, models, optimiser, training, sampling,
//! checkpoints, and the pieces the CLI needs.

pub mod app;
pub mod arithmetic;
pub mod checkpoint;
pub mod config;
pub mod cpu_share;
pub mod cuda_graph;
pub mod data;
pub mod device;
pub mod eval;
pub mod fast;
pub mod ffi;
pub mod floor;
pub mod footprint;
pub mod fused;
pub mod layers;
pub mod memory;
pub mod model_kind;
pub mod models;
pub mod op_count;
pub mod optim;
pub mod panics;
pub mod parity;
pub mod plot;
pub mod presets;
pub mod progress;
pub mod resume;
pub mod rng;
pub mod run_dir;
pub mod sample;
pub mod seeds;
pub mod test_hooks;
pub mod tokenizer;
pub mod train;

pub mod bench;
pub mod precision;

/// The generator lock ([`rng::lock`]) for the unit tests.
#[cfg(test)]
pub(crate) fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    rng::lock()
}
