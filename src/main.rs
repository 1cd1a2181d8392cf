//! The `chargpt` command line: arguments into options, then the library does the work.

use anyhow::{bail, Context, Result};
use chargpt::checkpoint;
use chargpt::data::{read_text, Dataset, Split};
use chargpt::device::{DeviceChoice, DeviceKind};
use chargpt::models::{parse_model_list, Implementation, ModelKind};
use chargpt::panics::PanicError;
use chargpt::precision::Precision;
use chargpt::presets::Preset;
use chargpt::run_dir::RunDir;
use chargpt::sample;
use chargpt::train::{self, Stopped, TrainOptions, DEFAULT_DATA};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tch::Device;

#[derive(Parser)]
#[command(
    name = "chargpt",
    version,
    about = "The blog's ten character-level language models, V1 (bigram) to V10 (GPT), on libtorch",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Draw loss.png/loss.svg (and the final-loss bars) for a run folder.
    Plot {
        /// A run folder written by `chargpt train`.
        run_dir: PathBuf,
    },
}

#[derive(Args)]
struct SizeArgs {
    /// Embedding width C.
    #[arg(long)]
    n_embed: Option<i64>,
    /// Attention heads H.
    #[arg(long)]
    num_heads: Option<i64>,
    /// Context length Tmax.
    #[arg(long)]
    block_size: Option<i64>,
    /// Blocks L of V10 (V7..V9 always have 3).
    #[arg(long)]
    block_layers: Option<i64>,
    /// Dropout p of V10.
    #[arg(long)]
    dropout: Option<f64>,
}

impl SizeArgs {
    fn apply(&self, o: &mut TrainOptions) {
        o.n_embed = self.n_embed.unwrap_or(o.n_embed);
        o.num_heads = self.num_heads.unwrap_or(o.num_heads);
        o.block_size = self.block_size.unwrap_or(o.block_size);
        o.block_layers = self.block_layers.unwrap_or(o.block_layers);
        o.dropout = self.dropout.unwrap_or(o.dropout);
    }
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    /// Models to train, e.g. v1,v4,v10 (default: all ten).
    #[arg(long)]
    models: Option<String>,
    /// Hyperparameter preset; flags override it (default: blog on CUDA, cpu otherwise).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    #[command(flatten)]
    sizes: SizeArgs,
    /// Sequences per training batch (B).
    #[arg(long)]
    batch_size: Option<i64>,
    /// AdamW learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Training steps per model; with --resume, a larger value extends the run.
    #[arg(long)]
    steps: Option<i64>,
    /// Evaluate after every this many steps (the blog's log_step).
    #[arg(long)]
    eval_every: Option<i64>,
    /// Batches per split in each evaluation.
    #[arg(long)]
    eval_steps: Option<i64>,
    /// Characters generated after training each model.
    #[arg(long)]
    generate_chars: Option<usize>,
    /// Seed of libtorch's generator for each model's initialisation and training [default: 1337].
    #[arg(long)]
    seed: Option<i64>,
    /// Where to train [default: auto, CUDA if libtorch sees a GPU]. With --resume: the
    /// run's recorded device, unless given.
    #[arg(long, value_enum)]
    device: Option<DeviceChoice>,
    /// Training text (UTF-8) [default: data/shakespeare.txt].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run folder (default: runs/<corpus>-<preset>-<date-time>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder with its recorded settings: finished models are
    /// skipped, the one in progress resumes. Only --steps (to extend), --device and
    /// --precision may be given with it.
    #[arg(long, conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Allow writing into an existing run folder, replacing its files.
    #[arg(long)]
    force: bool,
    /// Do not draw plots at the end.
    #[arg(long)]
    no_plot: bool,
    /// Implementation of the layers (same parameters, same function) [default: faithful].
    #[arg(long = "impl", value_enum)]
    implementation: Option<Implementation>,
    /// Numeric precision (default: tf32 on CUDA, fp32 on the CPU; bf16 = autocast, CUDA only).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
}

