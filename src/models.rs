//! The ten models of the blog, V1 (a bigram table) to V10 (a small GPT). Each is built
//! from the shared layers in PyTorch's build order, and its doc comment says exactly what
//! it adds over its predecessor (the words of `ModelKind::adds`, which a test checks);
//! each `forward_t` reads like the docs/MODELS.md table row. [`Model`] holds any of them
//! with its parameters.

use crate::layers::{Block, Compute, Config, Embedding, FeedForward, FeedForwardKind, Head, LayerNorm, Linear, MultiHead, MultiHeadKind};
use crate::model_kind::ModelKind;
use anyhow::{bail, Result};
use std::fmt;
use tch::nn::{Module, ModuleT, Path, VarStore};
use tch::{Device, Kind, Tensor};

/// How the layers are computed; the model and its parameters are the same either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    /// The blog's computation, head by head, op for op as PyTorch: the parity reference.
    #[default]
    Faithful,
    /// Fused QKV, one-node attention and feed-forward layers, one-pass LayerNorm and
    /// dropout kernels, fused AdamW: the same function, faster (dropout masks drawn
    /// differently).
    Fast,
}

impl Implementation {
    /// How the layers of a model built for it on `device` compute: the fast path in its
    /// GPU form on CUDA (`Kernels::Gpu`), with the CPU kernels elsewhere.
    pub fn compute(self, device: Device) -> Compute {
        match self {
            Implementation::Faithful => Compute::Faithful,
            Implementation::Fast if device.is_cuda() => Compute::Fast(crate::fast::Kernels::Gpu),
            Implementation::Fast => Compute::Fast(crate::fast::Kernels::Fused),
        }
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Implementation::Faithful => "faithful",
            Implementation::Fast => "fast",
        })
    }
}

/// Token embedding plus learned position embedding: the input of V3..V10.
#[derive(Debug)]
struct TokenAndPosition {
    embedding: Embedding,
    positional_embedding: Embedding,
}

impl TokenAndPosition {
    fn new(p: &Path, cfg: &Config, compute: Compute) -> Self {
        let embedding = Embedding::new(p / "embedding", cfg.vocab_size, cfg.n_embed, compute);
        let positional_embedding = Embedding::new(p / "positional_embedding", cfg.block_size, cfg.n_embed, compute);
        TokenAndPosition { embedding, positional_embedding }
    }
}

impl Module for TokenAndPosition {
    fn forward(&self, idx: &Tensor) -> Tensor {
        let t = idx.size()[1];
        let pos = Tensor::arange(t, (Kind::Int64, idx.device()));
        self.embedding.forward(idx) + self.positional_embedding.forward(&pos)
    }
}

/// V1. Adds: a V x V embedding table that is the logits (a bigram model).
#[derive(Debug)]
pub struct V1 {
    embedding: Embedding,
}

impl V1 {
    pub fn new(p: &Path, cfg: &Config, compute: Compute) -> Self {
        V1 { embedding: Embedding::new(p / "embedding", cfg.vocab_size, cfg.vocab_size, compute) }
    }
}

impl Module for V1 {
    fn forward(&self, idx: &Tensor) -> Tensor {
        self.embedding.forward(idx)
    }
}

/// V2. Adds: a narrower embedding (C wide) and a linear layer from it to the logits.
#[derive(Debug)]
pub struct V2 {
    embedding: Embedding,
    fc: Linear,
}

impl V2 {
    pub fn new(p: &Path, cfg: &Config, compute: Compute) -> Self {
        let embedding = Embedding::new(p / "embedding", cfg.vocab_size, cfg.n_embed, compute);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        V2 { embedding, fc }
    }
}

impl Module for V2 {
    fn forward(&self, idx: &Tensor) -> Tensor {
        self.fc.forward(&self.embedding.forward(idx))
    }
}

/// V3. Adds: learned position embeddings, added to the token embeddings.
#[derive(Debug)]
pub struct V3 {
    input: TokenAndPosition,
    fc: Linear,
}

impl V3 {
    pub fn new(p: &Path, cfg: &Config, compute: Compute) -> Self {
        let input = TokenAndPosition::new(p, cfg, compute);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        V3 { input, fc }
    }
}

impl Module for V3 {
    fn forward(&self, idx: &Tensor) -> Tensor {
        self.fc.forward(&self.input.forward(idx))
    }
}

