"""The benchmark's subprocess: ``python -m benchmarks.worker SPEC.json RESULT.json``.

A spec names a family, the sides to load, the model, the query groups and the mode:

- ``time``: load every side, warm each up, then run the groups ``repeats`` times, alternating which side goes
  first, so that both see the same machine load; each side keeps its best time.
- ``memory``: load one side, warm it up, and measure the peak memory one pass over the groups adds
  (see ``benchmarks/measure.py``). Each side gets a fresh process, so neither inherits the other's allocations.
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


def _warm_up(groups: list) -> list:
    """A small first call (one query, 4 passages) that loads kernels and pages in every weight."""
    query, documents = groups[0]
    return [(query, documents[:4])]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    groups = [(query, list(documents)) for query, documents in spec["groups"]]
    device = spec["device"]
    runners = {
        side: make_runner(
            spec["family"], side, spec["path"], device, spec["dtype"], spec["batch_size"], spec.get("max_length", 512)
        )
        for side in spec["sides"]
    }
    for runner in runners.values():  # "full": a whole pass first, so that bounded caches (tokenizers') are filled
        runner(groups if spec.get("warm_up") == "full" else _warm_up(groups))
    gc.collect()
    if spec["mode"] == "memory":
        (side,) = runners
        scores, peak, method = peak_growth_mib(lambda: runners[side](groups), device)
        return {side: {"peak_mib": peak, "memory_method": method, "scores": scores}}
    results: dict[str, dict[str, Any]] = {side: {"times": []} for side in runners}
    sides = list(runners)
    for repeat in range(spec["repeats"]):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            _sync(device)
            start = time.perf_counter()
            results[side]["scores"] = runners[side](groups)
            _sync(device)
            results[side]["times"].append(time.perf_counter() - start)
    return results


def main() -> None:
    spec_path, result_path = sys.argv[1], sys.argv[2]
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    result = run(spec)
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
