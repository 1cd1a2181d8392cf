//! The ten models of the blog, V1 (a bigram table) to V10 (a small GPT).
//! Each is built from the shared layers in PyTorch's build order; each `forward`
//! reads like the docs/MODELS.md table row, so the step from one to the next is visible here.

use crate::layers::{Block, BlockKind, Config, Embedding, FeedForward, FeedForwardKind, Head, LayerNorm, Linear, MultiHead, MultiHeadKind};
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;
use tch::nn::{Path, VarStore};
use tch::{Device, Kind, Tensor};

/// What every model does: token indices `[B, T]` to logits `[B, T, V]`.
pub trait LanguageModel {
    fn forward(&self, idx: &Tensor, train: bool) -> Tensor;
}

/// Token embedding plus learned position embedding: the input of V3..V10.
struct TokenAndPosition {
    embedding: Embedding,
    positional_embedding: Embedding,
}

impl TokenAndPosition {
    fn new(p: &Path, cfg: &Config) -> Self {
        let embedding = Embedding::new(p / "embedding", cfg.vocab_size, cfg.n_embed);
        let positional_embedding = Embedding::new(p / "positional_embedding", cfg.block_size, cfg.n_embed);
        TokenAndPosition { embedding, positional_embedding }
    }

    fn forward(&self, idx: &Tensor) -> Tensor {
        let t = idx.size()[1];
        let pos = Tensor::arange(t, (Kind::Int64, idx.device()));
        self.embedding.forward(idx) + self.positional_embedding.forward(&pos)
    }
}

/// V1: the embedding table *is* the logits (a bigram model).
pub struct V1 {
    embedding: Embedding,
}

impl V1 {
    pub fn new(p: &Path, cfg: &Config) -> Self {
        V1 { embedding: Embedding::new(p / "embedding", cfg.vocab_size, cfg.vocab_size) }
    }
}

impl LanguageModel for V1 {
    fn forward(&self, idx: &Tensor, _train: bool) -> Tensor {
        self.embedding.forward(idx)
    }
}

/// V2: a narrower embedding and a linear layer to the logits.
pub struct V2 {
    embedding: Embedding,
    fc: Linear,
}

impl V2 {
    pub fn new(p: &Path, cfg: &Config) -> Self {
        let embedding = Embedding::new(p / "embedding", cfg.vocab_size, cfg.n_embed);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        V2 { embedding, fc }
    }
}

impl LanguageModel for V2 {
    fn forward(&self, idx: &Tensor, _train: bool) -> Tensor {
        self.fc.forward(&self.embedding.forward(idx))
    }
}

/// V3: adds position embeddings.
pub struct V3 {
    input: TokenAndPosition,
    fc: Linear,
}

impl V3 {
    pub fn new(p: &Path, cfg: &Config) -> Self {
        let input = TokenAndPosition::new(p, cfg);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        V3 { input, fc }
    }
}

impl LanguageModel for V3 {
    fn forward(&self, idx: &Tensor, _train: bool) -> Tensor {
        self.fc.forward(&self.input.forward(idx))
    }
}

/// V4: adds one self-attention head as wide as the embedding.
pub struct V4 {
    input: TokenAndPosition,
    fc: Linear,
    self_attention: Head,
    fast: bool,
}

impl V4 {
    pub fn new(p: &Path, cfg: &Config) -> Self {
        let input = TokenAndPosition::new(p, cfg);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        let self_attention = Head::new(p / "self_attention", cfg.n_embed, cfg.n_embed, cfg.block_size, None);
        V4 { input, fc, self_attention, fast: cfg.fast }
    }
}

impl LanguageModel for V4 {
    fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        let x = self.input.forward(idx);
        let attended = if self.fast {
            crate::fast::attention(std::slice::from_ref(&self.self_attention), &x, train)
        } else {
            self.self_attention.forward(&x, train)
        };
        self.fc.forward(&attended)
    }
}

/// V5: multi-head attention with a projection instead of one wide head.
pub struct V5 {
    input: TokenAndPosition,
    fc: Linear,
    self_attention: MultiHead,
}

impl V5 {
    pub fn new(p: &Path, cfg: &Config) -> Self {
        let input = TokenAndPosition::new(p, cfg);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        let self_attention = MultiHead::new(p / "self_attention", cfg, MultiHeadKind::Proj);
        V5 { input, fc, self_attention }
    }
}

impl LanguageModel for V5 {
    fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        self.fc.forward(&self.self_attention.forward(&self.input.forward(idx), train))
    }
}

