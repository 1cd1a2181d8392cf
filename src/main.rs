//! The `chargpt` command line: train, generate, eval, models, plot.

use anyhow::{bail, Context, Result};
use chargpt::checkpoint;
use chargpt::data::{read_text, Dataset, Split};
use chargpt::ffi::LibtorchError;
use chargpt::layers::Config;
use chargpt::models::{parse_model_list, Model, ModelKind};
use chargpt::precision::Precision;
use chargpt::sample;
use chargpt::train::{self, RunDir, Stopped, TrainJob, TrainOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tch::Device;

const DEFAULT_DATA: &str = "data/shakespeare.txt";

#[derive(Parser)]
#[command(name = "chargpt", version, about = "The blog's ten character-level language models, V1 (bigram) to V10 (GPT), on libtorch")]
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
    /// List the ten models and their parameter counts for the given sizes.
    Models(ModelsArgs),
    /// Check every model against the PyTorch reference tensors in reference/: initial
    /// weights, logits, gradients, three AdamW steps, and (on the CPU) a same-seed run.
    /// "-" marks what cannot match: dropout masks on CUDA or on the fast path (V10).
    Parity {
        #[arg(long, default_value = "reference")]
        reference: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// Which implementation to check: faithful (the manifest's tolerance) or fast
        /// (each tensor within 1e-4 of its own scale).
        #[arg(long = "impl", value_enum, default_value = "faithful")]
        implementation: Impl,
    },
    /// Time training steps and generation (CSV on stdout; `make bench` drives it).
    Bench(BenchArgs),
    /// Draw loss.png/loss.svg (and the final-loss bars) for a run folder.
    Plot {
        /// A run folder written by `chargpt train`.
        run_dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// The blog's values (docs/MODELS.md "The trainer"); the default on CUDA.
    Blog,
    /// Sized for a 2-core CPU: all ten models in about half an hour; the default on a CPU.
    Cpu,
    /// A seconds-long smoke test.
    Tiny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Impl {
    /// The blog's computation, head by head: the parity reference.
    Faithful,
    /// Fused QKV, heads as a dimension, one-pass LayerNorm and dropout kernels: same function, faster.
    Fast,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
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
    device: Option<DeviceArg>,
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
    /// Implementation of the attention layers (same parameters, same function) [default: faithful].
    #[arg(long = "impl", value_enum)]
    implementation: Option<Impl>,
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
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct GenerateArgs {
    /// A model's .safetensors (with its .json beside it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue (default: the single token 1, as the blog).
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value_t = 500)]
    chars: usize,
    #[arg(long, default_value_t = 1337)]
    seed: i64,
    /// Take the most likely character instead of drawing one.
    #[arg(long)]
    greedy: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct EvalArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, default_value = DEFAULT_DATA)]
    data: PathBuf,
    /// Also evaluate the train split.
    #[arg(long)]
    train: bool,
    /// Windows per forward pass (memory only; the result does not depend on it).
    #[arg(long, default_value_t = 64)]
    batch_windows: i64,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

#[derive(Args)]
struct BenchArgs {
    /// Bench configuration: cpu (B 32, Tmax 64, C 128, H 4, L 4) or blog.
    #[arg(long, default_value = "cpu")]
    config: String,
    #[arg(long, default_value = "all")]
    models: String,
    #[arg(long = "impl", value_enum, default_value = "faithful")]
    implementation: Impl,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
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
    #[arg(long, value_enum, default_value = "blog")]
    preset: Preset,
    #[command(flatten)]
    sizes: SizeArgs,
    /// Vocabulary size V (default: that of docs/MODELS.md's table).
    #[arg(long, default_value_t = 84)]
    vocab_size: i64,
}

/// The values of a preset, before flags override them.
fn preset_options(preset: Preset) -> TrainOptions {
    let base = TrainOptions { preset: format!("{preset:?}").to_lowercase(), ..TrainOptions::default() };
    match preset {
        Preset::Blog => base,
        Preset::Cpu => TrainOptions {
            batch_size: 32,
            block_size: 64,
            n_embed: 128,
            num_heads: 4,
            block_layers: 4,
            dropout: 0.2,
            // lr 3e-3 (not the blog's 1e-3) so that V1's lookup table converges within the
            // budget; 3001 steps put the last evaluation after the last step.
            lr: 3e-3,
            steps: 3001,
            eval_every: 250,
            eval_steps: 20,
            generate_chars: 500,
            ..base
        },
        Preset::Tiny => TrainOptions {
            batch_size: 8,
            block_size: 16,
            n_embed: 16,
            num_heads: 2,
            block_layers: 2,
            dropout: 0.1,
            lr: 3e-3,
            steps: 41,
            eval_every: 20,
            eval_steps: 2,
            generate_chars: 40,
            ..base
        },
    }
}

