//! Multi-seed runs (`train --seeds`): each seed is the single-seed run of that seed, the
//! summary holds the spread, and a stopped multi-seed run resumes into the same numbers.

mod common;
use common::*;
use std::fs;
use std::path::Path;

/// The rows of a summary.csv as field maps.
fn summary(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader.records().map(|r| header.iter().cloned().zip(r.unwrap().iter().map(String::from)).collect()).collect()
}

const FLAGS: [&str; 4] = ["--steps", "61", "--eval-every", "10"];

#[test]
fn each_seed_is_the_single_seed_run_and_the_summary_holds_the_spread() {
    let dir = tempfile::tempdir().unwrap();
    let multi = dir.path().join("multi");
    let r = ok(&strs(&tiny_train(&multi, "v1,v4", &[&FLAGS[..], &["--seeds", "2", "--seed", "41"]].concat())));
    assert!(r.stdout.contains("2 seeds (41,42)"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("generate --checkpoint {}", multi.join("seed-42/v4.safetensors").display())), "{}", r.stdout);
    let mut finals = Vec::new();
    for seed in ["41", "42"] {
        let single = dir.path().join(format!("single-{seed}"));
        ok(&strs(&tiny_train(&single, "v1,v4", &[&FLAGS[..], &["--seed", seed]].concat())));
        let sub = multi.join(format!("seed-{seed}"));
        for m in ["v1", "v4"] {
            assert_eq!(losses(&sub, m), losses(&single, m), "seed {seed} {m}");
            assert_eq!(fs::read(sub.join(format!("{m}.sample.txt"))).unwrap(), fs::read(single.join(format!("{m}.sample.txt"))).unwrap());
        }
        finals.push(summary(&single));
    }
    let spread = summary(&multi);
    assert_eq!(spread.len(), 2);
    for (i, row) in spread.iter().enumerate() {
        let val = |s: usize| finals[s][i]["final_val_loss"].parse::<f64>().unwrap();
        let num = |k: &str| row[k].parse::<f64>().unwrap();
        assert_eq!(row["seeds"], "2");
        assert!((num("val_loss_mean") - (val(0) + val(1)) / 2.0).abs() < 1e-12, "{row:?}");
        assert!((num("val_loss_std") - (val(0) - val(1)).abs() / 2f64.sqrt()).abs() < 1e-12, "sample std: {row:?}");
        let (lo, hi) = if val(0) <= val(1) { ("41", "42") } else { ("42", "41") };
        assert_eq!((row["val_loss_min_seed"].as_str(), row["val_loss_max_seed"].as_str()), (lo, hi), "{row:?}");
        assert_eq!(num("val_loss_min"), val(0).min(val(1)));
    }
    // The plot of a multi-seed run draws its spread.
    ok(&["plot", multi.to_str().unwrap()]);
    assert!(fs::read_to_string(multi.join("loss.svg")).unwrap().contains("over 2 seeds"));
}

#[test]
fn a_stopped_multi_seed_run_resumes_into_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [&FLAGS[..], &["--seeds", "7,3"]].concat();
    let straight = dir.path().join("straight");
    ok(&strs(&tiny_train(&straight, "v1,v10", &flags)));

    let stopped = dir.path().join("stopped");
    let first = run_stopped_after(&tiny_train(&stopped, "v1,v10", &flags), "31");
    assert_eq!(first.code, 130, "{}", first.stderr);
    assert!(first.stderr.contains(&format!("resume with: chargpt train --resume {}", stopped.display())), "{}", first.stderr);
    // An interrupted multi-seed run plots what it has.
    ok(&["plot", stopped.to_str().unwrap()]);
    // Each process stops its first model after 31 steps: v1 and v10 of seed 7, then of seed 3.
    let mut stops = 1;
    loop {
        let mut cmd = hooked_bin();
        cmd.args(["train", "--resume", stopped.to_str().unwrap(), "--no-plot"]).env("CHARGPT_STOP_AFTER_STEPS", "31");
        let r: Run = cmd.output().unwrap().into();
        if r.code == 0 {
            break;
        }
        assert_eq!(r.code, 130, "{}", r.stderr);
        stops += 1;
        assert!(stops <= 4, "more stops than models x seeds");
    }
    assert_eq!(stops, 4);
    for seed in ["seed-7", "seed-3"] {
        for m in ["v1", "v10"] {
            assert_eq!(losses(&straight.join(seed), m), losses(&stopped.join(seed), m), "{seed} {m}");
            let sample = format!("{seed}/{m}.sample.txt");
            assert_eq!(fs::read(straight.join(&sample)).unwrap(), fs::read(stopped.join(&sample)).unwrap(), "{sample}");
        }
    }
    let fields = |dir: &Path| -> Vec<Vec<String>> {
        summary(dir)
            .iter()
            .map(|r| ["model", "seeds", "val_loss_mean", "val_loss_std", "train_loss_max_seed"].map(|k| r[k].clone()).to_vec())
            .collect()
    };
    assert_eq!(fields(&straight), fields(&stopped));
    // Finished everywhere: a further resume skips every seed's models.
    let again = ok(&["train", "--resume", stopped.to_str().unwrap(), "--no-plot"]);
    assert_eq!(again.stdout.matches("already finished").count(), 4, "{}", again.stdout);
}