/// V4. Adds: one causal self-attention head as wide as the embedding (C).
#[derive(Debug)]
pub struct V4 {
    input: TokenAndPosition,
    fc: Linear,
    self_attention: Head,
}

impl V4 {
    pub fn new(p: &Path, cfg: &Config, compute: Compute) -> Self {
        let input = TokenAndPosition::new(p, cfg, compute);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        let self_attention = Head::new(p / "self_attention", cfg.n_embed, cfg.n_embed, cfg.block_size, None, compute);
        V4 { input, fc, self_attention }
    }
}

impl ModuleT for V4 {
    fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        self.fc.forward(&self.self_attention.forward_t(&self.input.forward(idx), train))
    }
}

/// V5. Adds: H heads of width C/H instead of one wide head, and a projection after them.
#[derive(Debug)]
pub struct V5 {
    input: TokenAndPosition,
    fc: Linear,
    self_attention: MultiHead,
}

impl V5 {
    pub fn new(p: &Path, cfg: &Config, compute: Compute) -> Self {
        let input = TokenAndPosition::new(p, cfg, compute);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        let self_attention = MultiHead::new(p / "self_attention", cfg, MultiHeadKind::Proj, compute);
        V5 { input, fc, self_attention }
    }
}

impl ModuleT for V5 {
    fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        self.fc.forward(&self.self_attention.forward_t(&self.input.forward(idx), train))
    }
}

/// V6. Adds: a feed-forward layer (Linear + ReLU, C wide) after the attention.
#[derive(Debug)]
pub struct V6 {
    input: TokenAndPosition,
    fc: Linear,
    self_attention: MultiHead,
    ff: FeedForward,
}

impl V6 {
    pub fn new(p: &Path, cfg: &Config, compute: Compute) -> Self {
        let input = TokenAndPosition::new(p, cfg, compute);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        let self_attention = MultiHead::new(p / "self_attention", cfg, MultiHeadKind::Proj, compute);
        let ff = FeedForward::new(p / "ff", cfg, FeedForwardKind::FF1, compute);
        V6 { input, fc, self_attention, ff }
    }
}

impl ModuleT for V6 {
    fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        let x = self.self_attention.forward_t(&self.input.forward(idx), train);
        self.fc.forward(&self.ff.forward_t(&x, train))
    }
}

/// V7..V10 share this shape: `fc(final_norm(blocks(tok + pos)))`, plus the blog's unused
/// top-level `ff` (it has parameters, so it is built, counted and handed to the optimiser,
/// which skips it: it never gets a gradient).
#[derive(Debug)]
pub struct BlockStack {
    input: TokenAndPosition,
    fc: Linear,
    blocks: Vec<Block>,
    /// V9's `blocks.3` LayerNorm or V10's `norm_blocks`.
    final_norm: Option<LayerNorm>,
    _unused_ff: FeedForward,
}

impl ModuleT for BlockStack {
    fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        let mut x = self.input.forward(idx);
        for block in &self.blocks {
            x = block.forward_t(&x, train);
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward(&x);
        }
        self.fc.forward(&x)
    }
}

/// V7. Adds: three plain blocks (Block1: attention without the projection, then a
/// feed-forward; no residuals, no LayerNorm) in place of V6's attention and feed-forward.
pub fn v7(p: &Path, cfg: &Config, compute: Compute) -> BlockStack {
    let input = TokenAndPosition::new(p, cfg, compute);
    let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
    let blocks = (0..3).map(|b| Block::block1(p / "blocks" / b, cfg, compute)).collect();
    let _unused_ff = FeedForward::new(p / "ff", cfg, FeedForwardKind::FF1, compute);
    BlockStack { input, fc, blocks, final_norm: None, _unused_ff }
}

/// V8. Adds: residual connections, the projection back, and a 4x wide feed-forward
/// (Block2).
pub fn v8(p: &Path, cfg: &Config, compute: Compute) -> BlockStack {
    let input = TokenAndPosition::new(p, cfg, compute);
    let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
    let blocks = (0..3).map(|b| Block::block2(p / "blocks" / b, cfg, compute)).collect();
    let _unused_ff = FeedForward::new(p / "ff", cfg, FeedForwardKind::FF1, compute);
    BlockStack { input, fc, blocks, final_norm: None, _unused_ff }
}