fn apply_sizes(o: &mut TrainOptions, s: &SizeArgs) {
    if let Some(v) = s.n_embed {
        o.n_embed = v;
    }
    if let Some(v) = s.num_heads {
        o.num_heads = v;
    }
    if let Some(v) = s.block_size {
        o.block_size = v;
    }
    if let Some(v) = s.block_layers {
        o.block_layers = v;
    }
    if let Some(v) = s.dropout {
        o.dropout = v;
    }
}

fn select_device(arg: DeviceArg) -> Result<Device> {
    match arg {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Auto => Ok(Device::cuda_if_available()),
        DeviceArg::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceArg::Cuda => bail!("--device cuda was asked for but libtorch sees no CUDA GPU; use --device cpu (or auto)"),
    }
}

fn device_name(device: Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else {
        "cpu"
    }
}

/// Creates (or checks) the run folder, refusing to overwrite an earlier run.
fn prepare_run_dir(path: &Path, force: bool) -> Result<()> {
    if path.is_file() {
        bail!("--out {} is a file; pass a folder (it is created if missing)", path.display());
    }
    if path.join("run.json").exists() && !force {
        bail!("{} already holds a run; continue it with --resume {0}, or pass --force to replace it", path.display());
    }
    std::fs::create_dir_all(path).with_context(|| format!("cannot create run folder {}", path.display()))
}

/// The options, folder and device of a resumed run: run.json's, with only --steps (a
/// longer run), --device and --precision allowed to change them.
fn resumed_options(args: &TrainArgs, dir: &Path) -> Result<(TrainOptions, Device)> {
    let given = args.hyperparameter_flags();
    if !given.is_empty() {
        bail!(
            "{} cannot be given with --resume: a resumed run keeps the settings in {}; only --steps (to extend it), --device and --precision may be given",
            given.join(", "),
            dir.join("run.json").display()
        );
    }
    let text = std::fs::read_to_string(dir.join("run.json")).map_err(|e| {
        anyhow::anyhow!("cannot resume {}: no readable run.json there ({e}); pass a folder written by `chargpt train`", dir.display())
    })?;
    let mut opts: TrainOptions =
        serde_json::from_str(&text).with_context(|| format!("{} is not a chargpt run description", dir.join("run.json").display()))?;
    let device = match args.device {
        Some(arg) => select_device(arg)?,
        None if opts.device == "cuda" && !tch::Cuda::is_available() => bail!(
            "this run trains on cuda, but libtorch sees no CUDA GPU here; pass --device cpu to continue it on the CPU (its random numbers then differ from an uninterrupted run)"
        ),
        None => select_device(if opts.device == "cuda" { DeviceArg::Cuda } else { DeviceArg::Cpu })?,
    };
    if device_name(device) != opts.device {
        println!(
            "chargpt: continuing a {} run on {} (--device): its random numbers differ from an uninterrupted run",
            opts.device,
            device_name(device)
        );
        opts.device = device_name(device).to_string();
        if args.precision.is_none() && !device.is_cuda() {
            opts.precision = Precision::Fp32;
        }
    }
    if let Some(p) = args.precision {
        opts.precision = p;
    }
    opts.precision.apply(device)?;
    if let Some(steps) = args.steps {
        if steps < opts.steps {
            bail!("--steps {steps} is fewer than the run's {}; with --resume, --steps can only extend a run", opts.steps);
        }
        opts.steps = steps;
    }
    Ok((opts, device))
}

