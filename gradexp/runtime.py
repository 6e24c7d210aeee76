"""How a run uses the machine: torch's intra-op threads, and what torch imports that a run does
not need."""

from __future__ import annotations

import importlib
import os
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch


class DeferredDynamo(types.ModuleType):
    """Stands in for torch._dynamo, torch's compiler (1.8 s to import here: half of a short
    run's start-up), until something needs it. Plain training asks it two things: every
    optimizer step calls torch._dynamo.graph_break() (a no-op outside torch.compile), and the
    first call of Optimizer.add_param_group, zero_grad, state_dict and load_state_dict asks for
    torch._dynamo.disable(fn) (to keep the compiler out of them). Nothing is being compiled
    while torch._dynamo is not imported, so both are answered without it; any other attribute
    imports the real module, which then replaces this one everywhere it is looked up."""

    def __init__(self):
        super().__init__("torch._dynamo")

    @staticmethod
    def graph_break() -> None:
        return None

    @staticmethod
    def disable(fn=None, recursive: bool = True, **kwargs):
        return Undisabled(fn, recursive, kwargs)

    def __getattr__(self, name: str):
        # Introspection (inspect.getmodule asks every module for __file__) must not import it
        # halfway through some other import; a submodule import asks for __path__ and gets it.
        if name.startswith("__") and name.endswith("__") and name != "__path__":
            raise AttributeError(name)
        return getattr(real_dynamo(), name)


class Undisabled:
    """torch._dynamo.disable(fn) before torch._dynamo exists: fn itself, until the real module
    is imported; from then on the real disabled fn."""

    def __init__(self, fn, recursive: bool, kwargs: dict):
        self.fn, self.recursive, self.kwargs, self.real = fn, recursive, kwargs, None

    def __call__(self, *args, **kwargs):
        if self.real is None and isinstance(sys.modules.get("torch._dynamo"), DeferredDynamo):
            return self.fn(*args, **kwargs)
        if self.real is None:
            self.real = real_dynamo().disable(self.fn, self.recursive, **self.kwargs)
        return self.real(*args, **kwargs)


def real_dynamo() -> types.ModuleType:
    """The real torch._dynamo, imported now if only the stand-in was there."""
    module = sys.modules.get("torch._dynamo")
    if isinstance(module, DeferredDynamo):
        del sys.modules["torch._dynamo"]
        if torch.__dict__.get("_dynamo") is module:
            del torch._dynamo
        module = importlib.import_module("torch._dynamo")
    return module


def defer_dynamo() -> bool:
    """Put the stand-in in place unless torch._dynamo is already imported; True if it is."""
    if "torch._dynamo" in sys.modules:
        return isinstance(sys.modules["torch._dynamo"], DeferredDynamo)
    sys.modules["torch._dynamo"] = torch._dynamo = DeferredDynamo()
    return True


@contextmanager
def threads(count: int):
    """torch's intra-op threads for one run (0: torch's default, one per core), restored after.
    benchmarks/threads.py: one thread is as fast as two on this 2-core CPU for the small models
    gradexp trains, except full batches on an idle machine (0.74×), and 2.2–4.2× faster as soon
    as another process competes for the CPU."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def available_bytes(device: torch.device) -> int:
    """Memory free for a run: the GPU's, or the machine's (MemAvailable: what can be had
    without swapping); the total where neither can be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# glibc's mallopt parameters, and the values a run sets (bytes).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP = {M_MMAP_THRESHOLD: 64 << 20, M_TRIM_THRESHOLD: 128 << 20}
_heap_tuned: list[bool] = []


def keep_heap() -> bool:
    """Blocks under 64 MB from the heap, and freed memory kept up to 128 MB, in glibc's malloc:
    by default a block over 128 kB is a fresh mmap, whose pages the kernel zeroes on first touch,
    every step (a group's [K, P] optimizer temporaries, a full batch's activations). Measured
    (benchmarks/heap.py): a 32-member group step 1.4× faster. Once per process; False where the
    C library is not glibc (nothing changed). GRADEXP_MALLOC=default leaves malloc as it is."""
    if _heap_tuned:
        return _heap_tuned[0]
    ok = False
    if os.environ.get("GRADEXP_MALLOC") != "default" and sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = all(libc.mallopt(k, v) == 1 for k, v in HEAP.items())
        except (OSError, AttributeError):
            ok = False
    _heap_tuned.append(ok)
    return ok


def l2_bytes(default: int = 2**20) -> int:
    """The CPU's level-2 cache (per core), as Linux reports it; `default` where it does not."""
    try:
        for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 2**10, "M": 2**20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return default
