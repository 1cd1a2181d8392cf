//! The blog's trainer (docs/MODELS.md, "The trainer"), with what long runs need on top:
//! a CSV row per evaluation, an atomic checkpoint at every evaluation that holds all it
//! takes to continue (weights, AdamW moments, the generator state, the rows so far),
//! resumption, Ctrl-C handling, and a stop on a non-finite loss.

use crate::checkpoint::{self, ModelInfo};
use crate::data::{Dataset, Split};
use crate::layers::Config;
use crate::models::{Model, ModelKind};
use crate::optim::{AdamW, AdamWConfig, ParamState};
use crate::precision::Precision;
use crate::progress::Progress;
use crate::rng::CpuRngState;
use crate::sample;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Everything a training run needs besides the data; saved as `run.json` for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    pub models: Vec<String>,
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
    pub seed: i64,
    pub data: PathBuf,
    pub preset: String,
    pub device: String,
    /// "faithful" (the default, the parity reference) or "fast".
    #[serde(default = "faithful")]
    pub implementation: String,
    /// fp32 on the CPU; TF32 (default) or bf16 autocast on CUDA.
    #[serde(default = "fp32")]
    pub precision: Precision,
}

fn fp32() -> Precision {
    Precision::Fp32
}

impl Default for TrainOptions {
    /// The blog's trainer (docs/MODELS.md, "The trainer") on the default corpus, all ten models.
    fn default() -> Self {
        TrainOptions {
            models: crate::models::ModelKind::ALL.iter().map(|m| m.to_string()).collect(),
            batch_size: 64,
            block_size: 256,
            n_embed: 384,
            num_heads: 6,
            block_layers: 6,
            dropout: 0.3,
            lr: 1e-3,
            steps: 10_000,
            eval_every: 1000,
            eval_steps: 10,
            generate_chars: 1000,
            seed: 1337,
            data: PathBuf::from("data/shakespeare.txt"),
            preset: "blog".into(),
            device: "cpu".into(),
            implementation: faithful(),
            precision: Precision::Fp32,
        }
    }
}

fn faithful() -> String {
    "faithful".to_string()
}

impl TrainOptions {
    pub fn model_config(&self, vocab_size: i64) -> Config {
        Config {
            vocab_size,
            n_embed: self.n_embed,
            num_heads: self.num_heads,
            block_size: self.block_size,
            block_layers: self.block_layers,
            dropout: self.dropout,
            fast: self.implementation == "fast",
        }
    }

    /// Refuses sizes the trainer cannot use, before anything is written.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--batch-size", self.batch_size),
            ("--block-size", self.block_size),
            ("--n-embed", self.n_embed),
            ("--num-heads", self.num_heads),
            ("--block-layers", self.block_layers),
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
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout must be in [0, 1), got {}", self.dropout);
        }
        Ok(())
    }
}

/// One evaluation: the row of the per-model CSV.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalRow {
    pub step: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub elapsed_s: f64,
    pub tokens_per_s: f64,
}

/// One line of `summary.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub model: String,
    pub parameters: i64,
    pub final_train_loss: f64,
    pub final_val_loss: f64,
    pub mean_s_per_step: f64,
    pub tokens_per_s: f64,
}

/// Progress of one model, as the resume file stores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ResumeState {
    model: String,
    config: Config,
    vocab: String,
    /// Steps completed (the next step to run).
    steps_done: i64,
    rows: Vec<EvalRow>,
    train_seconds: f64,
    wall_seconds: f64,
    adam_steps: HashMap<String, i64>,
}

/// Why training stopped early, for callers that must tell the cases apart.
#[derive(Debug)]
pub enum Stopped {
    /// SIGINT/SIGTERM: a checkpoint was written at `step`.
    Interrupted { model: ModelKind, step: i64 },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Interrupted { model, step } => write!(f, "interrupted: {model} stopped after {step} steps, checkpoint written"),
        }
    }
}

impl std::error::Error for Stopped {}

/// The blog's `estimate_loss`: dropout off, for train then val, the mean loss of
/// `eval_steps` fresh random batches.
pub fn estimate_loss(model: &Model, data: &Dataset, batch_size: i64, eval_steps: i64) -> (f64, f64) {
    estimate_loss_unless_stopped(model, data, batch_size, eval_steps, None).expect("no stop flag, no stop")
}

