//! The `chargpt` command line: arguments into options, then the library does the work.

use anyhow::{bail, Result};
use chargpt::app::{Folder, Generate};
use chargpt::config::RunConfig;
use chargpt::data::Split;
use chargpt::model_kind::{parse_model_list, ModelKind};
use chargpt::panics::PanicError;
use chargpt::precision::Precision;
use chargpt::presets::Preset;
use chargpt::run_dir::RunDir;
use chargpt::sample::Sampling;
use chargpt::train::Stopped;
use clap::{CommandFactory, Parser};

mod cli;
use cli::{BenchArgs, Cli, Command, EvalArgs, GenerateArgs, ModelsArgs, TrainArgs};

fn cmd_train(args: TrainArgs) -> Result<()> {
    let folder = match &args.resume {
        Some(dir) => Folder::Resume { dir: dir.clone(), flags: args.resume_flags(dir)? },
        None => {
            let (config, device) = args.to_options()?;
            Folder::New { config: Box::new(config), device, out: args.out.clone(), force: args.force }
        }
    };
    chargpt::app::train(folder, !args.no_plot)
}

fn cmd_generate(args: GenerateArgs) -> Result<()> {
    let (temperature, samples) = (args.temperature.unwrap_or(1.0), args.num_samples.unwrap_or(1));
    if !(temperature > 0.0 && temperature.is_finite()) {
        bail!("--temperature must be a positive number, got {temperature}");
    }
    if args.top_k.is_some_and(|k| k < 1) || samples < 1 {
        bail!("--top-k and --num-samples must be at least 1");
    }
    chargpt::app::generate(Generate {
        checkpoint: args.checkpoint,
        prompt: args.prompt,
        prompt_file: args.prompt_file,
        chars: args.chars,
        samples,
        sampling: Sampling { greedy: args.greedy, temperature, top_k: args.top_k },
        like_training: args.like_training,
        seed: args.seed,
        out: args.out,
        device: args.device,
    })
}

fn cmd_eval(args: EvalArgs) -> Result<()> {
    let splits: &[Split] = if args.train { &[Split::Train, Split::Val] } else { &[Split::Val] };
    chargpt::app::eval(&args.checkpoint, args.data.as_deref(), splits, args.batch_windows, args.device.select()?)
}

fn cmd_models(args: ModelsArgs) -> Result<()> {
    let preset = args.preset.unwrap_or(if tch::Cuda::is_available() { Preset::Blog } else { Preset::Cpu });
    let mut o = RunConfig::from_preset(preset);
    args.sizes.apply(&mut o);
    let models = if args.models.is_empty() { ModelKind::ALL.to_vec() } else { parse_model_list(&args.models.join(","))? };
    let vocab_size = match &args.data {
        Some(data) => chargpt::data::train_tokenizer(args.tokenizer.unwrap_or_default(), &chargpt::data::read_text(data)?)?.len() as i64,
        None => args.vocab_size.unwrap_or(84),
    };
    if args.markdown {
        let sizes = |p: Preset| RunConfig::from_preset(p).model_config(vocab_size);
        return chargpt::footprint::print_markdown_table(
            &models,
            &[("blog config", sizes(Preset::Blog)), ("cpu preset", sizes(Preset::Cpu))],
        );
    }
    chargpt::footprint::print_table(&o.model_config(vocab_size), &models)
}

fn cmd_plot(run_dirs: &[std::path::PathBuf], compare: Option<&std::path::Path>, models: Option<&str>) -> Result<()> {
    if let Some(out) = compare {
        return chargpt::plot::plot_comparison(run_dirs, &parse_model_list(models.unwrap_or("all"))?, out);
    }
    let [run_dir] = run_dirs else { bail!("plot draws one run folder; pass --compare FILE to draw several on one axis") };
    let _lock = if run_dir.is_dir() { Some(RunDir::new(run_dir).lock()?) } else { None };
    chargpt::plot::plot_run(run_dir)
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
    if let Some(b) = args.batch_size.filter(|&b| b <= 0) {
        bail!("--batch-size must be a positive integer, got {b}");
    }
    if let Some(why) = args.cuda_graphs.then(|| chargpt::cuda_graph::unavailable(device, args.implementation)).flatten() {
        bail!(why);
    }
    let timing = chargpt::bench::Timing {
        budget_s: args.budget_s,
        generate_chars: args.generate_chars,
        follow_load: args.threads == chargpt::arithmetic::Threads::Auto,
        floor: !args.no_floor,
        batch_size: args.batch_size,
        cuda_graphs: args.cuda_graphs,
    };
    chargpt::bench::print_steps(&models, args.config, args.implementation, device, precision, timing)
}

fn run(cli: Cli) -> Result<()> {
    chargpt::test_hooks::internal_panic();
    chargpt::panics::advise_on_memory(match &cli.command {
        Command::Train(_) => "try a smaller --batch-size (or --block-size / --n-embed)",
        Command::Eval(_) => "try a smaller --batch-windows",
        Command::Bench(_) => "try a smaller --config (cpu) or --batch-size",
        _ => "close other programs, or use a machine with more memory",
    });
    chargpt::test_hooks::out_of_memory();
    match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Generate(a) => cmd_generate(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Models(a) => cmd_models(a),
        Command::Plot { run_dirs, compare, models } => cmd_plot(&run_dirs, compare.as_deref(), models.as_deref()),
        Command::Parity { reference, device, implementation } => chargpt::parity::print_table(&reference, device.select()?, implementation),
        Command::Bench(a) => cmd_bench(a),
    }
}

/// --help, --version, and the help for `chargpt` alone, as clap prints them; a bad
/// argument as clap's own message on one line (what is wrong, where to look), exit 2.
fn exit_on_bad_arguments(e: clap::Error) -> ! {
    if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        e.exit()
    }
    let text = e.to_string();
    let head: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let first = head.join(" ").trim_start_matches("error: ").trim_end_matches(':').to_string();
    // The subcommand's own help where one was named (its flags are listed there).
    let sub = std::env::args().skip(1).find(|a| !a.starts_with('-')).filter(|a| Cli::command().find_subcommand(a).is_some());
    let help = sub.map_or("chargpt --help".to_string(), |s| format!("chargpt {s} --help"));
    chargpt::tell!("error: {first}; see `{help}`");
    std::process::exit(2);
}

fn main() {
    // Before libtorch's first matrix multiply: MKL reads its mode once.
    chargpt::arithmetic::use_reproducible_blas();
    chargpt::memory::keep_freed_tensor_memory();
    let cli = Cli::try_parse().unwrap_or_else(|e| exit_on_bad_arguments(e));
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
