//! Multi-seed runs (`chargpt train --seeds`): every model trained once per seed, each seed
//! a complete single-seed run in its own sub-folder (`seed-1337/`, ...), and at the top a
//! `summary.csv` with the spread of the final losses across the seeds. One seed's run is
//! one draw from a distribution: its last bits depend on the CPU, the build and the thread
//! count, and training amplifies them (README, "Reading the table").

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::model_kind::ModelKind;
use crate::run_dir::RunDir;
use crate::run_dir::{self, Summary};
use crate::train::{self, Stopped};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tch::Device;

/// The most seeds a count may ask for: a guard against `--seeds 1337` meant as one seed.
const MAX_COUNT: i64 = 1000;

/// `--seeds`: a comma-separated list (`1337,1338,1339`), or a count N for the N consecutive
/// seeds from `first` (`--seed`). At least two seeds, none repeated.
pub fn parse(spec: &str, first: i64) -> Result<Vec<i64>> {
    let spec = spec.trim();
    let seeds: Vec<i64> = if spec.contains(',') {
        let parts = spec.split(',').map(|s| s.trim().parse::<i64>());
        match parts.collect::<Result<Vec<_>, _>>() {
            Ok(v) => v,
            Err(_) => bail!("--seeds {spec}: give integers separated by commas, e.g. --seeds 1337,1338,1339"),
        }
    } else {
        let Ok(n) = spec.parse::<i64>() else {
            bail!("--seeds {spec}: give a count (--seeds 3: three seeds from --seed) or a list (--seeds 1337,1338,1339)")
        };
        if n > MAX_COUNT {
            bail!("--seeds {n} asks for {n} seeds (a count); for the single seed {n} pass --seed {n}, for a list separate seeds by commas")
        }
        (0..n.max(0)).map(|i| first + i).collect()
    };
    if seeds.len() < 2 {
        bail!("--seeds {spec} gives {} seed(s); a multi-seed run needs at least 2 (for one seed pass --seed)", seeds.len());
    }
    if let Some(s) = seeds.iter().enumerate().find_map(|(i, s)| seeds[..i].contains(s).then_some(s)) {
        bail!("--seeds {spec} names seed {s} twice; each seed is trained once");
    }
    Ok(seeds)
}

/// The single-seed run of `seed` inside a multi-seed run.
pub fn options_for(opts: &RunConfig, seed: i64) -> RunConfig {
    RunConfig { seed, seeds: Vec::new(), ..opts.clone() }
}

/// Trains every model once per seed, seed after seed, each seed into its own sub-folder
/// with everything a single-seed run has (CSV, checkpoints, samples, resume files), and
/// rewrites the top `summary.csv` after each seed. Finished seeds and models are skipped
/// and an unfinished one resumes, so `--resume` of the top folder continues where it
/// stopped; a stop names the top folder to resume.
pub fn run(run: &RunDir, opts: &RunConfig, data: &Dataset, device: Device, stop: Arc<AtomicBool>) -> Result<Vec<SeedSummary>> {
    for (i, &seed) in opts.seeds.iter().enumerate() {
        let sub = run.seed_run(seed);
        std::fs::create_dir_all(&sub.path).with_context(|| format!("cannot create {}", sub.path.display()))?;
        // The seed's folder is a run of its own: no one resumes it while this trains it.
        let _lock = sub.lock()?;
        let single = options_for(opts, seed);
        // As for a single-seed resume: a seed with nothing to train keeps its record (it
        // may have been resumed on its own to more steps than the others).
        if run_dir::steps_left(&sub, &single.models, single.steps) {
            crate::checkpoint::write_atomic(&sub.run_json(), serde_json::to_string_pretty(&single)?.as_bytes())?;
            // Each seed's checkpoints find their BPE beside them, as a single run's do.
            sub.write_tokenizer(&data.tokenizer)?;
        }
        crate::say!("=== seed {seed} ({} of {}), in {}", i + 1, opts.seeds.len(), sub.path.display());
        if let Err(mut e) = train::run(&sub, &single, data, device, Arc::clone(&stop)) {
            write_summary(run, opts, false)?;
            if let Some(Stopped::Interrupted { run: at, .. }) = e.downcast_mut::<Stopped>() {
                *at = Some(run.path.clone());
            }
            return Err(e);
        }
        write_summary(run, opts, i + 1 == opts.seeds.len())?;
    }
    Ok(summarize(run, opts))
}

/// Writes the top `summary.csv` from the models finished so far, and names (`say_left_out`)
/// the seeds left out of it because they trained another number of steps than the run.
fn write_summary(run: &RunDir, opts: &RunConfig, say_left_out: bool) -> Result<()> {
    for (seed, kind, steps) in other_steps(run, opts).into_iter().filter(|_| say_left_out) {
        crate::say!(
            "{}: seed {seed}'s {kind} has trained {steps} steps, the run {}: it is left out of summary.csv (resume {} with --steps {} to bring every seed there)",
            run.path.display(),
            opts.steps,
            run.path.display(),
            steps.max(opts.steps)
        );
    }
    run.write_summary(&summarize(run, opts), &SeedSummary::HEADER)
}

