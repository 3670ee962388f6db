"""``python -m tensorscope``: the same entry point as the ``tensorscope`` command."""

from tensorscope.app.cli import main

raise SystemExit(main())
