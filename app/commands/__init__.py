"""One module per CLI sub-command.

Each module exposes ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``.
Modules import torch and textual inside ``run`` only, so ``tensorscope --help`` stays fast.
"""