/// The options and device of a new run: the preset, overridden by the flags given.
fn new_options(args: &TrainArgs) -> Result<(TrainOptions, Device)> {
    let device = select_device(args.device.unwrap_or(DeviceArg::Auto))?;
    let preset = args.preset.unwrap_or(if device.is_cuda() { Preset::Blog } else { Preset::Cpu });
    let mut o = preset_options(preset);
    apply_sizes(&mut o, &args.sizes);
    o.models = parse_model_list(args.models.as_deref().unwrap_or("all"))?.iter().map(|m| m.to_string()).collect();
    o.batch_size = args.batch_size.unwrap_or(o.batch_size);
    o.lr = args.lr.unwrap_or(o.lr);
    o.steps = args.steps.unwrap_or(o.steps);
    o.eval_every = args.eval_every.unwrap_or(o.eval_every);
    o.eval_steps = args.eval_steps.unwrap_or(o.eval_steps);
    o.generate_chars = args.generate_chars.unwrap_or(o.generate_chars);
    o.seed = args.seed.unwrap_or(1337);
    o.implementation = format!("{:?}", args.implementation.unwrap_or(Impl::Faithful)).to_lowercase();
    o.precision = args.precision.unwrap_or(Precision::default_for(device));
    o.precision.apply(device)?;
    o.data = args.data.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
    o.device = device_name(device).to_string();
    Ok((o, device))
}

fn cmd_train(args: TrainArgs) -> Result<()> {
    let (opts, device, run, resumed) = match &args.resume {
        Some(dir) => {
            let (opts, device) = resumed_options(&args, dir)?;
            (opts, device, RunDir { path: dir.clone() }, true)
        }
        None => {
            let (opts, device) = new_options(&args)?;
            let path = args.out.clone().unwrap_or_else(|| {
                let corpus = opts.data.file_stem().map_or("data".into(), |s| s.to_string_lossy().to_string());
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
                PathBuf::from("runs").join(format!("{corpus}-{}-{stamp}", opts.preset))
            });
            (opts, device, RunDir { path }, false)
        }
    };
    opts.validate()?;
    let kinds = parse_model_list(&opts.models.join(","))?;
    let text = read_text(&opts.data)?;
    let data = Dataset::new(&text).to_device(device);
    data.check_block_size(opts.block_size)?;
    let cfg = opts.model_config(data.vocab.len() as i64);
    for &kind in &kinds {
        chargpt::models::validate(kind, &cfg)?;
    }
    if !resumed {
        prepare_run_dir(&run.path, args.force)?;
        if args.force {
            run.clear()?;
        }
    }
    // A resume rewrites it too: --steps may have extended the run, --device moved it.
    checkpoint::write_atomic(&run.options(), serde_json::to_string_pretty(&opts)?.as_bytes())?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C while the checkpoint is being written exits at once (code 1);
        // the checkpoint of the last evaluation is still complete on disk.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
    }
    println!(
        "chargpt: training {} on {} ({} chars, vocabulary {}) on {}, preset {}, writing to {}",
        opts.models.join(","),
        opts.data.display(),
        text.chars().count(),
        data.vocab.len(),
        device_name(device),
        opts.preset,
        run.path.display()
    );
    let mut summaries = Vec::new();
    for &kind in &kinds {
        if let Some(done) = train::finished_summary(&run, kind, opts.steps) {
            println!("{kind}: already finished in {}, skipped", run.path.display());
            summaries.push(done);
            continue;
        }
        let job = TrainJob { kind, opts: &opts, data: &data, device, run: Some(&run), stop: Some(Arc::clone(&stop)), verbose: true };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train::train_model(&job)))
            .unwrap_or_else(|payload| Err(anyhow::anyhow!("{kind}: {}", panic_message(payload))));
        let trained = match outcome {
            Ok(t) => t,
            Err(e) => {
                if let Some(Stopped::Interrupted { .. }) = e.downcast_ref::<Stopped>() {
                    bail!("{e}; resume with: chargpt train --resume {}", run.path.display());
                }
                return Err(e);
            }
        };
        summaries.push(trained.summary);
        run.write_summary(&summaries)?;
    }
    run.write_summary(&summaries)?;
    println!("\nmodel  parameters  train loss  val loss  s/step  tokens/s");
    for s in &summaries {
        println!(
            "{:<5} {:>11} {:>11.4} {:>9.4} {:>7.4} {:>9.0}",
            s.model, s.parameters, s.final_train_loss, s.final_val_loss, s.mean_s_per_step, s.tokens_per_s
        );
    }
    if !args.no_plot {
        chargpt::plot::plot_run(&run.path)?;
    }
    println!("results in {}", run.path.display());
    Ok(())
}

