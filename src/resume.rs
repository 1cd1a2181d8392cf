//! The resume file (`vN.resume.safetensors`): what a stopped training needs to continue
//! as if it had never stopped — the weights, AdamW's moments and step counts, the CPU
//! generators' states (the CPU's, and on CUDA the device's), and the progress so far.

use crate::checkpoint;
use crate::layers::Config;
use crate::models::Model;
use crate::optim::{AdamW, ParamState};
use crate::rng::{Generator, RngState};
use crate::run_dir::EvalRow;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Progress of one model, as the resume file stores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeState {
    pub model: String,
    pub config: Config,
    pub vocab: String,
    /// Steps completed (the next step to run).
    pub steps_done: i64,
    pub rows: Vec<EvalRow>,
    pub train_seconds: f64,
    pub wall_seconds: f64,
    pub adam_steps: HashMap<String, i64>,
    /// How the steps done were computed (absent in files written before chargpt kept it).
    #[serde(default)]
    pub history: Vec<crate::arithmetic::Stretch>,
    /// (steps done, training seconds) at the last evaluation: the next evaluation's
    /// tokens/s counts from there, also across a resume (absent in older files).
    #[serde(default)]
    pub last_eval: Option<(i64, f64)>,
}

impl ResumeState {
    /// A model at step 0.
    pub fn new(model: &Model, vocab: String) -> Self {
        ResumeState {
            model: model.kind.to_string(),
            config: model.cfg.clone(),
            vocab,
            steps_done: 0,
            rows: Vec::new(),
            train_seconds: 0.0,
            wall_seconds: 0.0,
            adam_steps: HashMap::new(),
            history: Vec::new(),
            last_eval: Some((0, 0.0)),
        }
    }
}

/// The resume file's bytes: `model/*`, `exp_avg/*`, `exp_avg_sq/*`, `rng/cpu` (and on CUDA
/// `rng/cuda`), and the state as JSON metadata.
pub fn to_bytes(model: &Model, opt: &AdamW, state: &ResumeState) -> Result<Vec<u8>> {
    let mut state = state.clone();
    state.adam_steps = opt.state.iter().map(|(n, s)| (n.clone(), s.step)).collect();
    let mut tensors: Vec<(String, Tensor)> = model.state_dict().into_iter().map(|(n, t)| (format!("model/{n}"), t)).collect();
    for (name, st) in &opt.state {
        tensors.push((format!("exp_avg/{name}"), st.exp_avg.shallow_clone()));
        tensors.push((format!("exp_avg_sq/{name}"), st.exp_avg_sq.shallow_clone()));
    }
    for state in RngState::save_run(model.device())? {
        tensors.push((state.generator.tensor_name(), state.to_tensor()));
    }
    let meta = HashMap::from([("chargpt_resume".to_string(), serde_json::to_string(&state)?)]);
    checkpoint::to_safetensors_bytes(&tensors, Some(meta))
}

/// Restores model, optimiser and generator from a resume file; returns its state. The
/// training text must have the vocabulary the run started with.
pub fn load(path: &Path, model: &Model, opt: &mut AdamW, vocab: &str) -> Result<ResumeState> {
    let (tensors, meta) = checkpoint::read_safetensors(path)?;
    let state: ResumeState = serde_json::from_str(meta.get("chargpt_resume").context("no chargpt_resume metadata")?)?;
    if state.vocab != vocab {
        bail!(
            "the training text has changed since this run started: its vocabulary ({} characters) is not the run's ({} characters); resume with the original text",
            vocab.chars().count(),
            state.vocab.chars().count()
        );
    }
    if state.model != model.kind.to_string() || state.config != model.cfg {
        bail!("{} holds a {} with another configuration than this run's {}", path.display(), state.model, model.kind);
    }
    let mut by_prefix: HashMap<String, Vec<(String, Tensor)>> = HashMap::new();
    let mut rng = HashMap::new();
    for (name, t) in tensors {
        match name.split_once('/') {
            Some(("rng", _)) => {
                rng.insert(name, t);
            }
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
        let (exp_avg, exp_avg_sq) = (m.to_kind(Kind::Float).to_device(device), v.to_kind(Kind::Float).to_device(device));
        opt.state.insert(name.clone(), ParamState { step: *step, exp_avg, exp_avg_sq });
    }
    restore_generators(path, &rng, model.device(), false)?;
    Ok(state)
}

/// Refuses progress that no training of `steps` steps writes (a hand-edited or foreign
/// file): more steps than the run has, evaluations after the steps done, or AdamW state
/// that is missing or names parameters the model does not have.
pub fn check_progress(state: &ResumeState, steps: i64, model: &Model) -> Result<()> {
    let done = state.steps_done;
    if !(0..=steps).contains(&done) {
        bail!("field steps_done is {done}, outside the run's 0..={steps} steps; the file was edited or belongs to another run");
    }
    if let Some(row) = state.rows.iter().find(|r| r.step >= done || r.step < 0) {
        bail!("field rows has an evaluation after step {} but only {done} steps are done", row.step);
    }
    let names: std::collections::BTreeSet<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    let recorded: std::collections::BTreeSet<String> = state.adam_steps.keys().cloned().collect();
    // Every trained parameter has its AdamW state (V7 has two that never get a gradient).
    if (done > 0 && recorded.is_empty()) || !recorded.is_subset(&names) {
        bail!(
            "field adam_steps names {} parameters, {} of them not the model's ({done} steps done): the optimiser state does not match",
            recorded.len(),
            recorded.difference(&names).count()
        );
    }
    if let Some((name, step)) = state.adam_steps.iter().find(|(_, &s)| !(1..=done).contains(&s)) {
        bail!("field adam_steps gives {name} {step} steps, outside 1..={done}");
    }
    Ok(())
}

/// Puts back every generator a run on `device` draws from, as the resume file at `path`
/// holds them (`rng`: its `rng/*` tensors by name). A missing device generator is said and
/// left at the seed when training goes on (`every_one`: false), refused when a draw must
/// be the very one it was (`--like-training`).
pub fn restore_generators(path: &Path, rng: &HashMap<String, Tensor>, device: tch::Device, every_one: bool) -> Result<()> {
    for generator in Generator::of_run(device) {
        let name = generator.tensor_name();
        match rng.get(&name) {
            Some(t) => RngState::from_tensor(generator, t).try_restore()?,
            // A CPU run continued on CUDA (--device, which says so), or a file written
            // before chargpt kept the CUDA generator: it starts from the run's seed.
            None if generator != Generator::Cpu && !every_one => crate::say!(
                "chargpt: {} holds no state of {generator}: its draws (dropout, the sample) restart from the seed",
                path.display()
            ),
            None => bail!("{} holds no state of {generator} ({name})", path.display()),
        }
    }
    Ok(())
}