/// V9. Adds: a LayerNorm before the attention and before the feed-forward in each block
/// (Block3), and a final LayerNorm (kept inside `blocks`, as `blocks.3`).
pub fn v9(p: &Path, cfg: &Config, compute: Compute) -> BlockStack {
    let input = TokenAndPosition::new(p, cfg, compute);
    let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
    let blocks = (0..3).map(|b| Block::block3(p / "blocks" / b, cfg, compute)).collect();
    let final_norm = Some(LayerNorm::new(p / "blocks" / 3, cfg.n_embed, compute));
    let _unused_ff = FeedForward::new(p / "ff", cfg, FeedForwardKind::FF1, compute);
    BlockStack { input, fc, blocks, final_norm, _unused_ff }
}

/// V10. Adds: L blocks instead of 3, and dropout on attention weights, projection and
/// feed-forward (Block4); the final LayerNorm becomes `norm_blocks`: the small GPT.
pub fn v10(p: &Path, cfg: &Config, compute: Compute) -> BlockStack {
    let input = TokenAndPosition::new(p, cfg, compute);
    let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
    let blocks = (0..cfg.block_layers).map(|b| Block::block4(p / "blocks" / b, cfg, compute)).collect();
    let final_norm = Some(LayerNorm::new(p / "norm_blocks", cfg.n_embed, compute));
    let _unused_ff = FeedForward::new(p / "ff", cfg, FeedForwardKind::FF1, compute);
    BlockStack { input, fc, blocks, final_norm, _unused_ff }
}

/// A model with its parameters: the variable store holds every state-dict entry by name.
pub struct Model {
    pub kind: ModelKind,
    pub cfg: Config,
    pub implementation: Implementation,
    pub vs: VarStore,
    net: Box<dyn ModuleT>,
}

impl Model {
    /// Builds the faithful model on the CPU (drawing the initial weights as PyTorch
    /// would), then moves it to `device`.
    pub fn new(kind: ModelKind, cfg: &Config, device: Device) -> Result<Self> {
        Self::with_implementation(kind, cfg, Implementation::Faithful, device)
    }

    /// As [`Model::new`], computed by `implementation` (same parameters either way).
    pub fn with_implementation(kind: ModelKind, cfg: &Config, implementation: Implementation, device: Device) -> Result<Self> {
        Self::with_compute(kind, cfg, implementation.compute(device), device)
    }

    /// As [`Model::new`], its layers computing as `compute` says (tests choose the fast
    /// path's kernels this way).
    pub fn with_compute(kind: ModelKind, cfg: &Config, compute: Compute, device: Device) -> Result<Self> {
        crate::model_kind::validate(kind, cfg)?;
        let mut vs = VarStore::new(Device::Cpu);
        let p = vs.root();
        let net: Box<dyn ModuleT> = match kind {
            ModelKind::V1 => Box::new(V1::new(&p, cfg, compute)),
            ModelKind::V2 => Box::new(V2::new(&p, cfg, compute)),
            ModelKind::V3 => Box::new(V3::new(&p, cfg, compute)),
            ModelKind::V4 => Box::new(V4::new(&p, cfg, compute)),
            ModelKind::V5 => Box::new(V5::new(&p, cfg, compute)),
            ModelKind::V6 => Box::new(V6::new(&p, cfg, compute)),
            ModelKind::V7 => Box::new(v7(&p, cfg, compute)),
            ModelKind::V8 => Box::new(v8(&p, cfg, compute)),
            ModelKind::V9 => Box::new(v9(&p, cfg, compute)),
            ModelKind::V10 => Box::new(v10(&p, cfg, compute)),
        };
        vs.set_device(device);
        let implementation = if compute == Compute::Faithful { Implementation::Faithful } else { Implementation::Fast };
        Ok(Model { kind, cfg: cfg.clone(), implementation, vs, net })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Logits `[B, T, V]`; `train` turns dropout on.
    /// Panics, as nanoGPT's `assert t <= block_size` does, on a sequence longer than the
    /// block size for a model with position embeddings (V3..V10; V1/V2 take any length, as
    /// in the blog): no caller in chargpt makes one (generation crops to the block size).
    pub fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        let t = idx.size().last().copied().unwrap_or(0);
        assert!(
            t <= self.cfg.block_size || self.kind.is_position_free(),
            "cannot forward a sequence of length {t}: {}'s block size is only {}",
            self.kind,
            self.cfg.block_size
        );
        self.net.forward_t(idx, train)
    }

