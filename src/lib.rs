//! chargpt: the ten character-level language models of the blog post, V1 (bigram) to
//! V10 (a small GPT), on libtorch. The module tree follows the ideas:
//! data (text → tokens → batches), layers, models, optimiser, training, sampling,
//! checkpoints, and the pieces the CLI needs.

pub mod data;
pub mod layers;
pub mod memory;
pub mod fused;
pub mod models;
pub mod checkpoint;
pub mod optim;
pub mod progress;
pub mod rng;
pub mod sample;
pub mod train;
pub mod plot;
pub mod parity;

pub mod bench;
pub mod precision;
