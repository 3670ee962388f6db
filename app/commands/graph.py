"""``tensorscope graph TARGET``: export an autograd graph as DOT, SVG, PNG or JSON.

TARGET is a Python expression (torch, nn, F in scope), ``path/to/file.py:function`` (called
with no arguments; it returns a tensor, a ``(tensor, model)`` pair, or a dict of named
tensors, optionally paired with a model), or ``demo:NAME``. The format comes from
``--format`` or the suffix of ``-o``; without ``-o``, dot and json go to stdout.
"""

from __future__ import annotations

import argparse
import sys

HELP = "export the autograd graph of a tensor as DOT, SVG, PNG or JSON"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="expression, FILE.py:FUNCTION (returns a tensor, (tensor, model) or "
                             "a dict of named tensors) or demo:NAME")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write here (format from the suffix: .dot .svg .png .json)")
    parser.add_argument("--format", choices=("dot", "svg", "png", "json"),
                        help="output format (default: from -o's suffix, else dot)")
    parser.add_argument("--collapse", choices=("modules", "none"), default="none",
                        help="fold each top-level module into one box (default: none)")


def run(args: argparse.Namespace) -> int:
    from tensorscope.errors import UserError
    from tensorscope.export import export, format_for
    from tensorscope.graph_source import load_target

    fmt = format_for(args.output, args.format)
    if fmt == "png" and not args.output:
        raise UserError("png is binary: give a file with -o graph.png")
    source = load_target(args.target)
    graph = source.graph()
    data = export(graph, fmt, collapse=args.collapse)
    if args.output:
        try:
            with open(args.output, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        sys.stderr.write(f"tensorscope: wrote {args.output} ({fmt}, {len(graph.nodes)} nodes)\n")
    else:
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
    return 0
