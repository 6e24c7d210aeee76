"""How a run uses the machine: threads, and the torch modules a run does not import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_experiment

OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")
TRAIN = f"""
import json, sys, torch
OPTIMIZERS = {OPTIMIZERS!r}
if sys.argv[1] == "deferred":
    from gradexp.runtime import defer_dynamo
    assert defer_dynamo()
out = {{}}
for name in OPTIMIZERS:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    opt = getattr(torch.optim, name)(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9 ** s)
    x = torch.randn(8, 3)
    for _ in range(5):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        sched.step()
    opt.load_state_dict(opt.state_dict())
    out[name] = [p.double().flatten().tolist() for p in model.parameters()]
out["dynamo"] = type(sys.modules.get("torch._dynamo")).__name__
print(json.dumps(out))
"""


def test_deferring_torch_dynamo_changes_no_number_and_imports_it_when_asked():
    runs = {}
    for mode in ("deferred", "plain"):
        out = subprocess.run([sys.executable, "-c", TRAIN, mode], capture_output=True,
                             text=True, cwd=ROOT, check=True)  # fmt: skip
        runs[mode] = json.loads(out.stdout)
    assert runs["deferred"].pop("dynamo") == "DeferredDynamo"  # never imported by training
    assert runs["plain"].pop("dynamo") == "module"
    assert runs["deferred"] == runs["plain"]  # bitwise: the same floats
    later = (
        "from gradexp.runtime import defer_dynamo; import sys, torch; defer_dynamo(); "
        "import torch._dynamo.config; f = torch.compile(lambda x: x * 2, backend='eager');"
        "print(type(sys.modules['torch._dynamo']).__name__, f(torch.ones(2)).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", later], capture_output=True, text=True,
                         cwd=ROOT, check=True)  # fmt: skip
    assert out.stdout.split() == ["module", "[2.0,", "2.0]"]


@pytest.mark.slow
def test_a_one_step_run_imports_no_sklearn_sympy_or_compiler(tmp_path):
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print([m for m in ('sklearn', 'sympy', 'torch._dynamo', "
            "'torch._inductor', 'matplotlib') if type(sys.modules.get(m)).__name__ == 'module']))\n"
            "sys.argv = ['gradexp', 'max_steps=1', 'progress=false']\n"
            "runpy.run_module('gradexp', run_name='__main__')")  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin", "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_threads_apply_to_the_run_and_are_restored(run_dir, monkeypatch):
    seen = []
    import gradexp.train

    real = gradexp.train.forward_backward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(gradexp.train, "forward_backward", spy)
    before = torch.get_num_threads()
    run_experiment(run_dir, "data=iris", "max_steps=2", "threads=1")
    assert set(seen) == {1} and torch.get_num_threads() == before
    seen.clear()
    run_experiment(run_dir.parent / "r2", "data=iris", "max_steps=2", "threads=0")
    assert set(seen) == {before}  # 0: torch's own default, untouched


HEAP = """
import ctypes, json, sys
from gradexp.runtime import keep_heap

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
tuned = keep_heap()
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)  # 8 MB: an mmap of its own under glibc's default threshold
mmapped = libc.mallinfo2().hblks - before
print(json.dumps({"tuned": tuned, "again": keep_heap(), "mmapped": mmapped}))
libc.free(ctypes.c_void_p(block))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
@pytest.mark.parametrize("setting", ["", "default"])
def test_keep_heap_serves_big_blocks_from_the_heap_unless_opted_out(setting):
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("no glibc ≥ 2.33 (mallinfo2)")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin", "GRADEXP_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", HEAP], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True)  # fmt: skip
    got = json.loads(out.stdout)
    tuned = setting != "default"
    assert got == {"tuned": tuned, "again": tuned, "mmapped": 0 if tuned else 1}


SETTLED = """
import gc, json, sys, weakref
from gradexp.startup import import_settled

passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
assert "torch" not in sys.modules
import_settled("gradexp.run")
during = list(passes)
frozen, young = gc.get_freeze_count(), len(gc.get_objects())

class Node:
    pass

node = Node()
node.me = node  # a cycle: only the collector frees it
ref = weakref.ref(node)
del node
gc.collect()
import_settled("gradexp.vector.groups")  # later calls: an import, nothing frozen again
print(json.dumps({"torch": "torch" in sys.modules, "during": during, "frozen": frozen,
                  "young": young, "freed": ref() is None, "enabled": gc.isenabled(),
                  "again": gc.get_freeze_count() <= frozen,
                  "groups": "gradexp.vector.groups" in sys.modules}))
"""


def test_import_settled_imports_torch_uncollected_freezes_it_and_still_frees_later_cycles():
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"}
    out = subprocess.run([sys.executable, "-c", SETTLED], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True)  # fmt: skip
    got = json.loads(out.stdout)
    assert got["torch"] and got["groups"] and got["enabled"] and got["freed"] and got["again"]
    assert got["during"] == []  # no collection walked the heap while torch was imported
    # torch's objects are out of the collector's reach: what it still tracks is a small rest
    assert got["frozen"] > 100_000 and got["young"] < got["frozen"] / 10
