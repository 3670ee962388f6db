"""``tensorscope layout EXPR [--json]``: where a tensor's elements sit in its storage.

Imports torch and rich inside :func:`run` only, so ``tensorscope --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json

HELP = "storage/stride report of a tensor expression (torch, nn, F in scope)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("expr", metavar="EXPR",
                        help="a Python expression giving a tensor, e.g. 'torch.arange(12.).reshape(3, 4).T'")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")


def run(args: argparse.Namespace) -> int:
    from tensorscope.evaluate import evaluate
    from tensorscope.storage import check_supported, layout_of, reshape_copies, view_failure
    from tensorscope.view_rule import view_blocker

    tensor = check_supported(evaluate(args.expr), "the expression's value")
    layout = layout_of(tensor, name=args.expr)
    # The classic question: can it be flattened with view(), and would reshape() copy?
    notes = []
    if tensor.dim() > 1 and tensor.numel() > 0:
        notes.append(("-1", view_failure(tensor, (-1,)), reshape_copies(tensor, (-1,)),
                      view_blocker(tuple(tensor.shape), tensor.stride(), (tensor.numel(),))))
    if args.json:
        payload = layout.to_json()
        payload["expr"] = args.expr
        payload["flatten"] = [{"shape": [-1], "view_error": f, "why": why, "reshape_copies": c}
                              for _, f, c, why in notes]
        print(json.dumps(payload))
        return 0
    from rich.console import Console

    from tensorscope.app.layout_view import layout_report

    Console(highlight=False).print(layout_report(layout, tensor, args.expr, notes))
    return 0
