//! The shared building blocks of docs/MODELS.md, with PyTorch's parameter names and
//! PyTorch's initialisation, drawn in PyTorch's order (so the same seed gives the same
//! weights as the reference). Each layer computes in one of two ways over the same
//! parameters ([`Compute`]): the blog's ops, op for op as `scripts/reference.py` (the
//! parity reference), or the fast path's fewer and larger kernels (`crate::fast`).

use crate::fast::{self, FusedHeads, Kernels};
use std::cell::OnceCell;
use tch::nn::{Module, ModuleT, Path};
use tch::{Kind, Tensor};

/// Hyperparameters of one model (docs/MODELS.md notation in comments).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// V
    pub vocab_size: i64,
    /// C
    pub n_embed: i64,
    /// H
    pub num_heads: i64,
    /// Tmax
    pub block_size: i64,
    /// L (V10 only; V7..V9 always have 3 blocks)
    pub block_layers: i64,
    /// p (V10 only)
    pub dropout: f64,
}

/// How the layers of a model compute, chosen when it is built; the parameters, their
/// names and their initial values are the same either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compute {
    /// The blog's ops, head by head (`--impl faithful`).
    #[default]
    Faithful,
    /// The fast path (`--impl fast`) with the given LayerNorm and dropout kernels.
    Fast(Kernels),
}

impl Compute {
    /// Dropout with probability `p` when `train`.
    fn dropout(self, x: &Tensor, p: f64, train: bool) -> Tensor {
        match self {
            Compute::Faithful => x.dropout(p, train),
            Compute::Fast(kernels) => fast::dropout(x, p, train, kernels),
        }
    }
}

/// Creates a parameter on the CPU with `init` run on it under no_grad, registered as `name`.
fn parameter(p: &Path, name: &str, dims: &[i64], init: impl FnOnce(&mut Tensor)) -> Tensor {
    let mut t = Tensor::empty(dims, (Kind::Float, p.device()));
    tch::no_grad(|| init(&mut t));
    p.add(name, t, true)
}

/// `nn.Linear(i, o, bias)`: weight `[o, i]` ~ U(-1/sqrt(i), 1/sqrt(i)), then the bias likewise.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: Path, i: i64, o: i64, bias: bool) -> Self {
        // kaiming_uniform_(a=sqrt(5)), computed exactly as torch.nn.init does in float64.
        let a = 5f64.sqrt();
        let gain = (2.0 / (1.0 + a * a)).sqrt();
        let bound = 3f64.sqrt() * (gain / (i as f64).sqrt());
        let weight = parameter(&p, "weight", &[o, i], |t| {
            let _ = t.uniform_(-bound, bound);
        });
        let bias = bias.then(|| {
            let bound = 1.0 / (i as f64).sqrt();
            parameter(&p, "bias", &[o], |t| {
                let _ = t.uniform_(-bound, bound);
            })
        });
        Linear { weight, bias }
    }

    /// The weight and the bias of a layer built with one (FF1..FF3's all are).
    fn weight_and_bias(&self) -> (&Tensor, &Tensor) {
        (&self.weight, self.bias.as_ref().expect("a Linear built with a bias"))
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// `nn.Embedding(n, d)`: a `[n, d]` table ~ N(0, 1).
#[derive(Debug)]
pub struct Embedding {
    weight: Tensor,
    compute: Compute,
}

impl Embedding {
    pub fn new(p: Path, n: i64, d: i64, compute: Compute) -> Self {
        let weight = parameter(&p, "weight", &[n, d], |t| {
            let _ = t.normal_(0.0, 1.0);
        });
        Embedding { weight, compute }
    }
}

impl Module for Embedding {
    fn forward(&self, idx: &Tensor) -> Tensor {
        match self.compute {
            // The same rows; the backward adds into the table (`index_add_`) where libtorch's
            // CUDA embedding backward sorts and reads a count to the host for batches of over
            // 3,072 tokens, which a CUDA graph cannot capture.
            Compute::Fast(Kernels::Gpu) => {
                let mut shape = idx.size();
                shape.push(self.weight.size()[1]);
                self.weight.index_select(0, &idx.reshape([-1])).view(shape.as_slice())
            }
            _ => Tensor::embedding(&self.weight, idx, -1, false, false),
        }
    }
}

/// The blog's LayerNorm (not torch.nn.LayerNorm): unbiased std, eps added to the std.
#[derive(Debug)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    compute: Compute,
}

