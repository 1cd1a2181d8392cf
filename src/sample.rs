//! Generation (docs/MODELS.md, "Generation"): one `multinomial` draw per character.

use crate::models::Model;
use std::ops::ControlFlow;
use tch::{Kind, Tensor};

/// The token the blog starts generating from when there is no prompt.
pub const START_TOKEN: i64 = 1;

/// Extends `context` by `n` tokens, calling `emit` with each one as soon as it is drawn;
/// `emit` returning `ControlFlow::Break` stops early (Ctrl-C, a closed pipe).
/// V1/V2 see the whole context; V3..V10 only its last `block_size` tokens.
/// `greedy` takes the argmax instead of drawing (no random numbers are used then).
pub fn generate(model: &Model, context: &[i64], n: usize, greedy: bool, mut emit: impl FnMut(i64) -> ControlFlow<()>) -> Vec<i64> {
    let device = model.device();
    let mut tokens = context.to_vec();
    let mut idx = Tensor::from_slice(context).view([1, -1]).to_device(device);
    tch::no_grad(|| {
        for _ in 0..n {
            let t = idx.size()[1];
            let window = if model.kind.is_position_free() || t <= model.cfg.block_size {
                idx.shallow_clone()
            } else {
                idx.narrow(1, t - model.cfg.block_size, model.cfg.block_size)
            };
            let logits = model.forward(&window, false);
            let last = logits.select(1, -1);
            let next = if greedy { last.argmax(-1, true) } else { last.softmax(-1, Kind::Float).multinomial(1, false) };
            let token = next.int64_value(&[0, 0]);
            tokens.push(token);
            idx = Tensor::cat(&[idx, next], 1);
            if emit(token).is_break() {
                break;
            }
        }
    });
    tokens
}
