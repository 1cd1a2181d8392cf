//! What `chargpt train` does once its flags are read: the run folder's policy around the
//! trainer. A new run claims a folder (one writer at a time, never over another run
//! without `--force`), a resumed one locks its folder before reading its run.json; the
//! training text, its size and the memory are checked before anything is written; a run
//! that fails before its first checkpoint gives its folder back; the end says where the
//! results are and how to sample from them.

use crate::config::{ResumeFlags, RunConfig};
use crate::data::{read_text, train_tokenizer, Corpus, Dataset, Tokenizer, TokenizerSpec};
use crate::presets::Preset;
use crate::run_dir::{FolderLock, RunDir};
use crate::train::Stopped;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tch::Device;

/// Where a `chargpt train` writes, and what it trains.
pub enum Folder {
    /// A new run of `config` on `device`: into `out` (refused where a run is, unless
    /// `force`), or a new `runs/<corpus>-<preset>-<date-time>/`.
    New { config: Box<RunConfig>, device: Device, out: Option<PathBuf>, force: bool },
    /// `--resume DIR`: the run there, continued with what `flags` may change.
    Resume { dir: PathBuf, flags: ResumeFlags },
}

/// `chargpt train`: trains a new or resumed run, then draws its plots unless `plot` is false.
pub fn train(folder: Folder, plot: bool) -> Result<()> {
    let resumed = matches!(folder, Folder::Resume { .. });
    let (opts, device, claim) = match folder {
        Folder::Resume { dir, flags } => {
            let run = RunDir::new(&dir);
            // Taken before run.json is read, so that no other process changes it meanwhile.
            let lock = run.path.is_dir().then(|| run.lock()).transpose()?;
            let (opts, device) = RunConfig::read_for_resume(&run, &flags)?;
            (opts, device, Claim::Held(run, lock))
        }
        Folder::New { config, device, out, force } => (*config, device, Claim::Later { out, force }),
    };
    opts.validate()?;
    if let Some(why) = opts.cuda_graphs.then(|| crate::cuda_graph::unavailable(device, opts.implementation)).flatten() {
        bail!(why);
    }
    let resumed_run = match &claim {
        Claim::Held(run, _) => Some(run.clone()),
        Claim::Later { .. } => None,
    };
    let (opts, data, chars) = read_the_text(opts, resumed_run.as_ref(), device)?;
    let (run, _lock) = claim.take(&opts)?;
    if !resumed {
        run.write_tokenizer(&data.tokenizer)?;
    }
    record(&run, &opts, resumed)?;
    say_what_trains(&run, &opts, &data, chars, device);
    let trained = match opts.seeds.is_empty() {
        true => crate::train::run(&run, &opts, &data, device, stop_on_signals()?).map(|s| crate::train::print_summaries(&s)),
        false => crate::seeds::run(&run, &opts, &data, device, stop_on_signals()?).map(|s| crate::seeds::print_summaries(&s)),
    };
    match trained {
        // Nothing to resume from: give the folder back, so that a retry can use it.
        Err(e) if !resumed && !run.has_checkpoints() && e.downcast_ref::<Stopped>().is_none() => {
            run.clear()?; // what this run wrote (run.json, CSVs), so --out can be reused without --force
            let dir = run.path.display();
            bail!("{e:#}; no checkpoint was written, so {dir} holds nothing of this run: retry with the same --out {dir}");
        }
        other => other?,
    }
    if resumed && opts.seeds.is_empty() {
        crate::seeds::update_top_summary(&run)?;
    }
    finish(&run, &opts, plot);
    Ok(())
}

/// How the run folder is held: already (a resume), or claimed once the text is checked.
enum Claim {
    Held(RunDir, Option<FolderLock>),
    Later { out: Option<PathBuf>, force: bool },
}