/// [`estimate_loss`] that gives up (None) between batches once `stop` is set.
fn estimate_loss_unless_stopped(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    eval_steps: i64,
    stop: Option<&AtomicBool>,
) -> Option<(f64, f64)> {
    tch::no_grad(|| {
        let mean = |split| {
            let mut sum = 0.0;
            for _ in 0..eval_steps {
                let (x, y) = data.batch(split, batch_size, model.cfg.block_size, model.device());
                sum += model.loss(&x, &y, false).double_value(&[]);
                if stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                    return None;
                }
            }
            Some(sum / eval_steps as f64)
        };
        let train = mean(Split::Train)?;
        Some((train, mean(Split::Val)?))
    })
}

/// Whether the blog evaluates after step `s` (counted from 0): s = k * eval_every, k >= 1.
pub fn evaluates_after(s: i64, eval_every: i64) -> bool {
    s % eval_every == 0 && s >= eval_every
}

/// Deterministic loss over a split: consecutive non-overlapping windows of block_size
/// (the last, shorter one included), dropout off, averaged over every predicted token.
/// No random numbers: the number to compare across implementations.
pub fn deterministic_loss(model: &Model, data: &Tensor, windows_per_batch: i64, progress: Option<&str>) -> f64 {
    let t = model.cfg.block_size;
    let n = data.size()[0];
    let full = (n - 1) / t;
    let mut bar = Progress::new(progress.unwrap_or("eval"), full as u64, 0, "windows", progress.is_some());
    let mut total = 0.0f64;
    let mut count = 0i64;
    tch::no_grad(|| {
        let mut add = |x: Tensor, y: Tensor| {
            let logits = model.forward(&x.to_device(model.device()), false);
            let v = logits.size()[2];
            let loss = logits.view([-1, v]).cross_entropy_loss::<Tensor>(
                &y.to_device(model.device()).view([-1]),
                None,
                tch::Reduction::Sum,
                -100,
                0.0,
            );
            total += loss.double_value(&[]);
            count += y.numel() as i64;
        };
        let mut start = 0;
        while start < full {
            let b = windows_per_batch.min(full - start);
            let x = data.narrow(0, start * t, b * t).view([b, t]);
            let y = data.narrow(0, start * t + 1, b * t).view([b, t]);
            add(x, y);
            start += b;
            bar.update(start as u64, None);
        }
        bar.finish();
        let rest = n - 1 - full * t;
        if rest > 0 {
            add(data.narrow(0, full * t, rest).view([1, rest]), data.narrow(0, full * t + 1, rest).view([1, rest]));
        }
    });
    total / count as f64
}

/// The files of a run folder.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn csv(&self, kind: ModelKind) -> PathBuf {
        self.path.join(format!("{kind}.csv"))
    }
    pub fn sample(&self, kind: ModelKind) -> PathBuf {
        self.path.join(format!("{kind}.sample.txt"))
    }
    pub fn summary(&self) -> PathBuf {
        self.path.join("summary.csv")
    }
    pub fn options(&self) -> PathBuf {
        self.path.join("run.json")
    }
    pub fn weights(&self, kind: ModelKind) -> PathBuf {
        checkpoint::weights_path(&self.path, kind)
    }

    /// Removes the files an earlier run wrote here (for `--force`); other files stay.
    pub fn clear(&self) -> Result<()> {
        let mut names = vec!["summary.csv".to_string(), "run.json".into(), "loss.png".into(), "loss.svg".into()];
        for kind in ModelKind::ALL {
            for ext in ["csv", "sample.txt", "safetensors", "json", "resume.safetensors", "summary.json"] {
                names.push(format!("{kind}.{ext}"));
            }
        }
        for name in names {
            let path = self.path.join(name);
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        Ok(())
    }

    pub fn write_rows(&self, kind: ModelKind, rows: &[EvalRow]) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for row in rows {
            w.serialize(row)?;
        }
        if rows.is_empty() {
            w.write_record(["step", "train_loss", "val_loss", "elapsed_s", "tokens_per_s"])?;
        }
        checkpoint::write_atomic(&self.csv(kind), &w.into_inner()?)
    }

    pub fn write_summary(&self, rows: &[Summary]) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for row in rows {
            w.serialize(row)?;
        }
        checkpoint::write_atomic(&self.summary(), &w.into_inner()?)
    }
}

/// What the caller of [`train_model`] gets back.
pub struct Trained {
    pub model: Model,
    pub summary: Summary,
    pub rows: Vec<EvalRow>,
    pub sample: String,
    pub losses: Vec<f64>,
}

