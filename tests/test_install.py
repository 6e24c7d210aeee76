"""A non-editable install: the wheel carries the configs and the console script runs anywhere."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_wheel_runs_from_any_directory(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("gradexp-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    env = os.environ | {"PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import gradexp; print(gradexp.CONF_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(site / "gradexp" / "conf")
    assert (site / "gradexp" / "conf" / "optimizer" / "adam.yaml").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = [sys.executable, str(site / "bin" / "gradexp")]
    p = subprocess.run(
        [*script, "optimizer=adam", "max_steps=5"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    (run_dir,) = (work / "outputs").glob("*/*")
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 5