/// The spread of each model over the seeds that finished its `opts.steps` steps, no more
/// and no fewer, so that every line compares losses after the same step (models no seed
/// finished are left out).
pub fn summarize(run: &RunDir, opts: &RunConfig) -> Vec<SeedSummary> {
    opts.models
        .iter()
        .filter_map(|&kind| {
            let done: Vec<(i64, Summary)> = opts
                .seeds
                .iter()
                .filter_map(|&s| run_dir::finished(&run.seed_run(s), kind).filter(|(n, _)| *n == opts.steps).map(|(_, m)| (s, m)))
                .collect();
            SeedSummary::of(&done)
        })
        .collect()
}

/// (seed, model, steps) of the finished models whose steps are not the run's.
fn other_steps(run: &RunDir, opts: &RunConfig) -> Vec<(i64, ModelKind, i64)> {
    let mut other = Vec::new();
    for &seed in &opts.seeds {
        for &kind in &opts.models {
            match run_dir::finished(&run.seed_run(seed), kind) {
                Some((steps, _)) if steps != opts.steps => other.push((seed, kind, steps)),
                _ => {}
            }
        }
    }
    other
}

/// After `--resume TOP/seed-N` on its own: rewrites TOP's `summary.csv` when `sub` is a
/// seed of the multi-seed run in its parent folder, so that the top summary never holds
/// statistics its seeds no longer have. A top run that is training right now (its lock is
/// held) rewrites its summary itself when its seed finishes.
pub fn update_top_summary(sub: &RunDir) -> Result<()> {
    let Some(seed) = sub.path.file_name().and_then(|n| n.to_str()?.strip_prefix("seed-")?.parse::<i64>().ok()) else { return Ok(()) };
    let Some(top) = sub.path.parent().map(RunDir::new) else { return Ok(()) };
    let Ok(text) = std::fs::read_to_string(top.run_json()) else { return Ok(()) };
    let Ok(opts) = serde_json::from_str::<RunConfig>(&text) else { return Ok(()) };
    if !opts.seeds.contains(&seed) {
        return Ok(());
    }
    let Ok(_lock) = top.lock() else {
        crate::say!("{} is being written by another chargpt; it rewrites its summary.csv itself", top.path.display());
        return Ok(());
    };
    write_summary(&top, &opts, true)?;
    crate::say!("rewrote {} (seed {seed} is one of its seeds)", top.summary().display());
    Ok(())
}

/// Mean, sample standard deviation (n - 1; NaN for one seed), and the extremes with the
/// seed of each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub min_seed: i64,
    pub max: f64,
    pub max_seed: i64,
}