/// V6: adds a feed-forward layer after the attention.
pub struct V6 {
    input: TokenAndPosition,
    fc: Linear,
    self_attention: MultiHead,
    ff: FeedForward,
}

impl V6 {
    pub fn new(p: &Path, cfg: &Config) -> Self {
        let input = TokenAndPosition::new(p, cfg);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        let self_attention = MultiHead::new(p / "self_attention", cfg, MultiHeadKind::Proj);
        let ff = FeedForward::new(p / "ff", cfg, FeedForwardKind::FF1);
        V6 { input, fc, self_attention, ff }
    }
}

impl LanguageModel for V6 {
    fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        let x = self.self_attention.forward(&self.input.forward(idx), train);
        self.fc.forward(&self.ff.forward(&x, train))
    }
}

/// V7..V10 share this shape: `fc(final_norm(blocks(tok + pos)))`, plus the blog's
/// unused top-level `ff` (it has parameters, so it is built, counted and optimised).
pub struct BlockStack {
    input: TokenAndPosition,
    fc: Linear,
    blocks: Vec<Block>,
    /// V9's `blocks.3` LayerNorm or V10's `norm_blocks`.
    final_norm: Option<LayerNorm>,
    _unused_ff: FeedForward,
}

impl BlockStack {
    /// `norm` says where the final LayerNorm lives: `None`, inside `blocks` (V9) or beside it (V10).
    fn new(p: &Path, cfg: &Config, kind: BlockKind, n_blocks: i64, norm: FinalNorm) -> Self {
        let input = TokenAndPosition::new(p, cfg);
        let fc = Linear::new(p / "fc", cfg.n_embed, cfg.vocab_size, true);
        let blocks: Vec<Block> = (0..n_blocks).map(|b| Block::new(p / "blocks" / b, cfg, kind)).collect();
        let final_norm = match norm {
            FinalNorm::None => None,
            FinalNorm::InsideBlocks => Some(LayerNorm::new(p / "blocks" / n_blocks, cfg.n_embed, cfg.fast)),
            FinalNorm::AfterBlocks => Some(LayerNorm::new(p / "norm_blocks", cfg.n_embed, cfg.fast)),
        };
        let unused_ff = FeedForward::new(p / "ff", cfg, FeedForwardKind::FF1);
        BlockStack { input, fc, blocks, final_norm, _unused_ff: unused_ff }
    }
}

#[derive(Clone, Copy)]
enum FinalNorm {
    None,
    InsideBlocks,
    AfterBlocks,
}

impl LanguageModel for BlockStack {
    fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        let mut x = self.input.forward(idx);
        for block in &self.blocks {
            x = block.forward(&x, train);
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward(&x);
        }
        self.fc.forward(&x)
    }
}

/// V7: three blocks of attention then feed-forward, no residuals (`L` is ignored).
pub fn v7(p: &Path, cfg: &Config) -> BlockStack {
    BlockStack::new(p, cfg, BlockKind::Plain, 3, FinalNorm::None)
}

/// V8: adds residual connections, projections and the 4x wide feed-forward.
pub fn v8(p: &Path, cfg: &Config) -> BlockStack {
    BlockStack::new(p, cfg, BlockKind::Residual, 3, FinalNorm::None)
}

/// V9: adds pre-LayerNorms in each block and one after the blocks.
pub fn v9(p: &Path, cfg: &Config) -> BlockStack {
    BlockStack::new(p, cfg, BlockKind::PreNorm, 3, FinalNorm::InsideBlocks)
}

/// V10: `L` blocks with dropout, and the final LayerNorm as `norm_blocks`.
pub fn v10(p: &Path, cfg: &Config) -> BlockStack {
    BlockStack::new(p, cfg, BlockKind::PreNormDropout, cfg.block_layers, FinalNorm::AfterBlocks)
}

/// The name of one of the ten models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelKind {
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
}

impl ModelKind {
    pub const ALL: [ModelKind; 10] = [
        ModelKind::V1,
        ModelKind::V2,
        ModelKind::V3,
        ModelKind::V4,
        ModelKind::V5,
        ModelKind::V6,
        ModelKind::V7,
        ModelKind::V8,
        ModelKind::V9,
        ModelKind::V10,
    ];

    pub fn number(self) -> usize {
        self as usize + 1
    }

