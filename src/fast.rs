//! The fast path (`--impl fast`): the same function as the faithful layers, over the same
//! parameters (so checkpoints are interchangeable), computed in fewer and larger kernels:
//! every head's query, key and value in one matmul, heads as a tensor dimension, the
//! blog's LayerNorm and dropout as one-pass CPU kernels (`fused`, `csrc/fused.cpp`) with
//! portable libtorch-op versions for CUDA; on the CPU in fp32 the attention and the
//! feed-forward layer are one C++ autograd node each (`fused`). Its dropout draws its
//! masks differently from PyTorch's, so it matches the reference exactly only at dropout 0.
//!
//! The layers (`crate::layers`) call these functions with the tensors they own; nothing
//! here knows a layer's fields.

use std::cell::OnceCell;
use tch::{Kind, Tensor};

/// Which kernels the fast path's LayerNorm, dropout and attention use, chosen when a model
/// is built (for the device it is built for, `Implementation::compute`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The one-pass CPU kernels of `fused` where they apply (f32 on the CPU), the
    /// portable ones elsewhere: what `--impl fast` runs on the CPU.
    #[default]
    Fused,
    /// The portable libtorch-op versions everywhere, for tests and comparisons on the CPU.
    Portable,
    /// The GPU form, where a step costs a launch per op: libtorch's native dropout (one
    /// kernel each way), the blog's LayerNorm as one autograd node (`csrc/device_ops.cpp`),
    /// fused `scaled_dot_product_attention`. What `--impl fast` runs on CUDA; it runs on the
    /// CPU too, so that tests count and check it there.
    Gpu,
}

impl Kernels {
    /// Whether the one-pass CPU kernels of `fused` serve this tensor.
    fn fused_for(self, x: &Tensor) -> bool {
        self == Kernels::Fused && crate::fused::applies(x)
    }
}

/// What [`attention`] reads of a layer's heads, all reading the same input.
pub struct FusedHeads<'a> {
    /// Every head's query weight, then every key weight, then every value weight.
    pub weights: Vec<&'a Tensor>,
    pub heads: i64,
    /// The heads' `[Tmax, Tmax]` lower-triangular buffer.
    pub tril: &'a Tensor,
    /// Where the causal mask, as an additive bias, is kept once made (on the CPU path).
    pub bias: &'a OnceCell<Tensor>,
    /// The attention-weight dropout (0 for none).
    pub dropout: f64,
}

/// The fast path for heads that all read `x`: one matmul for every head's query, key and
/// value (the per-head weights are concatenated, so gradients still reach each head's
/// own parameters and checkpoints keep their keys) and heads as a tensor dimension, with
/// the blog's scale (the input width, not the head width). Same function as the per-head
/// loop; different dropout draws.
///
/// On the CPU in fp32 the attention is the one-pass kernel of `fused`, which reads the QKV
/// output in place. In the GPU form it is libtorch's fused `scaled_dot_product_attention`.
/// Elsewhere (the portable kernels, bf16 on the CPU), where libtorch's CPU SDPA is slower
/// than plain batched matmuls at these sizes (fwd+bwd of [32, 4, 64, 32]: 5.4 ms against
/// 3.4-4.8 ms), the causal mask is added inside the scores' matmul (`baddbmm` of a 0/-inf
/// bias) and the softmax and dropout follow.
pub fn attention(x: &Tensor, heads: &FusedHeads, train: bool, kernels: Kernels) -> Tensor {
    let (b, t, c) = x.size3().expect("attention input is [B, T, C]");
    let h = heads.heads;
    let head_size = heads.weights[0].size()[0];
    let scale = (c as f64).powf(-0.5);
    let p = if train { heads.dropout } else { 0.0 };
    // [B, T, 3 (q, k, v) * H * head_size]
    let qkv = x.linear::<&Tensor>(&Tensor::cat(&heads.weights, 0), None);
    if kernels.fused_for(&qkv) && crate::fused::attention_available() {
        return crate::fused::causal_attention(&qkv, h, scale, p);
    }
    let qkv = qkv.view([b, t, 3, h, head_size]);
    let y = if kernels == Kernels::Gpu {
        let qkv = qkv.permute([2, 0, 3, 1, 4]); // [3, B, H, T, head_size], a view
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, p, true, scale, false)
    } else {
        // One copy into [3, B*H, T, head_size]; `unbind` (not three `select`s) so that the
        // backward stacks the three gradients in one pass.
        let qkv = qkv.permute([2, 0, 3, 1, 4]).reshape([3, b * h, t, head_size]).unbind(0);
        let (q, k, v) = (&qkv[0], &qkv[1], &qkv[2]);
        // `[T, T]`: 0 where a position may attend, -inf where `tril == 0`.
        let tril = heads.tril;
        let bias =
            heads.bias.get_or_init(|| tril.zeros_like().masked_fill(&tril.eq(0.0), f64::NEG_INFINITY)).narrow(0, 0, t).narrow(1, 0, t);
        let w = bias.baddbmm(q, &k.transpose(1, 2), 1.0, scale).softmax(-1, Kind::Float);
        dropout(&w, p, train, kernels).bmm(v).view([b, h, t, head_size])
    };
    y.transpose(1, 2).reshape([b, t, h * head_size])
}