impl LayerNorm {
    pub const EPS: f64 = 1e-6;

    pub fn new(p: Path, d: i64, compute: Compute) -> Self {
        let gamma = parameter(&p, "gamma", &[d], |t| {
            let _ = t.fill_(1.0);
        });
        let beta = parameter(&p, "beta", &[d], |t| {
            let _ = t.fill_(0.0);
        });
        LayerNorm { gamma, beta, compute }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self.compute {
            Compute::Faithful => {
                let mean = x.mean_dim(-1, true, Kind::Float);
                let std = x.std_dim(-1, true, true);
                &self.gamma * (x - mean) / (std + Self::EPS) + &self.beta
            }
            Compute::Fast(kernels) => fast::layer_norm(x, &self.gamma, &self.beta, Self::EPS, kernels),
        }
    }
}

/// The `[Tmax, Tmax]` lower-triangular buffer every head carries (a state-dict entry).
fn tril_buffer(p: &Path, block_size: i64) -> Tensor {
    let tril = Tensor::ones([block_size, block_size], (Kind::Float, p.device())).tril(0);
    p.add("tril", tril, false)
}

/// One causal self-attention head. Scores are scaled by the *input* width, as in the blog.
#[derive(Debug)]
pub struct Head {
    key: Linear,
    query: Linear,
    value: Linear,
    tril: Tensor,
    /// Dropout on the attention weights (only Block4's heads have it).
    dropout: Option<f64>,
    compute: Compute,
    /// The causal mask in the form the computation uses (`tril == 0` for the blog's
    /// `masked_fill`, an additive bias for the fast path), made on the first forward, on
    /// the model's final device.
    mask: OnceCell<Tensor>,
}

impl Head {
    pub fn new(p: Path, i: i64, o: i64, block_size: i64, dropout: Option<f64>, compute: Compute) -> Self {
        let key = Linear::new(&p / "key", i, o, false);
        let query = Linear::new(&p / "query", i, o, false);
        let value = Linear::new(&p / "value", i, o, false);
        let tril = tril_buffer(&p, block_size);
        Head { key, query, value, tril, dropout, compute, mask: OnceCell::new() }
    }

    /// The blog's head: `softmax(q k^T / sqrt(C), causal) v`.
    fn faithful(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, t, c) = x.size3().expect("attention input is [B, T, C]");
        let k = self.key.forward(x);
        let q = self.query.forward(x);
        let v = self.value.forward(x);
        let scores = q.matmul(&k.transpose(-2, -1)) * (c as f64).powf(-0.5);
        let future = self.mask.get_or_init(|| self.tril.eq(0.0)).narrow(0, 0, t).narrow(1, 0, t);
        let mut w = scores.masked_fill(&future, f64::NEG_INFINITY).softmax(-1, Kind::Float);
        if let Some(p) = self.dropout {
            w = w.dropout(p, train);
        }
        w.matmul(&v)
    }
}

/// What the fast path's attention reads of `heads` (all reading the same input): every
/// head's query, key and value weights, the causal mask and the attention dropout.
fn fused<'a>(heads: &'a [Head], mask: &'a OnceCell<Tensor>) -> FusedHeads<'a> {
    let mut weights: Vec<&Tensor> = heads.iter().map(|h| &h.query.weight).collect();
    weights.extend(heads.iter().map(|h| &h.key.weight));
    weights.extend(heads.iter().map(|h| &h.value.weight));
    FusedHeads { weights, heads: heads.len() as i64, tril: &heads[0].tril, bias: mask, dropout: heads[0].dropout.unwrap_or(0.0) }
}

impl ModuleT for Head {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self.compute {
            Compute::Faithful => self.faithful(x, train),
            Compute::Fast(kernels) => fast::attention(x, &fused(std::slice::from_ref(self), &self.mask), train, kernels),
        }
    }
}

