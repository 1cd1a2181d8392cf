//! The `chargpt` command line: arguments into options, then the library does the work.

use anyhow::{bail, Context, Result};
use chargpt::checkpoint;
use chargpt::data::{read_text, Dataset, Split};
use chargpt::model_kind::{parse_model_list, ModelKind};
use chargpt::panics::PanicError;
use chargpt::precision::Precision;
use chargpt::presets::Preset;
use chargpt::run_dir::RunDir;
use chargpt::sample;
use chargpt::train::{self, Stopped, TrainOptions, DEFAULT_DATA};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod cli;
use cli::{BenchArgs, Cli, Command, EvalArgs, GenerateArgs, ModelsArgs, TrainArgs};

fn cmd_train(args: TrainArgs) -> Result<()> {
    // One writer per run folder (RunDir::lock): a resumed one is taken before its run.json
    // is read, a new one when it is created (below).
    let mut lock = None;
    let (opts, device, run) = match &args.resume {
        Some(dir) => {
            let run = RunDir::new(dir);
            if run.path.is_dir() {
                lock = Some(run.lock()?);
            }
            let (opts, device) = args.resumed_options(dir)?;
            (opts, device, run)
        }
        None => {
            let (opts, device) = args.to_options()?;
            (opts, device, RunDir::new(args.out.clone().unwrap_or_default()))
        }
    };
    opts.validate()?;
    opts.precision.apply(device)?;
    // One thread count for every model, seed and resume of the run (run.json keeps it).
    let threads = opts.threads.unwrap_or_else(chargpt::arithmetic::Threads::default_now);
    threads.apply();
    let text = read_text(&opts.data)?;
    let corpus = chargpt::data::Corpus::of(&opts.data, &text);
    let opts = match &args.resume {
        Some(_) => {
            opts.check_corpus(&corpus)?;
            // The same text (by its hash), where it is now.
            TrainOptions { corpus: Some(corpus), ..opts }
        }
        None => TrainOptions { corpus: Some(corpus), ..opts },
    };
    let data = Dataset::new(&text).to_device(device);
    data.check_block_size(opts.block_size).map_err(|e| anyhow::anyhow!("{e}; use a longer text or a smaller --block-size"))?;
    chargpt::footprint::check_training(&opts.models, &opts.model_config(data.vocab.len() as i64), opts.batch_size, device)?;
    let run = match (&args.resume, &args.out) {
        (Some(_), _) => run,
        (None, Some(_)) => {
            lock = Some(run.prepare(args.force, &opts.data)?);
            run
        }
        (None, None) => {
            let corpus = opts.data.file_stem().map_or("data".into(), |s| s.to_string_lossy().to_string());
            let preset = opts.preset.map_or("custom", Preset::name);
            let stem = format!("{corpus}-{preset}-{}", chrono::Local::now().format("%Y%m%d-%H%M%S"));
            let (run, held) = RunDir::claim_new(Path::new("runs"), &stem)?;
            lock = Some(held);
            run
        }
    };
    let _lock = lock;
    // A resume rewrites it only when something trains (--steps may have extended the
    // run, --device moved it): a flag given to a finished run changes no record.
    if args.resume.is_none() || something_to_train(&run, &opts) {
        checkpoint::write_atomic(&run.options(), serde_json::to_string_pretty(&opts)?.as_bytes())?;
    } else {
        chargpt::say!("chargpt: every model of {} has finished its {} steps; run.json is unchanged", run.path.display(), opts.steps);
    }
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
    let seeds = match opts.seeds.as_slice() {
        [] => format!("seed {}", opts.seed),
        many => format!("{} seeds ({})", many.len(), many.iter().map(i64::to_string).collect::<Vec<_>>().join(",")),
    };
    let on = match device.is_cuda() {
        true => "cuda".to_string(),
        false => format!("cpu ({})", threads.describe()),
    };
    chargpt::say!(
        "chargpt: training {} on {data_path} ({chars} chars, vocabulary {vocab}) on {on}, preset {preset}, {seeds}, writing to {out}",
        models.join(",")
    );
    let trained = if opts.seeds.is_empty() {
        train::run(&run, &opts, &data, device, stop).map(|s| train::print_summaries(&s))
    } else {
        chargpt::seeds::run(&run, &opts, &data, device, stop).map(|s| chargpt::seeds::print_summaries(&s))
    };
    match trained {
        Ok(()) => {}
        // Nothing to resume from: give the folder back, so that a retry can use it.
        Err(e) if args.resume.is_none() && !run.has_checkpoints() && e.downcast_ref::<Stopped>().is_none() => {
            run.clear()?; // what this run wrote (run.json, CSVs), so --out can be reused without --force
            let dir = run.path.display();
            bail!("{e:#}; no checkpoint was written, so {dir} holds nothing of this run: retry with the same --out {dir}");
        }
        Err(e) => return Err(e),
    }
    if args.resume.is_some() && opts.seeds.is_empty() {
        chargpt::seeds::update_top_summary(&run)?;
    }
    if !args.no_plot {
        // The training is done and saved: a plot that fails is a warning, not a failure.
        if let Err(e) = chargpt::plot::plot_run(&run.path) {
            chargpt::tell!("warning: the plots were not drawn ({e:#}); draw them with: chargpt plot {}", run.path.display());
        }
    }
    chargpt::say!("results in {}", run.path.display());
    let last_run = opts.seeds.last().map_or(run.clone(), |&seed| run.seed_run(seed));
    if let Some(&last) = opts.models.last() {
        chargpt::say!("sample from it: chargpt generate --checkpoint {}", last_run.weights(last).display());
    }
    Ok(())
}

