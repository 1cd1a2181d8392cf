//! The shared building blocks of docs/MODELS.md, with PyTorch's parameter names and
//! PyTorch's initialisation, drawn in PyTorch's order (so the same seed gives the same
//! weights as the reference). This is the faithful implementation, op for op as
//! `scripts/reference.py`. The other [`Layers`] implementation computes the same layers
//! over the same parameters in fewer kernels.

use tch::nn::Path;
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

/// A layer with a forward pass; `train` turns dropout on.
pub trait Module {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor;
}

/// What builds a model's attention, feed-forward and LayerNorm layers: [`Faithful`] here,
/// or the fused one of the other implementation. Either way the parameters are created by the constructors of
/// this file, in the same order, with the same names, so the two build the same model.
pub trait Layers {
    /// One attention head as wide as `o` (V4).
    fn head(&self, p: Path, i: i64, o: i64, block_size: i64) -> Box<dyn Module>;
    fn multi_head(&self, p: Path, cfg: &Config, kind: MultiHeadKind) -> Box<dyn Module>;
    fn feed_forward(&self, p: Path, cfg: &Config, kind: FeedForwardKind) -> Box<dyn Module>;
    fn layer_norm(&self, p: Path, d: i64) -> Box<dyn Module>;
}

/// The blog's layers as they are written in this file (the parity reference).
pub struct Faithful;

impl Layers for Faithful {
    fn head(&self, p: Path, i: i64, o: i64, block_size: i64) -> Box<dyn Module> {
        Box::new(Head::new(p, i, o, block_size, None))
    }
    fn multi_head(&self, p: Path, cfg: &Config, kind: MultiHeadKind) -> Box<dyn Module> {
        Box::new(MultiHead::new(p, cfg, kind))
    }
    fn feed_forward(&self, p: Path, cfg: &Config, kind: FeedForwardKind) -> Box<dyn Module> {
        Box::new(FeedForward::new(p, cfg, kind))
    }
    fn layer_norm(&self, p: Path, d: i64) -> Box<dyn Module> {
        Box::new(LayerNorm::new(p, d))
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
    pub weight: Tensor,
    pub bias: Option<Tensor>,
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

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// `nn.Embedding(n, d)`: a `[n, d]` table ~ N(0, 1).
#[derive(Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(p: Path, n: i64, d: i64) -> Self {
        let weight = parameter(&p, "weight", &[n, d], |t| {
            let _ = t.normal_(0.0, 1.0);
        });
        Embedding { weight }
    }

    pub fn forward(&self, idx: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, idx, -1, false, false)
    }
}

/// The blog's LayerNorm (not torch.nn.LayerNorm): unbiased std, eps added to the std.
#[derive(Debug)]
pub struct LayerNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl LayerNorm {
    pub const EPS: f64 = 1e-6;

    pub fn new(p: Path, d: i64) -> Self {
        let gamma = parameter(&p, "gamma", &[d], |t| {
            let _ = t.fill_(1.0);
        });
        let beta = parameter(&p, "beta", &[d], |t| {
            let _ = t.fill_(0.0);
        });
        LayerNorm { gamma, beta }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mean = x.mean_dim(-1, true, Kind::Float);
        let std = x.std_dim(-1, true, true);
        &self.gamma * (x - mean) / (std + Self::EPS) + &self.beta
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        LayerNorm::forward(self, x)
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
    pub key: Linear,
    pub query: Linear,
    pub value: Linear,
    pub tril: Tensor,
    /// Dropout on the attention weights (only Block4's heads have it).
    pub dropout: Option<f64>,
    /// `tril == 0`, computed on the first forward (on the model's final device), not every time.
    future: std::cell::OnceCell<Tensor>,
}

impl Head {
    pub fn new(p: Path, i: i64, o: i64, block_size: i64, dropout: Option<f64>) -> Self {
        let key = Linear::new(&p / "key", i, o, false);
        let query = Linear::new(&p / "query", i, o, false);
        let value = Linear::new(&p / "value", i, o, false);
        let tril = tril_buffer(&p, block_size);
        Head { key, query, value, tril, dropout, future: Default::default() }
    }
}

impl Module for Head {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, t, c) = x.size3().expect("attention input is [B, T, C]");
        let k = self.key.forward(x);
        let q = self.query.forward(x);
        let v = self.value.forward(x);
        let scores = q.matmul(&k.transpose(-2, -1)) * (c as f64).powf(-0.5);
        let future = self.future.get_or_init(|| self.tril.eq(0.0)).narrow(0, 0, t).narrow(1, 0, t);
        let mut w = scores.masked_fill(&future, f64::NEG_INFINITY).softmax(-1, Kind::Float);
        if let Some(p) = self.dropout {
            w = w.dropout(p, train);
        }
        w.matmul(&v)
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
    pub heads: Vec<Head>,
    pub proj: Option<Linear>,
    pub dropout: Option<f64>,
}

impl MultiHead {
    pub fn new(p: Path, cfg: &Config, kind: MultiHeadKind) -> Self {
        let head_size = cfg.n_embed / cfg.num_heads;
        let dropout = (kind == MultiHeadKind::Dropout).then_some(cfg.dropout);
        let heads = (0..cfg.num_heads).map(|h| Head::new(&p / "heads" / h, cfg.n_embed, head_size, cfg.block_size, dropout)).collect();
        let width = head_size * cfg.num_heads;
        let proj = (kind != MultiHeadKind::NoProj).then(|| Linear::new(&p / "proj", width, width, true));
        MultiHead { heads, proj, dropout }
    }
}