/// The three MultiHead variants of docs/MODELS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiHeadKind {
    /// Heads concatenated, nothing more.
    NoProj,
    /// Then a linear projection.
    Proj,
    /// Heads with attention dropout, the projection, then dropout.
    Dropout,
}

/// `H` heads of width `C/H`, concatenated in head order.
#[derive(Debug)]
pub struct MultiHead {
    heads: Vec<Head>,
    proj: Option<Linear>,
    dropout: Option<f64>,
    compute: Compute,
    /// The fast path's causal bias, shared by its heads.
    mask: OnceCell<Tensor>,
}

impl MultiHead {
    pub fn new(p: Path, cfg: &Config, kind: MultiHeadKind, compute: Compute) -> Self {
        let head_size = cfg.n_embed / cfg.num_heads;
        let dropout = (kind == MultiHeadKind::Dropout).then_some(cfg.dropout);
        let heads =
            (0..cfg.num_heads).map(|h| Head::new(&p / "heads" / h, cfg.n_embed, head_size, cfg.block_size, dropout, compute)).collect();
        let width = head_size * cfg.num_heads;
        let proj = (kind != MultiHeadKind::NoProj).then(|| Linear::new(&p / "proj", width, width, true));
        MultiHead { heads, proj, dropout, compute, mask: OnceCell::new() }
    }
}

impl ModuleT for MultiHead {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut out = match self.compute {
            Compute::Faithful => Tensor::cat(&self.heads.iter().map(|h| h.faithful(x, train)).collect::<Vec<_>>(), -1),
            // Every head at once: one matmul for all queries, keys and values.
            Compute::Fast(kernels) => fast::attention(x, &fused(&self.heads, &self.mask), train, kernels),
        };
        if let Some(proj) = &self.proj {
            out = proj.forward(&out);
        }
        if let Some(p) = self.dropout {
            out = self.compute.dropout(&out, p, train);
        }
        out
    }
}

/// FF1 (`Linear(C,C)`, ReLU), FF2 (`Linear(C,4C)`, ReLU, `Linear(4C,C)`), FF3 (FF2 + dropout).
/// The layers live under `ff.0` and `ff.2`, as in the blog's `nn.Sequential`.
#[derive(Debug)]
pub struct FeedForward {
    expand: Linear,
    contract: Option<Linear>,
    dropout: Option<f64>,
    compute: Compute,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedForwardKind {
    FF1,
    FF2,
    FF3,
}

impl FeedForward {
    pub fn new(p: Path, cfg: &Config, kind: FeedForwardKind, compute: Compute) -> Self {
        let c = cfg.n_embed;
        let seq = &p / "ff";
        if kind == FeedForwardKind::FF1 {
            return FeedForward { expand: Linear::new(&seq / 0, c, c, true), contract: None, dropout: None, compute };
        }
        let expand = Linear::new(&seq / 0, c, 4 * c, true);
        let contract = Some(Linear::new(&seq / 2, 4 * c, c, true));
        let dropout = (kind == FeedForwardKind::FF3).then_some(cfg.dropout);
        FeedForward { expand, contract, dropout, compute }
    }
}

impl ModuleT for FeedForward {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if let Compute::Fast(kernels) = self.compute {
            if kernels == Kernels::Fused && crate::fused::feed_forward_applies(x) {
                // The whole layer as one autograd node (`fused::feed_forward`).
                let (w1, b1) = self.expand.weight_and_bias();
                let p = if train { self.dropout.unwrap_or(0.0) } else { 0.0 };
                return crate::fused::feed_forward(x, w1, b1, self.contract.as_ref().map(Linear::weight_and_bias), p);
            }
        }
        let mut out = self.expand.forward(x).relu();
        if let Some(contract) = &self.contract {
            out = contract.forward(&out);
        }
        match self.dropout {
            Some(p) => self.compute.dropout(&out, p, train),
            None => out,
        }
    }
}

