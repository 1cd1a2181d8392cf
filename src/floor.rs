//! The matrix-multiply floor of a training step: the step's own GEMMs — the same shapes,
//! transposes and count as its forward and backward — run back to back through the same
//! libtorch with the same threads. No step can be faster than its matmuls; what a step
//! takes above its floor is everything else (softmax, masking, LayerNorm, dropout, the
//! loss, the embeddings' backward, AdamW, allocation).
//!
//! The GEMMs are read off the built model, not kept by hand: every matmul weight of its
//! state dict (a Linear's `[out, in]`; an attention layer's per-head query, key and value
//! weights as the fast path's one fused QKV matmul) and every attention layer's two batched
//! matmuls (found by the heads' `tril` buffers), each forward GEMM with the two of its
//! backward.

use crate::model_kind::ModelKind;
use crate::models::Model;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// `batch` matrix products `[m, k] x [k, n]`, with the operands stored as the step stores
/// them (`a_transposed`: the left operand is held as `[k, m]` and read transposed; likewise
/// `b_transposed` for `[n, k]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub what: String,
    pub batch: i64,
    pub m: i64,
    pub k: i64,
    pub n: i64,
    pub a_transposed: bool,
    pub b_transposed: bool,
}

impl Gemm {
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.k * self.n) as f64
    }

    /// The forward product `[m, k] x [k, n]` and the two its backward computes: the left
    /// operand's gradient `dC x B^T` and the right one's `A^T x dC`.
    fn with_backward(what: &str, batch: i64, m: i64, k: i64, n: i64, b_transposed: bool) -> [Gemm; 3] {
        let g = |what: String, m, k, n, a_transposed, b_transposed| Gemm { what, batch, m, k, n, a_transposed, b_transposed };
        // A stored right operand `[n, k]` (a Linear's weight, the keys) gets its gradient as
        // `dC^T x A`, as libtorch computes a weight's; a computed one as `A^T x dC`.
        let right = if b_transposed {
            g(format!("{what} backward (B)"), n, m, k, true, false)
        } else {
            g(format!("{what} backward (B)"), k, m, n, true, false)
        };
        [g(what.to_string(), m, k, n, false, b_transposed), g(format!("{what} backward (A)"), m, n, k, false, !b_transposed), right]
    }
}

/// The GEMMs of one training step of `model` on batches of `batch_size` sequences of its
/// block size.
pub fn step_gemms(model: &Model, batch_size: i64) -> Vec<Gemm> {
    let cfg = &model.cfg;
    let (tokens, t) = (batch_size * cfg.block_size, cfg.block_size);
    let unused_ff = model.kind >= ModelKind::V7;
    let params = model.named_parameters();
    let mut gemms = Vec::new();
    // An attention layer's heads, by the layer's path: (heads, head width, input width).
    let mut attention: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for (name, p) in &params {
        if p.dim() != 2 || name.contains("embedding") || (unused_ff && name.starts_with("ff.")) {
            continue;
        }
        let (out, inp) = (p.size()[0], p.size()[1]);
        match head_of(name) {
            // A head's query, key or value: counted once per layer, below, as the fused QKV.
            Some((layer, _)) => {
                let e = attention.entry(layer).or_insert((0, out, inp));
                if name.ends_with("query.weight") {
                    e.0 += 1;
                }
            }
            // A Linear: `x [tokens, in] x W^T`.
            None => gemms.extend(Gemm::with_backward(name, 1, tokens, inp, out, true)),
        }
    }
    for (layer, (heads, head_size, width)) in attention {
        gemms.extend(Gemm::with_backward(&format!("{layer} qkv"), 1, tokens, width, 3 * heads * head_size, true));
        let bh = batch_size * heads;
        gemms.extend(Gemm::with_backward(&format!("{layer} scores"), bh, t, head_size, t, true));
        gemms.extend(Gemm::with_backward(&format!("{layer} weighted sum"), bh, t, t, head_size, false));
    }
    gemms
}

/// `(layer, head)` of an attention head's query/key/value weight: V4's
/// `self_attention.query.weight` (one head), or `...self_attention.heads.3.key.weight`.
fn head_of(name: &str) -> Option<(String, String)> {
    let stem = ["query.weight", "key.weight", "value.weight"].iter().find_map(|w| name.strip_suffix(w))?;
    let stem = stem.trim_end_matches('.');
    match stem.rsplit_once(".heads.") {
        Some((layer, head)) => Some((layer.to_string(), head.to_string())),
        None => Some((stem.to_string(), "0".to_string())),
    }
}

