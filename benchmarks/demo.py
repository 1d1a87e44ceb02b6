"""The main job in one command: re-rank TREC DL19 passages and measure what re-ranking adds to BM25.

    ./dev demo [--model M] [--depth 20] [--queries N] [--tiny]
    python -m benchmarks.demo ...     (from the repository root)

It re-ranks the BM25 top ``--depth`` of each DL19 query, then prints nDCG@10 of BM25 and of the re-ranked run on
the official qrels, and the new top 3 of the first query. The queries come from ``../shared/data/trec-dl19``
(all 43 judged queries) where a developer machine has it, else from the 3-query sample that a clone has in
``tests/data``. It reads repository paths, so it lives here rather than in the wheel.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/demo.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rerank_plugins import trec
from rerank_plugins.cli.options import CommandParser

ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = (ROOT.parent / "shared" / "data" / "trec-dl19", ROOT / "tests" / "data")
DATA_FILES = ("bm25-top100.json", "dl19-sample.json")


def find_data() -> tuple[Path, Path]:
    """The rank_llm-style DL19 file and its qrels: all 43 queries where ../shared has them, else the test sample."""
    for directory, name in zip(DATA_DIRS, DATA_FILES, strict=True):
        if (directory / name).exists() and (directory / "qrels.txt").exists():
            return directory / name, directory / "qrels.txt"
    raise FileNotFoundError(f"no DL19 data in {' or '.join(str(d) for d in DATA_DIRS)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(prog="benchmarks.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unicamp-dl/InRanker-small", help="hub id or local directory")
    parser.add_argument("--preset", help="the hub id whose settings to apply to a local copy (--model PATH)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random monoT5 built offline (meaningless scores)")
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates re-ranked per query (default: 20)")
    parser.add_argument("--queries", type=int, help="only the first N queries")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", help="cpu, cuda, mps ... (default: the best available)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from rerank_plugins.cli import CommandError, load_model, quiet_loading

    try:
        trec.ir_measures_module()
        data, qrels_path = find_data()
    except (ImportError, FileNotFoundError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    topics, run, corpus = trec.read_rank_llm_json(data)
    if args.queries:
        run = dict(list(run.items())[: args.queries])
    name = label = args.model
    if args.tiny:
        label = "a tiny random monoT5"
        name = str(Path(tempfile.mkdtemp(prefix="rerank-demo-")) / "tiny-monot5")
        from rerank_plugins.testing import build_tiny_model

        with quiet_loading():
            build_tiny_model("monot5", name)
        print("--tiny: a tiny random monoT5 built offline; its scores are meaningless, it only shows the pipeline.")
    try:  # the command line's loading: a path checked, the hub probed once, one line on failure
        model = load_model(name, preset=args.preset, **({"device": args.device} if args.device else {}))
    except CommandError as error:
        offline = "--model PATH (a local copy) or --tiny (a tiny random model, built offline) runs offline"
        print(f"demo: {str(error).rstrip('.')}. {offline}", file=sys.stderr)
        return 2

    jobs = trec.plan(run, topics, corpus, depth=args.depth)
    start = time.perf_counter()
    reranked = dict(
        tqdm(trec.rerank_jobs(model, jobs, batch_size=args.batch_size), total=len(jobs), unit="query", desc="rerank")
    )
    seconds = time.perf_counter() - start
    qrels = trec.read_qrels(qrels_path)
    qrels = {qid: judged for qid, judged in qrels.items() if qid in reranked}  # the queries re-ranked here
    before = trec.evaluate(qrels, run, ["nDCG@10"])["nDCG@10"]
    after = trec.evaluate(qrels, reranked, ["nDCG@10"])["nDCG@10"]

    queries = f"{len(jobs)} {'query' if len(jobs) == 1 else 'queries'}"
    print(f"\nTREC DL19 passages ({data.name}): {queries}, BM25 top {args.depth} re-ranked by {label}")
    print(f"  in {seconds:.1f} s ({sum(len(job.docids) for job in jobs) / seconds:.0f} pairs/s) on {model.device}")
    print(f"  nDCG@10  BM25 {before:.4f}  ->  re-ranked {after:.4f}  ({after - before:+.4f})")
    qid = jobs[0].qid
    print(f"\nQuery {qid}: {topics[qid]}")
    for rank, (docid, score) in enumerate(reranked[qid][:3], start=1):
        grade = qrels.get(qid, {}).get(docid, "-")
        print(f"  {rank}. [{docid}, judged {grade}, score {score:.4f}] {corpus[docid][:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
