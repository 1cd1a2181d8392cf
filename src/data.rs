//! Text → tokens → batches (docs/MODELS.md, "Data").

use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Character vocabulary: the distinct chars of the text, sorted by code point;
/// a character's token is its rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab { chars }
    }

    /// Rebuilds a vocabulary saved with [`Vocab::as_string`]; refuses unsorted or repeated chars.
    pub fn from_chars(chars: &str) -> Result<Self> {
        let chars: Vec<char> = chars.chars().collect();
        if chars.windows(2).any(|w| w[0] >= w[1]) {
            bail!("vocabulary is not strictly sorted by code point");
        }
        Ok(Vocab { chars })
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The vocabulary as one string, in token order (how checkpoints store it).
    pub fn as_string(&self) -> String {
        self.chars.iter().collect()
    }

    pub fn token(&self, c: char) -> Option<i64> {
        self.chars.binary_search(&c).ok().map(|i| i as i64)
    }

    /// Encodes `text`; an error lists every character that is not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let mut unknown: Vec<char> = text.chars().filter(|&c| self.token(c).is_none()).collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            unknown.dedup();
            let listed: Vec<String> = unknown.iter().map(|c| format!("{c:?}")).collect();
            bail!("characters not in the model's vocabulary: {} (use only characters of the training text)", listed.join(", "));
        }
        Ok(text.chars().map(|c| self.token(c).unwrap_or_default()).collect())
    }

    pub fn decode(&self, tokens: &[i64]) -> String {
        tokens.iter().map(|&t| self.chars[t as usize]).collect()
    }

    pub fn decode_one(&self, token: i64) -> char {
        self.chars[token as usize]
    }
}

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
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        Corpus {
            path: path.to_path_buf(),
            absolute: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            bytes: text.len() as u64,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// The encoded text split 90/10: train = the first floor(0.9 n) tokens, val = the rest.
pub struct Dataset {
    pub vocab: Vocab,
    pub train: Tensor,
    pub val: Tensor,
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

/// Where the 90/10 split falls for `n` tokens.
pub fn split_point(n: usize) -> usize {
    // floor(0.9 * n) exactly as Python's int(0.9 * n) computes it.
    (0.9 * n as f64) as usize
}

impl Dataset {
    pub fn new(text: &str) -> Self {
        let vocab = Vocab::from_text(text);
        let tokens = vocab.encode(text).expect("every char of the text is in its own vocabulary");
        Self::from_tokens(vocab, &tokens)
    }

    /// Splits tokens of an existing vocabulary (used when a checkpoint fixes the vocabulary).
    pub fn from_tokens(vocab: Vocab, tokens: &[i64]) -> Self {
        let n = split_point(tokens.len());
        Dataset { vocab, train: Tensor::from_slice(&tokens[..n]), val: Tensor::from_slice(&tokens[n..]) }
    }

    /// Moves the token tensors to `device`, so batches are cut where the model runs.
    pub fn to_device(self, device: Device) -> Self {
        Dataset { vocab: self.vocab, train: self.train.to_device(device), val: self.val.to_device(device) }
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
        let ix = self.batch_indices(split, batch_size, block_size).to_device(data.device());
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
    fn vocabulary_is_sorted_and_round_trips_non_ascii() {
        let text = "héllo wörld — ünïcode ✓ 漢字\n";
        let vocab = Vocab::from_text(text);
        assert!(vocab.chars().windows(2).all(|w| w[0] < w[1]));
        assert_eq!(vocab.token('\n'), Some(0));
        assert_eq!(vocab.decode(&vocab.encode(text).unwrap()), text);
        assert_eq!(Vocab::from_chars(&vocab.as_string()).unwrap(), vocab);
    }

    #[test]
    fn unknown_characters_are_listed() {
        let vocab = Vocab::from_text("abc");
        let err = vocab.encode("abxyx").unwrap_err().to_string();
        assert!(err.contains("'x', 'y'"), "{err}");
    }

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
