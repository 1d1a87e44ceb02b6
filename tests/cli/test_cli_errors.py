"""The command line a person meets: fast answers without torch, one-line errors, quiet loading.

The commands that must not import torch or transformers run in a fresh interpreter, which reports what it
imported; the others run in-process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import DATA, ROOT

from rerank_plugins import __version__, trec
from rerank_plugins.cli import main

SAMPLE, QRELS, BM25 = DATA / "dl19-sample.json", DATA / "qrels.txt", DATA / "bm25-top100.trec"
HEAVY = ("torch", "transformers", "sentence_transformers")

PROBE = f"""
import sys
from rerank_plugins.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as stop:
    status = stop.code
heavy = [name for name in {HEAVY!r} if name in sys.modules]
print("IMPORTED:" + ",".join(heavy), file=sys.stderr)
raise SystemExit(status)
"""


def cli_without_torch(*argv: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run ``main(argv)`` in a fresh interpreter; fail if it imported torch or transformers. (status, out, err)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120, cwd=cwd or ROOT
    )
    *err_lines, imported = result.stderr.rstrip("\n").split("\n")
    assert imported.startswith("IMPORTED:"), result.stderr
    assert imported == "IMPORTED:", f"{argv} imported {imported.removeprefix('IMPORTED:')}"
    return result.returncode, result.stdout, "".join(line + "\n" for line in err_lines)


def assert_one_line(err: str, *parts: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("rerank-plugins"), err
    for part in parts:
        assert part in err, err


# -- 8: no torch for --help, --version, evaluate and argument errors ---------------------------------------------
@pytest.mark.parametrize("argv", [["--help"], ["rank", "--help"], ["rerank-run", "--help"], ["tiny-model", "--help"]])
def test_help_imports_no_torch(argv: list[str]) -> None:
    status, out, _ = cli_without_torch(*argv)
    assert status == 0 and "usage: rerank-plugins" in out


def test_version_imports_no_torch() -> None:
    status, out, _ = cli_without_torch("--version")
    assert status == 0 and out == f"rerank-plugins {__version__}\n"


def test_evaluate_imports_no_torch() -> None:
    status, out, _ = cli_without_torch("evaluate", "--qrels", str(QRELS), str(BM25), "--metrics", "nDCG@10")
    assert status == 0 and out.splitlines()[1].split() == [str(BM25), "0.5058", "43/43"]


# -- 9 and 9b: mistakes are one line, found before the model loads -------------------------------------------------
RANK = ["rank", "--model", "some/model", "--query", "q"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*RANK, "--batch-size", "0", "d"], "argument --batch-size: must be at least 1, got 0"),
        ([*RANK, "--top-k", "-1", "d"], "argument --top-k: must be at least 1, got -1"),
        ([*RANK, "--max-length", "-5", "d"], "argument --max-length: must be at least 1, got -5"),
        ([*RANK, "--max-length", "0", "d"], "argument --max-length: must be at least 1, got 0"),
        ([*RANK, "--max-length", "-1", "d"], "argument --max-length: must be at least 1, got -1"),
        ([*RANK, "--window-size", "0", "d"], "argument --window-size: must be at least 1, got 0"),
        ([*RANK, "--batch-size", "many", "d"], "argument --batch-size: expected a whole number, got 'many'"),
        ([*RANK, "--window-stride", "8", "d"], "--window-stride needs --window-size"),
        ([*RANK, "--window-size", "8", "--window-stride", "9", "d"], "--window-stride 9 is larger than --window-size"),
        (["rank", "--query", "q", "d"], "the following arguments are required: --model"),
        (["rerank-run", "--model", "m", "--run", str(SAMPLE)], "the following arguments are required: --output"),
    ],
)
def test_argument_mistakes_are_one_line_without_torch(argv: list[str], message: str) -> None:
    status, out, err = cli_without_torch(*argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert err.startswith((f"rerank-plugins {argv[0]}: error: ", "rerank-plugins: error: ")), err


def test_rerank_run_without_topics_is_one_line_before_the_model(tmp_path: Path) -> None:
    status, _, err = cli_without_torch(
        "rerank-run",
        "--model",
        "some/model",
        "--run",
        str(BM25),
        "--corpus",
        "c.jsonl",
        "--output",
        str(tmp_path / "o"),
    )
    assert status == 2
    assert_one_line(err, "a TREC run needs --topics (qid<TAB>query) and --corpus")


def test_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    status, _, err = cli_without_torch(*RANK[:2], str(tmp_path), *RANK[3:], "d")
    assert status == 2
    assert_one_line(err, f"{tmp_path} is a directory but not a model: it has no config.json")
    status, _, err = cli_without_torch(*RANK[:2], str(tmp_path / "nowhere"), *RANK[3:], "d")
    assert status == 2
    assert_one_line(err, f"{tmp_path / 'nowhere'}: no such model directory")


def test_run_mistakes_are_found_before_the_model_loads(tmp_path: Path) -> None:
    """A model that does not exist would fail at loading: each of these mistakes must be reported first."""
    common = ["rerank-run", "--model", "acme-labs/never-loaded", "--run"]
    empty = tmp_path / "empty.trec"
    empty.write_text("\n\n")
    status, _, err = cli_without_torch(
        *common, str(empty), "--topics", "t", "--corpus", "c", "--output", str(tmp_path / "o.trec")
    )
    assert status == 2
    assert_one_line(err, f"{empty}: the run is empty: nothing to re-rank")

    latin1 = tmp_path / "latin1.trec"
    latin1.write_bytes("1 Q0 a 1 2.0 bm25\n1 Q0 caf\xe9 2 1.0 bm25\n".encode("latin-1"))
    status, _, err = cli_without_torch(
        *common, str(latin1), "--topics", "t", "--corpus", "c", "--output", str(tmp_path / "o.trec")
    )
    assert status == 2
    assert_one_line(err, f"{latin1}:2: not UTF-8 text (byte 0xe9 at column 9)")

    status, _, err = cli_without_torch(*common, str(SAMPLE), "--output", str(tmp_path))
    assert status == 2
    assert_one_line(err, f"{tmp_path}: the output is a directory")

    status, _, err = cli_without_torch(*common, str(SAMPLE), "--output", str(tmp_path / "no" / "o.trec"))
    assert status == 2
    assert_one_line(err, f"{tmp_path / 'no'}: no such directory for the output")

    hits = json.loads(SAMPLE.read_text())[:1]
    hits[0]["hits"][3]["docid"] = "doc 3"
    spaced = tmp_path / "spaced.json"
    spaced.write_text(json.dumps(hits))
    status, _, err = cli_without_torch(*common, str(spaced), "--output", str(tmp_path / "o.trec"))
    assert status == 2
    assert_one_line(err, f"{spaced}: entry 0, hit 3: the docid 'doc 3' is empty or contains whitespace")
    assert not (tmp_path / "o.trec").exists()


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's /sys, where no one may create files")
def test_an_output_where_nothing_can_be_written(capsys: pytest.CaptureFixture[str]) -> None:
    """sysfs refuses new files even to root (tests may run as root, so a chmod-ed directory would not do)."""
    argv = ["rerank-run", "--model", "acme-labs/never-loaded", "--run", str(SAMPLE), "--output", "/sys/run.trec"]
    assert main(argv) == 2
    assert_one_line(capsys.readouterr().err, "/sys/run.trec: cannot write the output there (")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write in any directory")
def test_an_output_in_a_read_only_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    argv = ["rerank-run", "--model", "acme-labs/never-loaded", "--run", str(SAMPLE), "--output", str(locked / "o")]
    assert main(argv) == 2
    assert_one_line(capsys.readouterr().err, f"{locked / 'o'}: cannot write the output there (Permission denied)")


def test_device_this_machine_lacks_is_one_line(tiny_paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    device = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    assert main(["rank", "--model", tiny_paths["monot5"], "--device", device, "--query", "q", "d"]) == 2
    assert_one_line(capsys.readouterr().err, f"--device {device}: ")
    assert main(["rank", "--model", tiny_paths["monot5"], "--device", "gpu7", "--query", "q", "d"]) == 2
    assert_one_line(capsys.readouterr().err, "--device 'gpu7' is not a device name")


def test_unknown_family_is_one_line(tiny_paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank", "--model", tiny_paths["monot5"], "--family", "t5ish", "--query", "q", "d"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'t5ish'" in err and "monot5" in err, err
    assert main(["tiny-model", "--family", "t5ish", "x"]) == 2
    assert_one_line(capsys.readouterr().err, "unknown kind 't5ish' for tiny-model --family; choose from monot5")


# -- 10: tiny-model prints the directory and nothing else --------------------------------------------------------
def test_tiny_model_prints_exactly_the_directory(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The tokenizer trainer writes blank lines to file descriptor 1 from native code: none may reach stdout."""
    assert main(["tiny-model", "--family", "monot5", str(tmp_path / "tiny")]) == 0
    out, err = capfd.readouterr()
    assert out == f"{tmp_path / 'tiny'}\n"
    assert "Writing model shards" not in err