    /// Mean cross-entropy of the logits against `targets`, as the blog computes it.
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, train: bool) -> Tensor {
        cross_entropy(&self.forward(idx, train), targets)
    }

    /// Number of trainable parameters (the `tril` buffers are not counted).
    pub fn num_parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Every state-dict entry, sorted by name.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// The trainable parameters, sorted by name.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.state_dict().into_iter().filter(|(_, t)| t.requires_grad()).collect()
    }

    /// Copies `tensors` into the model, which must hold exactly these names and shapes.
    pub fn load_state_dict(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        let mine = self.vs.variables();
        let theirs: std::collections::HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut missing: Vec<&str> = mine.keys().map(String::as_str).filter(|k| !theirs.contains_key(k)).collect();
        let mut unexpected: Vec<&str> = theirs.keys().copied().filter(|k| !mine.contains_key(*k)).collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            missing.sort_unstable();
            unexpected.sort_unstable();
            bail!(
                "the tensors do not belong to a {} model with this configuration (missing: [{}], unexpected: [{}])",
                self.kind,
                missing.join(", "),
                unexpected.join(", ")
            );
        }
        for (name, var) in &mine {
            let src = theirs[name.as_str()];
            if src.size() != var.size() {
                bail!("tensor {name} has shape {:?}, but the {} model needs {:?}", src.size(), self.kind, var.size());
            }
            tch::no_grad(|| var.shallow_clone().copy_(&src.to_kind(Kind::Float).to_device(var.device())));
        }
        Ok(())
    }
}