impl Claim {
    /// The run folder, locked: `--out` prepared (created, or cleared with `--force`, never
    /// over the training text), or a new folder under `runs/`.
    fn take(self, opts: &RunConfig) -> Result<(RunDir, Option<FolderLock>)> {
        match self {
            Claim::Held(run, lock) => Ok((run, lock)),
            Claim::Later { out: Some(out), force } => {
                let run = RunDir::new(out);
                let lock = run.prepare(force, &opts.data)?;
                Ok((run, Some(lock)))
            }
            Claim::Later { out: None, .. } => {
                let corpus = opts.data.file_stem().map_or("data".into(), |s| s.to_string_lossy().to_string());
                let preset = opts.preset.map_or("custom", Preset::name);
                let stem = format!("{corpus}-{preset}-{}", chrono::Local::now().format("%Y%m%d-%H%M%S"));
                let (run, lock) = RunDir::claim_new(Path::new("runs"), &stem)?;
                Ok((run, Some(lock)))
            }
        }
    }
}

/// Reads and checks the training text before anything is written: the same text as the
/// run started on (a resume, which also loads and checks its BPE), long enough for the
/// block size, and a training that fits the memory. Returns the configuration with the
/// corpus (and a BPE's sha256) recorded, the data on `device` and the text's length in
/// characters.
fn read_the_text(opts: RunConfig, resumed: Option<&RunDir>, device: Device) -> Result<(RunConfig, Dataset, usize)> {
    let text = read_text(&opts.data)?;
    let corpus = Corpus::of(&opts.data, &text);
    if resumed.is_some() {
        opts.check_corpus(&corpus)?;
    }
    let tokenizer = tokenizer_of_the_run(&opts, resumed, &text)?;
    // The same text (by its hash), where it is now.
    let tokenizer_sha256 = tokenizer.bpe().map(|b| b.sha256());
    let opts = RunConfig { corpus: Some(corpus), tokenizer_sha256, ..opts };
    let data = Dataset::with_tokenizer(tokenizer, &text)?.to_device(device);
    data.check_block_size(opts.block_size).map_err(|e| anyhow::anyhow!("{e}; use a longer text or a smaller --block-size"))?;
    crate::footprint::check_training(&opts.models, &opts.model_config(data.tokenizer.len() as i64), opts.batch_size, device)?;
    Ok((opts, data, text.chars().count()))
}

/// The run's tokenizer: the characters of the text; a new BPE, trained on its training
/// split; or a resumed run's own tokenizer.json, which must be the one run.json names.
fn tokenizer_of_the_run(opts: &RunConfig, resumed: Option<&RunDir>, text: &str) -> Result<Tokenizer> {
    let spec = opts.tokenizer;
    match (spec, resumed, &opts.tokenizer_sha256) {
        (TokenizerSpec::Char, _, _) => train_tokenizer(spec, text),
        (_, Some(run), Some(sha256)) => Tokenizer::load_bpe(&run.tokenizer_json(), spec, sha256),
        (_, Some(run), None) => {
            bail!("{}: a {spec} run without its tokenizer's sha256; start it again in a new folder", run.run_json().display())
        }
        (TokenizerSpec::Bpe(n), None, _) => {
            let started = std::time::Instant::now();
            let tokenizer = train_tokenizer(spec, text)?;
            let got = tokenizer.len();
            let fewer = if got < n { format!(" (its training split has no more merges to give than {got} tokens)") } else { String::new() };
            crate::say!(
                "chargpt: trained a byte-level BPE of {got} tokens{fewer} on the training split in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(tokenizer)
        }
    }
}

/// Writes run.json, except for a resume with nothing left to train: a flag given to a
/// finished run changes no record (--steps may extend a run, --device move it).
fn record(run: &RunDir, opts: &RunConfig, resumed: bool) -> Result<()> {
    if resumed && !something_to_train(run, opts) {
        crate::say!("chargpt: every model of {} has finished its {} steps; run.json is unchanged", run.path.display(), opts.steps);
        return Ok(());
    }
    crate::checkpoint::write_atomic(&run.run_json(), serde_json::to_string_pretty(opts)?.as_bytes())
}

/// Whether a model of the run (of any seed) has steps left.
fn something_to_train(run: &RunDir, opts: &RunConfig) -> bool {
    let runs: Vec<RunDir> = match opts.seeds.as_slice() {
        [] => vec![run.clone()],
        seeds => seeds.iter().map(|&s| run.seed_run(s)).collect(),
    };
    runs.iter().any(|r| crate::run_dir::steps_left(r, &opts.models, opts.steps))
}

/// SIGINT and SIGTERM set the flag the trainer checks: it finishes the step, checkpoints
/// and stops. A second one while the checkpoint is being written exits at once (code 1);
/// the checkpoint of the last evaluation is still complete on disk.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
    }
    Ok(stop)
}