impl TrainArgs {
    /// The flags that fix a run's hyperparameters, among those given: a resumed run keeps
    /// its own (run.json), so these are refused with --resume.
    fn hyperparameter_flags(&self) -> Vec<&'static str> {
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
            ("--data", self.data.is_some()),
            ("--impl", self.implementation.is_some()),
            ("--force", self.force),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    /// The options and device of a new run: the preset, overridden by the flags given.
    fn to_options(&self) -> Result<(TrainOptions, Device)> {
        let device = self.device.unwrap_or(DeviceChoice::Auto).select()?;
        let mut o = TrainOptions::from_preset(self.preset.unwrap_or(if device.is_cuda() { Preset::Blog } else { Preset::Cpu }));
        self.sizes.apply(&mut o);
        o.models = parse_model_list(self.models.as_deref().unwrap_or("all"))?;
        o.batch_size = self.batch_size.unwrap_or(o.batch_size);
        o.lr = self.lr.unwrap_or(o.lr);
        o.steps = self.steps.unwrap_or(o.steps);
        o.eval_every = self.eval_every.unwrap_or(o.eval_every);
        o.eval_steps = self.eval_steps.unwrap_or(o.eval_steps);
        o.generate_chars = self.generate_chars.unwrap_or(o.generate_chars);
        o.seed = self.seed.unwrap_or(o.seed);
        o.data = self.data.clone().unwrap_or(o.data);
        o.implementation = self.implementation.unwrap_or_default();
        o.precision = self.precision.unwrap_or(Precision::default_for(device));
        o.device = DeviceKind::of(device);
        Ok((o, device))
    }

