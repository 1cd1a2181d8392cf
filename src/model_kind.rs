//! The registry of the ten models: their names (`v1`..`v10`), what each adds over its
//! predecessor (one source for `chargpt models`, the README table and the models' doc
//! comments), parsing and serde, and the size checks made before one is built.

use crate::layers::Config;
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;

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

    /// What the model adds over its predecessor: the "Adds:" sentence of its doc comment
    /// above (a test holds the two, and the README table, to the same words).
    pub fn adds(self) -> &'static str {
        match self {
            ModelKind::V1 => "a V x V embedding table that is the logits (a bigram model)",
            ModelKind::V2 => "a narrower embedding (C wide) and a linear layer from it to the logits",
            ModelKind::V3 => "learned position embeddings, added to the token embeddings",
            ModelKind::V4 => "one causal self-attention head as wide as the embedding (C)",
            ModelKind::V5 => "H heads of width C/H instead of one wide head, and a projection after them",
            ModelKind::V6 => "a feed-forward layer (Linear + ReLU, C wide) after the attention",
            ModelKind::V7 => {
                "three plain blocks (Block1: attention without the projection, then a feed-forward; no residuals, no LayerNorm) in place of V6's attention and feed-forward"
            }
            ModelKind::V8 => "residual connections, the projection back, and a 4x wide feed-forward (Block2)",
            ModelKind::V9 => {
                "a LayerNorm before the attention and before the feed-forward in each block (Block3), and a final LayerNorm (kept inside `blocks`, as `blocks.3`)"
            }
            ModelKind::V10 => {
                "L blocks instead of 3, and dropout on attention weights, projection and feed-forward (Block4); the final LayerNorm becomes `norm_blocks`: the small GPT"
            }
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

/// As its name, `"v1"` .. `"v10"` (run.json's `models`).
impl serde::Serialize for ModelKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ModelKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
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

/// Checks the hyperparameters a model needs before anything is built. The one place
/// sizes are validated; the messages name the flags that set them.
pub fn validate(kind: ModelKind, cfg: &Config) -> Result<()> {
    for (name, value) in [
        ("--vocab-size", cfg.vocab_size),
        ("--n-embed", cfg.n_embed),
        ("--num-heads", cfg.num_heads),
        ("--block-size", cfg.block_size),
        ("--block-layers", cfg.block_layers),
    ] {
        if value <= 0 {
            bail!("{name} must be a positive integer, got {value}");
        }
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        bail!("--dropout must be in [0, 1), got {}", cfg.dropout);
    }
    if kind.has_multi_head() && cfg.n_embed % cfg.num_heads != 0 {
        bail!(
            "--n-embed ({}) is not divisible by --num-heads ({}); choose sizes with n_embed % num_heads == 0",
            cfg.n_embed,
            cfg.num_heads
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_parse() {
        assert_eq!(parse_model_list("v1,V4, v10").unwrap(), [ModelKind::V1, ModelKind::V4, ModelKind::V10]);
        assert!(parse_model_list("v11").unwrap_err().to_string().contains("unknown model"));
    }
}