/// Everything needed to train one model.
pub struct TrainJob<'a> {
    pub kind: ModelKind,
    pub opts: &'a TrainOptions,
    pub data: &'a Dataset,
    pub device: Device,
    /// Where checkpoints and CSVs go; `None` trains in memory only (tests, parity).
    pub run: Option<&'a RunDir>,
    /// Set by SIGINT/SIGTERM: finish the step, checkpoint, stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Print evaluation lines and the sample.
    pub verbose: bool,
}

fn resume_bytes(model: &Model, opt: &AdamW, state: &ResumeState) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Tensor)> = model.state_dict().into_iter().map(|(n, t)| (format!("model/{n}"), t)).collect();
    for (name, st) in &opt.state {
        tensors.push((format!("exp_avg/{name}"), st.exp_avg.shallow_clone()));
        tensors.push((format!("exp_avg_sq/{name}"), st.exp_avg_sq.shallow_clone()));
    }
    tensors.push(("rng/cpu".to_string(), CpuRngState::try_save()?.to_tensor()));
    let meta = HashMap::from([("chargpt_resume".to_string(), serde_json::to_string(state)?)]);
    checkpoint::to_safetensors_bytes(&tensors, Some(meta))
}

/// Restores model, optimiser and generator from a resume file; returns its state.
fn load_resume(path: &Path, model: &Model, opt: &mut AdamW, vocab: &str) -> Result<ResumeState> {
    let (tensors, meta) = checkpoint::read_safetensors(path)?;
    let state: ResumeState = serde_json::from_str(meta.get("chargpt_resume").context("no chargpt_resume metadata")?)?;
    if state.vocab != vocab {
        bail!(
            "the training text has changed since this run started: its vocabulary ({} characters) is not the run's ({} characters); resume with the original text",
            vocab.chars().count(),
            state.vocab.chars().count()
        );
    }
    if state.model != model.kind.to_string() || !state.config.same_model(&model.cfg) {
        bail!("{} holds a {} with another configuration than this run's {}", path.display(), state.model, model.kind);
    }
    let mut by_prefix: HashMap<String, Vec<(String, Tensor)>> = HashMap::new();
    let mut rng = None;
    for (name, t) in tensors {
        match name.split_once('/') {
            Some(("rng", _)) => rng = Some(t),
            Some((prefix @ ("model" | "exp_avg" | "exp_avg_sq"), rest)) => {
                by_prefix.entry(prefix.to_string()).or_default().push((rest.to_string(), t))
            }
            _ => bail!("{}: unexpected tensor {name}", path.display()),
        }
    }
    model.load_state_dict(by_prefix.get("model").map(Vec::as_slice).unwrap_or_default())?;
    let avg: HashMap<String, Tensor> = by_prefix.remove("exp_avg").unwrap_or_default().into_iter().collect();
    let sq: HashMap<String, Tensor> = by_prefix.remove("exp_avg_sq").unwrap_or_default().into_iter().collect();
    let device = model.device();
    for (name, step) in &state.adam_steps {
        let (Some(m), Some(v)) = (avg.get(name), sq.get(name)) else { bail!("{}: optimizer state for {name} is missing", path.display()) };
        opt.state.insert(
            name.clone(),
            ParamState {
                step: *step,
                exp_avg: m.to_kind(Kind::Float).to_device(device),
                exp_avg_sq: v.to_kind(Kind::Float).to_device(device),
            },
        );
    }
    CpuRngState::from_tensor(&rng.context("no generator state in resume file")?)?.try_restore()?;
    Ok(state)
}

