"""The ONNX Runtime / OpenVINO sides of ``benchmarks.run --backend``: ours, the bare runtime, sentence-transformers'.

- ``ours-onnx``, ``ours-openvino`` (fp32) and ``ours-onnx-int8`` (dynamic), ``ours-openvino-int8`` (static,
  calibrated on pairs of other queries than the timed ones): ``rerank_plugins.CrossEncoder(backend=...)`` loading the
  files :func:`prepare` wrote beside the model (``model_kwargs={"file_name": ...}``), as a user would.
- ``bare-onnx``, ``bare-openvino`` (sequence classification): the same exported file run by hand, the minimal loop a
  user could write (length-sorted batches of 32, the tokenizer pads each, one ``session.run``): the reference for our
  per-call overhead.
- ``st-openvino``: sentence-transformers' own ``CrossEncoder(backend="openvino")`` (optimum-intel) on OUR exported
  file, run in a side environment (``--st-python``): its ``[openvino]`` extra resolves only to transformers <= 5.5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import Group

FP32_FILES = {"onnx": "onnx/model.onnx", "openvino": "openvino/openvino_model.xml"}


def int8_file(backend: str) -> str:
    """The int8 file of ``backend``: ONNX's is the one ``int8=True`` loads on this CPU (a new default writes a new
    file); OpenVINO's is calibrated on the benchmark's own pairs, not the built-in ones."""
    from rerank_plugins.backends import options

    return options.int8_file("onnx") if backend == "onnx" else "openvino/openvino_model_int8.xml"


def side_file(side: str) -> tuple[str, str]:
    """``(backend, file_name)`` of a side such as ``ours-openvino-int8``."""
    backend = "onnx" if "onnx" in side else "openvino"
    return backend, (int8_file(backend) if side.endswith("int8") else FP32_FILES[backend])


def backend_kwargs(side: str) -> dict[str, Any]:
    backend, file_name = side_file(side)
    return {"backend": backend, "model_kwargs": {"file_name": file_name, "export": False}}


def prepare(family: str, path: str, backends: list[str], int8: bool, calibration: list[Group]) -> None:
    """Export each backend's fp32 file (and int8 files) beside the model once; cached between runs."""
    from rerank_plugins import CrossEncoder, export_dynamic_quantized_onnx_model, export_static_quantized_openvino_model
    from rerank_plugins.backends.options import cpu_int8_config

    family_arg = None if family == "sequence-classification" else family
    for backend in backends:
        fp32, quantized = FP32_FILES[backend], int8_file(backend)
        if not (Path(path) / fp32).exists():  # only the exported file, beside the checkpoint (no modules.json)
            CrossEncoder(path, family=family_arg, backend=backend)[0].save_backend(path)
        if int8 and not (Path(path) / quantized).exists():
            model = CrossEncoder(path, family=family_arg, backend=backend)
            if backend == "onnx":
                export_dynamic_quantized_onnx_model(model, cpu_int8_config(), path)
            else:
                pairs = [(query, document) for query, documents in calibration for document in documents]
                export_static_quantized_openvino_model(model, None, path, calibration_pairs=pairs, file_suffix="int8")


def bare_runtime(
    backend: str, path: str, max_length: int, batch_size: int
) -> Callable[[list[Group]], list[list[float]]]:
    """The exported classifier run by hand: tokenizer + session, length-sorted batches, sigmoid of the logit."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    file = str(Path(path) / FP32_FILES[backend])
    if backend == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
        names = [node.name for node in session.get_inputs()]

        def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
            return session.run(None, {name: inputs[name] for name in names})[0]
    else:
        import openvino as ov

        compiled = ov.Core().compile_model(
            file, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        )
        request = compiled.create_infer_request()
        names = [port.get_node().get_friendly_name() for port in compiled.inputs]

        def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
            return np.array(request.infer({name: inputs[name] for name in names})[0])

    def score(groups: list[Group]) -> list[list[float]]:
        results = []
        for query, documents in groups:
            lengths = [len(ids) for ids in tokenizer([query] * len(documents), documents, truncation=True,
                                                      max_length=max_length)["input_ids"]]  # fmt: skip
            order = sorted(range(len(documents)), key=lambda i: -lengths[i])
            scores = [0.0] * len(documents)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                encoded = tokenizer([query] * len(batch), [documents[i] for i in batch], padding=True,
                                    truncation=True, max_length=max_length, return_tensors="np")  # fmt: skip
                logits = run({name: encoded[name].astype(np.int64) for name in names})[:, 0]
                for i, logit in zip(batch, logits, strict=True):
                    scores[i] = float(1 / (1 + np.exp(-logit)))
            results.append(scores)
        return results

    return score


def st_openvino(path: str, max_length: int, batch_size: int) -> Callable[[list[Group]], list[list[float]]]:
    """sentence-transformers' own OpenVINO backend on our exported file (runs in the side environment)."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(path, backend="openvino", max_length=max_length,
                         model_kwargs={"file_name": FP32_FILES["openvino"]})  # fmt: skip

    def score(groups: list[Group]) -> list[list[float]]:
        return [
            model.predict([(q, d) for d in docs], batch_size=batch_size, show_progress_bar=False).tolist()
            for q, docs in groups
        ]

    return score


