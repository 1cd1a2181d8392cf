//! The layout of a run folder, in one place: every file `chargpt train` writes there,
//! the schemas of its CSVs and summaries, and reading a finished run back.

use crate::checkpoint::{self, ModelInfo};
use crate::model_kind::ModelKind;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An exclusive hold on a run folder: an OS file lock (`flock`) on [`LOCK_FILE`] in it,
/// which the kernel releases when the process ends, however it ends (a SIGKILL leaves
/// nothing to clean up). Every command that writes into a run folder holds one, so one
/// process writes there at a time.
#[derive(Debug)]
pub struct FolderLock {
    _file: std::fs::File,
}

/// The lock file of a run folder (hidden; it holds the pid of the process that locked it).
pub const LOCK_FILE: &str = ".chargpt.lock";

/// A run folder written by `chargpt train`.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

/// The per-model files, as name suffixes after `v1.` .. `v10.`.
const MODEL_FILES: [&str; 6] = ["csv", "sample.txt", "safetensors", "json", "resume.safetensors", "summary.json"];
/// The run's own files.
const RUN_FILES: [&str; 5] = ["run.json", "summary.csv", "loss.png", "loss.svg", crate::tokenizer::TOKENIZER_FILE];

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }
    /// The run's options (`RunConfig`), for `--resume`.
    pub fn run_json(&self) -> PathBuf {
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
    /// A BPE run's tokenizer (Hugging Face's `tokenizer.json`), beside the checkpoints.
    pub fn tokenizer_json(&self) -> PathBuf {
        self.path.join(RUN_FILES[4])
    }
    /// Writes a BPE run's tokenizer.json (a char run has none: its checkpoints hold the vocabulary).
    pub fn write_tokenizer(&self, tokenizer: &crate::tokenizer::Tokenizer) -> Result<()> {
        match tokenizer.bpe() {
            Some(bpe) => checkpoint::write_atomic(&self.tokenizer_json(), bpe.to_json().as_bytes()),
            None => Ok(()),
        }
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
    pub fn info_json(&self, kind: ModelKind) -> PathBuf {
        checkpoint::info_path(&self.weights(kind))
    }
    /// Everything to continue training: weights, AdamW state, generator, rows so far.
    pub fn resume_file(&self, kind: ModelKind) -> PathBuf {
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

    /// The files chargpt wrote here, seed sub-folders included, by their path from here:
    /// its own names, and the temporary files of atomic writes that a kill left behind.
    fn our_files(&self) -> Vec<String> {
        let names = Self::file_names();
        let mut ours: Vec<String> = names.iter().filter(|n| self.path.join(n).exists()).cloned().collect();
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            let mut leftovers: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| is_leftover_temporary(n, &names))
                .collect();
            leftovers.sort();
            ours.extend(leftovers);
        }
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
    pub fn prepare(&self, force: bool, corpus: &std::path::Path) -> Result<FolderLock> {
        let path = &self.path;
        if path.is_file() {
            bail!("--out {} is a file; pass a folder (it is created if missing)", path.display());
        }
        // The training text must not be one of the files the run writes (or --force removes).
        let real = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        if let Some(text) = real(corpus) {
            let names = Self::file_names();
            let ours = self.our_files().into_iter().chain(names).any(|n| real(&path.join(&n)).is_some_and(|f| f == text));
            if ours {
                bail!(
                    "the training text {} is a file chargpt writes in {}; move it out of the run folder or pass another --out",
                    corpus.display(),
                    path.display()
                );
            }
        }
        std::fs::create_dir_all(path).with_context(|| format!("cannot create run folder {}", path.display()))?;
        let lock = self.lock()?;
        // An empty run.json is a claim whose process died before it wrote the run (nobody
        // holds the lock now): nothing was trained, so the folder is free again.
        if self.run_json().metadata().is_ok_and(|m| m.len() == 0) && !self.has_checkpoints() {
            std::fs::remove_file(self.run_json()).with_context(|| format!("cannot remove {}", self.run_json().display()))?;
        }
        if self.run_json().exists() && !force {
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
        if force {
            self.clear()?;
        }
        self.claim()?;
        Ok(lock)
    }

    /// A new folder `runs/<stem>` for a default-named run, or `<stem>-2`, `-3`, ... when
    /// that name is taken: created exclusively, never shared with a run started at once.
    pub fn claim_new(parent: &std::path::Path, stem: &str) -> Result<(RunDir, FolderLock)> {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        for n in 1..1000 {
            let name = if n == 1 { stem.to_string() } else { format!("{stem}-{n}") };
            let run = RunDir::new(parent.join(name));
            match std::fs::create_dir(&run.path) {
                Ok(()) => {
                    let lock = run.lock()?;
                    run.claim()?;
                    return Ok((run, lock));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot create run folder {}", run.path.display())),
            }
        }
        bail!("no free run folder name {stem}-N in {}; pass --out", parent.display())
    }

    /// Creates an empty run.json exclusively: the one run that gets it owns the folder.
    fn claim(&self) -> Result<()> {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(self.run_json()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("{} was just claimed by another run; pass another --out", self.path.display())
            }
            Err(e) => Err(e).with_context(|| format!("cannot write {}", self.run_json().display())),
        }
    }

    /// Takes the folder (which must exist) for this process, or refuses in one line naming
    /// the process that holds it.
    pub fn lock(&self) -> Result<FolderLock> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = self.path.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot lock run folder {} (cannot write {})", self.path.display(), path.display()))?;
        // SAFETY: flock only reads the descriptor, which `file` owns and keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(e).with_context(|| format!("cannot lock run folder {}", self.path.display()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().parse::<u32>().map_or(String::new(), |pid| format!(" (process {pid})"));
            bail!(
                "{} is in use by another chargpt{holder}: one process writes into a run folder at a time; wait for it to finish, or stop it (Ctrl-C keeps its checkpoint)",
                self.path.display()
            );
        }
        // Who holds it, for the message of the next one that tries.
        let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| write!(file, "{}", std::process::id()));
        Ok(FolderLock { _file: file })
    }

    /// Whether any model of the run has written a checkpoint yet.
    pub fn has_checkpoints(&self) -> bool {
        ModelKind::ALL.iter().any(|&k| self.info_json(k).exists()) || self.seed_runs().iter().any(|(_, sub)| sub.has_checkpoints())
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

/// `.v1.safetensors.tmp-4242`: the temporary file `checkpoint::write_atomic` makes for one
/// of `names` (a kill before its rename leaves it).
/// (or `.loss.tmp-4242.png`, a plot being drawn: `plot::temporary`).
fn is_leftover_temporary(file: &str, names: &[String]) -> bool {
    let Some((name, pid)) = file.strip_prefix('.').and_then(|f| f.rsplit_once(".tmp-")) else { return false };
    let (pid, name) = match pid.split_once('.') {
        Some((pid, ext)) => (pid, format!("{name}.{ext}")),
        None => (pid, name.to_string()),
    };
    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && names.contains(&name)
}

/// Refuses an output path that would destroy what a command reads or a run holds: any of
/// `inputs` (compared after resolving links), or a file of a run folder — one of chargpt's
/// names in a folder that holds a run.json or in the folder of an input.
pub fn refuse_clobbering(out: &std::path::Path, inputs: &[&std::path::Path]) -> Result<()> {
    let resolve = |p: &std::path::Path| -> PathBuf {
        if let Ok(real) = std::fs::canonicalize(p) {
            return real;
        }
        let parent = checkpoint::folder_of(p);
        std::fs::canonicalize(parent).map_or(p.to_path_buf(), |d| d.join(p.file_name().unwrap_or_default()))
    };
    let target = resolve(out);
    for input in inputs {
        if resolve(input) == target {
            bail!("--out {} is the file this command reads ({}); write the samples to another file", out.display(), input.display());
        }
    }
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let folder = target.parent().map(PathBuf::from).unwrap_or_default();
    let run_file = RunDir::file_names().iter().any(|n| n == name) || name == LOCK_FILE;
    let in_a_run = folder.join(RUN_FILES[0]).exists() || inputs.iter().any(|i| resolve(i).parent() == Some(folder.as_path()));
    if run_file && in_a_run {
        bail!("--out {} is a file of the run in {}; write the samples to another file", out.display(), folder.display());
    }
    Ok(())
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

// The schemas of a run folder's files, and reading a finished run back.

/// One evaluation: the row of the per-model CSV.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalRow {
    pub step: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub elapsed_s: f64,
    pub tokens_per_s: f64,
    /// `val_loss` in bits per character (`crate::data::bits_per_char`): with `char` the
    /// loss / ln 2 exactly; with a BPE an estimate, at the validation split's characters
    /// per token (`chargpt eval` gives the exact figure). Absent from CSVs written before
    /// chargpt had it ([`Self::val_bits_per_char`] fills those in for `char`).
    #[serde(default = "nan")]
    pub val_bits_per_char: f64,
    /// On the blog's schedule (after step s when s % eval_every == 0 and s >= eval_every),
    /// or false for the evaluation of the finished model after its last step where the
    /// schedule did not evaluate it (absent from CSVs written before: all scheduled).
    #[serde(default = "scheduled")]
    pub scheduled: bool,
}

fn nan() -> f64 {
    f64::NAN
}

fn scheduled() -> bool {
    true
}

impl EvalRow {
    pub const HEADER: [&'static str; 7] = ["step", "train_loss", "val_loss", "elapsed_s", "tokens_per_s", "val_bits_per_char", "scheduled"];

    /// Bits per character, for a row of a char run written before chargpt recorded it too.
    pub fn val_bits_per_char(&self) -> f64 {
        match self.val_bits_per_char.is_nan() {
            true => crate::data::bits_per_char(self.val_loss, 1.0),
            false => self.val_bits_per_char,
        }
    }
}

/// One line of `summary.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub model: String,
    pub parameters: i64,
    pub final_train_loss: f64,
    pub final_val_loss: f64,
    /// The step after which the final losses were evaluated: the last step (an evaluation
    /// off the schedule where the blog's does not reach it), or with `--no-final-eval` the
    /// last multiple of eval_every before the end.
    #[serde(default)]
    pub final_loss_step: i64,
    pub mean_s_per_step: f64,
    pub tokens_per_s: f64,
    /// `final_val_loss` in bits per character ([`EvalRow::val_bits_per_char`]).
    #[serde(default = "nan")]
    pub final_val_bits_per_char: f64,
    /// The tokenizer (`char`, `bpe:N`), and the characters one training step sees.
    #[serde(default)]
    pub tokenizer: crate::data::TokenizerSpec,
    #[serde(default = "nan")]
    pub chars_per_step: f64,
    /// Whether the final losses come from the blog's schedule, or from the evaluation after
    /// the last step that the schedule did not make ([`EvalRow::scheduled`]).
    #[serde(default = "scheduled")]
    pub final_loss_scheduled: bool,
}

impl Summary {
    /// Bits per character, for the summary of a char run written before chargpt recorded it too.
    pub fn val_bits_per_char(&self) -> f64 {
        match self.final_val_bits_per_char.is_nan() && self.tokenizer == crate::data::TokenizerSpec::Char {
            true => crate::data::bits_per_char(self.final_val_loss, 1.0),
            false => self.final_val_bits_per_char,
        }
    }

    pub const HEADER: [&'static str; 11] = [
        "model",
        "parameters",
        "final_train_loss",
        "final_val_loss",
        "final_loss_step",
        "mean_s_per_step",
        "tokens_per_s",
        "final_val_bits_per_char",
        "tokenizer",
        "chars_per_step",
        "final_loss_scheduled",
    ];
}

/// A finished model's summary, if its run folder says it finished all `steps`.
pub fn finished_summary(run: &RunDir, kind: ModelKind, steps: i64) -> Option<Summary> {
    finished(run, kind).filter(|(done, _)| *done >= steps).map(|(_, summary)| summary)
}

/// A finished model's steps and summary, as its run folder records them.
pub fn finished(run: &RunDir, kind: ModelKind) -> Option<(i64, Summary)> {
    // The JSON alone decides, so that a run folder packed without its weights (the GPU
    // checks bring runs back that way) still skips its finished models.
    let info: ModelInfo = serde_json::from_str(&std::fs::read_to_string(run.info_json(kind)).ok()?).ok()?;
    if !info.finished {
        return None;
    }
    let summary = serde_json::from_str(&std::fs::read_to_string(run.model_summary(kind)).ok()?).ok()?;
    Some((info.steps_done, summary))
}

/// Whether one of `models` of the run in `run` (one seed) has not finished `steps` steps.
pub fn steps_left(run: &RunDir, models: &[ModelKind], steps: i64) -> bool {
    models.iter().any(|&k| finished_summary(run, k, steps).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `--force` and the clean-up know (`file_names`) are exactly the files the
    /// path methods name, all different: a new file of a run cannot be forgotten there, and
    /// two files cannot share a name.
    #[test]
    fn every_file_has_one_name() {
        let run = RunDir::new("r");
        let name = |p: PathBuf| p.file_name().unwrap().to_string_lossy().to_string();
        let mut written: Vec<String> =
            [run.run_json(), run.summary(), run.plot_png(), run.plot_svg(), run.tokenizer_json()].into_iter().map(name).collect();
        for kind in ModelKind::ALL {
            let files =
                [run.csv(kind), run.sample(kind), run.weights(kind), run.info_json(kind), run.resume_file(kind), run.model_summary(kind)];
            written.extend(files.into_iter().map(name));
        }
        let distinct: std::collections::BTreeSet<&String> = written.iter().collect();
        assert_eq!(distinct.len(), written.len(), "two files share a name: {written:?}");
        let mut known = RunDir::file_names();
        known.sort();
        written.sort();
        assert_eq!(known, written);
    }

    /// One holder at a time; the lock goes with its holder.
    #[test]
    fn a_folder_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let held = run.lock().unwrap();
        let err = run.lock().unwrap_err().to_string();
        assert!(
            err.contains("is in use by another chargpt (process ") && err.contains("one process writes into a run folder at a time"),
            "{err}"
        );
        drop(held);
        run.lock().unwrap();
    }

    /// A kill between an atomic write's temporary file and its rename leaves
    /// `.NAME.tmp-PID`: the clean-up (and so --force) removes those of chargpt's names only.
    #[test]
    fn leftover_temporary_files_are_cleared_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let seed = run.seed_run(7);
        std::fs::create_dir(&seed.path).unwrap();
        let ours = [
            dir.path().join(".v1.safetensors.tmp-4242"),
            dir.path().join(".run.json.tmp-1"),
            dir.path().join(".loss.tmp-9.png"),
            seed.path.join(".v10.csv.tmp-77"),
        ];
        let theirs = [dir.path().join(".notes.txt.tmp-1"), dir.path().join(".v1.csv.tmp-x"), dir.path().join("v1.csv.tmp-1")];
        for f in ours.iter().chain(&theirs) {
            std::fs::write(f, b"x").unwrap();
        }
        run.clear().unwrap();
        assert!(ours.iter().all(|f| !f.exists()), "chargpt's temporary files are removed");
        assert!(theirs.iter().all(|f| f.exists()), "other files stay");
        assert!(!seed.path.exists(), "the seed folder, left empty, goes");
    }
}
