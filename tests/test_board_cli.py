"""python -m gradexp.board: what it serves, run names, every point kept, a clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tbkit
from conftest import ROOT

from gradexp.record.logger import Logger
from gradexp.study.board import Board, logdir, names


def test_names_are_the_shortest_suffixes_that_differ(tmp_path):
    a, b, c = tmp_path / "x" / "sweep", tmp_path / "y" / "sweep", tmp_path / "y" / "run"
    assert names([a, b, c]) == {"x/sweep": a, "y/sweep": b, "y/run": c}
    assert names([a, c]) == {"sweep": a, "run": c}


def test_one_sweep_is_served_as_it_is_and_a_run_gets_its_name(tmp_path):
    sweep, run = tmp_path / "sweep", tmp_path / "sweep" / "0_optimizer=adam,optimizer.lr=0.1"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.1.host").touch()
    assert logdir([sweep]) == (sweep, None)
    assert logdir([sweep, run]) == (sweep, None)  # a run inside a given sweep is there already
    served, tmp = logdir([run])
    assert served == tmp and (tmp / run.name).resolve() == run  # not the nameless run "."


def write_points(run_dir: Path, n: int) -> None:
    logger = Logger(run_dir)
    for step in range(1, n + 1):
        logger.write(step, {"train/loss": 1.0 / step}, elapsed=step * 1e-3)
    logger.close()


@pytest.mark.slow
def test_every_point_is_kept_and_several_dirs_get_readable_names(tmp_path):
    # TensorBoard's default keeps 1,000 points per series; `scalars=0` keeps none.
    long_run, short_run = tmp_path / "a" / "long,run", tmp_path / "b" / "short:run"
    write_points(long_run, 1500)
    write_points(short_run, 3)
    with Board([long_run, short_run]) as board:
        assert sorted(tbkit.wait_for_runs(board.url, 2)) == ["long,run", "short:run"]
        route = "data/plugin/scalars/scalars"
        served = tbkit.get(board.url, route, run="long,run", tag="train/loss")
        assert [s for _, s, _ in served] == list(range(1, 1501))
        layout = tbkit.get(board.url, "data/plugin/custom_scalars/layout")
        assert [c["title"] for c in layout["category"]] == ["loss"]


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


@pytest.mark.slow
def test_ctrl_c_stops_tensorboard_and_its_data_server(tmp_path):
    sweep = tmp_path / "my-sweep"
    write_points(sweep / "0_optimizer=sgd", 5)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    # Ctrl-C's own disposition in the board, whatever the suite's: a shell starts a background
    # job (`pytest &`) with SIGINT ignored, which Popen passes on, and then Python never raises
    # KeyboardInterrupt (the test then failed in a backgrounded suite only)
    ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    board = subprocess.Popen([sys.executable, "-m", "gradexp.board", str(sweep)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=ctrl_c)  # fmt: skip
    try:
        lines = [board.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("gradexp board: TensorBoard on"), lines
        url = lines[0].split()[-1].removesuffix("/")
        assert url.startswith("http://127.0.0.1:") and lines[1].split()[-1].startswith(url)
        assert tbkit.wait_for_runs(url, 1) == ["0_optimizer=sgd"]
        # gradexp.board, TensorBoard and TensorBoard's Rust data server
        assert len(processes_mentioning(str(sweep))) == 3
        board.send_signal(signal.SIGINT)
        # communicate, not wait: the board's stderr (TensorBoard's lines, relayed) is drained
        # while it stops, so a full pipe cannot block its last line ("stopped")
        _, err = board.communicate(timeout=60)
        assert board.returncode == 0 and "stopped" in err
        assert processes_mentioning(str(sweep)) == []
    finally:  # on a failure above: ours alone, found by the test's own temporary path
        if board.poll() is None:
            board.send_signal(signal.SIGINT)
            board.wait(timeout=30)
        for pid in processes_mentioning(str(sweep)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_sigkill_of_the_board_stops_tensorboard_and_its_data_server(tmp_path):
    """kill -9 runs none of gradexp.board's clean-up: TensorBoard is told by the kernel
    (PR_SET_PDEATHSIG) and its data server follows it."""
    sweep = tmp_path / "killed-board"
    write_points(sweep / "0_optimizer=sgd", 5)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    board = subprocess.Popen([sys.executable, "-m", "gradexp.board", str(sweep)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = board.stdout.readline().split()[-1].removesuffix("/")
        tbkit.wait_for_runs(url, 1)
        assert len(processes_mentioning(str(sweep))) == 3
        board.kill()
        board.wait(timeout=30)
        deadline = time.monotonic() + 30
        while processes_mentioning(str(sweep)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_mentioning(str(sweep)) == []
    finally:
        for pid in processes_mentioning(str(sweep)):
            os.kill(pid, signal.SIGKILL)


def test_a_host_beyond_loopback_is_said_out_loud_before_it_binds(tmp_path, capsys):
    """192.0.2.1 (TEST-NET-1) is no interface here: TensorBoard cannot bind it, and the
    warning has been printed by then. No packet leaves the machine."""
    from gradexp.study.board import loopback, main

    write_points(tmp_path / "run", 2)
    assert loopback("127.0.0.2") and loopback("::1") and loopback("localhost")
    assert not loopback("0.0.0.0") and not loopback("example.org")
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert main([str(tmp_path), "--host", "192.0.2.1"]) == 1
    finally:
        signal.signal(signal.SIGTERM, before)  # main() sets its own for `kill`
    err = capsys.readouterr().err
    assert err.startswith("gradexp board: warning: --host 192.0.2.1 serves these runs")
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--bind_all"])