impl Module for MultiHead {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let outs: Vec<Tensor> = self.heads.iter().map(|h| h.forward(x, train)).collect();
        let mut out = Tensor::cat(&outs, -1);
        if let Some(proj) = &self.proj {
            out = proj.forward(&out);
        }
        if let Some(p) = self.dropout {
            out = out.dropout(p, train);
        }
        out
    }
}

/// FF1 (`Linear(C,C)`, ReLU), FF2 (`Linear(C,4C)`, ReLU, `Linear(4C,C)`), FF3 (FF2 + dropout).
/// The layers live under `ff.0` and `ff.2`, as in the blog's `nn.Sequential`.
#[derive(Debug)]
pub struct FeedForward {
    pub expand: Linear,
    pub contract: Option<Linear>,
    pub dropout: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedForwardKind {
    FF1,
    FF2,
    FF3,
}

impl FeedForward {
    pub fn new(p: Path, cfg: &Config, kind: FeedForwardKind) -> Self {
        let c = cfg.n_embed;
        let seq = &p / "ff";
        if kind == FeedForwardKind::FF1 {
            return FeedForward { expand: Linear::new(&seq / 0, c, c, true), contract: None, dropout: None };
        }
        let expand = Linear::new(&seq / 0, c, 4 * c, true);
        let contract = Some(Linear::new(&seq / 2, 4 * c, c, true));
        let dropout = (kind == FeedForwardKind::FF3).then_some(cfg.dropout);
        FeedForward { expand, contract, dropout }
    }

    /// The layers without the dropout (FF3's dropout is the only part that the fused
    /// implementation computes differently).
    pub fn forward_without_dropout(&self, x: &Tensor) -> Tensor {
        let out = self.expand.forward(x).relu();
        match &self.contract {
            Some(contract) => contract.forward(&out),
            None => out,
        }
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let out = self.forward_without_dropout(x);
        match self.dropout {
            Some(p) => out.dropout(p, train),
            None => out,
        }
    }
}

/// Block1..Block4 of docs/MODELS.md: how attention and feed-forward are wired. Each
/// builds `self_attention`, `ff`, then its LayerNorms, as PyTorch does.
pub enum Block {
    /// Block1 (V7): `ff(sa(x))`, no residual; attention without projection, FF1.
    Plain { self_attention: Box<dyn Module>, ff: Box<dyn Module> },
    /// Block2 (V8): `x + sa(x)`, then `x + ff(x)`; attention with projection, FF2.
    Residual { self_attention: Box<dyn Module>, ff: Box<dyn Module> },
    /// Block3 (V9) and Block4 (V10, with dropout): `x + sa(LN(x))`, then `x + ff(LN(x))`.
    PreNorm { self_attention: Box<dyn Module>, ff: Box<dyn Module>, norm_self_attention: Box<dyn Module>, norm_ff: Box<dyn Module> },
}

impl Block {
    pub fn block1(p: Path, cfg: &Config, layers: &dyn Layers) -> Self {
        let self_attention = layers.multi_head(&p / "self_attention", cfg, MultiHeadKind::NoProj);
        let ff = layers.feed_forward(&p / "ff", cfg, FeedForwardKind::FF1);
        Block::Plain { self_attention, ff }
    }

    pub fn block2(p: Path, cfg: &Config, layers: &dyn Layers) -> Self {
        let self_attention = layers.multi_head(&p / "self_attention", cfg, MultiHeadKind::Proj);
        let ff = layers.feed_forward(&p / "ff", cfg, FeedForwardKind::FF2);
        Block::Residual { self_attention, ff }
    }

    pub fn block3(p: Path, cfg: &Config, layers: &dyn Layers) -> Self {
        Self::pre_norm(p, cfg, layers, MultiHeadKind::Proj, FeedForwardKind::FF2)
    }

    pub fn block4(p: Path, cfg: &Config, layers: &dyn Layers) -> Self {
        Self::pre_norm(p, cfg, layers, MultiHeadKind::Dropout, FeedForwardKind::FF3)
    }

    fn pre_norm(p: Path, cfg: &Config, layers: &dyn Layers, mh: MultiHeadKind, ff: FeedForwardKind) -> Self {
        let self_attention = layers.multi_head(&p / "self_attention", cfg, mh);
        let ff = layers.feed_forward(&p / "ff", cfg, ff);
        let norm_self_attention = layers.layer_norm(&p / "norm_self_attention", cfg.n_embed);
        let norm_ff = layers.layer_norm(&p / "norm_ff", cfg.n_embed);
        Block::PreNorm { self_attention, ff, norm_self_attention, norm_ff }
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Block::Plain { self_attention, ff } => ff.forward(&self_attention.forward(x, train), train),
            Block::Residual { self_attention, ff } => {
                let x = x + self_attention.forward(x, train);
                &x + ff.forward(&x, train)
            }
            Block::PreNorm { self_attention, ff, norm_self_attention, norm_ff } => {
                let x = x + self_attention.forward(&norm_self_attention.forward(x, train), train);
                &x + ff.forward(&norm_ff.forward(&x, train), train)
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
        let ln = LayerNorm::new(vs.root() / "ln", 4);
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