#[test]
fn a_multi_seed_folder_is_neither_overwritten_nor_cleared_beyond_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = tiny_train(&out, "v1", &["--steps", "21", "--eval-every", "10", "--seeds", "2"]);
    ok(&strs(&args));
    // Without run.json at the top, the seed folders still hold files a run would overwrite.
    fs::remove_file(out.join("run.json")).unwrap();
    fails_with(&strs(&args), "seed-1337/");
    fs::write(out.join("seed-1338/notes.txt"), "mine").unwrap();
    ok(&strs(&[args.clone(), vec!["--force".into()]].concat()));
    assert_eq!(fs::read_to_string(out.join("seed-1338/notes.txt")).unwrap(), "mine", "--force removes chargpt's files only");
    for bad in [&["--seeds", "1"][..], &["--seeds", "5,x"], &["--seeds", "1337"], &["--seeds", "2,2"]] {
        fails_with(&strs(&tiny_train(&dir.path().join("bad"), "v1", bad)), "--seeds");
    }
    fails_with(&["train", "--resume", out.to_str().unwrap(), "--seeds", "3"], "--seeds cannot be given with --resume");
}

/// Under CPU affinity to one core, the run uses one thread and says why.
#[test]
fn the_thread_count_follows_cpu_affinity() {
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert!(online >= 2, "this test restricts a run to one of several cores; this machine has {online}");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(strs(&tiny_train(&dir.path().join("run"), "v1", &["--steps", "11", "--eval-every", "10"])));
    // SAFETY: pre_exec runs in the forked child before exec; sched_setaffinity is
    // async-signal-safe and touches only the child's own mask.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            match libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("on cpu (1 thread: 1 of the {online} cores, by CPU affinity or quota)")), "{}", r.stdout);
}

/// The loss tables of docs/RESULTS.md (and the README's first) are `scripts/loss_table.py`'s output for the committed run,
/// line for line (and that run's summary is what its seed folders give).
#[test]
fn the_results_tables_come_from_the_committed_run() {
    let run = root().join("results/shakespeare-cpu");
    let out = std::process::Command::new("python3")
        .arg(root().join("scripts/loss_table.py"))
        .arg(&run)
        .arg("--pytorch")
        .arg(run.join("pytorch.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results = fs::read_to_string(root().join("docs/RESULTS.md")).unwrap();
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        assert!(results.lines().any(|l| l == line), "docs/RESULTS.md lacks the line of scripts/loss_table.py:\n{line}");
    }
    // The README shows its first table, the spread per model.
    for line in table.lines().take_while(|l| !l.trim().is_empty()) {
        assert!(readme.lines().any(|l| l == line), "README lacks the line of scripts/loss_table.py:\n{line}");
    }
}

/// The table of the 10,001-step run (docs/RESULTS.md) is the committed CSVs', to the
/// digits shown, for every seed committed: val loss after steps 3,000, 5,000 and 10,000,
/// the final train loss and the gap.
#[test]
fn the_table_of_the_longer_run_comes_from_its_csvs() {
    let results = fs::read_to_string(root().join("docs/RESULTS.md")).unwrap();
    let run = chargpt::run_dir::RunDir::new(root().join("results/shakespeare-cpu-10k"));
    let seeds = run.seed_runs();
    assert_eq!(seeds.len(), 3, "the committed seeds: {seeds:?}");
    let mut rows = 0;
    for (seed, sub) in seeds {
        // The models this seed finished (its top summary counts the same ones).
        for m in ["v8", "v9", "v10"].into_iter().filter(|m| sub.path.join(format!("{m}.summary.json")).exists()) {
            rows += 1;
            let text = fs::read_to_string(sub.path.join(format!("{m}.csv"))).unwrap();
            let at = |step: &str| -> (f64, f64) {
                let row = text.lines().find(|l| l.split(',').next() == Some(step)).unwrap_or_else(|| panic!("{m}: no step {step}"));
                let f: Vec<f64> = row.split(',').skip(1).take(2).map(|v| v.parse().unwrap()).collect();
                (f[0], f[1])
            };
            let ((_, v3), (_, v5), (t10, v10)) = (at("3000"), at("5000"), at("10000"));
            let row = format!("| V{} | {seed} | {v3:.3} | {v5:.3} | {v10:.3} | {t10:.3} | {:.3} |", &m[1..], v10 - t10);
            assert!(results.contains(&row), "docs/RESULTS.md lacks the row {row}");
        }
    }
    assert_eq!(rows, 9, "V8, V9 and V10 of three seeds: {rows} rows");
}
