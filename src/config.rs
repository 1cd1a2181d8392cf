//! A training run's configuration, saved as `run.json`: the models, the sizes, the
//! trainer's settings, the corpus and how the numbers are computed. Built from a preset
//! and flags (`chargpt train`), or read back from a run folder to continue it, and
//! checked before anything is written.

use crate::arithmetic::{Arithmetic, Machine, Threads};
use crate::checkpoint;
use crate::device::{DeviceChoice, DeviceKind};
use crate::layers::Config;
use crate::model_kind::ModelKind;
use crate::models::Implementation;
use crate::precision::Precision;
use crate::presets::Preset;
use crate::run_dir::RunDir;
use crate::sample;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::Device;

/// Everything a training run needs besides the data; saved as `run.json` for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub models: Vec<ModelKind>,
    pub batch_size: i64,
    pub block_size: i64,
    pub n_embed: i64,
    pub num_heads: i64,
    pub block_layers: i64,
    pub dropout: f64,
    pub lr: f64,
    pub steps: i64,
    pub eval_every: i64,
    pub eval_steps: i64,
    pub generate_chars: usize,
    /// The seed of a single-seed run; the first of `seeds` in a multi-seed one.
    pub seed: i64,
    /// A multi-seed run's seeds (`--seeds`): every model is trained once per seed, each
    /// seed in its own sub-folder (`crate::seeds`). Empty: a single-seed run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<i64>,
    pub data: PathBuf,
    /// The preset the values started from (None: set by hand, as the parity check does).
    pub preset: Option<Preset>,
    pub device: DeviceKind,
    #[serde(default)]
    pub implementation: Implementation,
    /// fp32 on the CPU; TF32 (default) or bf16 autocast on CUDA.
    #[serde(default = "fp32")]
    pub precision: Precision,
    /// `--tokenizer`: `char` (the blog's, and every run's before chargpt had BPE) or `bpe:N`.
    #[serde(default)]
    pub tokenizer: crate::data::TokenizerSpec,
    /// A BPE run's `tokenizer.json` (set by `chargpt train` once it is trained), by its
    /// sha256: `--resume` refuses a changed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_sha256: Option<String>,
    /// The training text as it was when the run started (set by `chargpt train`).
    #[serde(default)]
    pub corpus: Option<crate::data::Corpus>,
    /// libtorch's CPU threads for the whole run, every seed and resume (`--threads`;
    /// None: a run recorded before chargpt kept it).
    #[serde(default)]
    pub threads: Option<Threads>,
    /// The CPU, libtorch and MKL mode the run computes with (None: recorded before
    /// chargpt kept them).
    #[serde(default)]
    pub machine: Option<Machine>,
    /// Evaluate each finished model after its last step where the blog's schedule did not
    /// (`--no-final-eval`: false), so that its summary describes the model it produced.
    /// Runs recorded before chargpt had it: true.
    #[serde(default = "yes")]
    pub final_eval: bool,
    /// This session's `--precision` was given (not saved): on a resume it then overrides
    /// the precision each started model was trained with, which it keeps otherwise.
    #[serde(skip)]
    pub precision_given: bool,
    /// This session's `--cuda-graphs` (not saved: it changes how fast a step runs, not what
    /// it computes): the fast path's training step captured and replayed on CUDA.
    #[serde(skip)]
    pub cuda_graphs: bool,
}

fn fp32() -> Precision {
    Precision::Fp32
}

fn yes() -> bool {
    true
}

/// What `chargpt train --resume` may change of a run: everything else is run.json's.
#[derive(Clone, Debug, Default)]
pub struct ResumeFlags {
    /// More steps per model (`--steps`).
    pub steps: Option<i64>,
    pub device: Option<DeviceChoice>,
    pub precision: Option<Precision>,
    pub threads: Option<Threads>,
    /// The run's text, moved (`--data`; the same sha256).
    pub data: Option<PathBuf>,
    /// `--cuda-graphs` for this session.
    pub cuda_graphs: bool,
}