/// Seconds to run `gemms` once, back to back (the median of passes filling about
/// `budget_s`, at least 3, after two warm-up passes), with operands of `kind` made once on
/// `device`.
pub fn floor_seconds(gemms: &[Gemm], device: Device, kind: Kind, budget_s: f64) -> f64 {
    if gemms.is_empty() {
        return 0.0; // V1: a lookup table, no matmul
    }
    tch::manual_seed(0);
    // Every GEMM's operands are views of the same two buffers, so they are as hot in the
    // caches as a step's operands, which the op before has just written: with operands of
    // their own, each GEMM would read memory untouched since the last pass, and the floor
    // would count cache misses a step does not have (on the Intel VM, 4 paired runs put
    // V10's floor with separate operands 10% higher in the median).
    let elements = |f: fn(&Gemm) -> i64| gemms.iter().map(f).max().unwrap_or(0);
    let left = Tensor::randn([elements(|g| g.batch * g.m * g.k)], (kind, device));
    let right = Tensor::randn([elements(|g| g.batch * g.k * g.n)], (kind, device));
    let operands: Vec<(Tensor, Tensor)> = gemms
        .iter()
        .map(|g| {
            let shape = |rows: i64, cols: i64, transposed: bool| if transposed { [g.batch, cols, rows] } else { [g.batch, rows, cols] };
            let a = left.narrow(0, 0, g.batch * g.m * g.k).view(shape(g.m, g.k, g.a_transposed));
            let b = right.narrow(0, 0, g.batch * g.k * g.n).view(shape(g.k, g.n, g.b_transposed));
            (a, b)
        })
        .collect();
    let run = || {
        for ((a, b), g) in operands.iter().zip(gemms) {
            let a = if g.a_transposed { a.transpose(1, 2) } else { a.shallow_clone() };
            let b = if g.b_transposed { b.transpose(1, 2) } else { b.shallow_clone() };
            let _ = if g.batch == 1 { a.get(0).mm(&b.get(0)) } else { a.bmm(&b) };
        }
        crate::device::synchronize(device);
    };
    run();
    run();
    let (start, mut times) = (Instant::now(), Vec::new());
    while times.len() < 3 || start.elapsed().as_secs_f64() < budget_s {
        let t0 = Instant::now();
        run();
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Config;

    /// The floor's GEMMs are the step's matmuls: their FLOPs are the analytic FLOPs per step
    /// the bench reports, for every model, and V1 (a lookup table) has none.
    #[test]
    fn the_floor_counts_the_flops_of_the_step() {
        let _rng = crate::rng_lock();
        let cfg = Config { vocab_size: 30, n_embed: 32, num_heads: 4, block_size: 16, block_layers: 3, dropout: 0.1 };
        for kind in ModelKind::ALL {
            let model = Model::new(kind, &cfg, Device::Cpu).unwrap();
            let gemms = step_gemms(&model, 8);
            let flops: f64 = gemms.iter().map(Gemm::flops).sum();
            assert_eq!(flops, crate::bench::flops_per_step(&model, 8), "{kind}: {gemms:#?}");
            assert_eq!(gemms.len() % 3, 0, "{kind}: each forward GEMM with its two backward ones");
        }
        assert!(step_gemms(&Model::new(ModelKind::V1, &cfg, Device::Cpu).unwrap(), 8).is_empty());
        // V10 with 3 blocks: 3 fused QKVs, 3 projections, 6 feed-forward layers, fc; 3 x 2 bmm.
        let v10 = step_gemms(&Model::new(ModelKind::V10, &cfg, Device::Cpu).unwrap(), 8);
        assert_eq!(v10.iter().filter(|g| !g.what.contains("backward")).count(), 3 + 3 + 6 + 1 + 6);
        assert!(v10.iter().any(|g| g.what == "blocks.2.self_attention qkv" && (g.k, g.n) == (32, 96)), "{v10:#?}");
    }

    #[test]
    fn the_floor_takes_time() {
        let _rng = crate::rng_lock();
        let g = Gemm::with_backward("x", 2, 64, 32, 48, true).to_vec();
        assert!(floor_seconds(&g, Device::Cpu, Kind::Float, 0.01) > 0.0);
    }
}
