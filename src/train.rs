//! The blog's trainer (docs/MODELS.md, "The trainer"), with what long runs need on top:
//! a CSV row per evaluation, an atomic checkpoint at every evaluation that holds all it
//! takes to continue (`crate::resume`), resumption, Ctrl-C handling, and a stop on a
//! non-finite loss. [`run`] trains a run's models one after another; [`train_model`]
//! trains one.

use crate::arithmetic::{Arithmetic, Stretch, Threads};
use crate::checkpoint::{self, ModelInfo};
use crate::config::RunConfig;
use crate::cuda_graph::StepGraph;
use crate::data::{Dataset, Split};
use crate::eval::{estimate_loss_unless_stopped, evaluates_after};
use crate::model_kind::ModelKind;
use crate::models::Model;
use crate::optim::{AdamW, AdamWConfig, Update};
use crate::progress::Progress;
use crate::resume::{self, ResumeState};
use crate::rng::{Generator, RngState};
use crate::run_dir::{finished_summary, EvalRow, RunDir, Summary};
use crate::sample;
use anyhow::{bail, Context, Result};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Tensor};

/// Why training stopped early, for callers that must tell the cases apart.
#[derive(Debug)]
pub enum Stopped {
    /// SIGINT/SIGTERM: a checkpoint was written after `step` steps; `run` resumes it.
    Interrupted { model: ModelKind, step: i64, run: Option<PathBuf> },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Interrupted { model, step, run } => {
                let steps = if *step == 1 { "step" } else { "steps" };
                write!(f, "{model} stopped after {step} {steps}, checkpoint written")?;
                if let Some(dir) = run {
                    write!(f, "; resume with: chargpt train --resume {}", dir.display())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Stopped {}

/// How often the training losses are read from the device (each read waits for it).
const READ_LOSSES_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// What the caller of [`train_model`] gets back.
pub struct TrainedModel {
    pub model: Model,
    pub summary: Summary,
    pub rows: Vec<EvalRow>,
    pub sample: String,
    pub losses: Vec<f64>,
}

/// Everything needed to train one model.
pub struct ModelJob<'a> {
    pub kind: ModelKind,
    pub opts: &'a RunConfig,
    pub data: &'a Dataset,
    pub device: Device,
    /// Where checkpoints and CSVs go; `None` trains in memory only (tests, parity).
    pub run: Option<&'a RunDir>,
    /// Set by SIGINT/SIGTERM: finish the step, checkpoint, stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Print evaluation lines and the sample.
    pub verbose: bool,
}

/// One model in training: the model, its optimiser, its progress, and where it saves.
struct Trainer<'a> {
    job: &'a ModelJob<'a>,
    model: Model,
    opt: AdamW,
    state: ResumeState,
    progress: Progress,
    session_start: Instant,
    wall_before: f64,
    /// (steps done, training seconds) at the last evaluation, for its tokens/s.
    last_eval: (i64, f64),
    losses: Vec<f64>,
    /// The losses of the steps since the last read, still on the device.
    unread: Vec<Tensor>,
    last_read: Instant,
    /// Eager steps, or the step as a CUDA graph (`--cuda-graphs`).
    graph: StepGraph,
    /// The thread count this model computes with: the run's, or a fixed one where the
    /// count would change this model's numbers (`auto_threads_or_fixed`).
    threads: Option<Threads>,
    /// On the CPU: the load of the other processes, to give way to (`--threads auto`) or
    /// to say is slowing a fixed count down.
    cpu_share: Option<crate::cpu_share::CpuShare>,
    /// The history of the steps done before this session, and where this session began.
    history_before: Vec<Stretch>,
    session_from: i64,
}

/// `--threads auto` for `model` where the thread count does not change its numbers (one
/// forward and backward of the run's first training windows, dropout off, compared bit
/// for bit at 1 and at all threads); else all the CPUs, fixed, and a line that says so.
fn auto_threads_or_fixed(job: &ModelJob, model: &Model) -> Threads {
    let all = crate::device::available_cpus();
    if all == 1 {
        return Threads::Auto;
    }
    let (opts, data) = (job.opts, job.data);
    let train = data.split(Split::Train);
    let starts = Tensor::arange(opts.batch_size.min(train.size()[0] - opts.block_size), (tch::Kind::Int64, train.device()));
    let (x, y) = crate::data::windows(train, &starts, opts.block_size, job.device);
    let loss = || opts.precision.forward(job.device, || model.loss(&x, &y, false));
    if crate::arithmetic::threads_leave_the_numbers_alone(model, all, loss) {
        return Threads::Auto;
    }
    if job.verbose {
        crate::say!(
            "{}: 1 and {all} threads give different numbers on this machine, so it computes with {all}, fixed, whatever the load",
            job.kind
        );
    }
    Threads::Fixed(all)
}

impl<'a> Trainer<'a> {
    /// The model from `manual_seed(seed)`, or continued from its resume file.
    fn new(job: &'a ModelJob<'a>) -> Result<Self> {
        let ModelJob { kind, opts, data, device, run, .. } = *job;
        opts.precision.apply(device)?;
        tch::manual_seed(opts.seed);
        let model = Model::with_implementation(kind, &opts.model_config(data.tokenizer.len() as i64), opts.implementation, device)?;
        if job.verbose {
            crate::say!("== {kind}: {} ({} parameters)", kind.adds(), model.num_parameters());
        }
        let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::pytorch_default(opts.lr), Update::of(opts.implementation, device));
        let mut state = ResumeState::new(&model, data.tokenizer.identity());
        if let Some(path) = run.map(|r| r.resume_file(kind)).filter(|p| p.exists()) {
            state = resume::load(&path, &model, &mut opt, &data.tokenizer.identity())
                .and_then(|s| resume::check_progress(&s, opts.steps, &model).map(|()| s))
                .with_context(|| format!("cannot resume {kind} from {}", path.display()))?;
            if job.verbose {
                crate::say!("{kind}: resuming after step {} from {}", state.steps_done, path.display());
            }
        }
        let progress = Progress::new(&kind.to_string(), opts.steps as u64, state.steps_done as u64, "steps", job.verbose);
        let (wall_before, last_eval) = (state.wall_seconds, state.last_eval.unwrap_or((state.steps_done, state.train_seconds)));
        let threads = match opts.threads {
            Some(Threads::Auto) if !device.is_cuda() => Some(auto_threads_or_fixed(job, &model)),
            other => other,
        };
        // Every model starts from its own count: a fixed one where the check says so, all
        // the CPUs for `auto` (the previous model may have given some away).
        if let Some(t) = threads.filter(|_| !device.is_cuda()) {
            t.apply();
        }
        let cpu_share = match threads {
            _ if device.is_cuda() => None,
            Some(Threads::Fixed(1)) => None, // one thread has no barrier to spin at
            Some(Threads::Fixed(n)) => crate::cpu_share::CpuShare::new(n),
            Some(Threads::Auto) => crate::cpu_share::CpuShare::new(crate::device::available_cpus()),
            None => None, // library use: libtorch's count is the caller's
        };
        let session_start = Instant::now();
        let (history_before, session_from) = (state.history.clone(), state.steps_done);
        let (losses, unread, last_read) = (Vec::new(), Vec::new(), Instant::now());
        let graph = match opts.cuda_graphs {
            true => {
                let (graph, note) = StepGraph::new(device);
                if let Some(note) = note.filter(|_| job.verbose) {
                    crate::say!("{kind}: {note}");
                }
                graph
            }
            false => StepGraph::Eager,
        };
        Ok(Trainer {
            job,
            model,
            opt,
            state,
            progress,
            session_start,
            wall_before,
            last_eval,
            losses,
            unread,
            last_read,
            graph,
            threads,
            cpu_share,
            history_before,
            session_from,
        })
    }

