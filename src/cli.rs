//! The command line's declarations: what each subcommand takes, with the help texts a
//! user reads, and how `train`'s flags become a run's options.

use anyhow::{bail, Result};
use chargpt::arithmetic::{Machine, Threads};
use chargpt::config::{ResumeFlags, RunConfig};
use chargpt::data::TokenizerSpec;
use chargpt::device::{DeviceChoice, DeviceKind};
use chargpt::model_kind::parse_model_list;
use chargpt::models::Implementation;
use chargpt::precision::Precision;
use chargpt::presets::Preset;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Parser)]
#[command(
    name = "chargpt",
    version,
    about = "The blog's ten character-level language models, V1 (bigram) to V10 (GPT), on libtorch",
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train the selected models one after another, each from scratch, then sample each.
    Train(TrainArgs),
    /// Stream characters from a trained checkpoint.
    Generate(GenerateArgs),
    /// Deterministic loss of a checkpoint over consecutive windows of the val (or train) split.
    Eval(EvalArgs),
    /// List the ten models, what each adds, and their parameter counts for the given sizes.
    Models(ModelsArgs),
    /// Check every model against the PyTorch reference tensors in reference/: initial
    /// weights, logits, gradients, three AdamW steps, and (on the CPU) a same-seed run.
    /// "-" marks what cannot match: dropout masks on CUDA or on the fast path (V10).
    Parity {
        #[arg(long, default_value = "reference")]
        reference: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceChoice,
        /// Which implementation to check: faithful (the manifest's tolerance) or fast
        /// (each tensor within 1e-4 of its own scale).
        #[arg(long = "impl", value_enum, default_value = "faithful")]
        implementation: Implementation,
    },
    /// Time training steps and generation (CSV on stdout; `make bench` drives it).
    Bench(BenchArgs),
    /// Draw loss.png/loss.svg (and the final-loss bars) for a run folder; or, with
    /// --compare, several runs' val bits per character on one axis (char and BPE runs).
    Plot {
        /// Run folders written by `chargpt train` (one, unless --compare).
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
        /// Draw the runs' val bits per character against step and wall time into this
        /// .png or .svg file.
        #[arg(long, value_name = "FILE")]
        compare: Option<PathBuf>,
        /// With --compare: only these models, e.g. v1,v6,v10 (default: every model of the runs).
        #[arg(long, requires = "compare")]
        models: Option<String>,
    },
}

#[derive(Args)]
pub(crate) struct SizeArgs {
    /// Embedding width C.
    #[arg(long)]
    pub(crate) n_embed: Option<i64>,
    /// Attention heads H.
    #[arg(long)]
    pub(crate) num_heads: Option<i64>,
    /// Context length Tmax.
    #[arg(long)]
    pub(crate) block_size: Option<i64>,
    /// Blocks L of V10 (V7..V9 always have 3).
    #[arg(long)]
    pub(crate) block_layers: Option<i64>,
    /// Dropout p of V10.
    #[arg(long)]
    pub(crate) dropout: Option<f64>,
}

