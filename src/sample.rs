//! Generation (docs/MODELS.md, "Generation"): one `multinomial` draw per character.

use crate::models::Model;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use tch::{Kind, Tensor};

/// The token the blog starts generating from when there is no prompt.
pub const START_TOKEN: i64 = 1;

/// The most characters one sample may ask for: a day of generation on a fast GPU, far
/// below what the token list (8 bytes a character) could not hold.
pub const MAX_CHARS: usize = 100_000_000;

/// Refuses a sample length beyond [`MAX_CHARS`] (`flag` names where it came from).
pub fn check_chars(flag: &str, chars: usize) -> anyhow::Result<()> {
    if chars > MAX_CHARS {
        bail!("{flag} {chars} is more than the {MAX_CHARS} characters one sample may have; ask for fewer");
    }
    Ok(())
}

/// How the next character is chosen from the last position's logits. The default is the
/// blog's: softmax and one `multinomial` draw, nothing else (so the same seed draws the
/// same characters as the PyTorch reference).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Take the most likely character instead of drawing one (no random numbers used).
    pub greedy: bool,
    /// Divide the logits by this before the softmax (below 1: more conservative).
    pub temperature: f64,
    /// Draw only among the k most likely characters (nanoGPT's `top_k`).
    pub top_k: Option<i64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { greedy: false, temperature: 1.0, top_k: None }
    }
}

impl Sampling {
    /// The next token `[1, 1]` from the last position's logits `[1, V]`.
    fn next(&self, logits: &Tensor) -> Tensor {
        if self.greedy {
            return logits.argmax(-1, true);
        }
        // Only when asked: dividing by 1 is exact, but no op at all is the blog's code.
        let mut logits = if self.temperature != 1.0 { logits / self.temperature } else { logits.shallow_clone() };
        if let Some(k) = self.top_k {
            let k = k.min(logits.size()[1]);
            let (top, _) = logits.topk(k, -1, true, true);
            logits = logits.masked_fill(&logits.lt_tensor(&top.narrow(1, k - 1, 1)), f64::NEG_INFINITY);
        }
        logits.softmax(-1, Kind::Float).multinomial(1, false)
    }
}

