"""Quiet model loading and saving: no progress bars or load-report tables from our own loads, unless asked.

``transformers`` draws "Loading weights" / "Writing model shards" bars and logs a "LOAD REPORT" table for every
checkpoint whose keys differ from the model's. ``rerank_plugins.CrossEncoder`` (unless ``verbose=True``), the
command line (unless ``--verbose``) and ``build_tiny_model`` load and save inside :func:`quiet_loading`: the
bars are switched off while any quiet load runs and switched back to what they were when the last one ends, and
only the load reports of the loading thread are dropped. Nothing stays changed for the rest of the program.
A report that says weights were initialised at random, which makes scores meaningless, is kept as one line.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

REPORTING_LOGGERS = ("transformers.modeling_utils", "transformers.modeling_layers")
"""Where transformers logs its load reports."""

_bars_lock = threading.Lock()
_quiet_loads = 0  # quiet loads running now, in every thread: the bars come back when the last one ends
_bars_before: tuple[bool, bool] = (True, False)  # (transformers' bars on, the hub's bars off) before the first


class LoadReports(logging.Filter):
    """Drops transformers' load-report tables logged by one thread; keeps weights initialised at random."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.random: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.thread != self.thread or "LOAD REPORT" not in message:
            return True
        plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
        rows = [[cell.strip() for cell in line.split("|")] for line in plain.splitlines() if "|" in line]
        keys = sorted(row[0] for row in rows if len(row) > 1 and row[1] in ("MISSING", "MISMATCH"))
        if keys:
            source = plain.splitlines()[0].replace(" LOAD REPORT from:", " from")
            self.random.append(f"{source}: {len(keys)} weight(s) not in the checkpoint, initialised at random "
                               f"({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")  # fmt: skip
        return False

    def report(self) -> None:
        for line in self.random:
            hint = "verbose=True (--verbose) shows transformers' report"
            print(f"rerank-plugins: warning: {line}; {hint}", file=sys.stderr)


def _bars_off() -> None:
    global _quiet_loads, _bars_before
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    with _bars_lock:
        if _quiet_loads == 0:
            _bars_before = (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled())
            hf_logging.disable_progress_bar()  # transformers' bars and the hub's
        _quiet_loads += 1


def _bars_back() -> None:
    global _quiet_loads
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    with _bars_lock:
        _quiet_loads -= 1
        if _quiet_loads == 0:
            transformers_bars, hub_bars_off = _bars_before
            if transformers_bars:
                hf_logging.enable_progress_bar()
            if hub_bars_off:
                hub_utils.disable_progress_bars()
            else:
                hub_utils.enable_progress_bars()


@contextmanager
def quiet_loading(verbose: bool = False) -> Iterator[None]:
    """Load or save models without progress bars or load-report tables (``verbose=True``: change nothing)."""
    if verbose:
        yield
        return
    _bars_off()
    reports = LoadReports()
    loggers = [logging.getLogger(name) for name in REPORTING_LOGGERS]
    for each in loggers:
        each.addFilter(reports)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(reports)
        _bars_back()
        reports.report()
