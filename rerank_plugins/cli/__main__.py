"""``python -m rerank_plugins.cli``: the same as the ``rerank-plugins`` command."""

from rerank_plugins.cli import main

raise SystemExit(main())