impl SizeArgs {
    pub(crate) fn apply(&self, o: &mut RunConfig) {
        o.n_embed = self.n_embed.unwrap_or(o.n_embed);
        o.num_heads = self.num_heads.unwrap_or(o.num_heads);
        o.block_size = self.block_size.unwrap_or(o.block_size);
        o.block_layers = self.block_layers.unwrap_or(o.block_layers);
        o.dropout = self.dropout.unwrap_or(o.dropout);
    }
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct TrainArgs {
    /// Models to train, e.g. v1,v4,v10 (default: all ten).
    #[arg(long)]
    pub(crate) models: Option<String>,
    /// Hyperparameter preset; flags override it (default: blog on CUDA, cpu otherwise).
    #[arg(long, value_enum)]
    pub(crate) preset: Option<Preset>,
    #[command(flatten)]
    pub(crate) sizes: SizeArgs,
    /// Sequences per training batch (B).
    #[arg(long)]
    pub(crate) batch_size: Option<i64>,
    /// AdamW learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Training steps per model; with --resume, a larger value extends the run.
    #[arg(long)]
    pub(crate) steps: Option<i64>,
    /// Evaluate after every this many steps (the blog's log_step): after step s (counted
    /// from 0) when s % eval_every == 0 and s >= eval_every; each evaluation rewrites the
    /// model's checkpoint (vN.safetensors is the latest).
    #[arg(long)]
    pub(crate) eval_every: Option<i64>,
    /// Batches per split in each evaluation.
    #[arg(long)]
    pub(crate) eval_steps: Option<i64>,
    /// Characters generated after training each model.
    #[arg(long)]
    pub(crate) generate_chars: Option<usize>,
    /// Seed of libtorch's generator for each model's initialisation and training [default: 1337].
    #[arg(long)]
    pub(crate) seed: Option<i64>,
    /// Train every model once per seed, each seed in its own sub-folder (seed-<S>/), and
    /// summarize the spread: a list (1337,1338,1339) or a count N (N seeds from --seed).
    #[arg(long, value_name = "LIST|N")]
    pub(crate) seeds: Option<String>,
    /// Where to train [default: auto, CUDA if libtorch sees a GPU]. With --resume: the
    /// run's recorded device, unless given.
    #[arg(long, value_enum)]
    pub(crate) device: Option<DeviceChoice>,
    /// Training text (UTF-8) [default: data/shakespeare.txt].
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// How the text becomes tokens: `char` (the blog's: one token per character), or
    /// `bpe:N`, a byte-level BPE of N tokens (256 to 65536) trained on the training split
    /// only and saved as the run's tokenizer.json. Val losses are also reported in bits
    /// per character, the measure that compares the two. [default: char]
    #[arg(long, value_name = "char|bpe:N")]
    pub(crate) tokenizer: Option<TokenizerSpec>,
    /// Run folder (default: runs/<corpus>-<preset>-<date-time>/).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Continue the run in this folder with its recorded settings: finished models are
    /// skipped, the one in progress resumes. Only --steps (to extend), --device,
    /// --precision, --threads, --cuda-graphs and --data (the run's text, moved: same
    /// sha256) may be given with it.
    #[arg(long, conflicts_with = "out")]
    pub(crate) resume: Option<PathBuf>,
    /// Allow writing into an existing run folder, replacing its files.
    #[arg(long)]
    pub(crate) force: bool,
    /// Do not draw plots at the end.
    #[arg(long)]
    pub(crate) no_plot: bool,
    /// Leave a finished model unevaluated after its last step where the blog's schedule
    /// (after step s when s % eval-every == 0 and s >= eval-every) did not evaluate it: its
    /// summary then reports the schedule's last evaluation, of an earlier model.
    #[arg(long)]
    pub(crate) no_final_eval: bool,
    /// Implementation of the layers (same parameters, same function) [default: faithful].
    #[arg(long = "impl", value_enum)]
    pub(crate) implementation: Option<Implementation>,
    /// Numeric precision (default: tf32 on CUDA, fp32 on the CPU). bf16: the forward pass
    /// under bf16 autocast, on CUDA or the CPU (fast where the CPU has AVX512-BF16 or AMX).
    #[arg(long, value_enum)]
    pub(crate) precision: Option<Precision>,
    /// Capture the training step as a CUDA graph after a few eager steps and replay it
    /// (--impl fast on CUDA): the host then issues a few launches a step instead of
    /// hundreds. Where capture is not possible a line says why and training stays eager.
    #[arg(long)]
    pub(crate) cuda_graphs: bool,
    /// libtorch's CPU threads, recorded in run.json and kept by every resume. `auto` (the
    /// default): the CPUs this process may use, fewer while other processes keep cores
    /// busy, where the count does not change the numbers (checked per model; else fixed).
    /// N: exactly N throughout. See docs/REPRODUCIBILITY.md.
    #[arg(long, value_name = "N|auto")]
    pub(crate) threads: Option<Threads>,
}

impl TrainArgs {
    /// The flags that fix a run's hyperparameters, among those given: a resumed run keeps
    /// its own (run.json), so these are refused with --resume.
    pub(crate) fn hyperparameter_flags(&self) -> Vec<&'static str> {
        let s = &self.sizes;
        [
            ("--models", self.models.is_some()),
            ("--preset", self.preset.is_some()),
            ("--n-embed", s.n_embed.is_some()),
            ("--num-heads", s.num_heads.is_some()),
            ("--block-size", s.block_size.is_some()),
            ("--block-layers", s.block_layers.is_some()),
            ("--dropout", s.dropout.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr", self.lr.is_some()),
            ("--eval-every", self.eval_every.is_some()),
            ("--eval-steps", self.eval_steps.is_some()),
            ("--generate-chars", self.generate_chars.is_some()),
            ("--seed", self.seed.is_some()),
            ("--seeds", self.seeds.is_some()),
            ("--impl", self.implementation.is_some()),
            ("--tokenizer", self.tokenizer.is_some()),
            ("--no-final-eval", self.no_final_eval),
            ("--force", self.force),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    /// The options and device of a new run: the preset, overridden by the flags given.
    pub(crate) fn to_options(&self) -> Result<(RunConfig, Device)> {
        let device = self.device.unwrap_or(DeviceChoice::Auto).select()?;
        let mut o = RunConfig::from_preset(self.preset.unwrap_or(if device.is_cuda() { Preset::Blog } else { Preset::Cpu }));
        self.sizes.apply(&mut o);
        o.models = parse_model_list(self.models.as_deref().unwrap_or("all"))?;
        o.batch_size = self.batch_size.unwrap_or(o.batch_size);
        o.lr = self.lr.unwrap_or(o.lr);
        o.steps = self.steps.unwrap_or(o.steps);
        o.eval_every = self.eval_every.unwrap_or(o.eval_every);
        o.eval_steps = self.eval_steps.unwrap_or(o.eval_steps);
        o.generate_chars = self.generate_chars.unwrap_or(o.generate_chars);
        o.seed = self.seed.unwrap_or(o.seed);
        if let Some(spec) = &self.seeds {
            o.seeds = chargpt::seeds::parse(spec, o.seed)?;
            o.seed = o.seeds[0];
        }
        o.data = self.data.clone().unwrap_or(o.data);
        o.tokenizer = self.tokenizer.unwrap_or_default();
        o.implementation = self.implementation.unwrap_or_default();
        o.precision = self.precision.unwrap_or(Precision::default_for(device));
        o.device = DeviceKind::of(device);
        o.threads = Some(self.threads.unwrap_or_else(Threads::default_now));
        o.machine = Some(Machine::this(device));
        o.cuda_graphs = self.cuda_graphs;
        o.final_eval = !self.no_final_eval;
        Ok((o, device))
    }

    /// What a resume may change, once no flag that fixes the run's hyperparameters was
    /// given: a resumed run keeps its own (run.json).
    pub(crate) fn resume_flags(&self, dir: &Path) -> Result<ResumeFlags> {
        let given = self.hyperparameter_flags();
        if !given.is_empty() {
            bail!(
                "{} cannot be given with --resume: a resumed run keeps the settings in {}; only --steps (to extend it), --device, --precision, --threads, --cuda-graphs and --data (the same text, moved) may be given",
                given.join(", "),
                dir.join("run.json").display()
            );
        }
        Ok(ResumeFlags {
            steps: self.steps,
            device: self.device,
            precision: self.precision,
            threads: self.threads,
            data: self.data.clone(),
            cuda_graphs: self.cuda_graphs,
        })
    }
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct GenerateArgs {
    /// A model's .safetensors (with its .json beside it), e.g. RUN_DIR/v10.safetensors.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Text to continue (default: the single token 1, as the blog).
    #[arg(long, conflicts_with = "prompt_file")]
    pub(crate) prompt: Option<String>,
    /// A file whose text (UTF-8) is the prompt, for long prompts.
    #[arg(long)]
    pub(crate) prompt_file: Option<PathBuf>,
    /// Characters to generate per sample: characters, not tokens, also with a BPE
    /// tokenizer (the last token is cut at the count) [default: 500; with
    /// --like-training, the run's].
    #[arg(long)]
    pub(crate) chars: Option<usize>,
    /// Draw the very sample `train` wrote (vN.sample.txt): from token 1, with the
    /// generator as it stood after the last training step (kept in vN.resume.safetensors
    /// beside the checkpoint) and the run's number of characters.
    #[arg(long, conflicts_with_all = ["prompt", "prompt_file", "seed", "temperature", "top_k", "greedy", "num_samples"])]
    pub(crate) like_training: bool,
    /// Samples to generate, separated by a line of dashes [default: 1].
    #[arg(long)]
    pub(crate) num_samples: Option<usize>,
    /// Seed of the generator the characters are drawn with [default: 1337].
    #[arg(long)]
    pub(crate) seed: Option<i64>,
    /// Divide the logits by this before drawing: below 1 more conservative, above 1 more
    /// varied. 1 (the default) is the blog's sampling, draw for draw.
    #[arg(long)]
    pub(crate) temperature: Option<f64>,
    /// Draw only among the k most likely characters (default: all, as the blog).
    #[arg(long)]
    pub(crate) top_k: Option<i64>,
    /// Take the most likely character instead of drawing one.
    #[arg(long)]
    pub(crate) greedy: bool,
    /// Write the samples to this file instead of standard output.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) device: DeviceChoice,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct EvalArgs {
    /// A model's .safetensors (with its .json beside it).
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// The text to evaluate on (its 90/10 split, as in training) [default: the text the
    /// checkpoint was trained on, as its JSON records it; else data/shakespeare.txt].
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Also evaluate the train split.
    #[arg(long)]
    pub(crate) train: bool,
    /// Windows per forward pass (memory only; the result does not depend on it).
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_windows: i64,
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) device: DeviceChoice,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Bench configuration: a preset's sizes and batch size (cpu: B 32, Tmax 64, C 128, H 4, L 4).
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) config: Preset,
    /// Sequences per step (B) [default: the configuration's]. Steps at a few batch sizes
    /// separate what a step costs per sequence from what it costs whatever the data.
    #[arg(long)]
    pub(crate) batch_size: Option<i64>,
    #[arg(long, default_value = "all")]
    pub(crate) models: String,
    #[arg(long = "impl", value_enum, default_value = "faithful")]
    pub(crate) implementation: Implementation,
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) device: DeviceChoice,
    /// libtorch CPU threads, fixed as in training (0: the CPUs this process may use), or
    /// `auto`: following the load, as `train --threads auto`.
    #[arg(long, value_name = "N|auto", default_value = "0", value_parser = parse_bench_threads)]
    pub(crate) threads: Threads,
    /// Seconds of timed steps per model (after warm-up).
    #[arg(long, default_value_t = 3.0)]
    pub(crate) budget_s: f64,
    /// Characters generated for the generation rate (0: skip).
    #[arg(long, default_value_t = 200)]
    pub(crate) generate_chars: usize,
    /// Only measure the device's matmul rate at --precision (fp32, tf32 or bf16).
    #[arg(long)]
    pub(crate) matmul_peak: bool,
    /// Skip the matmul floor (floor_ms NaN): a profile of the process then holds only steps.
    #[arg(long)]
    pub(crate) no_floor: bool,
    /// Numeric precision (default: tf32 on CUDA, fp32 on the CPU).
    #[arg(long, value_enum)]
    pub(crate) precision: Option<Precision>,
    /// Time the step captured as a CUDA graph and replayed (--impl fast on CUDA), as
    /// `train --cuda-graphs` runs it.
    #[arg(long)]
    pub(crate) cuda_graphs: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct ModelsArgs {
    /// Models to list, e.g. `v1 v10` (default: all ten).
    pub(crate) models: Vec<String>,
    /// The sizes of this preset, flags overriding them [default: as `train`: blog on CUDA,
    /// cpu otherwise].
    #[arg(long, value_enum)]
    pub(crate) preset: Option<Preset>,
    #[command(flatten)]
    pub(crate) sizes: SizeArgs,
    /// Vocabulary size V [default: that of docs/MODELS.md's table, 84; with --data, its
    /// tokenizer's].
    #[arg(long, conflicts_with_all = ["tokenizer", "data"])]
    pub(crate) vocab_size: Option<i64>,
    /// How --data's text becomes tokens: `char` (its distinct characters) or `bpe:N` (a BPE
    /// trained on its training split, as `train --tokenizer` would) [default: char].
    #[arg(long, value_name = "char|bpe:N", requires = "data")]
    pub(crate) tokenizer: Option<TokenizerSpec>,
    /// A text whose vocabulary (by --tokenizer) sets V.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Print the README's table instead: what each model adds and its parameters with
    /// the blog and the cpu presets' sizes (markdown).
    #[arg(long, conflicts_with_all = ["preset", "n_embed", "num_heads", "block_size", "block_layers", "dropout"])]
    pub(crate) markdown: bool,
}

/// `bench --threads`: 0 is training's default count.
fn parse_bench_threads(s: &str) -> Result<Threads> {
    if s == "0" {
        return Ok(Threads::all_available());
    }
    s.parse()
}