    /// The options and device of a resumed run: run.json's, with only --steps (a longer
    /// run), --device and --precision allowed to change them.
    fn resumed_options(&self, dir: &Path) -> Result<(TrainOptions, Device)> {
        let given = self.hyperparameter_flags();
        if !given.is_empty() {
            bail!(
                "{} cannot be given with --resume: a resumed run keeps the settings in {}; only --steps (to extend it), --device and --precision may be given",
                given.join(", "),
                dir.join("run.json").display()
            );
        }
        TrainOptions::resume(&RunDir::new(dir), self.steps, self.device, self.precision)
    }
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct GenerateArgs {
    /// A model's .safetensors (with its .json beside it), e.g. RUN_DIR/v10.safetensors.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue (default: the single token 1, as the blog).
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// A file whose text (UTF-8) is the prompt, for long prompts.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Characters to generate per sample.
    #[arg(long, default_value_t = 500)]
    chars: usize,
    /// Samples to generate, separated by a line of dashes.
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// Seed of the generator the characters are drawn with.
    #[arg(long, default_value_t = 1337)]
    seed: i64,
    /// Divide the logits by this before drawing: below 1 more conservative, above 1 more
    /// varied. 1 (the default) is the blog's sampling, draw for draw.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Draw only among the k most likely characters (default: all, as the blog).
    #[arg(long)]
    top_k: Option<i64>,
    /// Take the most likely character instead of drawing one.
    #[arg(long)]
    greedy: bool,
    /// Write the samples to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct EvalArgs {
    /// A model's .safetensors (with its .json beside it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The text to evaluate on (its 90/10 split, as in training) [default: the text the
    /// checkpoint was trained on, as its JSON records it; else data/shakespeare.txt].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also evaluate the train split.
    #[arg(long)]
    train: bool,
    /// Windows per forward pass (memory only; the result does not depend on it).
    #[arg(long, default_value_t = 64)]
    batch_windows: i64,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
}

#[derive(Args)]
struct BenchArgs {
    /// Bench configuration: a preset's sizes and batch size (cpu: B 32, Tmax 64, C 128, H 4, L 4).
    #[arg(long, value_enum, default_value = "cpu")]
    config: Preset,
    #[arg(long, default_value = "all")]
    models: String,
    #[arg(long = "impl", value_enum, default_value = "faithful")]
    implementation: Implementation,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// libtorch CPU threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: i32,
    /// Seconds of timed steps per model (after warm-up).
    #[arg(long, default_value_t = 3.0)]
    budget_s: f64,
    /// Characters generated for the generation rate (0: skip).
    #[arg(long, default_value_t = 200)]
    generate_chars: usize,
    /// Only measure the device's matmul rate at --precision (fp32, tf32 or bf16).
    #[arg(long)]
    matmul_peak: bool,
    /// Numeric precision (default: tf32 on CUDA, fp32 on the CPU).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct ModelsArgs {
    /// Models to list, e.g. `v1 v10` (default: all ten).
    models: Vec<String>,
    /// The sizes of this preset, flags overriding them [default: as `train`: blog on CUDA,
    /// cpu otherwise].
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    #[command(flatten)]
    sizes: SizeArgs,
    /// Vocabulary size V (default: that of docs/MODELS.md's table).
    #[arg(long, default_value_t = 84)]
    vocab_size: i64,
}

fn cmd_train(args: TrainArgs) -> Result<()> {
    let (opts, device, run) = match &args.resume {
        Some(dir) => {
            let (opts, device) = args.resumed_options(dir)?;
            (opts, device, RunDir::new(dir))
        }
        None => {
            let (opts, device) = args.to_options()?;
            (opts, device, RunDir::new(args.out.clone().unwrap_or_default()))
        }
    };
    opts.validate()?;
    opts.precision.apply(device)?;
    let text = read_text(&opts.data)?;
    let corpus = chargpt::data::Corpus::of(&opts.data, &text);
    let opts = match &args.resume {
        Some(_) => {
            opts.check_corpus(&corpus)?;
            TrainOptions { corpus: opts.corpus.clone().or(Some(corpus)), ..opts }
        }
        None => TrainOptions { corpus: Some(corpus), ..opts },
    };
    let data = Dataset::new(&text).to_device(device);
    data.check_block_size(opts.block_size)?;
    let run = match (&args.resume, &args.out) {
        (Some(_), _) => run,
        (None, Some(_)) => {
            run.prepare(args.force)?;
            run
        }
        (None, None) => {
            let corpus = opts.data.file_stem().map_or("data".into(), |s| s.to_string_lossy().to_string());
            let preset = opts.preset.map_or("custom", Preset::name);
            RunDir::claim_new(Path::new("runs"), &format!("{corpus}-{preset}-{}", chrono::Local::now().format("%Y%m%d-%H%M%S")))?
        }
    };
    // A resume rewrites it too: --steps may have extended the run, --device moved it.
    checkpoint::write_atomic(&run.options(), serde_json::to_string_pretty(&opts)?.as_bytes())?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C while the checkpoint is being written exits at once (code 1);
        // the checkpoint of the last evaluation is still complete on disk.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
    }
    let models: Vec<String> = opts.models.iter().map(ModelKind::to_string).collect();
    let (chars, vocab, preset) = (text.chars().count(), data.vocab.len(), opts.preset.map_or("custom", Preset::name));
    let (data_path, out) = (opts.data.display(), run.path.display());
    chargpt::say!(
        "chargpt: training {} on {data_path} ({chars} chars, vocabulary {vocab}) on {}, preset {preset}, writing to {out}",
        models.join(","),
        DeviceKind::of(device)
    );
    let summaries = match train::run(&run, &opts, &data, device, stop) {
        Ok(s) => s,
        // Nothing to resume from: give the folder back, so that a retry can use it.
        Err(e) if args.resume.is_none() && !run.has_checkpoints() && e.downcast_ref::<Stopped>().is_none() => {
            run.release()?;
            let dir = run.path.display();
            bail!("{e:#}; no checkpoint was written, so {dir} holds nothing of this run: retry with the same --out {dir}");
        }
        Err(e) => return Err(e),
    };
    train::print_summaries(&summaries);
    if !args.no_plot {
        // The training is done and saved: a plot that fails is a warning, not a failure.
        if let Err(e) = chargpt::plot::plot_run(&run.path) {
            eprintln!("warning: the plots were not drawn ({e:#}); draw them with: chargpt plot {}", run.path.display());
        }
    }
    chargpt::say!("results in {}", run.path.display());
    if let Some(&last) = opts.models.last() {
        chargpt::say!("sample from it: chargpt generate --checkpoint {}", run.weights(last).display());
    }
    Ok(())
}

