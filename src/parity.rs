//! Comparing tensors against the PyTorch reference (`reference/`, written by
//! `scripts/dump_reference.py`). Used by the parity tests and `chargpt parity`.

use crate::checkpoint::read_safetensors;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::layers::Config;
use crate::model_kind::ModelKind;
use crate::models::{Implementation, Model};
use crate::optim::{AdamW, AdamWConfig, Update};
use crate::train::{self, ModelJob};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Tolerance {
    pub rel: f64,
    pub abs_floor: f64,
    pub run_loss: f64,
    /// Relative tolerance of three AdamW steps end to end (see the manifest's `why`).
    pub adam_end_to_end_rel: f64,
}

#[derive(Debug, Deserialize)]
pub struct RunSpec {
    pub steps: i64,
    pub eval_every: i64,
    pub eval_steps: i64,
    pub generate_chars: usize,
    pub lr: f64,
}

#[derive(Debug, Deserialize)]
pub struct Seeds {
    pub init_and_run: i64,
    pub dropout_forward: i64,
}

#[derive(Debug, Deserialize)]
pub struct AdamSpec {
    pub lr: f64,
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub torch_version: String,
    pub text: String,
    pub config: Config,
    pub batch_size: i64,
    pub seeds: BTreeMap<String, Seeds>,
    pub run: RunSpec,
    pub adam: AdamSpec,
    pub tolerance: Tolerance,
}

/// The reference folder: its manifest, the excerpt it was computed on, and one file per model.
pub struct Reference {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub data: Dataset,
}

impl Reference {
    pub fn open(dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dir.join("manifest.json")).with_context(|| {
            format!(
                "no manifest.json in {}: run chargpt from the repository's root, or pass --reference DIR (the folder of PyTorch's tensors, reference/ in the repository)",
                dir.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)?;
        let excerpt = std::fs::read_to_string(dir.join(&manifest.text))?;
        let data = Dataset::new(&excerpt);
        if data.tokenizer.len() as i64 != manifest.config.vocab_size {
            bail!("the excerpt's vocabulary does not match the manifest");
        }
        Ok(Reference { dir: dir.to_path_buf(), manifest, data })
    }

    /// The tensors of one model, by name.
    pub fn tensors(&self, kind: ModelKind) -> Result<BTreeMap<String, Tensor>> {
        let (tensors, _) = read_safetensors(&self.dir.join(format!("{kind}.safetensors")))?;
        Ok(tensors.into_iter().collect())
    }

    /// `prefix/<key>` entries with the prefix removed.
    pub fn group(tensors: &BTreeMap<String, Tensor>, prefix: &str) -> Vec<(String, Tensor)> {
        tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')).map(|k| (k.to_string(), v.shallow_clone())))
            .collect()
    }
}

/// A tensor that differs from the reference by more than the tolerance.
#[derive(Debug)]
pub struct Mismatch {
    pub name: String,
    pub max_abs_err: f64,
    pub allowed: f64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tensor {} differs from the reference: max |error| {:.3e} > allowed {:.3e}", self.name, self.max_abs_err, self.allowed)
    }
}

impl std::error::Error for Mismatch {}

/// `max|a - b| <= rel * max|b| + abs_floor`, else a [`Mismatch`] naming the tensor.
pub fn compare(name: &str, actual: &Tensor, reference: &Tensor, tol: &Tolerance) -> Result<f64, Mismatch> {
    let a = actual.detach().to_device(Device::Cpu).to_kind(Kind::Double);
    let b = reference.to_kind(Kind::Double);
    if a.size() != b.size() {
        return Err(Mismatch {
            name: format!("{name} (shape {:?} vs {:?})", a.size(), b.size()),
            max_abs_err: f64::INFINITY,
            allowed: 0.0,
        });
    }
    let err = if a.numel() == 0 { 0.0 } else { (&a - &b).abs().max().double_value(&[]) };
    let scale = if b.numel() == 0 { 0.0 } else { b.abs().max().double_value(&[]) };
    let allowed = tol.rel * scale + tol.abs_floor;
    if err.is_nan() || err > allowed {
        return Err(Mismatch { name: name.to_string(), max_abs_err: err, allowed });
    }
    Ok(err)
}