/// Trains one model from `manual_seed(seed)` (or from its resume file), as the blog does.
pub fn train_model(job: &TrainJob) -> Result<Trained> {
    let TrainJob { kind, opts, data, device, run, .. } = *job;
    let cfg = opts.model_config(data.vocab.len() as i64);
    let label = kind.to_string();
    opts.precision.apply(device)?;
    tch::manual_seed(opts.seed);
    let model = Model::new(kind, &cfg, device)?;
    if job.verbose {
        println!("== {kind}: {} ({} parameters)", kind.adds(), model.num_parameters());
    }
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::pytorch_default(opts.lr));
    let mut state = ResumeState {
        model: label.clone(),
        config: cfg.clone(),
        vocab: data.vocab.as_string(),
        steps_done: 0,
        rows: Vec::new(),
        train_seconds: 0.0,
        wall_seconds: 0.0,
        adam_steps: HashMap::new(),
    };
    if let Some(run) = run {
        let path = checkpoint::resume_path(&run.path, kind);
        if path.exists() {
            state = load_resume(&path, &model, &mut opt, &data.vocab.as_string())
                .with_context(|| format!("cannot resume {kind} from {}", path.display()))?;
            if job.verbose {
                println!("{kind}: resuming after step {} from {}", state.steps_done, path.display());
            }
        }
    }
    let info = |steps_done: i64, finished: bool| ModelInfo {
        model: label.clone(),
        config: cfg.clone(),
        vocab: data.vocab.as_string(),
        steps_done,
        finished,
        chargpt_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let save = |state: &ResumeState, opt: &AdamW| -> Result<()> {
        let Some(run) = run else { return Ok(()) };
        let mut state = state.clone();
        state.adam_steps = opt.state.iter().map(|(n, s)| (n.clone(), s.step)).collect();
        checkpoint::write_atomic(&checkpoint::resume_path(&run.path, kind), &resume_bytes(&model, opt, &state)?)?;
        checkpoint::save_model(&run.weights(kind), &model, &info(state.steps_done, false))?;
        run.write_rows(kind, &state.rows)
    };

    let tokens_per_step = (opts.batch_size * opts.block_size) as f64;
    let mut progress = Progress::new(&label, opts.steps as u64, state.steps_done as u64, "steps", job.verbose);
    let session_start = Instant::now();
    let wall_before = state.wall_seconds;
    let mut losses = Vec::new();
    // Test hook: behave as if Ctrl-C came once this many steps are done.
    let stop_at: Option<i64> = std::env::var("CHARGPT_STOP_AFTER_STEPS").ok().and_then(|v| v.parse().ok());
    let stopped = || job.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
    let interrupted = |state: &mut ResumeState, opt: &AdamW, progress: &mut Progress| -> Result<Trained> {
        state.wall_seconds = wall_before + session_start.elapsed().as_secs_f64();
        save(state, opt)?;
        progress.finish();
        Err(Stopped::Interrupted { model: kind, step: state.steps_done }.into())
    };
    // One evaluation after step `s`, with its row and checkpoint. Interrupted half-way, it
    // puts the generator back where the evaluation began, so that the checkpoint (which
    // then lacks this row) resumes into the very same evaluation.
    let mut last_eval = (state.steps_done, state.train_seconds);
    let mut evaluate = |s: i64, state: &mut ResumeState, opt: &AdamW, progress: &mut Progress| -> Result<bool> {
        let before = CpuRngState::try_save()?;
        test_hook_stop_during("eval", job.stop.as_deref());
        let stop_flag = job.stop.as_deref();
        let Some((train_loss, val_loss)) = estimate_loss_unless_stopped(&model, data, opts.batch_size, opts.eval_steps, stop_flag) else {
            before.try_restore()?;
            return Ok(false);
        };
        let tokens_per_s = tokens_per_step * (state.steps_done - last_eval.0) as f64 / (state.train_seconds - last_eval.1).max(1e-9);
        last_eval = (state.steps_done, state.train_seconds);
        let elapsed_s = wall_before + session_start.elapsed().as_secs_f64();
        state.rows.push(EvalRow { step: s, train_loss, val_loss, elapsed_s, tokens_per_s });
        progress.set_eval(train_loss, val_loss);
        if job.verbose {
            progress.println(&format!("{kind} step {s}: train loss {train_loss:.4}, val loss {val_loss:.4}"));
        }
        state.wall_seconds = elapsed_s;
        save(state, opt)?;
        Ok(true)
    };
    // A checkpoint taken during an evaluation holds the steps before it: evaluate first.
    let first_step = state.steps_done;
    if first_step > 0
        && evaluates_after(first_step - 1, opts.eval_every)
        && state.rows.last().is_none_or(|r| r.step != first_step - 1)
        && !evaluate(first_step - 1, &mut state, &opt, &mut progress)?
    {
        return interrupted(&mut state, &opt, &mut progress);
    }
    for s in first_step..opts.steps {
        let hook = job.stop.is_some() && stop_at == Some(s) && s > first_step;
        if hook || stopped() {
            return interrupted(&mut state, &opt, &mut progress);
        }
        let t0 = Instant::now();
        let (x, y) = data.batch(Split::Train, opts.batch_size, opts.block_size, device);
        let loss = opts.precision.forward(|| model.loss(&x, &y, true));
        opt.zero_grad()?;
        loss.backward();
        opt.step()?;
        let loss = loss.double_value(&[]);
        state.train_seconds += t0.elapsed().as_secs_f64();
        if !loss.is_finite() {
            progress.finish();
            let last =
                state.rows.last().map_or("none was written".to_string(), |r| format!("the checkpoint after step {} is kept", r.step));
            bail!("{kind}: the training loss became {loss} at step {s}; {last}. Try a smaller --lr");
        }
        losses.push(loss);
        state.steps_done = s + 1;
        progress.update(state.steps_done as u64, Some(loss));
        if evaluates_after(s, opts.eval_every) && !evaluate(s, &mut state, &opt, &mut progress)? {
            return interrupted(&mut state, &opt, &mut progress);
        }
    }
    progress.finish();
    // The state after the last step (generator included), unless the last evaluation just
    // saved it: what an interrupted sampling resumes from, and what `--steps` extends.
    if state.rows.last().is_none_or(|r| r.step + 1 != state.steps_done) {
        state.wall_seconds = wall_before + session_start.elapsed().as_secs_f64();
        save(&state, &opt)?;
    }

    // The blog starts from token 1; a one-character vocabulary only has token 0.
    let start = [sample::START_TOKEN.min(data.vocab.len() as i64 - 1)];
    let mut bar = Progress::new(&label, opts.generate_chars as u64, 0, "chars", job.verbose);
    let mut produced = 0u64;
    let tokens = sample::generate(&model, &start, opts.generate_chars, false, |_| {
        test_hook_stop_during("sample", job.stop.as_deref());
        produced += 1;
        bar.update(produced, None);
        if stopped() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    bar.finish();
    if tokens.len() < opts.generate_chars + 1 {
        // Stopped while sampling: the checkpoint above resumes into the same sample.
        return Err(Stopped::Interrupted { model: kind, step: state.steps_done }.into());
    }
    let text = data.vocab.decode(&tokens[1..]);
    if job.verbose {
        println!("--- {kind} sample ---\n{text}\n---");
    }
    let last = state.rows.last();
    let summary = Summary {
        model: label.clone(),
        parameters: model.num_parameters(),
        final_train_loss: last.map_or(f64::NAN, |r| r.train_loss),
        final_val_loss: last.map_or(f64::NAN, |r| r.val_loss),
        mean_s_per_step: state.train_seconds / opts.steps as f64,
        tokens_per_s: tokens_per_step * opts.steps as f64 / state.train_seconds.max(1e-9),
    };
    if let Some(run) = run {
        checkpoint::write_atomic(&run.sample(kind), text.as_bytes())?;
        run.write_rows(kind, &state.rows)?;
        checkpoint::save_model(&run.weights(kind), &model, &info(opts.steps, true))?;
        let summary_json = run.path.join(format!("{kind}.summary.json"));
        checkpoint::write_atomic(&summary_json, serde_json::to_string_pretty(&summary)?.as_bytes())?;
        // The resume file stays: `train --resume DIR --steps N` extends a finished model from it.
    }
    Ok(Trained { model, summary, rows: state.rows, sample: text, losses })
}

/// Test hook: CHARGPT_STOP_DURING=eval (or sample) acts as a Ctrl-C arriving during the
/// process's first evaluation (or sampling), so that tests can check, deterministically,
/// that such a stop resumes into the same numbers.
fn test_hook_stop_during(phase: &str, stop: Option<&AtomicBool>) {
    static FIRED: AtomicBool = AtomicBool::new(false);
    let Some(stop) = stop else { return };
    if std::env::var("CHARGPT_STOP_DURING").is_ok_and(|p| p == phase) && !FIRED.swap(true, Ordering::SeqCst) {
        stop.store(true, Ordering::SeqCst);
    }
}

/// A finished model's summary, if its run folder says it finished all `steps`.
pub fn finished_summary(run: &RunDir, kind: ModelKind, steps: i64) -> Option<Summary> {
    // The JSON alone decides, so that a run folder packed without its weights (the GPU
    // checks bring runs back that way) still skips its finished models.
    let text = std::fs::read_to_string(checkpoint::info_path(&run.weights(kind))).ok()?;
    let info: ModelInfo = serde_json::from_str(&text).ok()?;
    if !info.finished || info.steps_done < steps {
        return None;
    }
    let text = std::fs::read_to_string(run.path.join(format!("{kind}.summary.json"))).ok()?;
    serde_json::from_str(&text).ok()
}
