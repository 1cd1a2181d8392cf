//! How much memory a training needs, estimated before anything is allocated, so that a
//! size no machine can hold (`--n-embed 100000000`, `--block-size 200000`) is refused
//! with one line naming the flags, instead of filling the RAM until the kernel kills the
//! process. The estimate errs high on purpose; it only has to catch the hopeless cases.

use crate::layers::Config;
use crate::models::ModelKind;
use anyhow::{bail, Result};

/// Trainable parameters of `kind` at `cfg`, from docs/MODELS.md's shapes (no model built).
pub fn parameters(kind: ModelKind, cfg: &Config) -> f64 {
    let (v, c, h, t, l) = (cfg.vocab_size as f64, cfg.n_embed as f64, cfg.num_heads as f64, cfg.block_size as f64, cfg.block_layers as f64);
    let w = (cfg.n_embed / cfg.num_heads.max(1)) as f64 * h; // C' = (C/H)*H
    let (embed, pos, fc) = (v * c, t * c, c * v + v);
    let ff1 = c * c + c;
    let ff2 = c * 4.0 * c + 4.0 * c + 4.0 * c * c + c;
    let heads = 3.0 * c * w;
    let proj = w * w + w;
    let ln = 2.0 * c;
    match kind {
        ModelKind::V1 => v * v,
        ModelKind::V2 => embed + fc,
        ModelKind::V3 => embed + pos + fc,
        ModelKind::V4 => embed + pos + fc + 3.0 * c * c,
        ModelKind::V5 => embed + pos + fc + heads + proj,
        ModelKind::V6 => embed + pos + fc + heads + proj + ff1,
        ModelKind::V7 => embed + pos + fc + 3.0 * (heads + ff1) + ff1,
        ModelKind::V8 => embed + pos + fc + 3.0 * (heads + proj + ff2) + ff1,
        ModelKind::V9 => embed + pos + fc + 3.0 * (heads + proj + ff2 + 2.0 * ln) + ln + ff1,
        ModelKind::V10 => embed + pos + fc + l * (heads + proj + ff2 + 2.0 * ln) + ln + ff1,
    }
}

/// Bytes one training step of `kind` may hold: parameters, gradients and AdamW's two
/// moments (fp32), plus the activations autograd keeps (generously: 24 values per
/// token and channel per layer, the vocabulary-wide logits, and 4 `[T, T]` score tensors
/// per head and layer).
pub fn training_bytes(kind: ModelKind, cfg: &Config, batch_size: i64) -> f64 {
    let tokens = batch_size as f64 * cfg.block_size as f64;
    let layers = match kind {
        ModelKind::V1 | ModelKind::V2 | ModelKind::V3 => 1.0,
        ModelKind::V4 | ModelKind::V5 | ModelKind::V6 => 2.0,
        ModelKind::V7 | ModelKind::V8 | ModelKind::V9 => 4.0,
        ModelKind::V10 => cfg.block_layers as f64 + 1.0,
    };
    let heads = if kind >= ModelKind::V4 { cfg.num_heads as f64 * (layers - 1.0) } else { 0.0 };
    let activations =
        tokens * (24.0 * cfg.n_embed as f64 * layers + 4.0 * cfg.vocab_size as f64) + 4.0 * heads * tokens * cfg.block_size as f64;
    4.0 * (4.0 * parameters(kind, cfg) + activations)
}

/// Memory this process may use: the smaller of MemAvailable and the cgroup's limit.
pub fn available_bytes() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<f64>().ok());
    Some(cgroup.map_or(kb * 1024.0, |c| c.min(kb * 1024.0)))
}

/// Refuses a training whose estimate exceeds the memory available (CPU runs; libtorch
/// reports CUDA's own out-of-memory as one line already).
pub fn check_training(models: &[ModelKind], cfg: &Config, batch_size: i64) -> Result<()> {
    let Some(available) = available_bytes() else { return Ok(()) };
    for &kind in models {
        let need = training_bytes(kind, cfg, batch_size);
        if need > available {
            bail!(
                "{kind} at these sizes needs about {:.1} GB to train, more than the {:.1} GB available; use a smaller --batch-size, --block-size or --n-embed",
                need / 1e9,
                available / 1e9
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Model;
    use tch::Device;

    /// The analytic count is the built models' count, for several sizes.
    #[test]
    fn parameters_match_the_built_models() {
        let _rng = crate::rng_lock();
        for (v, c, h, t, l) in [(84, 128, 4, 64, 4), (30, 32, 4, 16, 2), (11, 12, 3, 5, 1)] {
            let cfg = Config { vocab_size: v, n_embed: c, num_heads: h, block_size: t, block_layers: l, dropout: 0.1 };
            for kind in ModelKind::ALL {
                let built = Model::new(kind, &cfg, Device::Cpu).unwrap().num_parameters() as f64;
                assert_eq!(parameters(kind, &cfg), built, "{kind} at {cfg:?}");
            }
        }
    }

    #[test]
    fn hopeless_sizes_are_refused_and_ordinary_ones_pass() {
        let cfg = |c, t| Config { vocab_size: 84, n_embed: c, num_heads: 4, block_size: t, block_layers: 4, dropout: 0.2 };
        check_training(&ModelKind::ALL, &cfg(128, 64), 32).unwrap();
        let err = check_training(&[ModelKind::V2], &cfg(100_000_000, 64), 32).unwrap_err().to_string();
        assert!(err.contains("GB to train") && err.contains("--n-embed"), "{err}");
        assert!(check_training(&[ModelKind::V10], &cfg(128, 200_000), 8).is_err());
    }
}