    fn stop_requested(&self) -> bool {
        self.job.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }

    fn wall_seconds(&self) -> f64 {
        self.wall_before + self.session_start.elapsed().as_secs_f64()
    }

    /// How this session computes: the run's way, with this model's thread count.
    fn arithmetic(&self) -> Option<Arithmetic> {
        self.job.opts.arithmetic().map(|a| Arithmetic { threads: self.threads.unwrap_or(a.threads), ..a })
    }

    /// The model's history with this session's steps added.
    fn history(&self) -> Vec<Stretch> {
        match self.arithmetic() {
            Some(a) => crate::arithmetic::extend_history(&self.history_before, self.session_from, self.state.steps_done, &a),
            None => self.history_before.clone(),
        }
    }

    /// The model's JSON: what it is and how far it got.
    fn model_info(&self, finished: bool) -> ModelInfo {
        ModelInfo {
            model: self.job.kind.to_string(),
            config: self.model.cfg.clone(),
            vocab: match &self.job.data.tokenizer {
                crate::data::Tokenizer::Char(vocab) => vocab.as_string(),
                crate::data::Tokenizer::Bpe { .. } => String::new(),
            },
            tokenizer: self.job.data.tokenizer.record(),
            steps_done: self.state.steps_done,
            finished,
            chargpt_version: env!("CARGO_PKG_VERSION").to_string(),
            corpus: self.job.opts.corpus.clone(),
            arithmetic: self.arithmetic(),
            history: self.state.history.clone(),
            training_sample: finished.then(|| {
                let n = self.job.opts.generate_chars;
                let generator = match self.job.device {
                    Device::Cuda(i) => format!("the generator of CUDA device {i}"),
                    _ => "the CPU generator".to_string(),
                };
                format!("{n} characters from token 1 with dropout off (eval mode), one multinomial draw each, from {generator} as it stood after the last training step (kept in {}.resume.safetensors); `chargpt generate --checkpoint <this .safetensors> --like-training` draws it again on the same kind of device", self.job.kind)
            }),
        }
    }

