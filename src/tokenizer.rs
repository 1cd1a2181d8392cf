//! Tokenizers: the blog's characters, or a byte-level BPE (Hugging Face's `tokenizers`, the
//! library behind Python's `tokenizers` package) trained on the training split only, so
//! that any UTF-8 text encodes and nothing is unknown. The blog's closing hypothesis is
//! that tokens beat characters for a big enough model; this is the seam that lets the ten
//! models be trained on either and compared fairly, in bits per character.
//!
//! Not yet wired to `chargpt train` (`--tokenizer char|bpe:N` is the next step); the
//! character vocabulary of `crate::data` stays what every run uses.

use anyhow::{bail, Context, Result};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, TokenizerBuilder, TokenizerImpl,
};

/// `--tokenizer`: `char` (the blog's), or `bpe:N` (a byte-level BPE of N tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerSpec {
    Char,
    Bpe(usize),
}

/// A byte-level BPE starts from the 256 byte tokens; every merge adds one.
pub const BPE_MIN: usize = 256;
/// Far above what a book gives (and above V1's V x V table's reach): a guard against typos.
pub const BPE_MAX: usize = 1 << 16;

impl std::str::FromStr for TokenizerSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "char" {
            return Ok(TokenizerSpec::Char);
        }
        let Some(n) = s.strip_prefix("bpe:").and_then(|n| n.parse::<usize>().ok()) else {
            bail!("--tokenizer {s:?}: give `char` or `bpe:N` (N tokens, e.g. bpe:512)")
        };
        if !(BPE_MIN..=BPE_MAX).contains(&n) {
            bail!("--tokenizer bpe:{n}: a byte-level BPE has from {BPE_MIN} (the bytes) to {BPE_MAX} tokens");
        }
        Ok(TokenizerSpec::Bpe(n))
    }
}

impl std::fmt::Display for TokenizerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenizerSpec::Char => f.write_str("char"),
            TokenizerSpec::Bpe(n) => write!(f, "bpe:{n}"),
        }
    }
}

type Impl = TokenizerImpl<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

/// A trained byte-level BPE.
pub struct Bpe {
    inner: Impl,
}

impl Bpe {
    /// Trains a BPE of (at most) `tokens` tokens on `text` (the training split): the 256
    /// bytes, then the most frequent merges. A text too short for that many merges gives
    /// fewer tokens (`vocab_size` says how many).
    pub fn train(text: &str, tokens: usize) -> Result<Bpe> {
        let mut inner: Impl = TokenizerBuilder::new()
            .with_model(BPE::default())
            // No prefix space: the text is one stream, and a decoded sample is its bytes.
            .with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false))))
            .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the BPE tokenizer: {e}"))?;
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(tokens)
            .min_frequency(0)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .special_tokens(Vec::<AddedToken>::new())
            .build();
        inner.train(&mut trainer, std::iter::once(text)).map_err(|e| anyhow::anyhow!("cannot train the BPE: {e}"))?;
        Ok(Bpe { inner })
    }

    /// Reads a `tokenizer.json` written by [`Bpe::save`] (or by Python's `tokenizers`).
    pub fn load(path: &Path) -> Result<Bpe> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let inner: Impl =
            serde_json::from_str(&text).with_context(|| format!("{} is not a byte-level BPE tokenizer.json", path.display()))?;
        Ok(Bpe { inner })
    }

    /// The library's `tokenizer.json`, as its bytes.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| anyhow::anyhow!("cannot write the tokenizer: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let encoding = self.inner.encode(text, false).map_err(|e| anyhow::anyhow!("cannot encode with the BPE: {e}"))?;
        Ok(encoding.get_ids().iter().map(|&id| id as i64).collect())
    }

    /// The text of `tokens`. Bytes that do not form whole characters (a sample cut inside
    /// one) are replaced by U+FFFD, as the library does.
    pub fn decode(&self, tokens: &[i64]) -> Result<String> {
        let ids: Vec<u32> = tokens.iter().map(|&t| u32::try_from(t).unwrap_or(u32::MAX)).collect();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size()) {
            bail!("token {bad} is not in this BPE's {} tokens", self.vocab_size());
        }
        self.inner.decode(&ids, false).map_err(|e| anyhow::anyhow!("cannot decode with the BPE: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excerpt() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/reference/excerpt.txt")).unwrap()
    }

    #[test]
    fn specs_parse_and_refuse_what_no_bpe_has() {
        assert_eq!("char".parse::<TokenizerSpec>().unwrap(), TokenizerSpec::Char);
        assert_eq!("bpe:512".parse::<TokenizerSpec>().unwrap(), TokenizerSpec::Bpe(512));
        assert_eq!(TokenizerSpec::Bpe(512).to_string(), "bpe:512");
        for (bad, says) in [("bpe:100", "from 256"), ("bpe:70000", "65536"), ("bpe", "char` or `bpe:N"), ("words", "char` or `bpe:N")] {
            let e = bad.parse::<TokenizerSpec>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    /// Any UTF-8 text round-trips, characters the BPE never saw (CJK, emoji) included, and
    /// the merges make the training text shorter in tokens than in characters.
    #[test]
    fn a_trained_bpe_encodes_any_text_and_decodes_it_back() {
        let text = excerpt();
        let bpe = Bpe::train(&text, 300).unwrap();
        assert_eq!(bpe.vocab_size(), 300);
        for sample in ["the king", "Hello 世界 🙂, naïve café", "", "\r\n\t"] {
            let ids = bpe.encode(sample).unwrap();
            assert!(ids.iter().all(|&id| (0..300).contains(&id)), "{sample}: {ids:?}");
            assert_eq!(bpe.decode(&ids).unwrap(), sample);
        }
        let ids = bpe.encode(&text).unwrap();
        assert!(ids.len() < text.chars().count() * 9 / 10, "{} tokens for {} characters", ids.len(), text.chars().count());
        assert!(bpe.decode(&[300]).unwrap_err().to_string().contains("not in this BPE's 300 tokens"));
    }

    /// Saved and loaded, a BPE encodes as before; training is deterministic.
    #[test]
    fn a_bpe_saves_loads_and_trains_the_same_twice() {
        let text = excerpt();
        let bpe = Bpe::train(&text, 320).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, bpe.to_json().unwrap()).unwrap();
        let loaded = Bpe::load(&path).unwrap();
        assert_eq!(loaded.encode(&text).unwrap(), bpe.encode(&text).unwrap());
        assert_eq!(Bpe::train(&text, 320).unwrap().to_json().unwrap(), bpe.to_json().unwrap());
        std::fs::write(&path, "{}").unwrap();
        assert!(Bpe::load(&path).is_err());
    }
}