/// Compares named tensors in name order; the first mismatch is the error. Every reference
/// name must exist among `actual` and vice versa.
pub fn compare_all(what: &str, actual: &[(String, Tensor)], reference: &[(String, Tensor)], tol: &Tolerance) -> Result<f64> {
    let actual: BTreeMap<&str, &Tensor> = actual.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let reference: BTreeMap<&str, &Tensor> = reference.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let a_names: Vec<&&str> = actual.keys().collect();
    let r_names: Vec<&&str> = reference.keys().collect();
    if a_names != r_names {
        bail!("{what}: tensor names differ: ours {a_names:?}, reference {r_names:?}");
    }
    let mut worst: f64 = 0.0;
    for (name, r) in &reference {
        worst = worst.max(compare(&format!("{what} {name}"), actual[name], r, tol)?);
    }
    Ok(worst)
}

/// What one model's parity check measured (worst errors per stage).
#[derive(Debug, Default)]
pub struct Report {
    pub init: f64,
    pub logits: f64,
    pub grads: f64,
    pub adam: f64,
    pub run_losses: f64,
    pub tokens_equal: bool,
    /// Whether the train-mode logits and the gradients were compared (not where dropout
    /// masks cannot match the reference's: CUDA, or the fast path, with dropout).
    pub grads_checked: bool,
    /// Whether the same-seed run was compared (CPU only; not the fast path with dropout).
    pub run_checked: bool,
}

/// Relative per-tensor tolerance of the fast path against the reference: the same
/// function in other kernels, so other rounding.
pub const FAST_REL: f64 = 1e-4;

/// The tolerance `imp` is held to: the manifest's for the faithful path (the same ops in
/// the same order as PyTorch), each tensor within [`FAST_REL`] of its scale for the fast one.
fn tolerance(imp: Implementation, manifest: &Tolerance) -> Tolerance {
    match imp {
        Implementation::Faithful => *manifest,
        Implementation::Fast => {
            Tolerance { rel: manifest.rel.max(FAST_REL), adam_end_to_end_rel: manifest.adam_end_to_end_rel.max(FAST_REL), ..*manifest }
        }
    }
}

/// Forward, loss and gradients on `device` from the reference's initial weights.
pub fn check_forward_backward(
    r: &Reference,
    kind: ModelKind,
    t: &BTreeMap<String, Tensor>,
    device: Device,
    imp: Implementation,
    report: &mut Report,
) -> Result<()> {
    let tol = &tolerance(imp, &r.manifest.tolerance);
    let seeds = &r.manifest.seeds[&kind.to_string()];
    let model = Model::with_implementation(kind, &r.manifest.config, imp, device)?;
    model.load_state_dict(&Reference::group(t, "init"))?;
    let x = t["x"].to_device(device);
    let y = t["y"].to_device(device);
    let eval_logits = tch::no_grad(|| model.forward(&x, false));
    report.logits = compare(&format!("{kind} logits_eval"), &eval_logits, &t["logits_eval"], tol)?;
    if device == Device::Cpu {
        // Dropout masks come from the CPU generator only on the CPU.
        tch::manual_seed(seeds.dropout_forward);
    }
    let logits = model.forward(&x, true);
    let loss = crate::models::cross_entropy(&logits, &y);
    let has_dropout = kind == ModelKind::V10 && model.cfg.dropout > 0.0;
    // Only the faithful path on the CPU draws the reference's dropout masks.
    report.grads_checked = !has_dropout || (device == Device::Cpu && imp == Implementation::Faithful);
    if report.grads_checked {
        report.logits = report.logits.max(compare(&format!("{kind} logits"), &logits, &t["logits"], tol)?);
        compare(&format!("{kind} loss"), &loss.view([1]), &t["loss"], tol)?;
        loss.backward();
        let grads: Vec<(String, Tensor)> =
            model.named_parameters().into_iter().filter(|(_, p)| p.grad().defined()).map(|(n, p)| (n, p.grad())).collect();
        report.grads = compare_all(&format!("{kind} grad"), &grads, &Reference::group(t, "grad"), tol)?;
    }
    Ok(())
}