    /// Resume file, weights and CSV, each written atomically (in-memory runs: nothing).
    fn save(&mut self) -> Result<()> {
        self.read_losses()?;
        self.state.wall_seconds = self.wall_seconds();
        self.state.history = self.history();
        let Some(run) = self.job.run else { return Ok(()) };
        let kind = self.job.kind;
        checkpoint::write_atomic(&run.resume_file(kind), &resume::to_bytes(&self.model, &self.opt, &self.state)?)?;
        checkpoint::save_model(&run.weights(kind), &self.model, &self.model_info(false))?;
        run.write_rows(kind, &self.state.rows, &EvalRow::HEADER)
    }

    /// The error that reports a stop; the checkpoint on disk is the one to resume from.
    fn stopped(&mut self) -> anyhow::Error {
        self.progress.finish();
        Stopped::Interrupted { model: self.job.kind, step: self.state.steps_done, run: self.job.run.map(|r| r.path.clone()) }.into()
    }

    /// Checkpoints (unless a loss read on the way was not finite), then reports the stop.
    fn checkpoint_and_stop(&mut self) -> anyhow::Error {
        match self.save() {
            Ok(()) => self.stopped(),
            Err(e) => e,
        }
    }

    /// `--threads auto`: computes with the cores other processes leave. A fixed count
    /// keeps its threads (and its numbers) and the progress line says when other
    /// processes slow it down: its threads then wait for each other at every op.
    fn share_the_cpu(&mut self) {
        let Some(share) = &mut self.cpu_share else { return };
        match self.threads {
            Some(Threads::Fixed(n)) => {
                if let Some(free) = share.tick() {
                    self.progress.set_note((free < n).then(|| {
                        format!("slowed: other processes keep {} of {n} cores busy (--threads {free}, or auto, would give way)", n - free)
                    }));
                }
            }
            Some(Threads::Auto) => share.give_way(),
            None => {}
        }
    }

    /// One training step (step `s`, counted from 0), as the blog's loop does it. The loss
    /// stays on the device: reading it would make the host wait for the device at every
    /// step. [`Self::read_losses`] reads the steps' losses together, now and then.
    fn step(&mut self, s: i64) -> Result<()> {
        let ModelJob { opts, data, device, .. } = *self.job;
        self.share_the_cpu();
        let t0 = Instant::now();
        let (x, y) = data.batch(Split::Train, opts.batch_size, opts.block_size, device);
        let (loss, note) = self.graph.step(&self.model, &mut self.opt, opts.precision, &x, &y)?;
        if let Some(note) = note {
            self.progress.println(&note);
        }
        self.unread.push(loss);
        self.state.steps_done = s + 1;
        self.state.train_seconds += t0.elapsed().as_secs_f64();
        self.progress.update(self.state.steps_done as u64, None);
        if self.last_read.elapsed() >= READ_LOSSES_EVERY {
            self.read_losses()?;
        }
        Ok(())
    }