/// Whether a model of the run (of any seed) has steps left.
fn something_to_train(run: &RunDir, opts: &TrainOptions) -> bool {
    let runs: Vec<RunDir> = match opts.seeds.as_slice() {
        [] => vec![run.clone()],
        seeds => seeds.iter().map(|&s| run.seed_run(s)).collect(),
    };
    runs.iter().any(|r| train::steps_left(r, opts))
}

fn cmd_generate(args: GenerateArgs) -> Result<()> {
    let (temperature, samples) = (args.temperature.unwrap_or(1.0), args.num_samples.unwrap_or(1));
    if !(temperature > 0.0 && temperature.is_finite()) {
        bail!("--temperature must be a positive number, got {temperature}");
    }
    if args.top_k.is_some_and(|k| k < 1) || samples < 1 {
        bail!("--top-k and --num-samples must be at least 1");
    }
    sample::check_chars("--chars", args.chars.unwrap_or(0))?;
    let prompt = match &args.prompt_file {
        Some(path) => Some(chargpt::data::read_prompt(path)?),
        None => args.prompt.clone(),
    };
    // Nothing it reads and no file of a run may be overwritten by the samples.
    let lock = match &args.out {
        Some(out) => {
            let weights = checkpoint::weights_path(&args.checkpoint);
            let info = checkpoint::info_path(&weights);
            let mut inputs = vec![args.checkpoint.as_path(), weights.as_path(), info.as_path()];
            inputs.extend(args.prompt_file.as_deref());
            chargpt::run_dir::refuse_clobbering(out, &inputs)?;
            let folder = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let run = RunDir::new(folder);
            run.options().exists().then(|| run.lock()).transpose()?
        }
        None => None,
    };
    let device = args.device.select()?;
    let (model, vocab, info) = checkpoint::load_model(&args.checkpoint, device)?;
    note_unfinished(&args.checkpoint, &info);
    let sampling = sample::Sampling { greedy: args.greedy, temperature, top_k: args.top_k };
    let mut n = args.chars.unwrap_or(500);
    if args.like_training {
        n = args.chars.unwrap_or(chargpt::resume::restore_sampling_generator(&args.checkpoint, device)?);
    } else {
        tch::manual_seed(args.seed.unwrap_or(1337));
    }
    let prompt = prompt.as_deref();
    let draws = |end_with_newline| sample::Draws { chars: n, samples, sampling, end_with_newline };
    match &args.out {
        Some(path) => {
            // Written whole, atomically: a stopped generation leaves the file as it was.
            let mut text = Vec::new();
            sample::stream(&model, &vocab, prompt, draws(!args.like_training), &mut text)?;
            checkpoint::write_atomic(path, &text)?;
            drop(lock);
            chargpt::say!("wrote {}", path.display());
            Ok(())
        }
        None => {
            // The training sample byte for byte (vN.sample.txt has no newline at its end),
            // unless a person reads it on a terminal.
            let newline = !args.like_training || std::io::IsTerminal::is_terminal(&std::io::stdout());
            sample::stream(&model, &vocab, prompt, draws(newline), &mut std::io::stdout().lock())
        }
    }
}

