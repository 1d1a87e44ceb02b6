"""Writing TREC runs: atomic files, and :class:`RunWriter`, which saves a run query by query so that it resumes.

A run file is never half-written: the text goes to a temporary file in the same directory, is flushed to disk,
then renamed over the target. While a run is being re-ranked, finished queries are appended to ``OUT.partial``
(the journal) and flushed one by one; ``--resume`` reads them back.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rerank_plugins.trec.formats import InputError, Run, RunRanking, parse_number, read_run, read_text, split_columns

logger = logging.getLogger(__name__)

_TEMPORARY_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # what tempfile.mkstemp puts in its names


def format_ranking(qid: str, ranking: RunRanking, tag: str) -> str:
    """TREC run lines for one query; scores as ``repr`` so that they read back to the same float."""
    return "".join(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n" for rank, (docid, score) in enumerate(ranking, 1))


def check_tag(tag: str) -> str:
    """A run tag is one non-empty token: whitespace would add columns."""
    if not tag or re.search(r"\s", tag):
        raise InputError(f"the run tag must be one word without whitespace, got {tag!r}")
    return tag


def default_tag(model_name: str) -> str:
    """A run tag from a model name or path: its last component, whitespace replaced."""
    name = re.sub(r"\s+", "_", Path(model_name.rstrip("/\\")).name)
    return name or "rerank-plugins"


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX only; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}."


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The text goes to a temporary file ``.NAME.<random>.tmp`` in the same directory, is flushed to disk, then
    renamed over ``path``.
    """
    target = Path(path)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644  # mkstemp's 0600 would hide the run
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=_temporary_prefix(target), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def stale_temporary_files(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files that :func:`atomic_write` of ``path`` left behind when it was killed mid-write."""
    target = Path(path)
    pattern = re.compile(re.escape(_temporary_prefix(target)) + f"[{_TEMPORARY_CHARACTERS}]{{8}}" + r"\.tmp")
    if not target.parent.is_dir():
        return []
    return sorted(entry for entry in target.parent.iterdir() if pattern.fullmatch(entry.name) and entry.is_file())


def write_run(path: str | os.PathLike[str], run: Mapping[str, RunRanking], tag: str) -> None:
    """Write a whole run atomically (see :func:`atomic_write`), queries in the mapping's order."""
    check_tag(tag)
    atomic_write(path, (format_ranking(qid, ranking, tag) for qid, ranking in run.items()))


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a file can be written at ``path``: not a directory, in a writable directory.

    It creates and removes a temporary file there, which also catches a read-only filesystem for root.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: the output is a directory; give a file name")
    if not target.parent.is_dir():
        raise InputError(f"{target.parent}: no such directory for the output")
    try:
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=_temporary_prefix(target), suffix=".tmp")
    except OSError as error:
        raise InputError(f"{target}: cannot write the output there ({error.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return target


class RunWriter:
    """Saves a re-ranked run query by query so that an interruption loses nothing.

    Each finished query is appended to ``OUT.partial`` and flushed to disk before the next one starts;
    :meth:`finish` writes ``OUT`` atomically from all of them and removes the partial file. ``OUT`` is therefore
    never half-written. With ``resume=True`` the queries already in ``OUT`` and the complete queries of
    ``OUT.partial`` are kept (:attr:`done`) and need not be re-ranked. A query in the partial file counts as
    complete when it has as many lines as ``expected`` says; only the query being written when the process
    stopped can fall short, and it is re-ranked. Temporary files that a kill during an earlier atomic write
    left next to ``OUT`` are removed on resume and when the run finishes.

    Args:
        path: the output run file.
        tag: the run tag written in the last column.
        expected: qid -> number of documents each query of this job will have.
        resume: keep the work of an earlier, interrupted or finished, invocation.
    """

    def __init__(self, path: str | os.PathLike[str], tag: str, expected: Mapping[str, int], *, resume: bool = False):
        self.path = check_writable(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.tag = check_tag(tag)
        self.expected = dict(expected)
        self.done: Run = {}
        self.resumed = 0
        if not resume:
            if self.partial.exists():
                raise InputError(
                    f"{self.partial} holds the finished queries of an interrupted run: pass --resume to continue "
                    "it, or delete the file to start over"
                )
            return
        self._remove_stale_temporary_files()
        if self.path.exists():
            self.done.update(read_run(self.path))
        kept = self._complete_partial_queries()
        self.done.update(kept)
        self.resumed = len(self.done)
        if self.partial.exists():  # drop a torn last query before appending after it
            atomic_write(self.partial, (format_ranking(qid, ranking, self.tag) for qid, ranking in kept.items()))

    def _remove_stale_temporary_files(self) -> None:
        for stale in [*stale_temporary_files(self.path), *stale_temporary_files(self.partial)]:
            logger.info("Removing %s, left by an interrupted write.", stale)
            stale.unlink(missing_ok=True)

    def _complete_partial_queries(self) -> Run:
        """The queries of ``OUT.partial`` that were written completely."""
        if not self.partial.exists():
            return {}
        text = read_text(self.partial)
        text = text[: text.rfind("\n") + 1]  # a last line without its newline was cut off mid-write
        blocks: list[tuple[str, RunRanking]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            where = f"{self.partial}:{number}"
            qid, _, docid, _, score, _ = split_columns(line, "run", where)
            if not blocks or blocks[-1][0] != qid:
                blocks.append((qid, []))
            blocks[-1][1].append((docid, parse_number(score, float, "score", where)))
        kept: Run = {}
        for index, (qid, ranking) in enumerate(blocks):
            last = index == len(blocks) - 1
            if (qid in self.expected and len(ranking) == self.expected[qid]) or (qid not in self.expected and not last):
                kept[qid] = ranking
            elif not last:
                logger.warning("%s: query %s has %d of %d documents; it is re-ranked.", self.partial, qid,
                               len(ranking), self.expected[qid])  # fmt: skip
        return kept

    def add(self, qid: str, ranking: RunRanking) -> None:
        """Append one finished query to the partial file and flush it to disk."""
        with open(self.partial, "a", encoding="utf-8") as handle:
            handle.write(format_ranking(qid, ranking, self.tag))
            handle.flush()
            os.fsync(handle.fileno())
        self.done[qid] = ranking

    def finish(self, order: Sequence[str] = ()) -> None:
        """Write ``OUT`` atomically, queries of ``order`` first and in that order, then remove the partial file."""
        first = {qid: self.done[qid] for qid in order if qid in self.done}
        rest = {qid: ranking for qid, ranking in self.done.items() if qid not in first}
        write_run(self.path, first | rest, self.tag)
        self.partial.unlink(missing_ok=True)
        self._remove_stale_temporary_files()