fn cmd_generate(args: GenerateArgs) -> Result<()> {
    let device = select_device(args.device)?;
    let (model, vocab, _) = checkpoint::load_model(&args.checkpoint, device)?;
    let context = match &args.prompt {
        Some(p) if !p.is_empty() => vocab.encode(p).context("the prompt cannot be encoded")?,
        _ => vec![sample::START_TOKEN.min(vocab.len() as i64 - 1)],
    };
    tch::manual_seed(args.seed);
    let mut out = std::io::stdout().lock();
    if let Some(p) = &args.prompt {
        write!(out, "{p}")?;
    }
    let mut failed = None;
    // A closed stdout (`| head -c 5`) stops the generation at once.
    sample::generate(&model, &context, args.chars, args.greedy, |t| {
        match write!(out, "{}", vocab.decode_one(t)).and_then(|_| out.flush()) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = failed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    writeln!(out).ok();
    Ok(())
}

fn cmd_eval(args: EvalArgs) -> Result<()> {
    if args.batch_windows <= 0 {
        bail!("--batch-windows must be positive, got {}", args.batch_windows);
    }
    let device = select_device(args.device)?;
    let (model, vocab, _) = checkpoint::load_model(&args.checkpoint, device)?;
    let text = read_text(&args.data)?;
    let tokens = vocab.encode(&text).with_context(|| format!("{} does not fit this checkpoint's vocabulary", args.data.display()))?;
    let data = Dataset::from_tokens(vocab, &tokens);
    data.check_block_size(1)?;
    let splits: &[Split] = if args.train { &[Split::Train, Split::Val] } else { &[Split::Val] };
    for &split in splits {
        let label = format!("{} {}", model.kind, split.name());
        let loss = train::deterministic_loss(&model, data.split(split), args.batch_windows, Some(&label));
        println!("{} {} loss {loss:.6}", model.kind, split.name());
    }
    Ok(())
}

fn cmd_models(args: ModelsArgs) -> Result<()> {
    let mut o = preset_options(args.preset);
    apply_sizes(&mut o, &args.sizes);
    let cfg: Config = o.model_config(args.vocab_size);
    println!("V={} C={} H={} Tmax={} L={}", cfg.vocab_size, cfg.n_embed, cfg.num_heads, cfg.block_size, cfg.block_layers);
    println!("{:<5} {:>12}  adds", "model", "parameters");
    for kind in ModelKind::ALL {
        let model = Model::new(kind, &cfg, Device::Cpu)?;
        println!("{:<5} {:>12}  {}", kind.to_string(), model.num_parameters(), kind.adds());
    }
    Ok(())
}

fn cmd_parity(dir: &Path, device: DeviceArg, implementation: Impl) -> Result<()> {
    use chargpt::parity::Implementation;
    let device = select_device(device)?;
    let imp = match implementation {
        Impl::Faithful => Implementation::Faithful,
        Impl::Fast => Implementation::Fast,
    };
    let reference = chargpt::parity::Reference::open(dir)?;
    println!(
        "parity of the {} path against the PyTorch {} reference in {} on {}",
        format!("{implementation:?}").to_lowercase(),
        reference.manifest.torch_version,
        dir.display(),
        device_name(device)
    );
    println!("model  init       logits     grads      adamw      run-loss   tokens");
    for kind in ModelKind::ALL {
        let r = chargpt::parity::check_model(&reference, kind, device, imp)?;
        let run = |v: f64| if r.run_checked { format!("{v:.2e}") } else { "-".to_string() };
        let grads = if r.grads_checked { format!("{:.2e}", r.grads) } else { "-".to_string() };
        println!(
            "{:<6} {:<10} {:<10.2e} {:<10} {:<10.2e} {:<10} {}",
            kind.to_string(),
            run(r.init),
            r.logits,
            grads,
            r.adam,
            run(r.run_losses),
            if !r.run_checked {
                "-"
            } else if r.tokens_equal {
                "identical"
            } else {
                "DIFFER"
            }
        );
    }
    println!("all ten models match the reference within the tolerances (\"-\": not comparable, see `chargpt parity --help`)");
    Ok(())
}

fn cmd_bench(args: BenchArgs) -> Result<()> {
    use chargpt::bench;
    let device = select_device(args.device)?;
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let threads = tch::get_num_threads();
    let precision = args.precision.unwrap_or(Precision::default_for(device));
    precision.apply(device)?;
    if args.matmul_peak {
        let n = if device.is_cuda() { 8192 } else { 2048 };
        let kind = if precision == Precision::Bf16 { tch::Kind::BFloat16 } else { tch::Kind::Float };
        let name = format!("{precision:?}").to_lowercase();
        println!("matmul_gflops,{:.3},{threads},{name}", bench::matmul_peak_gflops(device, n, kind));
        return Ok(());
    }
    let (mut cfg, batch) =
        bench::bench_config(&args.config, 84).with_context(|| format!("unknown bench configuration {:?}: use cpu or blog", args.config))?;
    cfg.fast = args.implementation == Impl::Fast;
    let implementation = format!("{:?}", args.implementation).to_lowercase();
    println!("model,impl,parameters,ms_per_step,flops_per_step,gen_chars_per_s,threads,device,precision");
    for kind in parse_model_list(&args.models)? {
        let mut b = bench::StepBench::new(kind, &cfg, batch, device);
        b.precision = precision;
        let times = b.time_steps(3, 5, args.budget_s);
        let gen = if args.generate_chars > 0 { bench::generation_rate(&b.model, args.generate_chars) } else { f64::NAN };
        println!(
            "{kind},{implementation},{},{:.4},{:.0},{gen:.1},{threads},{},{}",
            b.model.num_parameters(),
            bench::median(&times) * 1e3,
            bench::flops_per_step(&b.model, batch),
            device_name(device),
            format!("{precision:?}").to_lowercase()
        );
    }
    Ok(())
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
        Command::Parity { reference, device, implementation } => cmd_parity(&reference, device, implementation),
        Command::Bench(a) => cmd_bench(a),
    }
}

/// What a caught panic means for the user: a libtorch failure (raised by tch, or by our
/// shim as a [`LibtorchError`]) is one line about libtorch; anything else is a bug in
/// chargpt, reported as such (the panic hook has already printed where, and the backtrace
/// under RUST_BACKTRACE=1).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(e) = payload.downcast_ref::<LibtorchError>() {
        return libtorch_message(&e.0);
    }
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    if LAST_PANIC_IN_TCH.with(|c| c.get()) {
        return libtorch_message(&text);
    }
    let first = text.lines().next().unwrap_or("").trim();
    format!("internal error (a bug in chargpt, please report it): {first}")
}

