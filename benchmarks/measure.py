"""How the benchmark measures: peak memory of a call, and the machine's dense matmul throughput.

Peak memory (CPU) is the growth of the process's resident set during the measured calls, in a process of its
own: Linux's ``VmHWM`` (peak RSS) is reset through ``/proc/self/clear_refs`` after the model is loaded and warmed
up, so ``VmHWM - VmRSS`` at that point is what the scoring itself needed on top of the loaded model. The worker
runs with ``MALLOC_MMAP_THRESHOLD_`` set (see :data:`MALLOC_ENV`) so that glibc returns every large buffer to the
system when it is freed: without it, freed memory kept by the allocator hides later allocations. Where
``clear_refs`` cannot be written, a thread samples ``VmRSS`` every millisecond instead (the method is reported).
On CUDA the figure is ``torch.cuda.max_memory_allocated`` above the allocated memory at the start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
"""glibc settings of the memory workers: buffers >= 128 KiB are mmap'ed and unmapped on free."""


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # 5: reset the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


class _Sampler(threading.Thread):
    """Fallback: polls VmRSS every millisecond and keeps the maximum."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.stop = _status_kib("VmRSS"), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, _status_kib("VmRSS"))
            time.sleep(0.001)


def peak_growth_mib(call: Callable[[], Any], device: str) -> tuple[Any, float, str]:
    """Run ``call`` once; return its result, the peak memory it added (MiB), and the method used."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        result = call()
        torch.cuda.synchronize()
        return result, (torch.cuda.max_memory_allocated() - start) / 2**20, "torch.cuda.max_memory_allocated"
    baseline = _status_kib("VmRSS")
    if _reset_peak():
        result = call()
        return result, max(_status_kib("VmHWM") - baseline, 0) / 1024, "VmHWM after clear_refs"
    sampler = _Sampler()
    sampler.start()
    try:
        result = call()
    finally:
        sampler.stop.set()
        sampler.join()
    return result, max(sampler.peak - baseline, 0) / 1024, "VmRSS sampled every 1 ms"


def matmul_flops(
    device: str = "cpu", dtype: torch.dtype = torch.float32, size: int | None = None, repeats: int = 7
) -> float:
    """Dense ``torch.mm`` throughput of ``size x size`` matrices in FLOP/s: the best of ``repeats`` runs.

    ``size`` defaults to 2048 on a CPU and 8192 on CUDA (a 2048 product takes microseconds on a large GPU, too
    short to time against the launch).
    """
    size = size or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