/// The default corpus (`make data`).
pub const DEFAULT_DATA: &str = "data/shakespeare.txt";

impl RunConfig {
    /// A preset's values, all ten models, seed 1337, the default corpus, the CPU.
    pub fn from_preset(preset: Preset) -> Self {
        let v = preset.values();
        RunConfig {
            models: ModelKind::ALL.to_vec(),
            batch_size: v.batch_size,
            block_size: v.block_size,
            n_embed: v.n_embed,
            num_heads: v.num_heads,
            block_layers: v.block_layers,
            dropout: v.dropout,
            lr: v.lr,
            steps: v.steps,
            eval_every: v.eval_every,
            eval_steps: v.eval_steps,
            generate_chars: v.generate_chars,
            seed: 1337,
            seeds: Vec::new(),
            data: PathBuf::from(DEFAULT_DATA),
            preset: Some(preset),
            device: DeviceKind::Cpu,
            implementation: Implementation::Faithful,
            precision: Precision::Fp32,
            tokenizer: crate::data::TokenizerSpec::Char,
            tokenizer_sha256: None,
            corpus: None,
            threads: None,
            machine: None,
            precision_given: false,
            cuda_graphs: false,
            final_eval: true,
        }
    }

    /// How a model of this run computes, for its checkpoint's JSON.
    pub fn arithmetic(&self) -> Option<Arithmetic> {
        Some(Arithmetic {
            device: self.device,
            implementation: self.implementation,
            precision: self.precision,
            threads: self.threads?,
            machine: self.machine.clone()?,
        })
    }

    pub fn model_config(&self, vocab_size: i64) -> Config {
        Config {
            vocab_size,
            n_embed: self.n_embed,
            num_heads: self.num_heads,
            block_size: self.block_size,
            block_layers: self.block_layers,
            dropout: self.dropout,
        }
    }

    /// Refuses values the trainer cannot use, before anything is written: the trainer's
    /// own here, the model sizes by `model_kind::validate` (one wording for both).
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--batch-size", self.batch_size),
            ("--steps", self.steps),
            ("--eval-every", self.eval_every),
            ("--eval-steps", self.eval_steps),
        ] {
            if v <= 0 {
                bail!("{name} must be a positive integer, got {v}");
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        // The blog evaluates after step s (from 0) when s % eval_every == 0 and s >= eval_every.
        if self.steps <= self.eval_every {
            let (steps, every) = (self.steps, self.eval_every);
            bail!(
                "--steps {steps} with --eval-every {every} never evaluates (the first evaluation comes after step {every}, counting from 0); pass --steps {} or more, or a smaller --eval-every",
                every + 1
            );
        }
        sample::check_chars("--generate-chars", self.generate_chars)?;
        if self.precision == Precision::Tf32 && self.device == DeviceKind::Cpu {
            bail!("--precision tf32 is for CUDA; on the CPU use --precision fp32 (or bf16)");
        }
        if self.models.is_empty() {
            bail!("no model to train: give e.g. --models v1,v4,v10 or all");
        }
        for &kind in &self.models {
            crate::model_kind::validate(kind, &self.model_config(1))?;
        }
        Ok(())
    }
}

impl RunConfig {
    /// Refuses a training text that is not the one the run started on (by its hash).
    pub fn check_corpus(&self, now: &crate::data::Corpus) -> Result<()> {
        match &self.corpus {
            Some(then) if then.sha256 != now.sha256 => bail!(
                "the training text {} changed since this run started (sha256 {} then, {} now); resume with the original text",
                now.path.display(),
                then.sha256,
                now.sha256
            ),
            _ => Ok(()),
        }
    }