/// The first line of libtorch's message, with advice where there is an obvious one.
fn libtorch_message(text: &str) -> String {
    if text.to_lowercase().contains("out of memory") {
        return "the GPU ran out of memory; try a smaller --batch-size (or --block-size / --n-embed)".to_string();
    }
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if first.starts_with("failed printing") {
        return "output closed early (broken pipe)".to_string();
    }
    let first = first.trim_start_matches("libtorch error: ");
    format!("libtorch error: {first}")
}

thread_local! {
    /// Whether the last panic on this thread was raised inside tch (a libtorch error).
    static LAST_PANIC_IN_TCH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Libtorch failures are reported by `panic_message` as one line. Any other panic is a
/// bug: say where it happened, with the backtrace when RUST_BACKTRACE asks for it.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let in_tch = info.location().is_some_and(|l| {
            let file = l.file().replace('\\', "/");
            file.contains("/tch-") || file.contains("/torch-sys-")
        });
        LAST_PANIC_IN_TCH.with(|c| c.set(in_tch));
        if in_tch || info.payload().downcast_ref::<LibtorchError>().is_some() {
            return;
        }
        let location = info.location().map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        let backtrace = std::backtrace::Backtrace::capture();
        eprintln!("chargpt panicked{location}");
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
    }));
}

fn main() {
    chargpt::memory::keep_freed_tensor_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's own message, on one line: what is wrong, and where to look.
            let text = e.to_string();
            let head: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let first = head.join(" ").trim_start_matches("error: ").trim_end_matches(':').to_string();
            eprintln!("error: {first}; see `chargpt --help`");
            std::process::exit(2);
        }
    };
    install_panic_hook();
    let result = std::panic::catch_unwind(|| run(cli));
    let code = match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            let interrupted = e.chain().any(|c| c.downcast_ref::<Stopped>().is_some()) || e.to_string().starts_with("interrupted");
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            if interrupted {
                130
            } else {
                1
            }
        }
        Err(payload) => {
            eprintln!("error: {}", panic_message(payload));
            2
        }
    };
    std::process::exit(code);
}
