//! chargpt: the ten character-level language models of the blog post, V1 (bigram) to
//! V10 (a small GPT), on libtorch. The module tree follows the ideas:
//! data (text → tokens → batches), layers, models, optimiser, training, sampling,
//! checkpoints, and the pieces the CLI needs.

pub mod data;
pub mod layers;
pub mod models;
pub mod checkpoint;
pub mod optim;
pub mod progress;
pub mod rng;
pub mod sample;
pub mod train;
pub mod plot;
pub mod parity;

/// libtorch has one global CPU generator: unit tests that replay its stream take turns.
#[cfg(test)]
pub(crate) fn rng_turn() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}