    /// Reads the losses of the steps since the last read (one wait for the device, counted
    /// as training time) into the progress line and `losses`; a non-finite one stops the
    /// run, naming the step it happened at. Called before anything is saved or evaluated,
    /// so no checkpoint ever holds a model past a non-finite loss.
    fn read_losses(&mut self) -> Result<()> {
        self.last_read = Instant::now();
        if self.unread.is_empty() {
            return Ok(());
        }
        let t0 = Instant::now();
        // As `double_value` read each loss before: exactly, whatever its dtype.
        let values = Vec::<f64>::try_from(Tensor::stack(&self.unread, 0).to_kind(tch::Kind::Double).to_device(Device::Cpu))
            .context("reading the training losses from the device")?;
        self.state.train_seconds += t0.elapsed().as_secs_f64();
        let first = self.state.steps_done - self.unread.len() as i64;
        self.unread.clear();
        for (i, &loss) in values.iter().enumerate() {
            if !loss.is_finite() {
                self.progress.finish();
                let s = first + i as i64;
                let last = self
                    .state
                    .rows
                    .last()
                    .map_or("none was written".to_string(), |r| format!("the checkpoint after step {} is kept", r.step));
                bail!("{}: the training loss became {loss} at step {s}; {last}. Try a smaller --lr", self.job.kind);
            }
            self.losses.push(loss);
        }
        self.progress.update(self.state.steps_done as u64, self.losses.last().copied());
        Ok(())
    }

    /// The evaluation after step `s`, its row and (on the schedule) its checkpoint; false
    /// when stopped half-way, with the generator put back where the evaluation began, so that the
    /// checkpoint (which then lacks this row) resumes into the very same evaluation.
    fn evaluate(&mut self, s: i64) -> Result<bool> {
        self.read_losses()?;
        self.progress.evaluating();
        let ModelJob { kind, opts, data, .. } = *self.job;
        // Evaluation draws only batch indices, on the CPU generator (dropout is off).
        let before = RngState::try_save(Generator::Cpu)?;
        test_hook_stop_during("eval", self.job.stop.as_deref());
        let stop = self.job.stop.as_deref();
        let Some((train_loss, val_loss)) = estimate_loss_unless_stopped(&self.model, data, opts.batch_size, opts.eval_steps, stop) else {
            before.try_restore()?;
            return Ok(false);
        };
        let tokens = (opts.batch_size * opts.block_size) as f64 * (self.state.steps_done - self.last_eval.0) as f64;
        // No step since the last evaluation (a resume from a file that does not say when it
        // was): not measured, rather than 0.
        let tokens_per_s = if tokens > 0.0 { tokens / (self.state.train_seconds - self.last_eval.1).max(1e-9) } else { f64::NAN };
        self.last_eval = (self.state.steps_done, self.state.train_seconds);
        self.state.last_eval = Some(self.last_eval);
        let elapsed_s = self.wall_seconds();
        let val_bits_per_char = crate::data::bits_per_char(val_loss, data.chars_per_token(Split::Val));
        let scheduled = evaluates_after(s, opts.eval_every);
        self.state.rows.push(EvalRow { step: s, train_loss, val_loss, elapsed_s, tokens_per_s, val_bits_per_char, scheduled });
        self.progress.set_eval(train_loss, val_loss);
        if self.job.verbose {
            let when = if scheduled { String::new() } else { " (the last step, off the blog's schedule)".to_string() };
            self.progress.println(&format!("{kind} step {s}{when}: train loss {train_loss:.4}, val loss {val_loss:.4}"));
        }
        // The evaluation of the finished model comes after the sample: the resume file
        // keeps the state after the last step, which the sample is drawn again from.
        if scheduled {
            self.save()?;
        }
        Ok(true)
    }

    /// A checkpoint taken during an evaluation holds the steps before it: evaluate first.
    fn pending_evaluation(&mut self) -> Result<bool> {
        let done = self.state.steps_done;
        let evaluated = self.state.rows.last().is_some_and(|r| r.step == done - 1);
        if done > 0 && evaluates_after(done - 1, self.job.opts.eval_every) && !evaluated {
            return self.evaluate(done - 1);
        }
        Ok(true)
    }