impl Spread {
    /// The spread of (seed, value) pairs; None when there are none.
    pub fn of(values: &[(i64, f64)]) -> Option<Spread> {
        let n = values.len() as f64;
        let &(first_seed, first) = values.first()?;
        let mean = values.iter().map(|v| v.1).sum::<f64>() / n;
        let std = (values.iter().map(|v| (v.1 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let (mut min, mut max) = ((first_seed, first), (first_seed, first));
        for &(s, v) in values {
            if v < min.1 {
                min = (s, v);
            }
            if v > max.1 {
                max = (s, v);
            }
        }
        Some(Spread { mean, std: if values.len() > 1 { std } else { f64::NAN }, min: min.1, min_seed: min.0, max: max.1, max_seed: max.0 })
    }
}

/// One line of a multi-seed run's `summary.csv`: a model's final losses across seeds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeedSummary {
    pub model: String,
    pub parameters: i64,
    /// How many seeds finished this model.
    pub seeds: usize,
    pub final_loss_step: i64,
    pub train_loss_mean: f64,
    pub train_loss_std: f64,
    pub train_loss_min: f64,
    pub train_loss_min_seed: i64,
    pub train_loss_max: f64,
    pub train_loss_max_seed: i64,
    pub val_loss_mean: f64,
    pub val_loss_std: f64,
    pub val_loss_min: f64,
    pub val_loss_min_seed: i64,
    pub val_loss_max: f64,
    pub val_loss_max_seed: i64,
    /// Means over the seeds.
    pub mean_s_per_step: f64,
    pub tokens_per_s: f64,
    /// The final val loss in bits per character (`Summary::final_val_bits_per_char`).
    #[serde(default = "nan")]
    pub val_bits_per_char_mean: f64,
    #[serde(default = "nan")]
    pub val_bits_per_char_std: f64,
    #[serde(default)]
    pub tokenizer: crate::data::TokenizerSpec,
    #[serde(default = "nan")]
    pub chars_per_step: f64,
}

fn nan() -> f64 {
    f64::NAN
}

impl SeedSummary {
    pub const HEADER: [&'static str; 22] = [
        "model",
        "parameters",
        "seeds",
        "final_loss_step",
        "train_loss_mean",
        "train_loss_std",
        "train_loss_min",
        "train_loss_min_seed",
        "train_loss_max",
        "train_loss_max_seed",
        "val_loss_mean",
        "val_loss_std",
        "val_loss_min",
        "val_loss_min_seed",
        "val_loss_max",
        "val_loss_max_seed",
        "mean_s_per_step",
        "tokens_per_s",
        "val_bits_per_char_mean",
        "val_bits_per_char_std",
        "tokenizer",
        "chars_per_step",
    ];

    /// The line of one model from its (seed, summary) pairs; None when there are none.
    pub fn of(done: &[(i64, Summary)]) -> Option<SeedSummary> {
        let spread = |f: fn(&Summary) -> f64| Spread::of(&done.iter().map(|(s, m)| (*s, f(m))).collect::<Vec<_>>());
        let (train, val) = (spread(|m| m.final_train_loss)?, spread(|m| m.final_val_loss)?);
        let (sps, tps) = (spread(|m| m.mean_s_per_step)?, spread(|m| m.tokens_per_s)?);
        let bits = spread(Summary::val_bits_per_char)?;
        let first = &done[0].1;
        Some(SeedSummary {
            model: first.model.clone(),
            parameters: first.parameters,
            seeds: done.len(),
            final_loss_step: first.final_loss_step,
            train_loss_mean: train.mean,
            train_loss_std: train.std,
            train_loss_min: train.min,
            train_loss_min_seed: train.min_seed,
            train_loss_max: train.max,
            train_loss_max_seed: train.max_seed,
            val_loss_mean: val.mean,
            val_loss_std: val.std,
            val_loss_min: val.min,
            val_loss_min_seed: val.min_seed,
            val_loss_max: val.max,
            val_loss_max_seed: val.max_seed,
            mean_s_per_step: sps.mean,
            tokens_per_s: tps.mean,
            val_bits_per_char_mean: bits.mean,
            val_bits_per_char_std: bits.std,
            tokenizer: first.tokenizer,
            chars_per_step: first.chars_per_step,
        })
    }
}

/// The table a multi-seed `chargpt train` ends with.
pub fn print_summaries(summaries: &[SeedSummary]) {
    crate::say!("\nmodel  parameters  seeds  train loss (mean ± std)  val loss (mean ± std)  val min – max (seed)        s/step");
    for s in summaries {
        let (p, n) = (s.parameters, s.seeds);
        let train = format!("{:.4} ± {:.4}", s.train_loss_mean, s.train_loss_std);
        let val = format!("{:.4} ± {:.4}", s.val_loss_mean, s.val_loss_std);
        let range = format!("{:.4} ({}) – {:.4} ({})", s.val_loss_min, s.val_loss_min_seed, s.val_loss_max, s.val_loss_max_seed);
        crate::say!("{:<5} {p:>11} {n:>6}  {train:>23}  {val:>21}  {range:<27} {:>7.4}", s.model, s.mean_s_per_step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_a_list_or_a_count_from_the_first() {
        assert_eq!(parse("1337,1338,1339", 7).unwrap(), vec![1337, 1338, 1339]);
        assert_eq!(parse(" 5, -2 ", 7).unwrap(), vec![5, -2]);
        assert_eq!(parse("3", 1337).unwrap(), vec![1337, 1338, 1339]);
        for (bad, says) in [
            ("1", "at least 2"),
            ("0", "at least 2"),
            ("1337", "--seed 1337"),
            ("1,x", "integers separated by commas"),
            ("three", "a count"),
            ("4,5,4", "seed 4 twice"),
        ] {
            let e = parse(bad, 1).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_spread_is_mean_sample_std_and_the_extremes_with_their_seeds() {
        let s = Spread::of(&[(10, 2.0), (11, 4.0), (12, 3.0), (13, 3.0)]).unwrap();
        assert_eq!((s.mean, s.min, s.min_seed, s.max, s.max_seed), (3.0, 2.0, 10, 4.0, 11));
        assert!((s.std - (2.0f64 / 3.0).sqrt()).abs() < 1e-12, "sample std (n - 1): {}", s.std);
        let one = Spread::of(&[(5, 1.5)]).unwrap();
        assert_eq!((one.mean, one.min_seed, one.max_seed), (1.5, 5, 5));
        assert!(one.std.is_nan(), "one seed has no spread");
        assert!(Spread::of(&[]).is_none());
    }
}