/// The run's header line: what trains on what, where, and where it writes.
fn say_what_trains(run: &RunDir, opts: &RunConfig, data: &Dataset, chars: usize, device: Device) {
    let models: Vec<String> = opts.models.iter().map(ToString::to_string).collect();
    let seeds = match opts.seeds.as_slice() {
        [] => format!("seed {}", opts.seed),
        many => format!("{} seeds ({})", many.len(), many.iter().map(i64::to_string).collect::<Vec<_>>().join(",")),
    };
    let threads = opts.threads.unwrap_or_else(crate::arithmetic::Threads::default_now);
    let on = if device.is_cuda() { "cuda".to_string() } else { format!("cpu ({})", threads.describe()) };
    crate::say!(
        "chargpt: training {} on {} ({chars} chars, {}) on {on}, preset {}, {seeds}, writing to {}",
        models.join(","),
        opts.data.display(),
        match &data.tokenizer {
            Tokenizer::Char(vocab) => format!("vocabulary {}", vocab.len()),
            Tokenizer::Bpe { spec, bpe } =>
                format!("{spec}: {} tokens, {:.2} chars per token", bpe.vocab_size(), data.chars_per_token(crate::data::Split::Train)),
        },
        opts.preset.map_or("custom", Preset::name),
        run.path.display()
    );
    if let Some(note) = few_evaluations(opts.steps, opts.eval_every, opts.final_eval) {
        crate::say!("note: {note}");
    }
}

/// What to say when the blog's schedule (after step s when s % eval_every == 0 and
/// s >= eval_every) evaluates fewer than twice in `steps` steps: a loss curve needs more,
/// and the last evaluation may come well before the end.
fn few_evaluations(steps: i64, eval_every: i64, final_eval: bool) -> Option<String> {
    let on_schedule = (steps - 1) / eval_every;
    if on_schedule >= 2 {
        return None;
    }
    let last = steps - 1;
    let end = match (last % eval_every == 0, final_eval) {
        (true, _) => "that is the last step".to_string(),
        (false, true) => format!("each model is evaluated once more after its last step, {last}, off the schedule"),
        (false, false) => format!("with --no-final-eval the summary reports that evaluation, not the model after step {last}"),
    };
    Some(format!(
        "--steps {steps} with --eval-every {eval_every} evaluates once on the blog's schedule, after step {eval_every} ({end}); \
         --steps {} gives two, the last after the last step",
        2 * eval_every + 1
    ))
}

/// The plots (a failure is a warning: the training is done and saved), then where the
/// results are and the command that samples from the last model.
fn finish(run: &RunDir, opts: &RunConfig, plot: bool) {
    if plot {
        if let Err(e) = crate::plot::plot_run(&run.path) {
            crate::tell!("warning: the plots were not drawn ({e:#}); draw them with: chargpt plot {}", run.path.display());
        }
    }
    crate::say!("results in {}", run.path.display());
    let last_run = opts.seeds.last().map_or(run.clone(), |&seed| run.seed_run(seed));
    if let Some(&last) = opts.models.last() {
        crate::say!("sample from it: chargpt generate --checkpoint {}", last_run.weights(last).display());
    }
}

/// What `chargpt generate` was asked for.
pub struct Generate {
    /// RUN/vN.safetensors (or its .json).
    pub checkpoint: PathBuf,
    pub prompt: Option<String>,
    pub prompt_file: Option<PathBuf>,
    /// Characters per sample (None: 500, or with `like_training` the run's).
    pub chars: Option<usize>,
    pub samples: usize,
    pub sampling: crate::sample::Sampling,
    /// Draw the very sample `train` wrote, from the generator state it left.
    pub like_training: bool,
    pub seed: Option<i64>,
    pub out: Option<PathBuf>,
    pub device: crate::device::DeviceChoice,
}