# -- 11: quiet loading, and an unreachable hub fails fast -----------------------------------------------------------
def test_loading_is_quiet_by_default_and_verbose_on_request(tiny_paths: dict[str, str]) -> None:
    """A fresh process with progress bars allowed: no "Loading weights" bar unless --verbose."""
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_DISABLE_PROGRESS_BARS"}
    command = [sys.executable, "-m", "rerank_plugins", "rank", "--model", tiny_paths["listconranker"], "--query", "q"]
    quiet = subprocess.run([*command, "a", "b"], capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and len(quiet.stdout.splitlines()) == 3
    loud = subprocess.run([*command, "--verbose", "a", "b"], capture_output=True, text=True, timeout=300, env=env)
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr and "LOAD REPORT" in loud.stderr


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_load_reports_are_dropped_and_random_weights_summarised(
    tiny_paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint without a classification head, loaded as a classifier: its random head is one warning line."""
    from transformers import BertForSequenceClassification, BertModel

    from rerank_plugins.cli import quiet_loading

    recorder = Recorder()
    reporting = logging.getLogger("transformers.modeling_utils")
    reporting.addHandler(recorder)
    try:
        BertModel.from_pretrained(tiny_paths["sequence-classification"])  # unexpected keys: a report
        assert len(recorder.messages) == 1 and "LOAD REPORT" in recorder.messages[0]
        with quiet_loading():
            BertModel.from_pretrained(tiny_paths["sequence-classification"])  # only unexpected keys: nothing to say
            BertForSequenceClassification.from_pretrained(tiny_paths["listconranker"], num_labels=1)  # no head
    finally:
        reporting.removeHandler(recorder)
    assert len(recorder.messages) == 1  # nothing reached transformers' handlers while quiet
    err = capsys.readouterr().err
    assert_one_line(
        err, "BertForSequenceClassification from", "2 weight(s) not in the checkpoint, initialised at random"
    )
    assert "classifier.bias, classifier.weight" in err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_hub_fails_fast_with_one_line(tmp_path: Path) -> None:
    """Today's huggingface_hub retries a refused connection for almost two minutes; the CLI probes once."""
    env = {key: value for key, value in os.environ.items() if "PROXY" not in key.upper() and key != "HF_HUB_OFFLINE"}
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused at once
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "rank", "--model", "acme-labs/no-such-reranker", "--query", "q", "d"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    *err_lines, imported = result.stderr.rstrip("\n").split("\n")
    assert result.returncode == 2 and imported == "IMPORTED:", result.stderr
    assert_one_line(
        "".join(line + "\n" for line in err_lines),
        f"could not load model 'acme-labs/no-such-reranker': the Hugging Face hub ({endpoint}) cannot be reached",
        "not in the local cache",
    )


# -- 11b: Ray without usage statistics --------------------------------------------------------------------------
def test_import_ray_switches_usage_statistics_off(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray.data", reason="Ray Data is not installed")
    from rerank_plugins import ray as ray_engine

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    ray_engine.import_ray()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # a user's explicit choice stays
    ray_engine.import_ray()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"


def test_rank_llm_ids_with_whitespace_never_reach_the_output(
    tmp_path: Path, tiny_paths: dict[str, str], load_tiny: Callable
) -> None:
    """6b end to end: without the check, the run was written with 7 columns and its own --resume refused it."""
    entries = json.loads(SAMPLE.read_text())
    entries[1]["hits"][0]["qid"] = f"{entries[1]['hits'][0]['qid']} b"
    spaced = tmp_path / "spaced.json"
    spaced.write_text(json.dumps(entries))
    with pytest.raises(trec.InputError, match=r"entry 1, hit 0: the qid '104861 b' is empty or contains whitespace"):
        trec.read_rank_llm_json(spaced)
    argv = ["rerank-run", "--model", tiny_paths["sequence-classification"], "--run", str(spaced), "--quiet"]
    assert main([*argv, "--output", str(tmp_path / "o.trec")]) == 2
    assert not (tmp_path / "o.trec").exists() and not (tmp_path / "o.trec.partial").exists()
