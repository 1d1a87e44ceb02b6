"""``python -m benchmarks.agreement``: our scores on CUDA (fp32 and bf16) against our CPU fp32 scores, real shapes.

For each ``--shapes real`` model (built into ``--models-dir`` as ``benchmarks.run`` builds them), one DL19 query
and its first ``--depth`` passages are scored by ``rerank_plugins.CrossEncoder`` on the CPU in fp32, then on CUDA
in fp32 and in bf16; the largest absolute differences are printed (fp32 must stay within ``1e-5``; bf16 within
``tests/scoring/test_gpu.py``'s ``2e-2``, relative to ``max(1, |score|)`` for query likelihood). Exit status 1 when
one does not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks import data
from benchmarks.models import REAL, ensure_model

FP32, BF16 = 1e-5, 2e-2


def scores(path: Path, family: str, device: str, dtype: torch.dtype, pairs: list[tuple[str, str]]) -> np.ndarray:
    from rerank_plugins import CrossEncoder

    family_arg = None if family == "sequence-classification" else family
    model = CrossEncoder(str(path), family=family_arg, device=device, model_kwargs={"dtype": dtype})
    result = np.asarray(model.predict(pairs, batch_size=16, show_progress_bar=False), dtype=np.float64)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=data.DEFAULT_DATA)
    parser.add_argument("--real-models", nargs="+", choices=sorted(REAL), default=sorted(REAL))
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "rerank-plugins-bench-models")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    run = data.load_run(args.data)
    corpus = data.corpus(run)
    ((query, documents),) = data.groups(run, 1, args.depth)
    pairs = [(query, d) for d in documents]
    rows, ok = [], True
    print("| model | CUDA fp32 vs CPU fp32 | CUDA bf16 vs CPU fp32 |\n|---|---:|---:|")
    for name in args.real_models:
        shape = REAL[name]
        path = ensure_model(shape, args.models_dir, corpus, "cuda")
        cpu = scores(path, shape.family, "cpu", torch.float32, pairs)
        fp32 = np.abs(scores(path, shape.family, "cuda", torch.float32, pairs) - cpu)
        bf16 = np.abs(scores(path, shape.family, "cuda", torch.bfloat16, pairs) - cpu)
        scale = np.maximum(1.0, np.abs(cpu)) if shape.family == "query-likelihood" else 1.0
        good = bool(fp32.max() <= FP32 and np.all(bf16 <= BF16 * scale))
        ok &= good
        rows.append({"name": name, "fp32_max_abs_diff": fp32.max(), "bf16_max_abs_diff": bf16.max(), "agree": good})
        print(f"| {name} | {fp32.max():.1e} | {bf16.max():.1e}{'' if good else ' FAIL'} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
