"""`make push` in one clone, `make pull` in a fresh one: the repository's own Makefile targets and
.dvc/config (the default remote ../rgsyn-remote beside the clones) on a throwaway git + DVC repository
whose tiny pipeline has the release layout: shards and a checkpoint from one stage, the card from the
next, a report over the folder."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

MAKE_FILES = """
import os, pathlib, sys
what = sys.argv[1]
if what == "shards":
    for folder, n in (("release/data", 3), ("checkpoints/gen", 2)):
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pathlib.Path(folder, f"part-{i}.bin").write_bytes(os.urandom(5000))
elif what == "card":
    pathlib.Path("release/README.md").write_text("card of " + ",".join(sorted(os.listdir("release/data"))))
else:
    pathlib.Path("report.md").write_text(str(sorted(str(p) for p in pathlib.Path("release").rglob("*"))))
"""

PIPELINE = """
stages:
  synthesize:
    cmd: python make.py shards
    deps: [make.py]
    outs:
      - release/data:
          persist: true
      - checkpoints/gen
  privacy:
    cmd: python make.py card
    deps: [make.py, release/data]
    outs: [release/README.md]
  report:
    cmd: python make.py report
    deps: [make.py, release]
    outs:
      - report.md:
          cache: false
"""


def run(cmd, cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{cmd}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out.stdout


def files(root: Path, *folders: str) -> dict:
    """{path: bytes} of the data files (not git's .gitignore files) under `folders`."""
    return {str(f.relative_to(root)): f.read_bytes() for d in folders for f in sorted((root / d).rglob("*"))
            if f.is_file() and f.name != ".gitignore"}


def test_push_from_one_clone_pull_into_a_fresh_one(tmp_path):
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    make = ["make", "-f", str(ROOT / "Makefile"), "-o", "install", f"VENV={venv}"]  # -o install: this venv as it is
    origin, fresh = tmp_path / "origin", tmp_path / "fresh"
    origin.mkdir()
    run(["git", "init", "-q"], origin, env)
    run([sys.executable, "-m", "dvc", "init", "-q"], origin, env)
    shutil.copy(ROOT / ".dvc/config", origin / ".dvc/config")  # the repository's remote settings
    (origin / "make.py").write_text(MAKE_FILES)
    (origin / "dvc.yaml").write_text(PIPELINE)
    run([sys.executable, "-m", "dvc", "repro", "report"], origin, env)
    run(["git", "add", "-A"], origin, env)
    run(["git", "commit", "-qm", "pipeline run"], origin, env)
    run(make + ["push"], origin, env)
    assert any((tmp_path / "rgsyn-remote").rglob("*")), "nothing reached ../rgsyn-remote"

    run(["git", "clone", "-q", str(origin), str(fresh)], tmp_path, env)
    assert not files(fresh, "release", "checkpoints")  # git alone brings no data
    run(make + ["pull"], fresh, env)
    want = files(origin, "release", "checkpoints")
    assert len(want) == 6 and files(fresh, "release", "checkpoints") == want  # 3 shards, the card, 2 parts
    status = run([sys.executable, "-m", "dvc", "status", "report", "--json"], fresh, env)
    assert json.loads(status) == {}