    /// The sample after training, from token 1 (None when stopped while sampling).
    fn sample(&mut self) -> Option<String> {
        let ModelJob { kind, opts, data, .. } = *self.job;
        let start = sample::start_context(&data.tokenizer, None).expect("no prompt, token 1");
        let mut bar = Progress::new(&format!("{kind} sample"), opts.generate_chars as u64, 0, "chars", self.job.verbose);
        let mut produced = 0u64;
        let stop = self.job.stop.clone();
        let sampling = sample::Sampling::default();
        let text = sample::generate_text(&self.model, &data.tokenizer, &start, opts.generate_chars, sampling, |piece| {
            test_hook_stop_during("sample", stop.as_deref());
            produced += piece.chars().count() as u64;
            bar.update(produced, None);
            match stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        });
        bar.finish();
        text
    }

    /// Writes the finished model's sample, CSV, weights and summary.
    fn finish(mut self, text: String) -> Result<TrainedModel> {
        let ModelJob { kind, opts, run, data, .. } = *self.job;
        if self.job.verbose {
            crate::say!("--- {kind} sample ---\n{text}\n---");
        }
        let last = self.state.rows.last();
        let tokens_per_step = (opts.batch_size * opts.block_size) as f64;
        let summary = Summary {
            model: kind.to_string(),
            parameters: self.model.num_parameters(),
            final_train_loss: last.map_or(f64::NAN, |r| r.train_loss),
            final_val_loss: last.map_or(f64::NAN, |r| r.val_loss),
            final_loss_step: last.map_or(-1, |r| r.step),
            mean_s_per_step: self.state.train_seconds / opts.steps as f64,
            tokens_per_s: tokens_per_step * opts.steps as f64 / self.state.train_seconds.max(1e-9),
            final_val_bits_per_char: last.map_or(f64::NAN, EvalRow::val_bits_per_char),
            tokenizer: data.tokenizer.spec(),
            chars_per_step: tokens_per_step * data.chars_per_token(Split::Train),
            final_loss_scheduled: last.is_none_or(|r| r.scheduled),
        };
        if let Some(run) = run {
            checkpoint::write_atomic(&run.sample(kind), text.as_bytes())?;
            run.write_rows(kind, &self.state.rows, &EvalRow::HEADER)?;
            self.state.steps_done = opts.steps;
            self.state.history = self.history();
            checkpoint::save_model(&run.weights(kind), &self.model, &self.model_info(true))?;
            checkpoint::write_atomic(&run.model_summary(kind), serde_json::to_string_pretty(&summary)?.as_bytes())?;
            // The resume file stays: `train --resume DIR --steps N` extends a finished model from it.
        }
        Ok(TrainedModel { model: self.model, summary, rows: self.state.rows, sample: text, losses: self.losses })
    }
}

/// Trains one model from `manual_seed(seed)` (or from its resume file), as the blog does,
/// then samples from it.
pub fn train_model(job: &ModelJob) -> Result<TrainedModel> {
    let mut t = Trainer::new(job)?;
    if !t.pending_evaluation()? {
        return Err(t.checkpoint_and_stop());
    }
    // Test hook: behave as if Ctrl-C came once this many steps are done.
    let stop_at = crate::test_hooks::stop_after_steps();
    let first_step = t.state.steps_done;
    for s in first_step..job.opts.steps {
        let hook = job.stop.is_some() && stop_at == Some(s) && s > first_step;
        if hook || t.stop_requested() {
            return Err(t.checkpoint_and_stop());
        }
        t.step(s)?;
        if evaluates_after(s, job.opts.eval_every) && !t.evaluate(s)? {
            return Err(t.checkpoint_and_stop());
        }
    }
    t.read_losses()?;
    t.progress.finish();
    // The state after the last step (generator included), unless the last evaluation just
    // saved it: what an interrupted sampling resumes from, and what `--steps` extends.
    if t.state.rows.last().is_none_or(|r| r.step + 1 != t.state.steps_done) {
        t.save()?;
    }
    let Some(text) = t.sample() else {
        // Stopped while sampling: the checkpoint above resumes into the same sample.
        return Err(t.stopped());
    };
    // The finished model, evaluated where the schedule did not: after the sample, so that
    // its batches change no draw of the training or the sample (the blog's numbers).
    let last = job.opts.steps - 1;
    let evaluated = t.state.rows.last().is_some_and(|r| r.step == last);
    if job.opts.final_eval && t.state.steps_done == job.opts.steps && !evaluated && !t.evaluate(last)? {
        // Stopped during it: the checkpoint resumes into the same sample and evaluation.
        return Err(t.stopped());
    }
    t.finish(text)
}