def backend_sides(family: str, backends: list[str], int8: bool, st_python: str | None) -> list[str]:
    """The extra sides of a family's row for ``--backend`` (and ``--int8``, ``--st-python``)."""
    sides = []
    for backend in backends:
        sides.append(f"ours-{backend}")
        if int8:
            sides.append(f"ours-{backend}-int8")
        if family == "sequence-classification":
            sides.append(f"bare-{backend}")
    if st_python and "openvino" in backends and family == "sequence-classification":
        sides.append("st-openvino")
    return sides


def compare_backends(row: dict[str, Any], sides: list[str]) -> dict[str, Any]:
    """Per side: speed against torch (ours) and the alternative, per pass too (the spread), and its agreement with
    ours in fp32 (max abs diff) or, for int8, per query Spearman and top-10 overlap."""
    from scipy.stats import spearmanr

    ours = row["ours"]
    reference = [np.asarray(s, dtype=np.float64) for s in ours["scores"]]
    out: dict[str, Any] = {}
    for side in sides:
        figures = row[side]
        scores = [np.asarray(s, dtype=np.float64) for s in figures["scores"]]
        result: dict[str, Any] = {
            "vs_torch": ours["seconds"] / figures["seconds"],
            "vs_alternative": row["alternative"]["seconds"] / figures["seconds"],
            "vs_torch_per_pass": [a / b for a, b in zip(ours["times"], figures["times"], strict=False)],
            "vs_alternative_per_pass": [
                a / b for a, b in zip(row["alternative"]["times"], figures["times"], strict=False)
            ],
            "max_abs_diff": float(max(np.abs(a - b).max() for a, b in zip(scores, reference, strict=True))),
        }
        if "int8" in side:
            result["spearman"] = [float(spearmanr(a, b).statistic) for a, b in zip(scores, reference, strict=True)]
            result["top10_overlap"] = [len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10
                                       for a, b in zip(scores, reference, strict=True)]  # fmt: skip
        bare = f"bare-{side.removeprefix('ours-')}"
        if bare in row:
            result["overhead_vs_bare"] = figures["seconds"] / row[bare]["seconds"] - 1
            result["overhead_vs_bare_per_pass"] = [a / b - 1 for a, b in zip(figures["times"], row[bare]["times"],
                                                                              strict=False)]  # fmt: skip
        out[side] = result
    return out


def int8_matmul_ops(size: int = 2048, repeats: int = 7) -> float:
    """Dense int8 matmul throughput (ops/s) of ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32) on this CPU,
    ``size x size``: the int8 ceiling the int8 sides' fraction is taken against."""
    import time

    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])
    b = helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])
    c = helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "mm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 255, (size, size), dtype=np.uint8),
             "b": rng.integers(-127, 127, (size, size), dtype=np.int8)}  # fmt: skip
    onnx.checker.check_model(model)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def print_backends(info: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The backend table: pairs/s, speed-ups (best pass; min-max over passes), agreement, fraction of the peak."""
    rows = [row for row in rows if "backends" in row]
    if not rows:
        return
    int8_peak = info.get("int8_matmul_ops")
    peaks = f"fp32 dense matmul {info['matmul_flops'] / 1e12:.3f} TFLOP/s"
    if int8_peak:
        peaks += f"; int8 MatMulInteger {int8_peak / 1e12:.3f} TOP/s"
    print(f"\nBackends ({peaks}; int8 sides' fraction is of the int8 figure)")
    print("| model | side | pairs/s | vs torch (passes) | vs alternative (passes) | overhead vs bare | agreement | "
          "TFLOP/s (frac) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        for side, result in row["backends"].items():
            figures = row[side]

            def spread(values: list[float]) -> str:
                return f"{min(values):.2f}-{max(values):.2f}" if values else "-"

            overhead = result.get("overhead_vs_bare")
            overhead_text = "-" if overhead is None else (
                f"{overhead:+.1%} ({spread(result['overhead_vs_bare_per_pass'])})")  # fmt: skip
            if "spearman" in result:
                agreement = (f"Spearman {np.mean(result['spearman']):.3f}, top-10 "
                             f"{np.mean(result['top10_overlap']):.2f}")  # fmt: skip
            else:
                agreement = f"max diff {result['max_abs_diff']:.1e}"
            print(f"| {row['name']} | {side} | {figures['pairs_per_s']:.1f} | {result['vs_torch']:.2f}x "
                  f"({spread(result['vs_torch_per_pass'])}) | {result['vs_alternative']:.2f}x "
                  f"({spread(result['vs_alternative_per_pass'])}) | {overhead_text} | {agreement} | "
                  f"{figures['model_tflop_per_s']:.3g} ({figures['flop_fraction']:.1%}) |")  # fmt: skip
