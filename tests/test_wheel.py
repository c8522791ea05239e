"""An installed, non-editable wheel of sgdexp runs `python -m sgdexp debug=default` from another directory
(issue 11): the config tree travels inside the package as `sgdexp.conf`.

No download: the wheel is built without build isolation from the tracked files (a stale build/ is
not copied), and installed into a throwaway venv whose only link to the shared environment is a
`.pth` line for its site-packages, so the editable sgdexp installed there is never imported."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_wheel_runs_the_debug_study_from_another_directory(tmp_path):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for name in files:
        if not name.startswith(("build/", "tests/", "scripts/")) and (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, text=True)
    wheel = next((tmp_path / "dist").glob("sgdexp-*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "shared_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, hydra, ...
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, text=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    where = subprocess.run([str(python), "-c", "import sgdexp, sgdexp.config as c; print(sgdexp.__file__); "
                            "print(c.conf_dir())"], cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    module, conf = where.stdout.split()
    assert module.startswith(str(site)) and conf == str(site / "sgdexp" / "conf")
    proc = subprocess.run([str(python), "-m", "sgdexp", "debug=default", "hydra.run.dir=run"], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((elsewhere / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 20
