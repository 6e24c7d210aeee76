"""A non-editable install: the wheel carries the configs and the console script runs anywhere."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_editable_install_exposes_the_launchers_to_hydras_plugin_scan(tmp_path):
    """`pip install -e .`: setuptools' editable finder hides namespace packages from Hydra's
    scan unless hydra_plugins itself is a listed package. A fresh venv (no pip) that sees this
    venv's packages through a .pth line gets an editable install of the checkout, then a sweep
    runs from another directory on gradexp's launcher."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    paths = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site, outer = (
        subprocess.run([p, "-c", paths], capture_output=True, text=True, check=True).stdout.strip()
        for p in (python, sys.executable)
    )
    (Path(site) / "outer.pth").write_text(outer + "\n")  # torch, hydra …: not gradexp's finder
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)  # fmt: skip
    scan = (
        "from hydra.core.plugins import Plugins; import gradexp; print(gradexp.__file__); "
        "print(sorted(c for c in Plugins.instance().class_name_to_class if 'gradexp' in c))"
    )
    found = subprocess.run(
        [python, "-c", scan],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": ""},
        check=True,
    ).stdout.splitlines()
    assert found[0] == str(ROOT / "gradexp" / "__init__.py")
    assert "hydra_plugins.gradexp_launchers.inprocess.InProcessLauncher" in found[1]
    sweep = subprocess.run([python, "-m", "gradexp", "-m", "optimizer=sgd,adam", "data=iris",
                            "max_steps=2", "hydra.sweep.dir=s"], cwd=tmp_path, capture_output=True,
                           text=True, env=os.environ | {"PYTHONPATH": ""})  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    launcher = tmp_path / "s" / "0_optimizer=sgd" / ".hydra" / "hydra.yaml"
    assert "gradexp_launchers.inprocess.InProcessLauncher" in launcher.read_text()