/// `chargpt generate`: samples from a checkpoint to stdout, or whole and atomically into
/// `out`, which may be no file the generation reads and no file of a run.
pub fn generate(g: Generate) -> Result<()> {
    crate::sample::check_chars("--chars", g.chars.unwrap_or(0))?;
    let prompt = match &g.prompt_file {
        Some(path) => Some(crate::data::read_prompt(path)?),
        None => g.prompt.clone(),
    };
    let _lock = g.out.as_deref().map(|out| lock_output(out, &g)).transpose()?.flatten();
    let device = g.device.select()?;
    let (model, tokenizer, info) = crate::checkpoint::load_model(&g.checkpoint, device)?;
    note_unfinished(&g.checkpoint, &info);
    let mut chars = g.chars.unwrap_or(500);
    if g.like_training {
        let run = RunConfig::beside(&g.checkpoint, "--like-training")?;
        let trained_in = crate::sample::TrainedIn { steps: run.steps, device: run.device };
        crate::sample::restore_sampling_generator(&g.checkpoint, device, &trained_in)?;
        chars = g.chars.unwrap_or(run.generate_chars);
    } else {
        tch::manual_seed(g.seed.unwrap_or(1337));
    }
    let draws = |end_with_newline| crate::sample::Draws { chars, samples: g.samples, sampling: g.sampling, end_with_newline };
    let Some(path) = &g.out else {
        // The training sample byte for byte (vN.sample.txt has no newline at its end),
        // unless a person reads it on a terminal.
        let newline = !g.like_training || std::io::IsTerminal::is_terminal(&std::io::stdout());
        return crate::sample::stream(&model, &tokenizer, prompt.as_deref(), draws(newline), &mut std::io::stdout().lock());
    };
    // Written whole, atomically: a stopped generation leaves the file as it was.
    let mut text = Vec::new();
    crate::sample::stream(&model, &tokenizer, prompt.as_deref(), draws(!g.like_training), &mut text)?;
    crate::checkpoint::write_atomic(path, &text)?;
    crate::say!("wrote {}", path.display());
    Ok(())
}

/// Refuses an `--out` that is a file the generation reads or a file of a run, and locks
/// the run folder it goes into (if it is one) while the samples are written.
fn lock_output(out: &Path, g: &Generate) -> Result<Option<FolderLock>> {
    let weights = crate::checkpoint::weights_path(&g.checkpoint);
    let info = crate::checkpoint::info_path(&weights);
    let mut inputs = vec![g.checkpoint.as_path(), weights.as_path(), info.as_path()];
    inputs.extend(g.prompt_file.as_deref());
    crate::run_dir::refuse_clobbering(out, &inputs)?;
    let folder = crate::checkpoint::folder_of(out);
    let run = RunDir::new(folder);
    run.run_json().exists().then(|| run.lock()).transpose()
}

/// vN.safetensors is rewritten at every evaluation: say when it is not a finished model.
fn note_unfinished(path: &Path, info: &crate::checkpoint::ModelInfo) {
    if !info.finished {
        crate::tell!(
            "note: {} is the checkpoint after {} steps of a training that has not finished (it is rewritten at every evaluation)",
            path.display(),
            info.steps_done
        );
    }
}

/// `chargpt eval`: the deterministic loss of a checkpoint on `splits` of `data`, by
/// default the text it was trained on (with a warning when that text changed since).
pub fn eval(checkpoint: &Path, data: Option<&Path>, splits: &[crate::data::Split], batch_windows: i64, device: Device) -> Result<()> {
    let (model, tokenizer, info) = crate::checkpoint::load_model(checkpoint, device)?;
    note_unfinished(checkpoint, &info);
    let data = match (data, &info.corpus) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(corpus)) => {
            let now = read_text(&corpus.absolute).map(|t| Corpus::of(&corpus.absolute, &t).sha256);
            if now.as_ref().is_ok_and(|sha| *sha != corpus.sha256) {
                crate::tell!("warning: {} changed since this model was trained on it (its sha256 differs)", corpus.absolute.display());
            }
            corpus.absolute.clone()
        }
        (None, None) => PathBuf::from(crate::config::DEFAULT_DATA),
    };
    crate::eval::print_deterministic_losses(&model, tokenizer, &data, splits, batch_windows)
}