/// `F.cross_entropy(logits.view(B*T, V), targets.view(B*T))`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    let v = *logits.size().last().expect("logits have a vocabulary dimension");
    logits.view([-1, v]).cross_entropy_for_logits(&targets.view([-1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn config(v: i64, c: i64, h: i64, t: i64, l: i64) -> Config {
        Config { vocab_size: v, n_embed: c, num_heads: h, block_size: t, block_layers: l, dropout: 0.3 }
    }

    #[test]
    fn parameter_counts_match_models_md() {
        let _rng = crate::rng_lock();
        let small = config(84, 128, 4, 64, 4);
        let blog = config(84, 384, 6, 256, 6);
        let expect_small = [7_056, 21_588, 29_780, 78_932, 95_444, 111_956, 243_284, 638_420, 640_212, 838_100];
        let expect_blog = [7_056, 64_596, 162_900, 605_268, 753_108, 900_948, 2_081_364, 5_626_068, 5_631_444, 10_951_380];
        for (i, kind) in ModelKind::ALL.into_iter().enumerate() {
            assert_eq!(Model::new(kind, &small, Device::Cpu).unwrap().num_parameters(), expect_small[i], "{kind}");
            assert_eq!(Model::new(kind, &blog, Device::Cpu).unwrap().num_parameters(), expect_blog[i], "{kind}");
        }
    }

    #[test]
    fn logits_have_shape_b_t_v() {
        let _rng = crate::rng_lock();
        let cfg = config(20, 16, 4, 8, 2);
        for kind in ModelKind::ALL {
            let model = Model::new(kind, &cfg, Device::Cpu).unwrap();
            let idx = Tensor::randint(20, [3, 5], (Kind::Int64, Device::Cpu));
            assert_eq!(model.forward(&idx, false).size(), [3, 5, 20], "{kind}");
        }
    }

    #[test]
    fn later_tokens_do_not_change_earlier_logits() {
        let _rng = crate::rng_lock();
        let cfg = config(20, 16, 4, 8, 2);
        for kind in &ModelKind::ALL[2..] {
            let model = Model::new(*kind, &cfg, Device::Cpu).unwrap();
            let idx = Tensor::randint(20, [2, 8], (Kind::Int64, Device::Cpu));
            let changed = idx.copy();
            let _ = changed.narrow(1, 5, 3).fill_(7);
            let a = model.forward(&idx, false).narrow(1, 0, 5);
            let b = model.forward(&changed, false).narrow(1, 0, 5);
            assert!(a.allclose(&b, 1e-6, 1e-6, false), "{kind} leaks the future");
            // And the change does reach the later positions (the test can fail).
            let later = model.forward(&changed, false).narrow(1, 5, 3);
            assert!(!later.allclose(&model.forward(&idx, false).narrow(1, 5, 3), 1e-6, 1e-6, false), "{kind}");
        }
    }

    #[test]
    fn dropout_is_off_in_eval_and_on_in_train() {
        let _rng = crate::rng_lock();
        let cfg = config(20, 16, 4, 8, 2);
        let model = Model::new(ModelKind::V10, &cfg, Device::Cpu).unwrap();
        let idx = Tensor::randint(20, [2, 8], (Kind::Int64, Device::Cpu));
        assert!(model.forward(&idx, false).equal(&model.forward(&idx, false)));
        assert!(!model.forward(&idx, true).equal(&model.forward(&idx, true)));
    }

    #[test]
    fn indivisible_heads_are_refused() {
        let _rng = crate::rng_lock();
        let cfg = config(20, 10, 4, 8, 2);
        let err = Model::new(ModelKind::V5, &cfg, Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("not divisible"), "{err}");
        assert!(Model::new(ModelKind::V4, &cfg, Device::Cpu).is_ok());
    }

    #[test]
    fn state_dict_keys_follow_pytorch_names() {
        let _rng = crate::rng_lock();
        let cfg = config(20, 16, 4, 8, 2);
        let keys = |k| Model::new(k, &cfg, Device::Cpu).unwrap().state_dict().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(keys(ModelKind::V1), ["embedding.weight"]);
        let v4 = keys(ModelKind::V4);
        assert!(v4.contains(&"self_attention.tril".to_string()));
        let v9 = keys(ModelKind::V9);
        assert!(v9.contains(&"blocks.3.gamma".to_string()));
        assert!(v9.contains(&"blocks.2.self_attention.heads.3.tril".to_string()));
        assert!(v9.contains(&"ff.ff.0.weight".to_string()));
        let v10 = keys(ModelKind::V10);
        assert!(v10.contains(&"norm_blocks.beta".to_string()));
        assert!(v10.contains(&"blocks.1.ff.ff.2.bias".to_string()));
        assert!(!v10.iter().any(|k| k.starts_with("blocks.2")));
    }

    /// One source for "what V_k adds": `adds()` is word for word the "Adds:" sentence of
    /// each model's doc comment (the README table is checked against `adds()` in tests/cli.rs).
    #[test]
    fn each_model_documents_what_it_adds_in_the_words_of_adds() {
        let src = include_str!("models.rs");
        for kind in ModelKind::ALL {
            let n = kind.number();
            let item = if n <= 6 { format!("pub struct V{n} {{") } else { format!("pub fn v{n}(") };
            let at = src.find(&item).unwrap_or_else(|| panic!("{item} not found"));
            let above = src[..at].lines().rev().skip_while(|l| l.starts_with("#["));
            let mut doc: Vec<&str> = above.take_while(|l| l.starts_with("///")).collect();
            doc.reverse();
            let doc = doc.iter().map(|l| l.trim_start_matches("///").trim()).collect::<Vec<_>>().join(" ");
            assert_eq!(doc, format!("V{n}. Adds: {}.", kind.adds()), "{kind}");
        }
    }

    /// nanoGPT's assert: V3..V10 refuse a sequence longer than their block size.
    #[test]
    #[should_panic(expected = "cannot forward a sequence of length 9: v3's block size is only 8")]
    fn a_sequence_longer_than_the_block_size_is_refused() {
        let _rng = crate::rng_lock();
        let cfg = Config { vocab_size: 10, n_embed: 8, num_heads: 2, block_size: 8, block_layers: 1, dropout: 0.0 };
        let v1 = Model::new(ModelKind::V1, &cfg, Device::Cpu).unwrap();
        let long = Tensor::zeros([1, 9], (tch::Kind::Int64, Device::Cpu));
        assert_eq!(v1.forward(&long, false).size(), [1, 9, 10], "a bigram model takes any length");
        let v3 = Model::new(ModelKind::V3, &cfg, Device::Cpu).unwrap();
        let _ = v3.forward(&long, false);
    }
}
