"""Reading training files into ``datasets.Dataset`` columns in the order ``CrossEncoderTrainer`` expects."""

from __future__ import annotations

import json
import os
from typing import Any

from datasets import Dataset

DISTILLATION_FIELDS = ("query", "contents", "true_logit", "false_logit")


def load_distillation_file(path: str | os.PathLike[str]) -> Dataset:
    """InRanker's distillation file (JSON lines ``{query, contents, true_logit, false_logit}``) as a dataset.

    Columns: ``query``, ``document`` and ``label`` = the teacher's ``[false_logit, true_logit]`` as written
    (:class:`~rerank_plugins.training.InRankerDistillationLoss` zero-centres them, as InRanker does when it
    loads the file). Unlike InRanker, which prints and skips a line it cannot parse, a bad line is an error
    naming its line number: a silently shorter training set is harder to notice.
    """
    columns: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    with open(path, encoding="utf8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{os.fspath(path)}:{number}: not a JSON object ({error.msg}).") from None
            missing = [name for name in DISTILLATION_FIELDS if not isinstance(row, dict) or name not in row]
            if missing:
                raise ValueError(f"{os.fspath(path)}:{number}: missing field(s) {', '.join(missing)}.")
            columns["query"].append(str(row["query"]))
            columns["document"].append(str(row["contents"]))
            columns["label"].append([float(row["false_logit"]), float(row["true_logit"])])
    return Dataset.from_dict(columns)
