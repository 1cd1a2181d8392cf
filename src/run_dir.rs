//! The layout of a run folder, in one place: every file `chargpt train` writes there.

use crate::checkpoint;
use crate::models::ModelKind;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::PathBuf;

/// A run folder written by `chargpt train`.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

/// The per-model files, as name suffixes after `v1.` .. `v10.`.
const MODEL_FILES: [&str; 6] = ["csv", "sample.txt", "safetensors", "json", "resume.safetensors", "summary.json"];
/// The run's own files.
const RUN_FILES: [&str; 4] = ["run.json", "summary.csv", "loss.png", "loss.svg"];

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }
    /// The run's options (`TrainOptions`), for `--resume`.
    pub fn options(&self) -> PathBuf {
        self.path.join(RUN_FILES[0])
    }
    /// One row per model: parameters, final losses, speed.
    pub fn summary(&self) -> PathBuf {
        self.path.join(RUN_FILES[1])
    }
    pub fn plot_png(&self) -> PathBuf {
        self.path.join(RUN_FILES[2])
    }
    pub fn plot_svg(&self) -> PathBuf {
        self.path.join(RUN_FILES[3])
    }
    /// One row per evaluation.
    pub fn csv(&self, kind: ModelKind) -> PathBuf {
        self.model_file(kind, MODEL_FILES[0])
    }
    pub fn sample(&self, kind: ModelKind) -> PathBuf {
        self.model_file(kind, MODEL_FILES[1])
    }
    /// The model's weights, with the PyTorch state-dict keys (and its JSON, [`Self::info`]).
    pub fn weights(&self, kind: ModelKind) -> PathBuf {
        self.model_file(kind, MODEL_FILES[2])
    }
    /// The JSON beside the weights: model, configuration, vocabulary, steps, finished.
    pub fn info(&self, kind: ModelKind) -> PathBuf {
        checkpoint::info_path(&self.weights(kind))
    }
    /// Everything to continue training: weights, AdamW state, generator, rows so far.
    pub fn resume(&self, kind: ModelKind) -> PathBuf {
        self.model_file(kind, MODEL_FILES[4])
    }
    /// The model's line of `summary.csv`, kept once it finished.
    pub fn model_summary(&self, kind: ModelKind) -> PathBuf {
        self.model_file(kind, MODEL_FILES[5])
    }

    fn model_file(&self, kind: ModelKind, suffix: &str) -> PathBuf {
        self.path.join(format!("{kind}.{suffix}"))
    }

    /// The single-seed run of `seed` inside a multi-seed run (`crate::seeds`).
    pub fn seed_run(&self, seed: i64) -> RunDir {
        RunDir::new(self.path.join(format!("seed-{seed}")))
    }

    /// The seed sub-folders present (`seed-<integer>`), by seed.
    pub fn seed_runs(&self) -> Vec<(i64, RunDir)> {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return Vec::new() };
        let mut runs: Vec<(i64, RunDir)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("seed-")?.parse::<i64>().ok())
            .map(|seed| (seed, self.seed_run(seed)))
            .collect();
        runs.sort_by_key(|(seed, _)| *seed);
        runs
    }

    /// The files chargpt wrote here, seed sub-folders included, by their path from here.
    fn our_files(&self) -> Vec<String> {
        let mut ours: Vec<String> = Self::file_names().into_iter().filter(|n| self.path.join(n).exists()).collect();
        for (seed, sub) in self.seed_runs() {
            ours.extend(sub.our_files().into_iter().map(|n| format!("seed-{seed}/{n}")));
        }
        ours
    }

    /// Every file name chargpt writes into a run folder.
    pub fn file_names() -> Vec<String> {
        let mut names: Vec<String> = RUN_FILES.iter().map(|s| s.to_string()).collect();
        for kind in ModelKind::ALL {
            names.extend(MODEL_FILES.iter().map(|ext| format!("{kind}.{ext}")));
        }
        names
    }

    /// Claims the folder for a new run: creates it, refuses one that holds a run or any
    /// file chargpt would write (unless `force`, which removes those files and only them),
    /// and creates run.json exclusively, so that two runs started at once never share it.
    pub fn prepare(&self, force: bool) -> Result<()> {
        let path = &self.path;
        if path.is_file() {
            bail!("--out {} is a file; pass a folder (it is created if missing)", path.display());
        }
        if self.options().exists() && !force {
            bail!("{} already holds a run; continue it with --resume {0}, or pass --force to replace it", path.display());
        }
        let ours = self.our_files();
        if !ours.is_empty() && !force {
            bail!(
                "{} holds files a run would overwrite ({}); pass another --out, or --force to replace them",
                path.display(),
                ours.join(", ")
            );
        }
        std::fs::create_dir_all(path).with_context(|| format!("cannot create run folder {}", path.display()))?;
        if force {
            self.clear()?;
        }
        self.claim()
    }

    /// A new folder `runs/<stem>` for a default-named run, or `<stem>-2`, `-3`, ... when
    /// that name is taken: created exclusively, never shared with a run started at once.
    pub fn claim_new(parent: &std::path::Path, stem: &str) -> Result<RunDir> {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        for n in 1..1000 {
            let name = if n == 1 { stem.to_string() } else { format!("{stem}-{n}") };
            let run = RunDir::new(parent.join(name));
            match std::fs::create_dir(&run.path) {
                Ok(()) => {
                    run.claim()?;
                    return Ok(run);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot create run folder {}", run.path.display())),
            }
        }
        bail!("no free run folder name {stem}-N in {}; pass --out", parent.display())
    }

    /// Creates an empty run.json exclusively: the one run that gets it owns the folder.
    fn claim(&self) -> Result<()> {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(self.options()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("{} was just claimed by another run; pass another --out", self.path.display())
            }
            Err(e) => Err(e).with_context(|| format!("cannot write {}", self.options().display())),
        }
    }

    /// Whether any model of the run has written a checkpoint yet.
    pub fn has_checkpoints(&self) -> bool {
        ModelKind::ALL.iter().any(|&k| self.info(k).exists()) || self.seed_runs().iter().any(|(_, sub)| sub.has_checkpoints())
    }

    /// Removes the files an earlier run wrote here (for `--force`), in seed sub-folders
    /// too, and the sub-folders left empty; other files stay.
    pub fn clear(&self) -> Result<()> {
        for name in self.our_files() {
            let path = self.path.join(name);
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
        for (_, sub) in self.seed_runs() {
            // Only an empty folder goes: one with files of the user's stays.
            let _ = std::fs::remove_dir(&sub.path);
        }
        Ok(())
    }

    /// Writes `rows` as the model's CSV (the header alone when there are none yet).
    pub fn write_rows<R: Serialize>(&self, kind: ModelKind, rows: &[R], header: &[&str]) -> Result<()> {
        checkpoint::write_atomic(&self.csv(kind), &csv_bytes(rows, header)?)
    }

    pub fn write_summary<R: Serialize>(&self, rows: &[R], header: &[&str]) -> Result<()> {
        checkpoint::write_atomic(&self.summary(), &csv_bytes(rows, header)?)
    }
}

fn csv_bytes<R: Serialize>(rows: &[R], header: &[&str]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)?;
    }
    if rows.is_empty() {
        w.write_record(header)?;
    }
    Ok(w.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_one_name() {
        let run = RunDir::new("r");
        let names = RunDir::file_names();
        for path in [run.options(), run.summary(), run.plot_png(), run.plot_svg()] {
            assert!(names.contains(&path.file_name().unwrap().to_string_lossy().to_string()));
        }
        let kind = ModelKind::V10;
        for path in [run.csv(kind), run.sample(kind), run.weights(kind), run.info(kind), run.resume(kind), run.model_summary(kind)] {
            assert!(names.contains(&path.file_name().unwrap().to_string_lossy().to_string()), "{}", path.display());
        }
        assert_eq!(names.len(), 4 + 6 * 10);
    }
}
