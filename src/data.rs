//! Text → tokens → batches (docs/MODELS.md, "Data").

use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub use crate::tokenizer::{sha256_hex, Tokenizer, TokenizerSpec, Vocab};

/// The largest training text chargpt reads: far above any book (the default corpus is
/// 5 MB), below what its token tensors (8 bytes a character) make of a machine's memory.
pub const MAX_CORPUS_BYTES: u64 = 1 << 30;
/// The largest prompt: the models see at most their block size of it anyway.
pub const MAX_PROMPT_BYTES: u64 = 1 << 20;

/// Reads the training text (`--data`), with errors that say what is wrong and what to do.
pub fn read_text(path: &Path) -> Result<String> {
    read_utf8(path, "data file", "pass --data with a UTF-8 text file, or run `make data` for the default corpus", MAX_CORPUS_BYTES)
}

/// Reads a prompt file (`generate --prompt-file`).
pub fn read_prompt(path: &Path) -> Result<String> {
    read_utf8(path, "prompt file", "pass --prompt-file with a UTF-8 text file", MAX_PROMPT_BYTES)
}

/// A regular file of at most `limit` bytes, in UTF-8; refused before it is read otherwise
/// (a FIFO or /dev/zero would be read forever).
fn read_utf8(path: &Path, what: &str, advice: &str, limit: u64) -> Result<String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{what} {shown} does not exist ({advice})"),
        _ => anyhow::anyhow!("cannot read {what} {shown}: {e}"),
    })?;
    if meta.is_dir() {
        bail!("{what} {shown} is a directory; {advice}");
    }
    if !meta.is_file() {
        bail!("{what} {shown} is not a regular file (a device, FIFO or socket); {advice}");
    }
    if meta.len() > limit {
        bail!("{what} {shown} has {} bytes, more than the {} chargpt reads; use a smaller file", meta.len(), limit);
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {what} {shown} (check its permissions)"))?;
    if bytes.is_empty() {
        bail!("{what} {shown} is empty; {advice}");
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} {shown} is not valid UTF-8 (first bad byte at offset {}); convert it to UTF-8 first",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Which text a run was trained on: recorded in run.json and each checkpoint's JSON, so
/// that `eval` finds it and `--resume` notices when it changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Corpus {
    /// The path as given (`--data`).
    pub path: std::path::PathBuf,
    /// The same, absolute, at the time of training.
    pub absolute: std::path::PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

impl Corpus {
    /// Describes `text`, read from `path`.
    pub fn of(path: &Path, text: &str) -> Self {
        Corpus {
            path: path.to_path_buf(),
            absolute: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            bytes: text.len() as u64,
            sha256: sha256_hex(text.as_bytes()),
        }
    }
}

/// The text split 90/10 and encoded: train = the tokens of the first floor(0.9 n) of its
/// n characters, val = those of the rest, each part encoded on its own. With characters
/// that is the blog's split of the tokens; with a BPE, char and BPE runs of one text are
/// evaluated on the same validation characters.
pub struct Dataset {
    pub tokenizer: Tokenizer,
    pub train: Tensor,
    pub val: Tensor,
    /// The characters of each split (train, val), for bits per character.
    chars: [usize; 2],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Where the 90/10 split falls for `n` tokens (or characters).
pub fn split_point(n: usize) -> usize {
    // floor(0.9 * n) exactly as Python's int(0.9 * n) computes it.
    (0.9 * n as f64) as usize
}

/// The text's training and validation parts: at 90% of its characters.
pub fn split_text(text: &str) -> (&str, &str) {
    let n = split_point(text.chars().count());
    let at = text.char_indices().nth(n).map_or(text.len(), |(i, _)| i);
    text.split_at(at)
}

/// The tokenizer `spec` makes of a run's text: the characters of the whole text (the
/// blog's vocabulary), or a BPE trained on its training split only.
pub fn train_tokenizer(spec: TokenizerSpec, text: &str) -> Result<Tokenizer> {
    match spec {
        TokenizerSpec::Char => Ok(Tokenizer::Char(Vocab::from_text(text))),
        TokenizerSpec::Bpe(n) => Ok(Tokenizer::Bpe { bpe: Box::new(crate::tokenizer::Bpe::train(split_text(text).0, n)?), spec }),
    }
}

impl Dataset {
    /// The blog's dataset: the characters of `text`, split 90/10.
    pub fn new(text: &str) -> Self {
        Self::with_tokenizer(Tokenizer::Char(Vocab::from_text(text)), text).expect("every char of the text is in its own vocabulary")
    }

    /// `text` split at 90% of its characters, each part encoded with `tokenizer`.
    pub fn with_tokenizer(tokenizer: Tokenizer, text: &str) -> Result<Self> {
        let (train, val) = split_text(text);
        let chars = [train.chars().count(), val.chars().count()];
        let (train, val) = (tokenizer.encode(train)?, tokenizer.encode(val)?);
        Ok(Dataset { tokenizer, train: Tensor::from_slice(&train), val: Tensor::from_slice(&val), chars })
    }

    /// Splits the tokens of a character vocabulary 90/10 (tests, and the parity check).
    pub fn from_tokens(vocab: Vocab, tokens: &[i64]) -> Self {
        let n = split_point(tokens.len());
        let chars = [n, tokens.len() - n];
        Dataset { tokenizer: Tokenizer::Char(vocab), train: Tensor::from_slice(&tokens[..n]), val: Tensor::from_slice(&tokens[n..]), chars }
    }

    /// The characters a split's tokens decode to.
    pub fn chars(&self, split: Split) -> usize {
        self.chars[split as usize]
    }

    /// A split's characters per token: 1 with `char`, more with a BPE.
    pub fn chars_per_token(&self, split: Split) -> f64 {
        self.chars(split) as f64 / self.split(split).size()[0].max(1) as f64
    }

    /// The characters that a split's predicted tokens (all but its first) decode to: what
    /// the summed loss of [`crate::eval::deterministic_loss`] is divided by for bits per
    /// character (with `char`, one per token).
    pub fn predicted_chars(&self, split: Split) -> usize {
        let tokens = self.split(split);
        let n = tokens.size()[0];
        match &self.tokenizer {
            Tokenizer::Char(_) => (n - 1).max(0) as usize,
            tokenizer => {
                let ids = Vec::<i64>::try_from(tokens.narrow(0, 1.min(n), (n - 1).max(0)).to_device(Device::Cpu)).unwrap_or_default();
                tokenizer.decode(&ids).chars().count()
            }
        }
    }

    /// Moves the token tensors to `device`, so batches are cut where the model runs.
    pub fn to_device(self, device: Device) -> Self {
        Dataset { train: self.train.to_device(device), val: self.val.to_device(device), ..self }
    }

    pub fn split(&self, split: Split) -> &Tensor {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Both splits must hold at least one window of `block_size + 1` tokens.
    pub fn check_block_size(&self, block_size: i64) -> Result<()> {
        for split in [Split::Train, Split::Val] {
            let n = self.split(split).size()[0];
            if n < block_size + 1 {
                bail!("the {} split has {n} tokens, fewer than block_size + 1 = {}", split.name(), block_size + 1);
            }
        }
        Ok(())
    }

    /// The blog's `get_batch`: [`Self::batch_indices`], then the windows, cut where the
    /// data lives and moved to `device`.
    pub fn batch(&self, split: Split, batch_size: i64, block_size: i64, device: Device) -> (Tensor, Tensor) {
        let data = self.split(split);
        let ix = self.batch_indices(split, batch_size, block_size);
        let ix = match data.device() {
            // From page-locked memory without waiting: a copy from ordinary memory would
            // make the host wait for the device at every step.
            gpu @ Device::Cuda(_) => match crate::device::pinned(&ix) {
                Some(pinned) => pinned.to_device_(gpu, Kind::Int64, true, false),
                None => ix.to_device(gpu), // no page-locked memory to be had: the plain copy
            },
            _ => ix,
        };
        windows(data, &ix, block_size, device)
    }

    /// The blog's `torch.randint(len(data) - block_size, (batch_size,))`: drawn on the
    /// **CPU** generator wherever the data lives, as the blog (no device argument) and
    /// nanoGPT do, so that a CUDA run's batches are its CPU run's.
    pub fn batch_indices(&self, split: Split, batch_size: i64, block_size: i64) -> Tensor {
        let n = self.split(split).size()[0];
        Tensor::randint(n - block_size, [batch_size], (Kind::Int64, Device::Cpu))
    }
}

/// Bits per character of a mean loss per token (nats), at `chars_per_token`.
pub fn bits_per_char(loss: f64, chars_per_token: f64) -> f64 {
    loss / chars_per_token / std::f64::consts::LN_2
}

/// `x[b] = data[ix[b] .. ix[b] + T]`, `y[b] = data[ix[b] + 1 .. ix[b] + T + 1]`.
pub fn windows(data: &Tensor, ix: &Tensor, block_size: i64, device: Device) -> (Tensor, Tensor) {
    let offsets = Tensor::arange(block_size, (Kind::Int64, data.device()));
    let idx = ix.unsqueeze(1) + offsets.unsqueeze(0);
    let x = data.take(&idx);
    let y = data.take(&(idx + 1));
    (x.to_device(device), y.to_device(device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_is_ninety_ten() {
        let text: String = (0..1000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let ds = Dataset::new(&text);
        assert_eq!(ds.train.size(), [900]);
        assert_eq!(ds.val.size(), [100]);
        assert_eq!(split_point(11), 9);
        assert_eq!(split_point(10), 9);
    }

    #[test]
    fn batch_targets_are_inputs_shifted_by_one() {
        let _rng = crate::rng_lock();
        let text: String = (0..500).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let ds = Dataset::new(&text);
        let (x, y) = ds.batch(Split::Train, 8, 16, Device::Cpu);
        assert_eq!(x.size(), [8, 16]);
        assert_eq!(x.narrow(1, 1, 15), y.narrow(1, 0, 15));
        // The alphabet cycles, so each target is the next letter.
        assert_eq!((&x + 1).remainder(26), y.remainder(26));
    }

    #[test]
    fn batch_starts_are_one_randint_below_len_minus_block() {
        let _rng = crate::rng_lock();
        let tokens: Vec<i64> = (0..200).collect();
        let ds = Dataset::from_tokens(Vocab::from_text("x"), &tokens);
        let (n, block, batch) = (ds.train.size()[0], 16, 64);
        // The blog's draw, replayed: x's first column is the tokens at ix (token i == i).
        tch::manual_seed(7);
        let expected = Tensor::randint(n - block, [batch], (Kind::Int64, Device::Cpu));
        tch::manual_seed(7);
        let (x, _) = ds.batch(Split::Train, batch, block, Device::Cpu);
        assert_eq!(x.select(1, 0), expected);
        // And nothing else is drawn: the generator is where one randint leaves it.
        let next = Tensor::randint(1000, [4], (Kind::Int64, Device::Cpu));
        tch::manual_seed(7);
        let _ = Tensor::randint(n - block, [batch], (Kind::Int64, Device::Cpu));
        assert_eq!(next, Tensor::randint(1000, [4], (Kind::Int64, Device::Cpu)));
    }

    #[test]
    fn too_short_split_is_refused() {
        let ds = Dataset::new("abcdefghijklmnopqrst");
        let err = ds.check_block_size(8).unwrap_err().to_string();
        assert!(err.contains("val split"), "{err}");
    }

    proptest! {
        #[test]
        fn any_utf8_round_trips(text in ".{1,200}") {
            let vocab = Vocab::from_text(&text);
            prop_assert_eq!(vocab.decode(&vocab.encode(&text).unwrap()), text);
        }

        #[test]
        fn split_never_loses_or_duplicates(tokens in proptest::collection::vec(0i64..50, 1..400)) {
            let vocab = Vocab::from_text("x");
            let ds = Dataset::from_tokens(vocab, &tokens);
            let joined = Tensor::cat(&[&ds.train, &ds.val], 0);
            prop_assert_eq!(Vec::<i64>::try_from(joined).unwrap(), tokens);
        }

        #[test]
        fn batches_stay_in_range(n in 20usize..300, block in 1i64..16, batch in 1i64..9, seed in 0i64..1000) {
            let _rng = crate::rng_lock();
            tch::manual_seed(seed);
            let tokens: Vec<i64> = (0..n as i64).collect();
            let ds = Dataset::from_tokens(Vocab::from_text("x"), &tokens);
            prop_assume!(ds.check_block_size(block).is_ok());
            for split in [Split::Train, Split::Val] {
                let (x, y) = ds.batch(split, batch, block, Device::Cpu);
                let data = ds.split(split);
                let lo = data.get(0).int64_value(&[]);
                let hi = data.get(data.size()[0] - 1).int64_value(&[]);
                prop_assert!(x.min().int64_value(&[]) >= lo && y.max().int64_value(&[]) <= hi);
                prop_assert_eq!(x.size(), vec![batch, block]);
            }
        }
    }
}
