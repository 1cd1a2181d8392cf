//! Checkpoints: safetensors with exactly the PyTorch state-dict keys, a JSON beside them
//! that makes them self-describing, and a resume file holding everything training needs
//! to continue. Every file is written atomically (temporary file, fsync, rename), so a
//! crash at any moment leaves the previous complete file in place.

use crate::layers::Config;
use crate::model_kind::ModelKind;
use crate::models::Model;
use crate::tokenizer::{Tokenizer, Vocab};
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The JSON written beside a model's safetensors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub model: String,
    pub config: Config,
    /// The vocabulary in token order (a character run's; empty for a BPE run).
    pub vocab: String,
    /// A BPE run's tokenizer, in the same folder (absent: characters, `vocab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<crate::tokenizer::TokenizerRecord>,
    /// Training steps completed when this was written.
    pub steps_done: i64,
    /// True once the model's training (and sample) finished.
    pub finished: bool,
    pub chargpt_version: String,
    /// The text it was trained on (absent in checkpoints made elsewhere, or before chargpt
    /// recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<crate::data::Corpus>,
    /// The device, implementation, precision, threads, CPU, libtorch and MKL mode the
    /// weights were computed with (absent before chargpt recorded them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arithmetic: Option<crate::arithmetic::Arithmetic>,
    /// Which steps were computed how, when a resume changed it (`arithmetic` is the last
    /// stretch's): one stretch per precision, device, thread count or machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<crate::arithmetic::Stretch>,
    /// How the training sample (vN.sample.txt) was drawn, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_sample: Option<String>,
}

impl ModelInfo {
    pub fn kind(&self) -> Result<ModelKind> {
        self.model.parse()
    }
}

/// The folder a file is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = folder_of(path);
    let name = path.file_name().context("checkpoint path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        crate::test_hooks::pause_before_rename();
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Uint8 => Dtype::U8,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        other => bail!("cannot store a {other:?} tensor in safetensors"),
    })
}

fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::U8 => Kind::Uint8,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        other => bail!("unsupported tensor type {other:?} in safetensors file"),
    })
}

/// Serialises named tensors (any device) plus string metadata into safetensors bytes.
pub fn to_safetensors_bytes(tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut bytes, numel);
        let shape = t.size().iter().map(|&d| d as usize).collect();
        owned.push((name.clone(), dtype_of(t.kind())?, shape, bytes));
    }
    let views: Vec<(&str, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.as_str(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::tensor::serialize(views, metadata)?)
}

/// Reads a safetensors file into CPU tensors (in file order) and its metadata.
/// Named tensors and the file's string metadata.
pub type TensorsAndMetadata = (Vec<(String, Tensor)>, HashMap<String, String>);

pub fn read_safetensors(path: &Path) -> Result<TensorsAndMetadata> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("checkpoint {} does not exist; pass the .safetensors file written by `chargpt train`", path.display())
        }
        _ => anyhow::anyhow!("cannot read checkpoint {}: {e}", path.display()),
    })?;
    let bad = |e: safetensors::SafeTensorError| {
        anyhow::anyhow!("{} is not a valid safetensors file ({e}); it may be truncated or of another format", path.display())
    };
    let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?)?;
        out.push((name, t));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// The JSON that describes a checkpoint's weights lies beside them, with the same stem.
pub fn info_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Writes the model's state dict (exact PyTorch keys) and its JSON, both atomically.
pub fn save_model(path: &Path, model: &Model, info: &ModelInfo) -> Result<()> {
    // One metadata entry, as PyTorch's safetensors writes: a HashMap of more would be
    // serialised in random order and make identical checkpoints differ byte-wise.
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_atomic(path, &to_safetensors_bytes(&model.state_dict(), Some(meta))?)?;
    write_atomic(&info_path(path), serde_json::to_string_pretty(info)?.as_bytes())
}

/// Reads the JSON of a checkpoint given the path of its .safetensors or .json.
/// The weights a `--checkpoint` names: the .safetensors itself, or the one beside a .json.
pub fn weights_path(path: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "json") {
        path.with_extension("safetensors")
    } else {
        path.to_path_buf()
    }
}

pub fn read_info(path: &Path) -> Result<(PathBuf, ModelInfo)> {
    let weights = weights_path(path);
    if weights.is_dir() {
        bail!("{} is a directory; pass a model's .safetensors file (e.g. RUN_DIR/v10.safetensors)", weights.display());
    }
    if !weights.exists() {
        bail!("checkpoint {} does not exist; pass the .safetensors file written by `chargpt train`", weights.display());
    }
    let json_path = info_path(&weights);
    let text = std::fs::read_to_string(&json_path).map_err(|e| {
        anyhow::anyhow!("cannot read {} ({e}): a checkpoint needs the JSON written beside its .safetensors", json_path.display())
    })?;
    let info: ModelInfo = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a chargpt checkpoint description ({e})", json_path.display()))?;
    Ok((weights, info))
}

/// Loads a checkpoint (the .safetensors or its .json) into a model on `device`.
pub fn load_model(path: &Path, device: Device) -> Result<(Model, Tokenizer, ModelInfo)> {
    let (weights, info) = read_info(path)?;
    let kind = info.kind().with_context(|| format!("in {}", info_path(&weights).display()))?;
    let tokenizer = match &info.tokenizer {
        None => Tokenizer::Char(Vocab::from_chars(&info.vocab).with_context(|| format!("in {}", info_path(&weights).display()))?),
        Some(record) => Tokenizer::load_recorded(folder_of(&weights), record)?,
    };
    if tokenizer.len() as i64 != info.config.vocab_size {
        bail!("{}: the tokenizer has {} tokens but config says {}", info_path(&weights).display(), tokenizer.len(), info.config.vocab_size);
    }
    crate::model_kind::validate(kind, &info.config)
        .map_err(|e| anyhow::anyhow!("{}: {}", info_path(&weights).display(), as_fields(&e.to_string())))?;
    crate::footprint::check_model(kind, &info.config, device, &info_path(&weights))?;
    let (tensors, _) = read_safetensors(&weights)?;
    if let Some((name, _)) = tensors.iter().find(|(_, t)| t.is_floating_point() && t.isfinite().all().int64_value(&[]) == 0) {
        bail!(
            "{}: tensor {name} holds NaN or infinite values, so the model cannot predict anything; use a checkpoint from before the loss diverged",
            weights.display()
        );
    }
    // Building draws random numbers; keep the caller's generator state untouched.
    let rng = crate::rng::RngState::try_save(crate::rng::Generator::Cpu)?;
    let model = Model::new(kind, &info.config, device);
    rng.try_restore()?;
    let model = model?;
    model.load_state_dict(&tensors).with_context(|| format!("{} does not match its JSON description", weights.display()))?;
    Ok((model, tokenizer, info))
}

/// A validation message about flags (`--n-embed must be ...`), about the fields of a file
/// instead (`field n_embed must be ...`): for values read from run.json or a JSON.
pub fn as_fields(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("--") {
        out.push_str(&rest[..at]);
        let flag: String = rest[at + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        out.push_str(&format!("field {}", flag.replace('-', "_")));
        rest = &rest[at + 2 + flag.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod field_tests {
    #[test]
    fn flag_messages_become_field_messages() {
        assert_eq!(
            super::as_fields("--eval-every must be a positive integer, got 0"),
            "field eval_every must be a positive integer, got 0"
        );
        assert_eq!(super::as_fields("no flag here"), "no flag here");
    }
}