/// Extends `context` by `n` tokens, calling `emit` with each one as soon as it is drawn;
/// `emit` returning `ControlFlow::Break` stops early (Ctrl-C, a closed pipe).
/// V1/V2 see the whole context; V3..V10 only its last `block_size` tokens. On the CPU it
/// computes with one thread (`crate::device::OneThread`).
pub fn generate(model: &Model, context: &[i64], n: usize, sampling: Sampling, mut emit: impl FnMut(i64) -> ControlFlow<()>) -> Vec<i64> {
    let device = model.device();
    let _one_thread = (!device.is_cuda()).then(crate::device::OneThread::enter);
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
            let next = sampling.next(&last);
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

/// Extends `context` until the drawn tokens decode to `chars` characters (cut there:
/// a BPE token may hold several), passing `emit` each piece of text as soon as its
/// characters are complete. With `char` that is exactly `chars` draws, the blog's
/// `generate(idx, max_new_tokens)`. Returns the text, or None when `emit` stopped it.
pub fn generate_text(
    model: &Model,
    tokenizer: &Tokenizer,
    context: &[i64],
    chars: usize,
    sampling: Sampling,
    mut emit: impl FnMut(&str) -> ControlFlow<()>,
) -> Option<String> {
    let mut text = String::new();
    let mut produced = 0;
    if chars == 0 {
        return Some(text);
    }
    let mut stream = tokenizer.stream();
    let mut stopped = false;
    generate(model, context, usize::MAX, sampling, |token| {
        let piece: String = stream.push(token).chars().take(chars - produced).collect();
        produced += piece.chars().count();
        text.push_str(&piece);
        let flow = if piece.is_empty() { ControlFlow::Continue(()) } else { emit(&piece) };
        if produced == chars {
            return ControlFlow::Break(()); // done, whatever `emit` said of the last piece
        }
        stopped = flow.is_break();
        flow
    });
    (!stopped).then_some(text)
}

/// The context a sample starts from: the prompt's tokens, or the blog's token 1 (token 0
/// for a one-character vocabulary). A prompt that encodes to no token is refused.
pub fn start_context(tokenizer: &Tokenizer, prompt: Option<&str>) -> anyhow::Result<Vec<i64>> {
    match prompt {
        Some(p) if !p.is_empty() => {
            let tokens = tokenizer.encode(p).context("the prompt cannot be encoded")?;
            if tokens.is_empty() {
                bail!("the prompt {p:?} encodes to no token; give a prompt with text in it, or none to start from token {START_TOKEN}");
            }
            Ok(tokens)
        }
        _ => Ok(vec![START_TOKEN.min(tokenizer.len() as i64 - 1)]),
    }
}

/// What [`stream`] draws: `samples` samples of `chars` characters each, drawn as
/// `sampling` says, and whether a newline ends the output.
#[derive(Clone, Copy, Debug)]
pub struct Draws {
    pub chars: usize,
    pub samples: usize,
    pub sampling: Sampling,
    pub end_with_newline: bool,
}

/// `chargpt generate`: `samples` continuations of the prompt (or of token 1), each written
/// character by character as it is drawn, separated by a line of dashes as nanoGPT's
/// sample.py does; a closed output (`| head -c 5`) stops the generation at once.
pub fn stream(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: Option<&str>,
    draws: Draws,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let Draws { chars: n, samples, sampling, end_with_newline } = draws;
    let context = start_context(tokenizer, prompt)?;
    let failed = std::cell::RefCell::new(None);
    let mut emit = |text: &str| match write!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            *failed.borrow_mut() = Some(e);
            ControlFlow::Break(())
        }
    };
    for i in 0..samples {
        if (i > 0 && emit("\n---------------\n").is_break()) || emit(prompt.unwrap_or("")).is_break() {
            break;
        }
        generate_text(model, tokenizer, &context, n, sampling, &mut emit);
        if failed.borrow().is_some() {
            break;
        }
    }
    if failed.borrow().is_none() && end_with_newline {
        let _ = emit("\n");
    }
    match failed.into_inner() {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// What `--like-training` needs to know of the run a model was trained in (its run.json).
pub struct TrainedIn {
    /// The run's steps: the model must have finished them to have a training sample.
    pub steps: i64,
    /// The kind of device it was trained, and so sampled, on.
    pub device: crate::device::DeviceKind,
}

/// For `generate --like-training`: puts the generators where they stood when `train` drew
/// the sample of the model whose weights are `weights` (RUN/vN.safetensors), from the
/// resume file kept beside them. The sample must be drawn on the kind of device it was
/// trained on (`device`): a CUDA run's sample drew from the GPU's generator, a CPU run's
/// from the CPU's.
pub fn restore_sampling_generator(weights: &Path, device: tch::Device, run: &TrainedIn) -> anyhow::Result<()> {
    let dir = crate::checkpoint::folder_of(weights);
    let stem = weights.file_stem().and_then(|s| s.to_str()).context("the checkpoint has no file name")?;
    let resume = dir.join(format!("{stem}.resume.safetensors"));
    let (tensors, meta) = crate::checkpoint::read_safetensors(&resume)
        .with_context(|| format!("--like-training needs {} (the run's state after its last step)", resume.display()))?;
    let state: crate::resume::ResumeState = serde_json::from_str(meta.get("chargpt_resume").context("no chargpt_resume metadata")?)?;
    if state.steps_done < run.steps {
        bail!(
            "{} is from step {} of {}: the model has not finished training, so it has no training sample yet",
            resume.display(),
            state.steps_done,
            run.steps
        );
    }
    if crate::device::DeviceKind::of(device) != run.device {
        bail!(
            "--like-training: this model was trained and sampled on {}, so its sample drew from that device's generator; pass --device {0}",
            run.device
        );
    }
    let rng: HashMap<String, Tensor> = tensors.into_iter().filter(|(n, _)| n.starts_with("rng/")).collect();
    crate::resume::restore_generators(&resume, &rng, device, true).context("--like-training needs every generator the sample drew from")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Config;
    use crate::model_kind::ModelKind;

    /// Generation on the CPU computes with one thread, and gives the others back after.
    #[test]
    fn generation_uses_one_thread_and_restores_the_count() {
        let _rng = crate::rng_lock();
        let cfg = Config { vocab_size: 10, n_embed: 8, num_heads: 2, block_size: 4, block_layers: 1, dropout: 0.0 };
        let model = Model::new(ModelKind::V10, &cfg, tch::Device::Cpu).unwrap();
        let before = tch::get_num_threads();
        tch::set_num_threads(2);
        let mut during = Vec::new();
        generate(&model, &[1], 5, Sampling::default(), |_| {
            during.push(tch::get_num_threads());
            ControlFlow::Continue(())
        });
        let after = tch::get_num_threads();
        tch::set_num_threads(before);
        assert_eq!(during, vec![1; 5]);
        assert_eq!(after, 2);
    }
}
