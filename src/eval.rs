//! Measuring a model: the blog's `estimate_loss` (random batches, what training prints)
//! and the deterministic loss over a whole split (what `chargpt eval` prints and what
//! compares implementations).

use crate::data::{Dataset, Split};
use crate::models::Model;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::Tensor;

/// The blog's `estimate_loss`: dropout off, for train then val, the mean loss of
/// `eval_steps` fresh random batches.
pub fn estimate_loss(model: &Model, data: &Dataset, batch_size: i64, eval_steps: i64) -> (f64, f64) {
    estimate_loss_unless_stopped(model, data, batch_size, eval_steps, None).expect("no stop flag, no stop")
}

/// [`estimate_loss`] that gives up (None) between batches once `stop` is set.
pub(crate) fn estimate_loss_unless_stopped(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    eval_steps: i64,
    stop: Option<&AtomicBool>,
) -> Option<(f64, f64)> {
    tch::no_grad(|| {
        let mean = |split| {
            let mut sum = 0.0;
            for _ in 0..eval_steps {
                let (x, y) = data.batch(split, batch_size, model.cfg.block_size, model.device());
                sum += model.loss(&x, &y, false).double_value(&[]);
                if stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                    return None;
                }
            }
            Some(sum / eval_steps as f64)
        };
        let train = mean(Split::Train)?;
        Some((train, mean(Split::Val)?))
    })
}

/// Whether the blog evaluates after step `s` (counted from 0): s = k * eval_every, k >= 1.
pub fn evaluates_after(s: i64, eval_every: i64) -> bool {
    s % eval_every == 0 && s >= eval_every
}

/// Deterministic loss over a split: consecutive non-overlapping windows of block_size
/// (the last, shorter one included), dropout off, averaged over every predicted token.
/// No random numbers: the number to compare across implementations.
pub fn deterministic_loss(model: &Model, data: &Tensor, windows_per_batch: i64, progress: Option<&str>) -> f64 {
    let t = model.cfg.block_size;
    let n = data.size()[0];
    let full = (n - 1) / t;
    let mut bar = Progress::new(progress.unwrap_or("eval"), full as u64, 0, "windows", progress.is_some());
    // One window at a time is a chain of small serial ops, as generation is: one thread.
    let _one_thread = (windows_per_batch == 1 && !model.device().is_cuda()).then(crate::device::OneThread::enter);
    let mut total = 0.0f64;
    let mut count = 0i64;
    tch::no_grad(|| {
        let mut add = |x: Tensor, y: Tensor| {
            let logits = model.forward(&x.to_device(model.device()), false);
            let v = logits.size()[2];
            let loss = logits.view([-1, v]).cross_entropy_loss::<Tensor>(
                &y.to_device(model.device()).view([-1]),
                None,
                tch::Reduction::Sum,
                -100,
                0.0,
            );
            total += loss.double_value(&[]);
            count += y.numel() as i64;
        };
        let mut start = 0;
        while start < full {
            let b = windows_per_batch.min(full - start);
            let x = data.narrow(0, start * t, b * t).view([b, t]);
            let y = data.narrow(0, start * t + 1, b * t).view([b, t]);
            add(x, y);
            start += b;
            bar.update(start as u64, None);
        }
        bar.finish();
        let rest = n - 1 - full * t;
        if rest > 0 {
            add(data.narrow(0, full * t, rest).view([1, rest]), data.narrow(0, full * t + 1, rest).view([1, rest]));
        }
    });
    total / count as f64
}

/// `chargpt eval`: the [`deterministic_loss`] of `model` on each of `splits` of the text
/// at `data`, encoded with the model's tokenizer (with `char`, it must have the model's
/// characters), and its bits per character: exact, from the characters the predicted
/// tokens decode to.
pub fn print_deterministic_losses(
    model: &Model,
    tokenizer: crate::data::Tokenizer,
    data: &std::path::Path,
    splits: &[Split],
    batch_windows: i64,
) -> Result<()> {
    if batch_windows <= 0 {
        bail!("--batch-windows must be positive, got {batch_windows}");
    }
    let text = crate::data::read_text(data)?;
    let data = Dataset::with_tokenizer(tokenizer, &text)
        .with_context(|| format!("{} does not fit this checkpoint's vocabulary", data.display()))?;
    data.check_block_size(1).map_err(|e| anyhow::anyhow!("{e}; use a longer text"))?;
    for &split in splits {
        let label = format!("{} {}", model.kind, split.name());
        let loss = deterministic_loss(model, data.split(split), batch_windows, Some(&label));
        let tokens = data.split(split).size()[0] - 1;
        let bits = crate::data::bits_per_char(loss, data.predicted_chars(split) as f64 / tokens as f64);
        crate::say!("{} {} loss {loss:.6}", model.kind, split.name());
        crate::say!("{} {} bits per character {bits:.6}", model.kind, split.name());
    }
    Ok(())
}
