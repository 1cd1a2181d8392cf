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

/// `chargpt generate`: writes the prompt (if any), then each character as it is drawn; a
/// closed output (`| head -c 5`) stops the generation at once.
pub fn stream(
    model: &Model,
    vocab: &crate::data::Vocab,
    prompt: Option<&str>,
    n: usize,
    greedy: bool,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let context = match prompt {
        Some(p) if !p.is_empty() => vocab.encode(p).context("the prompt cannot be encoded")?,
        _ => vec![START_TOKEN.min(vocab.len() as i64 - 1)],
    };
    let mut failed = None;
    let mut emit = |text: &str| match write!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
    };
    if emit(prompt.unwrap_or("")).is_continue() {
        generate(model, &context, n, greedy, |t| emit(&vocab.decode_one(t).to_string()));
    }
    match failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        Some(_) => Ok(()),
        None => {
            writeln!(out).ok();
            Ok(())
        }
    }
}