/// Trains `opts.models` one after another into `run` (the library side of `chargpt
/// train`): finished models are skipped, an unfinished one resumes, `summary.csv` is
/// rewritten after each. A panic (a libtorch failure) becomes an error naming the model.
/// A multi-seed run (`opts.seeds`) is [`crate::seeds::run`]'s.
pub fn run(run: &RunDir, opts: &RunConfig, data: &Dataset, device: Device, stop: Arc<AtomicBool>) -> Result<Vec<Summary>> {
    let mut summaries = Vec::new();
    for &kind in &opts.models {
        if let Some(done) = finished_summary(run, kind, opts.steps) {
            let missing: Vec<String> = [run.weights(kind), run.csv(kind), run.sample(kind)]
                .iter()
                .filter(|p| !p.exists())
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                .collect();
            if missing.is_empty() {
                crate::say!("{kind}: already finished in {}, skipped", run.path.display());
                summaries.push(done);
                continue;
            }
            if !run.resume_file(kind).exists() {
                // A folder kept without its weights (results/, a packed GPU run): its
                // record stands, and nothing is trained again behind the user's back.
                crate::say!(
                    "{kind}: finished in {} (its JSON says so), but {} and its resume file are not there: skipped; generate and eval need the weights, which only training it again (in a new folder) gives",
                    run.path.display(),
                    missing.join(", ")
                );
                summaries.push(done);
                continue;
            }
            // The resume file holds the state after the last step: training from it runs
            // no step and writes the same weights, rows and sample again.
            crate::say!("{kind}: finished, but {} missing; restoring them from {}", missing.join(", "), run.resume_file(kind).display());
        }
        let opts = &continuing_as_trained(run, kind, opts);
        let job = ModelJob { kind, opts, data, device, run: Some(run), stop: Some(Arc::clone(&stop)), verbose: true };
        let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train_model(&job)))
            .unwrap_or_else(|payload| Err(anyhow::Error::new(crate::panics::to_error(payload)).context(kind)))?;
        summaries.push(trained.summary);
        run.write_summary(&summaries, &Summary::HEADER)?;
    }
    run.write_summary(&summaries, &Summary::HEADER)?;
    Ok(summaries)
}

/// The options `kind` continues with: a model with steps behind it keeps the precision
/// they were computed in (its JSON's `arithmetic`) unless this session's `--precision`
/// says otherwise; either way a line says so, and its `history` keeps which steps are which.
fn continuing_as_trained(run: &RunDir, kind: ModelKind, opts: &RunConfig) -> RunConfig {
    let info: Option<ModelInfo> = std::fs::read_to_string(run.info_json(kind)).ok().and_then(|t| serde_json::from_str(&t).ok());
    let Some((done, then)) = info.and_then(|i| Some((i.steps_done, i.arithmetic?))) else { return opts.clone() };
    // On another device (--device, said when the run was read) the precision is that device's.
    if done == 0 || then.device != opts.device || then.precision == opts.precision {
        return opts.clone();
    }
    let (now, was) = (opts.precision, then.precision);
    if opts.precision_given {
        crate::say!(
            "{kind}: continuing in {now} (--precision); its first {done} steps were computed in {was}, as its history in {} says",
            run.info_json(kind).display()
        );
        return opts.clone();
    }
    crate::say!("{kind}: continuing in {was}, as its first {done} steps were trained (run.json's {now} is for models that have not started; --precision {now} would switch it)");
    RunConfig { precision: was, ..opts.clone() }
}

/// The `stop_during` test hook (`crate::test_hooks`): a Ctrl-C during this phase.
fn test_hook_stop_during(phase: &str, stop: Option<&AtomicBool>) {
    if let Some(stop) = stop.filter(|_| crate::test_hooks::stop_during(phase)) {
        stop.store(true, Ordering::SeqCst);
    }
}

/// The table `chargpt train` ends with.
pub fn print_summaries(summaries: &[Summary]) {
    crate::say!("\nmodel  parameters  train loss  val loss  after step  s/step  tokens/s");
    for s in summaries {
        let (p, t, v, at, sps, tps) =
            (s.parameters, s.final_train_loss, s.final_val_loss, s.final_loss_step, s.mean_s_per_step, s.tokens_per_s);
        crate::say!("{:<5} {p:>11} {t:>11.4} {v:>9.4} {at:>11} {sps:>7.4} {tps:>9.0}", s.model);
    }
}
