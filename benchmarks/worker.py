"""The benchmark's subprocess: ``python -m benchmarks.worker SPEC.json RESULT.json``, one side per process.

A spec names a family, ONE side, the model, the timed query groups, the warm-up groups and the mode:

- ``time``: load the side, warm it up on the warm-up groups (other queries than the timed ones, so that the timed
  pairs are unseen: no cache of a tokenizer, an allocator or a kernel library has met them), then time one pass
  over the timed groups. ``benchmarks.run`` starts a fresh process per pass and alternates the sides.
- ``memory``: the same warm-up, then the peak memory that one pass over the groups adds
  (see ``benchmarks/measure.py``).

``warm_up: "full"`` warms up on the timed groups themselves instead (the long-list memory mode, where the
bounded caches of the tokenizers must be full before the peak is measured).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

import torch

from benchmarks.measure import peak_growth_mib
from benchmarks.runners import make_runner


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    groups = [(query, list(documents)) for query, documents in spec["groups"]]
    warm = [(query, list(documents)) for query, documents in spec.get("warm_groups") or []]
    device, side = spec["device"], spec["side"]
    if spec["mode"] == "prepare":
        from benchmarks.backends import prepare

        calibration = [(query, list(documents)) for query, documents in spec.get("calibration") or []]
        prepare(spec["family"], spec["path"], spec["backends"], spec["int8"], calibration)
        return {}
    runner = make_runner(
        spec["family"], side, spec["path"], device, spec["dtype"], spec["batch_size"], spec.get("max_length", 512)
    )
    if spec.get("warm_up") == "full" or not warm:
        warm = groups
    runner(warm)
    _sync(device)
    gc.collect()
    if spec["mode"] == "memory":
        scores, peak, method = peak_growth_mib(lambda: runner(groups), device)
        return {"peak_mib": peak, "memory_method": method, "scores": scores}
    mode = getattr(runner, "mode", spec["dtype"])
    cpu, start = time.process_time(), time.perf_counter()
    scores = runner(groups)
    _sync(device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "scores": scores, "mode": mode}


def main() -> None:
    spec_path, result_path = sys.argv[1], sys.argv[2]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    result = run(spec)
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