fn cmd_generate(args: GenerateArgs) -> Result<()> {
    if !(args.temperature > 0.0 && args.temperature.is_finite()) {
        bail!("--temperature must be a positive number, got {}", args.temperature);
    }
    if args.top_k.is_some_and(|k| k < 1) || args.num_samples < 1 {
        bail!("--top-k and --num-samples must be at least 1");
    }
    let prompt = match &args.prompt_file {
        Some(path) => Some(read_text(path)?),
        None => args.prompt.clone(),
    };
    let (model, vocab, _) = checkpoint::load_model(&args.checkpoint, args.device.select()?)?;
    let sampling = sample::Sampling { greedy: args.greedy, temperature: args.temperature, top_k: args.top_k };
    tch::manual_seed(args.seed);
    let (n, samples, prompt) = (args.chars, args.num_samples, prompt.as_deref());
    match &args.out {
        Some(path) => {
            let mut file =
                std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?);
            sample::stream(&model, &vocab, prompt, n, samples, sampling, &mut file)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        None => sample::stream(&model, &vocab, prompt, n, samples, sampling, &mut std::io::stdout().lock()),
    }
}

fn cmd_eval(args: EvalArgs) -> Result<()> {
    let (model, vocab, info) = checkpoint::load_model(&args.checkpoint, args.device.select()?)?;
    let data = match (&args.data, &info.corpus) {
        (Some(path), _) => path.clone(),
        (None, Some(corpus)) => {
            let now = read_text(&corpus.absolute).map(|t| chargpt::data::Corpus::of(&corpus.absolute, &t).sha256);
            if now.as_ref().is_ok_and(|sha| *sha != corpus.sha256) {
                eprintln!("warning: {} changed since this model was trained on it (its sha256 differs)", corpus.absolute.display());
            }
            corpus.absolute.clone()
        }
        (None, None) => PathBuf::from(DEFAULT_DATA),
    };
    let splits: &[Split] = if args.train { &[Split::Train, Split::Val] } else { &[Split::Val] };
    train::print_deterministic_losses(&model, vocab, &data, splits, args.batch_windows)
}

fn cmd_models(args: ModelsArgs) -> Result<()> {
    let preset = args.preset.unwrap_or(if tch::Cuda::is_available() { Preset::Blog } else { Preset::Cpu });
    let mut o = TrainOptions::from_preset(preset);
    args.sizes.apply(&mut o);
    let models = if args.models.is_empty() { ModelKind::ALL.to_vec() } else { parse_model_list(&args.models.join(","))? };
    chargpt::models::print_table(&o.model_config(args.vocab_size), &models)
}

fn cmd_bench(args: BenchArgs) -> Result<()> {
    let device = args.device.select()?;
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let precision = args.precision.unwrap_or(Precision::default_for(device));
    precision.apply(device)?;
    if args.matmul_peak {
        chargpt::bench::print_matmul_peak(device, precision);
        return Ok(());
    }
    let models = parse_model_list(&args.models)?;
    chargpt::bench::print_steps(&models, args.config, args.implementation, device, precision, args.budget_s, args.generate_chars)
}

fn run(cli: Cli) -> Result<()> {
    // Test hook: a bug's panic, for the test of how internal errors are reported.
    if std::env::var_os("CHARGPT_TEST_INTERNAL_PANIC").is_some() {
        panic!("test hook: an internal panic");
    }
    match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Generate(a) => cmd_generate(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Models(a) => cmd_models(a),
        Command::Plot { run_dir } => chargpt::plot::plot_run(&run_dir),
        Command::Parity { reference, device, implementation } => chargpt::parity::print_table(&reference, device.select()?, implementation),
        Command::Bench(a) => cmd_bench(a),
    }
}

fn main() {
    chargpt::memory::keep_freed_tensor_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and the help for `chargpt` alone.
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // clap's own message, on one line: what is wrong, and where to look.
            let text = e.to_string();
            let head: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let first = head.join(" ").trim_start_matches("error: ").trim_end_matches(':').to_string();
            eprintln!("error: {first}; see `chargpt --help`");
            std::process::exit(2);
        }
    };
    chargpt::panics::install_hook();
    let result = std::panic::catch_unwind(|| run(cli)).unwrap_or_else(|payload| Err(chargpt::panics::to_error(payload).into()));
    if let Err(e) = result {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        let code = if e.chain().any(|c| c.downcast_ref::<Stopped>().is_some()) {
            130
        } else if e.chain().any(|c| c.downcast_ref::<PanicError>().is_some_and(|p| matches!(p, PanicError::Internal(_)))) {
            2
        } else {
            1
        };
        std::process::exit(code);
    }
}