/// Three AdamW steps with dropout off land on the reference's parameters: first fed the
/// reference's own gradients (the optimizer alone, to the tight tolerance), then end to end
/// with ours (to `adam_end_to_end_rel`: the first steps amplify gradients' last bits).
pub fn check_adamw(
    r: &Reference,
    kind: ModelKind,
    t: &BTreeMap<String, Tensor>,
    device: Device,
    imp: Implementation,
    report: &mut Report,
) -> Result<()> {
    // From the reference's initial weights: three times zero_grad, `set_grads`, step.
    let three_steps = |set_grads: &dyn Fn(&Model, i64) -> Result<()>| -> Result<Vec<(String, Tensor)>> {
        let model = Model::with_implementation(kind, &r.manifest.config, imp, device)?;
        model.load_state_dict(&Reference::group(t, "init"))?;
        let mut opt =
            AdamW::new(model.named_parameters(), AdamWConfig::pytorch_default(r.manifest.adam.lr), Update::of(imp, model.device()));
        for i in 0..3 {
            opt.zero_grad()?;
            set_grads(&model, i)?;
            opt.step()?;
        }
        Ok(model.state_dict())
    };
    let tol = &tolerance(imp, &r.manifest.tolerance);
    let expected = Reference::group(t, "adam3");

    let on_reference_grads = three_steps(&|model, i| {
        let grads: BTreeMap<String, Tensor> = Reference::group(t, &format!("adam_grad/{i}")).into_iter().collect();
        if grads.is_empty() {
            bail!("{kind}: reference has no adam_grad/{i}: regenerate it with `make reference`");
        }
        // The gradient of sum(p * g) with respect to p is exactly g.
        let surrogate = model
            .named_parameters()
            .iter()
            .filter_map(|(name, p)| grads.get(name).map(|g| (p * g.to_device(device)).sum(Kind::Float)))
            .reduce(|a, b| a + b)
            .context("no parameter has a reference gradient")?;
        surrogate.backward();
        Ok(())
    })?;
    report.adam = compare_all(&format!("{kind} after 3 AdamW steps on the reference's gradients"), &on_reference_grads, &expected, tol)?;

    let end_to_end = three_steps(&|model, i| {
        model.loss(&t["adam_x"].get(i).to_device(device), &t["adam_y"].get(i).to_device(device), false).backward();
        Ok(())
    })?;
    let end_to_end_tol = Tolerance { rel: tol.adam_end_to_end_rel, ..*tol };
    let err = compare_all(&format!("{kind} after 3 AdamW steps"), &end_to_end, &expected, &end_to_end_tol)?;
    report.adam = report.adam.max(err);
    Ok(())
}

