//! How much memory a training needs, estimated before anything is allocated, so that a
//! size no machine can hold (`--n-embed 100000000`, `--block-size 200000`) is refused
//! with one line naming the flags, instead of filling the RAM until the kernel kills the
//! process. The estimate errs high on purpose; it only has to catch the hopeless cases.

use crate::layers::Config;
use crate::model_kind::ModelKind;
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

/// Free memory of the current CUDA device, asked of the CUDA runtime that libtorch has
/// loaded (looked up among the loaded libraries, never loaded anew); None without one.
pub fn cuda_free_bytes() -> Option<f64> {
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    for name in [c"libcudart.so.13", c"libcudart.so.12"] {
        // SAFETY: RTLD_NOLOAD only finds a library already loaded (nothing is initialised);
        // the symbol, when present, is the runtime API's `cudaError_t cudaMemGetInfo(size_t*,
        // size_t*)`, called with two valid pointers; the handle is closed once.
        unsafe {
            let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
            if handle.is_null() {
                continue;
            }
            let symbol = libc::dlsym(handle, c"cudaMemGetInfo".as_ptr());
            let free = (!symbol.is_null()).then(|| {
                let mem_get_info: MemGetInfo = std::mem::transmute(symbol);
                let (mut free, mut total) = (0usize, 0usize);
                (mem_get_info(&mut free, &mut total) == 0).then_some(free as f64)
            });
            libc::dlclose(handle);
            return free.flatten();
        }
    }
    None
}

/// Refuses a training whose estimate exceeds the memory available: the RAM (and cgroup
/// limit) for a CPU run, the GPU's free memory for a CUDA run, so that neither the
/// kernel's OOM killer nor a CUDA out-of-memory halfway through a run is the answer.
pub fn check_training(models: &[ModelKind], cfg: &Config, batch_size: i64, device: tch::Device) -> Result<()> {
    match device.is_cuda() {
        true => check_against(models, cfg, batch_size, cuda_free_bytes(), "free on the GPU"),
        false => check_against(models, cfg, batch_size, available_bytes(), "available"),
    }
}

/// Bytes a built model holds: its parameters and, in each head, its `[T, T]` causal mask
/// (an upper bound: one per head of every block, V4's included).
pub fn model_bytes(kind: ModelKind, cfg: &Config) -> f64 {
    let blocks = (cfg.block_layers.max(3) + 1) as f64;
    4.0 * parameters(kind, cfg) + 4.0 * (cfg.block_size as f64).powi(2) * cfg.num_heads.max(1) as f64 * blocks
}

/// Refuses, before a tensor is made, a checkpoint whose recorded sizes (`source`: its
/// JSON) would not fit in the memory of `device`.
pub fn check_model(kind: ModelKind, cfg: &Config, device: tch::Device, source: &std::path::Path) -> Result<()> {
    let available = if device.is_cuda() { cuda_free_bytes() } else { available_bytes() };
    let need = model_bytes(kind, cfg);
    match available {
        Some(available) if need > available => bail!(
            "{}: its sizes (block_size {}, n_embed {}, vocab_size {}) make a {kind} of about {:.1} GB, more than the {:.1} GB available; the file is damaged or not chargpt's",
            source.display(),
            cfg.block_size,
            cfg.n_embed,
            cfg.vocab_size,
            need / 1e9,
            available / 1e9
        ),
        _ => Ok(()),
    }
}

/// [`check_training`] against `available` bytes (None: unknown, nothing refused).
fn check_against(models: &[ModelKind], cfg: &Config, batch_size: i64, available: Option<f64>, what: &str) -> Result<()> {
    let Some(available) = available else { return Ok(()) };
    for &kind in models {
        let need = training_bytes(kind, cfg, batch_size);
        if need > available {
            bail!(
                "{kind} at these sizes needs about {:.1} GB to train, more than the {:.1} GB {what}; use a smaller --batch-size, --block-size or --n-embed",
                need / 1e9,
                available / 1e9
            );
        }
    }
    Ok(())
}

/// `chargpt models`: the sizes, then each model's parameter count and what it adds.
pub fn print_table(cfg: &Config, models: &[ModelKind]) -> Result<()> {
    println!("V={} C={} H={} Tmax={} L={}", cfg.vocab_size, cfg.n_embed, cfg.num_heads, cfg.block_size, cfg.block_layers);
    println!("{:<5} {:>12}  adds", "model", "parameters");
    for &kind in models {
        crate::model_kind::validate(kind, cfg)?;
        // Counted, not built: a table of huge sizes costs nothing.
        println!("{:<5} {:>12}  {}", kind.to_string(), parameters(kind, cfg) as i64, kind.adds());
    }
    Ok(())
}

/// `chargpt models --markdown`: the README's table, each model's parameters at each of
/// `sizes` (a column per named configuration), with thousands separators.
pub fn print_markdown_table(models: &[ModelKind], sizes: &[(&str, Config)]) -> Result<()> {
    let names: Vec<&str> = sizes.iter().map(|(name, _)| *name).collect();
    println!("| model | adds over its predecessor | {} |", names.join(" | "));
    println!("| --- | --- |{}", " ---: |".repeat(sizes.len()));
    for &kind in models {
        let mut counts = Vec::new();
        for (_, cfg) in sizes {
            crate::model_kind::validate(kind, cfg)?;
            counts.push(thousands(parameters(kind, cfg) as i64));
        }
        println!("| V{} | {} | {} |", kind.number(), kind.adds(), counts.join(" | "));
    }
    Ok(())
}

/// 5626068 as "5,626,068".
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
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
        let cpu = tch::Device::Cpu;
        check_training(&ModelKind::ALL, &cfg(128, 64), 32, cpu).unwrap();
        let err = check_training(&[ModelKind::V2], &cfg(100_000_000, 64), 32, cpu).unwrap_err().to_string();
        assert!(err.contains("GB to train") && err.contains("--n-embed"), "{err}");
        assert!(check_training(&[ModelKind::V10], &cfg(128, 200_000), 8, cpu).is_err());
    }

    /// On a GPU the same rule holds against its free memory: the blog preset fits an
    /// 80 GB card with 79 GB free, and not one with 1 GB free, which the message names.
    #[test]
    fn on_a_gpu_the_estimate_is_held_against_its_free_memory() {
        let blog = Config { vocab_size: 84, n_embed: 384, num_heads: 6, block_size: 256, block_layers: 6, dropout: 0.3 };
        check_against(&ModelKind::ALL, &blog, 64, Some(79e9), "free on the GPU").unwrap();
        let err = check_against(&ModelKind::ALL, &blog, 64, Some(1e9), "free on the GPU").unwrap_err().to_string();
        assert!(err.contains("GB free on the GPU") && err.contains("--batch-size"), "{err}");
        check_against(&ModelKind::ALL, &blog, 1 << 40, None, "free on the GPU").unwrap();
        if !tch::Cuda::is_available() {
            assert_eq!(cuda_free_bytes(), None, "no GPU, no CUDA runtime answer");
        }
    }
}