    /// The configuration of the run in `run` (its run.json), to continue it: on the
    /// recorded device unless `flags.device` says otherwise (a CUDA run where there is no
    /// GPU is refused, naming the flag), with `flags.steps` extending it, and the text
    /// where the run recorded it or where `flags.data` says it moved to.
    pub fn read_for_resume(run: &RunDir, flags: &ResumeFlags) -> Result<(RunConfig, Device)> {
        let ResumeFlags { steps, device, precision, threads, .. } = *flags;
        let dir = run.path.display();
        let text = std::fs::read_to_string(run.run_json()).map_err(|e| {
            anyhow::anyhow!("cannot resume {dir}: no readable run.json there ({e}); pass a folder written by `chargpt train`")
        })?;
        if text.is_empty() && !run.has_checkpoints() {
            bail!("{dir}/run.json is empty: the run that claimed the folder stopped before training; start it again with --out {dir}");
        }
        let mut opts: RunConfig =
            serde_json::from_str(&text).with_context(|| format!("{} is not a chargpt run description", run.run_json().display()))?;
        opts.validate().map_err(|e| anyhow::anyhow!("{}: {}", run.run_json().display(), checkpoint::as_fields(&e.to_string())))?;
        let device = match device {
            Some(choice) => choice.select()?,
            None if opts.device == DeviceKind::Cuda && !tch::Cuda::is_available() => bail!(
                "this run trains on cuda, but libtorch sees no CUDA GPU here; pass --device cpu to continue it on the CPU (its random numbers then differ from an uninterrupted run)"
            ),
            None => opts.device.choice().select()?,
        };
        if DeviceKind::of(device) != opts.device {
            crate::say!(
                "chargpt: continuing a {} run on {} (--device): its random numbers differ from an uninterrupted run",
                opts.device,
                DeviceKind::of(device)
            );
            opts.device = DeviceKind::of(device);
            if !device.is_cuda() {
                opts.precision = Precision::Fp32;
            }
        }
        opts.precision = precision.unwrap_or(opts.precision);
        opts.precision_given = precision.is_some();
        opts.cuda_graphs = flags.cuda_graphs;
        opts.threads = Some(match (threads, opts.threads) {
            (Some(given), Some(recorded)) if given != recorded => {
                crate::say!("chargpt: continuing with --threads {given} instead of the run's {recorded}: its numbers may part from an uninterrupted run's");
                given
            }
            (Some(given), _) => given,
            (None, Some(recorded)) => recorded,
            (None, None) => {
                let now = Threads::default_now();
                crate::say!(
                    "chargpt: {} records no thread count (written by an older chargpt): continuing with {now}",
                    run.run_json().display()
                );
                now
            }
        });
        let here = Machine::this(device);
        if let Some(diff) = opts.machine.as_ref().and_then(|then| then.differences(&here)) {
            crate::say!("chargpt: this run started elsewhere ({diff}): its numbers will part from an uninterrupted run's");
        }
        opts.machine = Some(here);
        if let Some(steps) = steps {
            if steps < opts.steps {
                bail!("--steps {steps} is fewer than the run's {}; with --resume, --steps can only extend a run", opts.steps);
            }
            opts.steps = steps;
        }
        // The text where the run recorded it (absolute, so a resume from another folder
        // finds it), or where --data says it moved to (its sha256 must match, checked
        // once the text is read).
        opts.data = match (&flags.data, opts.corpus.as_ref().map(|c| &c.absolute)) {
            (Some(moved), _) => moved.clone(),
            (None, Some(absolute)) if absolute.exists() || !opts.data.exists() => absolute.clone(),
            (None, _) => opts.data.clone(),
        };
        Ok((opts, device))
    }
}

impl RunConfig {
    /// The configuration of the run a checkpoint (RUN/vN.safetensors) belongs to: the
    /// run.json beside it (`what` needs it, as the error says).
    pub fn beside(weights: &std::path::Path, what: &str) -> Result<RunConfig> {
        let dir = checkpoint::folder_of(weights);
        let path = RunDir::new(dir).run_json();
        let text = std::fs::read_to_string(&path).with_context(|| format!("{what} needs the run's {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a chargpt run description", path.display()))
    }
}

impl Default for RunConfig {
    /// The blog's trainer (docs/MODELS.md, "The trainer") on the default corpus, all ten models.
    fn default() -> Self {
        RunConfig::from_preset(Preset::Blog)
    }
}