/// Block1..Block4 of docs/MODELS.md: how attention and feed-forward are wired. Each
/// builds `self_attention`, `ff`, then its LayerNorms, as PyTorch does.
#[derive(Debug)]
pub enum Block {
    /// Block1 (V7): `ff(sa(x))`, no residual; attention without projection, FF1.
    Plain { self_attention: MultiHead, ff: FeedForward },
    /// Block2 (V8): `x + sa(x)`, then `x + ff(x)`; attention with projection, FF2.
    Residual { self_attention: MultiHead, ff: FeedForward },
    /// Block3 (V9) and Block4 (V10, with dropout): `x + sa(LN(x))`, then `x + ff(LN(x))`.
    PreNorm { self_attention: MultiHead, ff: FeedForward, norm_self_attention: LayerNorm, norm_ff: LayerNorm },
}

impl Block {
    pub fn block1(p: Path, cfg: &Config, compute: Compute) -> Self {
        let self_attention = MultiHead::new(&p / "self_attention", cfg, MultiHeadKind::NoProj, compute);
        let ff = FeedForward::new(&p / "ff", cfg, FeedForwardKind::FF1, compute);
        Block::Plain { self_attention, ff }
    }

    pub fn block2(p: Path, cfg: &Config, compute: Compute) -> Self {
        let self_attention = MultiHead::new(&p / "self_attention", cfg, MultiHeadKind::Proj, compute);
        let ff = FeedForward::new(&p / "ff", cfg, FeedForwardKind::FF2, compute);
        Block::Residual { self_attention, ff }
    }

    pub fn block3(p: Path, cfg: &Config, compute: Compute) -> Self {
        Self::pre_norm(p, cfg, compute, MultiHeadKind::Proj, FeedForwardKind::FF2)
    }

    pub fn block4(p: Path, cfg: &Config, compute: Compute) -> Self {
        Self::pre_norm(p, cfg, compute, MultiHeadKind::Dropout, FeedForwardKind::FF3)
    }

    fn pre_norm(p: Path, cfg: &Config, compute: Compute, mh: MultiHeadKind, ff: FeedForwardKind) -> Self {
        let self_attention = MultiHead::new(&p / "self_attention", cfg, mh, compute);
        let ff = FeedForward::new(&p / "ff", cfg, ff, compute);
        let norm_self_attention = LayerNorm::new(&p / "norm_self_attention", cfg.n_embed, compute);
        let norm_ff = LayerNorm::new(&p / "norm_ff", cfg.n_embed, compute);
        Block::PreNorm { self_attention, ff, norm_self_attention, norm_ff }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Block::Plain { self_attention, ff } => ff.forward_t(&self_attention.forward_t(x, train), train),
            Block::Residual { self_attention, ff } => {
                let x = x + self_attention.forward_t(x, train);
                &x + ff.forward_t(&x, train)
            }
            Block::PreNorm { self_attention, ff, norm_self_attention, norm_ff } => {
                let x = x + self_attention.forward_t(&norm_self_attention.forward(x), train);
                &x + ff.forward_t(&norm_ff.forward(&x), train)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;
    use tch::Device;

    #[test]
    fn layer_norm_matches_hand_computation() {
        let _rng = crate::rng_lock();
        let vs = VarStore::new(Device::Cpu);
        let ln = LayerNorm::new(vs.root() / "ln", 4, Compute::Faithful);
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 6.0]).view([1, 4]);
        // mean 3, unbiased var (4 + 1 + 0 + 9) / 3 = 14/3.
        let std = (14.0f64 / 3.0).sqrt();
        let expected: Vec<f64> = [1.0, 2.0, 3.0, 6.0].iter().map(|v| (v - 3.0) / (std + 1e-6)).collect();
        let y = Vec::<f64>::try_from(ln.forward(&x).view([4]).to_kind(Kind::Double)).unwrap();
        for (a, b) in y.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {expected:?}");
        }
    }

    #[test]
    fn linear_init_bound_is_one_over_sqrt_fan_in() {
        let _rng = crate::rng_lock();
        let vs = VarStore::new(Device::Cpu);
        let lin = Linear::new(vs.root() / "l", 100, 300, true);
        let max = lin.weight.abs().max().double_value(&[]);
        assert!(max <= 0.1 && max > 0.09, "{max}");
        assert_eq!(lin.bias.unwrap().size(), [300]);
    }
}