/// The same seed gives the reference's initial weights, step losses, evaluations and sample (CPU only).
pub fn check_same_seed_run(
    r: &Reference,
    kind: ModelKind,
    t: &BTreeMap<String, Tensor>,
    imp: Implementation,
    report: &mut Report,
) -> Result<()> {
    let m = &r.manifest;
    let seed = m.seeds[&kind.to_string()].init_and_run;
    tch::manual_seed(seed);
    let model = Model::new(kind, &m.config, Device::Cpu)?;
    report.init = compare_all(&format!("{kind} initial"), &model.state_dict(), &Reference::group(t, "init"), &m.tolerance)?;
    let opts = RunConfig {
        models: vec![kind],
        batch_size: m.batch_size,
        block_size: m.config.block_size,
        n_embed: m.config.n_embed,
        num_heads: m.config.num_heads,
        block_layers: m.config.block_layers,
        dropout: m.config.dropout,
        lr: m.run.lr,
        steps: m.run.steps,
        eval_every: m.run.eval_every,
        eval_steps: m.run.eval_steps,
        generate_chars: m.run.generate_chars,
        seed,
        preset: None,
        implementation: imp,
        // The blog's trainer evaluates on its schedule only.
        final_eval: false,
        ..RunConfig::default()
    };
    let job = ModelJob { kind, opts: &opts, data: &r.data, device: Device::Cpu, run: None, stop: None, verbose: false };
    let trained = train::train_model(&job)?;
    let losses = Tensor::from_slice(&trained.losses);
    let run_tol = Tolerance { rel: 0.0, abs_floor: m.tolerance.run_loss, ..m.tolerance };
    report.run_losses = compare(&format!("{kind} run losses"), &losses, &t["run/losses"], &run_tol)?;
    let evals: Vec<f64> = trained.rows.iter().flat_map(|r| [r.step as f64, r.train_loss, r.val_loss]).collect();
    let evals = Tensor::from_slice(&evals).view([-1, 3]);
    compare(&format!("{kind} run evaluations"), &evals, &t["run/evals"], &run_tol)?;
    let tokens = r.data.tokenizer.encode(&trained.sample)?;
    let expected = Vec::<i64>::try_from(&t["run/tokens"])?;
    report.tokens_equal = tokens == expected;
    if !report.tokens_equal {
        bail!("{kind}: generated tokens differ from the reference: ours {tokens:?}, reference {expected:?}");
    }
    Ok(())
}

/// All checks for one model on `device` with the chosen implementation (the same-seed run
/// only on the CPU, and on the fast path only for models without dropout).
pub fn check_model(r: &Reference, kind: ModelKind, device: Device, imp: Implementation) -> Result<Report> {
    let t = r.tensors(kind)?;
    let mut report = Report::default();
    check_forward_backward(r, kind, &t, device, imp, &mut report)?;
    check_adamw(r, kind, &t, device, imp, &mut report)?;
    let has_dropout = kind == ModelKind::V10 && r.manifest.config.dropout > 0.0;
    report.run_checked = device == Device::Cpu && (imp == Implementation::Faithful || !has_dropout);
    if report.run_checked {
        check_same_seed_run(r, kind, &t, imp, &mut report)?;
    }
    Ok(report)
}

/// `chargpt parity`: every model checked on `device` with `imp`, one line of worst errors
/// each ("-" where the check does not apply), or the first mismatch as the error.
pub fn print_table(dir: &Path, device: Device, imp: Implementation) -> Result<()> {
    let reference = Reference::open(dir)?;
    let device_name = crate::device::DeviceKind::of(device);
    println!(
        "parity of the {imp} path against the PyTorch {} reference in {} on {device_name}",
        reference.manifest.torch_version,
        dir.display()
    );
    println!("model  init       logits     grads      adamw      run-loss   tokens");
    for kind in ModelKind::ALL {
        let r = check_model(&reference, kind, device, imp)?;
        let run = |v: f64| if r.run_checked { format!("{v:.2e}") } else { "-".to_string() };
        let grads = if r.grads_checked { format!("{:.2e}", r.grads) } else { "-".to_string() };
        // A same-seed run whose tokens differ is an error (check_model), not a row.
        let tokens = if r.run_checked { "identical" } else { "-" };
        println!(
            "{:<6} {:<10} {:<10.2e} {:<10} {:<10.2e} {:<10} {tokens}",
            kind.to_string(),
            run(r.init),
            r.logits,
            grads,
            r.adam,
            run(r.run_losses)
        );
    }
    println!("all ten models match the reference within the tolerances (\"-\": not comparable, see `chargpt parity --help`)");
    Ok(())
}