/// vN.safetensors is rewritten at every evaluation: say when it is not a finished model.
fn note_unfinished(path: &Path, info: &checkpoint::ModelInfo) {
    if !info.finished {
        chargpt::tell!(
            "note: {} is the checkpoint after {} steps of a training that has not finished (it is rewritten at every evaluation)",
            path.display(),
            info.steps_done
        );
    }
}

fn cmd_eval(args: EvalArgs) -> Result<()> {
    let (model, vocab, info) = checkpoint::load_model(&args.checkpoint, args.device.select()?)?;
    note_unfinished(&args.checkpoint, &info);
    let data = match (&args.data, &info.corpus) {
        (Some(path), _) => path.clone(),
        (None, Some(corpus)) => {
            let now = read_text(&corpus.absolute).map(|t| chargpt::data::Corpus::of(&corpus.absolute, &t).sha256);
            if now.as_ref().is_ok_and(|sha| *sha != corpus.sha256) {
                chargpt::tell!("warning: {} changed since this model was trained on it (its sha256 differs)", corpus.absolute.display());
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
    let cfg = o.model_config(args.vocab_size);
    chargpt::footprint::print_table(&cfg, &models)
}

fn cmd_bench(args: BenchArgs) -> Result<()> {
    let device = args.device.select()?;
    args.threads.apply();
    let precision = args.precision.unwrap_or(Precision::default_for(device));
    precision.apply(device)?;
    if args.matmul_peak {
        chargpt::bench::print_matmul_peak(device, precision);
        return Ok(());
    }
    let models = parse_model_list(&args.models)?;
    let timing = chargpt::bench::Timing {
        budget_s: args.budget_s,
        generate_chars: args.generate_chars,
        follow_load: args.threads == chargpt::arithmetic::Threads::Auto,
    };
    chargpt::bench::print_steps(&models, args.config, args.implementation, device, precision, timing)
}

fn run(cli: Cli) -> Result<()> {
    chargpt::test_hooks::internal_panic();
    chargpt::panics::advise_on_memory(match &cli.command {
        Command::Train(_) => "try a smaller --batch-size (or --block-size / --n-embed)",
        Command::Eval(_) => "try a smaller --batch-windows",
        Command::Bench(_) => "try a smaller --config (cpu)",
        _ => "close other programs, or use a machine with more memory",
    });
    chargpt::test_hooks::out_of_memory();
    match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Generate(a) => cmd_generate(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Models(a) => cmd_models(a),
        Command::Plot { run_dir } => {
            let _lock = if run_dir.is_dir() { Some(RunDir::new(&run_dir).lock()?) } else { None };
            chargpt::plot::plot_run(&run_dir)
        }
        Command::Parity { reference, device, implementation } => chargpt::parity::print_table(&reference, device.select()?, implementation),
        Command::Bench(a) => cmd_bench(a),
    }
}

fn main() {
    // Before libtorch's first matrix multiply: MKL reads its mode once.
    chargpt::arithmetic::use_reproducible_blas();
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
            chargpt::tell!("error: {first}; see `chargpt --help`");
            std::process::exit(2);
        }
    };
    chargpt::panics::install_hook();
    chargpt::device::fit_threads_to_available_cpus();
    let result = std::panic::catch_unwind(|| run(cli)).unwrap_or_else(|payload| Err(chargpt::panics::to_error(payload).into()));
    if let Err(e) = result {
        // A stop is not a failure: its checkpoint is safe and the resume exact (exit 130).
        let stopped = e.chain().any(|c| c.downcast_ref::<Stopped>().is_some());
        chargpt::tell!("{}: {}", if stopped { "stopped" } else { "error" }, format!("{e:#}").replace('\n', " "));
        let code = if stopped {
            130
        } else if e.chain().any(|c| c.downcast_ref::<PanicError>().is_some_and(|p| matches!(p, PanicError::Internal(_)))) {
            2
        } else {
            1
        };
        std::process::exit(code);
    }
}