/// The fast path's dropout: PyTorch's distribution (keep with probability `1 - p`, scale
/// by `1 / (1 - p)`). On the CPU a one-pass kernel with a parallel counter-based
/// generator; in the GPU form libtorch's `native_dropout` (what `nn.Dropout` runs on CUDA:
/// one kernel each way); elsewhere `x * (uniform < 1 - p) / (1 - p)`, which avoids the
/// per-element `bernoulli_`.
pub fn dropout(x: &Tensor, p: f64, train: bool, kernels: Kernels) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    match kernels {
        Kernels::Gpu => x.native_dropout(p, true).0,
        _ if kernels.fused_for(x) => crate::fused::dropout(x, p),
        _ => portable_dropout(x, p),
    }
}

/// The portable dropout: `x * (uniform < 1 - p) / (1 - p)`.
pub fn portable_dropout(x: &Tensor, p: f64) -> Tensor {
    let keep = 1.0 - p;
    (x * x.rand_like().lt(keep)) * (1.0 / keep)
}

/// The blog's LayerNorm (docs/MODELS.md: unbiased std, eps added to the std), the same
/// function as the faithful LayerNorm in fewer kernels: the one-pass kernel on the CPU,
/// one autograd node of libtorch ops in the GPU form, the portable composite elsewhere.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, kernels: Kernels) -> Tensor {
    match kernels {
        Kernels::Gpu => crate::fused::blog_layer_norm_ops(x, gamma, beta, eps),
        _ if kernels.fused_for(x) => crate::fused::blog_layer_norm(x, gamma, beta, eps),
        _ => portable_layer_norm(x, gamma, beta, eps),
    }
}

/// The portable LayerNorm (bf16 on the CPU). libtorch's CPU std kernel (Welford) is ~10x
/// slower than a plain sum of squares; the fused multiply-add applies gamma and beta in one
/// pass.
pub fn portable_layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Tensor {
    let d = *x.size().last().expect("LayerNorm input has a last dim");
    let centered = x - x.mean_dim(-1, true, Kind::Float);
    let var = centered.square().sum_dim_intlist(-1, true, Kind::Float) / (d - 1) as f64;
    let normalized = centered / (var.sqrt() + eps);
    beta.addcmul(gamma, &normalized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers;
    use tch::nn::{Module, VarStore};
    use tch::Device;

    /// docs/MODELS.md's LayerNorm in f64: `gamma * (x - mean) / (std + eps) + beta`, the
    /// unbiased std, eps added to the std.
    fn layer_norm_f64(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let x = x.to_kind(Kind::Double);
        let d = x.size()[x.dim() - 1] as f64;
        let mean = x.mean_dim(-1, true, Kind::Double);
        let centered = &x - mean;
        let std = (centered.square().sum_dim_intlist(-1, true, Kind::Double) / (d - 1.0)).sqrt();
        gamma.to_kind(Kind::Double) * centered / (std + layers::LayerNorm::EPS) + beta.to_kind(Kind::Double)
    }

    /// Rows with a small std (1e-3 .. 1e-2, where eps = 1e-6 is 1e-4 .. 1e-3 of the std) and
    /// rows of ordinary spread: each implementation must match the formula to 1e-5 of the
    /// output's scale, so eps under the square root, no eps, or the biased std all fail.
    #[test]
    fn every_layer_norm_follows_the_formula_on_rows_with_a_small_std() {
        let _rng = crate::rng_lock();
        tch::manual_seed(17);
        let d = 48;
        let spread = Tensor::from_slice(&[1e-3f32, 2e-3, 5e-3, 1e-2, 1.0, 3.0]).view([6, 1, 1]);
        let x = Tensor::randn([6, 5, d], (Kind::Float, Device::Cpu)) * spread + 0.01;
        let vs = VarStore::new(Device::Cpu);
        let faithful = layers::LayerNorm::new(vs.root() / "ln", d, layers::Compute::Faithful);
        let vars = vs.variables();
        let (gamma, beta) = (&vars["ln.gamma"], &vars["ln.beta"]);
        tch::no_grad(|| {
            gamma.shallow_clone().copy_(&(Tensor::rand([d], (Kind::Float, Device::Cpu)) + 0.5));
            beta.shallow_clone().copy_(&(Tensor::randn([d], (Kind::Float, Device::Cpu)) * 0.1));
        });
        let expected = layer_norm_f64(&x, gamma, beta);
        let scale = (&expected - beta.to_kind(Kind::Double)).abs().max().double_value(&[]);
        let eps = layers::LayerNorm::EPS;
        for (name, y) in [
            ("faithful", faithful.forward(&x)),
            ("fused kernel", crate::fused::blog_layer_norm(&x, gamma, beta, eps)),
            ("portable", portable_layer_norm(&x, gamma, beta, eps)),
            ("GPU form's node", crate::fused::blog_layer_norm_ops(&x, gamma, beta, eps)),
        ] {
            // Row by row, so that a small-std row is not hidden by a large one.
            let err = (y.to_kind(Kind::Double) - &expected).abs().amax([-1], false);
            let row_scale = (&expected - beta.to_kind(Kind::Double)).abs().amax([-1], false);
            let worst = (err / row_scale).max().double_value(&[]);
            assert!(worst <= 1e-5, "{name} LayerNorm differs from the formula by {worst:.2e} of a row's scale (max {scale})");
        }
    }

    #[test]
    fn portable_dropout_keeps_one_minus_p_and_scales() {
        let _rng = crate::rng_lock();
        tch::manual_seed(4);
        let x = Tensor::ones([200, 100], (Kind::Float, Device::Cpu));
        let y = portable_dropout(&x, 0.3);
        let kept = y.ne(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((kept - 0.7).abs() < 0.01, "kept {kept}");
        let values = y.masked_select(&y.ne(0.0));
        assert!((values - 1.0 / 0.7).abs().max().double_value(&[]) < 1e-6);
    }
}
