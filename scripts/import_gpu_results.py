"""Copies what `scripts/gpu_checks.sh` wrote on a GPU machine into results/cuda/<name>/:

    python3 scripts/import_gpu_results.py FOLDER NAME

FOLDER holds the files of one call (checks.txt, summary.txt, bench-cuda-*.csv and
blog-runs.tar.gz, or an earlier layout's blog-run folder); NAME is the folder under
results/cuda/ (e.g. 2026-12-04-fc48ccd). The runs are unpacked without weights, and every
path the GPU machine recorded (the corpus's absolute path in run.json and the models'
JSON, the checkpoint paths in the logs) is made relative to the repository, so that
nothing of that machine's file system is kept. Each run's progress lines (carriage returns)
are dropped from its log, and so is a libtorch deprecation warning chargpt up to 168f260
caused at every step."""
import json
import pathlib
import re
import shutil
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def machine_root(folder):
    """The repository's path on the GPU machine, read off a run.json's corpus."""
    for run_json in sorted(folder.rglob("run.json")):
        corpus = (json.loads(run_json.read_text()).get("corpus") or {})
        absolute, given = corpus.get("absolute", ""), corpus.get("path", "")
        if absolute.endswith(given) and absolute != given:
            return absolute[: len(absolute) - len(given)]
    return None


def relative_paths(folder, root):
    for f in folder.rglob("*"):
        if f.suffix not in (".json", ".csv", ".log", ".txt") or not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if root:
            text = text.replace(root, "")
        # The call's output folder on that machine (gpu_checks.sh writes beside it).
        text = re.sub(r"/(?:root|tmp|home/[\w.-]+)(?:/[\w.-]+)*?/out/(?:\.\./)?", "", text)
        if f.suffix == ".log":
            # The progress bar's redraws: keep each line's last state. libtorch's warning
            # about pin_memory's device argument (chargpt up to 168f260 passed one), which
            # it printed at every step, goes too.
            lines = (line.split("\r")[-1] for line in text.split("\n"))
            text = "\n".join(line for line in lines if "Warning: The argument 'device' of Tensor." not in line)
        f.write_text(text)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, name = pathlib.Path(sys.argv[1]), sys.argv[2]
    dest = ROOT / "results" / "cuda" / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix in (".csv", ".txt", ".md"):
            shutil.copy(f, dest / f.name)
        elif f.is_dir():
            shutil.copytree(f, dest / f.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors"))
    tar = src / "blog-runs.tar.gz"
    if tar.exists():
        with tarfile.open(tar) as t:
            members = [m for m in t.getmembers() if m.isfile() and not m.name.endswith(".safetensors")
                       and not re.search(r"(^|/)(driver\.pid|ALL_DONE)$", m.name)]
            t.extractall(dest, members=members, filter="data")
        # gpu-runs/<run>/... -> runs/<run>/...
        unpacked = dest / "gpu-runs"
        if unpacked.exists():
            shutil.rmtree(dest / "runs", ignore_errors=True)
            unpacked.rename(dest / "runs")
    relative_paths(dest, machine_root(dest))
    print(f"wrote {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