    /// One line on what the model adds over its predecessor.
    pub fn adds(self) -> &'static str {
        match self {
            ModelKind::V1 => "bigram: a V x V embedding table is the logits",
            ModelKind::V2 => "narrower embedding (C) + linear layer to the logits",
            ModelKind::V3 => "learned position embeddings",
            ModelKind::V4 => "one causal self-attention head, C wide",
            ModelKind::V5 => "H heads of width C/H + projection",
            ModelKind::V6 => "a feed-forward layer (Linear + ReLU)",
            ModelKind::V7 => "3 blocks of attention + feed-forward",
            ModelKind::V8 => "residual connections, 4x feed-forward, projections",
            ModelKind::V9 => "pre-LayerNorm in each block + a final LayerNorm",
            ModelKind::V10 => "L blocks, dropout: the small GPT",
        }
    }

    /// True when the model has no position embedding and so sees its whole context.
    pub fn is_position_free(self) -> bool {
        matches!(self, ModelKind::V1 | ModelKind::V2)
    }

    /// True when the model uses multi-head attention (and so needs `C % H == 0`).
    pub fn has_multi_head(self) -> bool {
        self >= ModelKind::V5
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.number())
    }
}

impl FromStr for ModelKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        ModelKind::ALL
            .into_iter()
            .find(|m| m.to_string() == lower)
            .ok_or_else(|| anyhow::anyhow!("unknown model {s:?}: choose from v1, v2, ..., v10"))
    }
}

/// Parses `v1,v4,v10` (or `all`) into model kinds, in the order given, without repeats.
pub fn parse_model_list(list: &str) -> Result<Vec<ModelKind>> {
    if list.trim().eq_ignore_ascii_case("all") {
        return Ok(ModelKind::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in list.split(',').filter(|s| !s.trim().is_empty()) {
        let kind: ModelKind = name.parse()?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        bail!("no model named in --models: give e.g. v1,v4,v10 or all");
    }
    Ok(out)
}

/// Checks the hyperparameters a model needs before anything is built.
pub fn validate(kind: ModelKind, cfg: &Config) -> Result<()> {
    for (name, value) in [
        ("vocab size", cfg.vocab_size),
        ("n_embed", cfg.n_embed),
        ("num_heads", cfg.num_heads),
        ("block_size", cfg.block_size),
        ("block_layers", cfg.block_layers),
    ] {
        if value <= 0 {
            bail!("{name} must be positive, got {value}");
        }
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        bail!("dropout must be in [0, 1), got {}", cfg.dropout);
    }
    if kind.has_multi_head() && cfg.n_embed % cfg.num_heads != 0 {
        bail!("n_embed ({}) is not divisible by num_heads ({}); choose sizes with n_embed % num_heads == 0", cfg.n_embed, cfg.num_heads);
    }
    Ok(())
}

/// A model with its parameters: the variable store holds every state-dict entry by name.
pub struct Model {
    pub kind: ModelKind,
    pub cfg: Config,
    pub vs: VarStore,
    net: Box<dyn LanguageModel>,
}

impl Model {
    /// Builds the model on the CPU (drawing the initial weights as PyTorch would), then
    /// moves it to `device`.
    pub fn new(kind: ModelKind, cfg: &Config, device: Device) -> Result<Self> {
        validate(kind, cfg)?;
        let mut vs = VarStore::new(Device::Cpu);
        let p = vs.root();
        let net: Box<dyn LanguageModel> = match kind {
            ModelKind::V1 => Box::new(V1::new(&p, cfg)),
            ModelKind::V2 => Box::new(V2::new(&p, cfg)),
            ModelKind::V3 => Box::new(V3::new(&p, cfg)),
            ModelKind::V4 => Box::new(V4::new(&p, cfg)),
            ModelKind::V5 => Box::new(V5::new(&p, cfg)),
            ModelKind::V6 => Box::new(V6::new(&p, cfg)),
            ModelKind::V7 => Box::new(v7(&p, cfg)),
            ModelKind::V8 => Box::new(v8(&p, cfg)),
            ModelKind::V9 => Box::new(v9(&p, cfg)),
            ModelKind::V10 => Box::new(v10(&p, cfg)),
        };
        vs.set_device(device);
        Ok(Model { kind, cfg: cfg.clone(), vs, net })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Logits `[B, T, V]`; `train` turns dropout on.
    pub fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        self.net.forward(idx, train)
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
        Config { vocab_size: v, n_embed: c, num_heads: h, block_size: t, block_layers: l, dropout: 0.3, fast: false }
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

    #[test]
    fn model_names_parse() {
        assert_eq!(parse_model_list("v1,V4, v10").unwrap(), [ModelKind::V1, ModelKind::V4, ModelKind::V10]);
        assert!(parse_model_list("v11").unwrap_err().to_string().contains("unknown model"));
    }
}
