"""The ``tensorscope`` command.

With no sub-command it opens the TUI on its home screen. Sub-commands live in
``tensorscope.app.commands``; this module only parses and dispatches, and imports
nothing heavy (no torch, no textual) until a command actually needs it.

Every user mistake ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# Sub-commands, in the order --help lists them.
COMMANDS: tuple[str, ...] = ("layout", "demo", "run", "replay", "listen", "graph", "inspect")

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (not usage + message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: {message} (see --help)\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tensorscope",
        description="A terminal UI that makes PyTorch's internals visible while real code runs.",
        epilog="With no command, opens the TUI on its home screen.",
    )
    from tensorscope import __version__

    parser.add_argument("--version", action="version", version=f"tensorscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"tensorscope.app.commands.{name}")
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


_SCRIPT_OPTIONS_WITH_VALUE = {"--record", "--nproc", "--detail"}
"""`run`'s own options that take a value (the script's path comes after their value)."""


def _script_helps(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """`tensorscope run train.py --help` means the script's --help, not run's: -h/--help
    after the script's path are hidden from argparse (as placeholders that it passes on as
    extra arguments) and restored for the script."""
    if not argv or argv[0] != "run":
        return argv, {}
    out, helps, seen_script, skip = [argv[0]], {}, False, False
    for item in argv[1:]:
        if seen_script and not skip and item in ("-h", "--help"):
            placeholder = f"\x00help{len(helps)}"
            helps[placeholder] = item
            out.append(placeholder)
            continue
        if not seen_script and not skip and not item.startswith("-"):
            seen_script = True
        skip = item in _SCRIPT_OPTIONS_WITH_VALUE and not skip
        out.append(item)
    return out, helps


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    argv, helps = _script_helps(argv)
    args, extra = parser.parse_known_args(argv)
    module = getattr(args, "_module", None)
    if extra and not getattr(module, "ACCEPTS_EXTRA", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    extra = [helps.get(item, item) for item in extra]
    if "--" in extra and extra.count("--") == argv.count("--"):
        # argparse kept the separator (where it is placed decides): it is ours, not the
        # script's; when argparse took it, any "--" left is the script's own.
        extra.remove("--")
    args.extra = extra

    from tensorscope.errors import UserError

    try:
        if module is None:
            from tensorscope.app.app import make_app

            make_app().run()
            return 0
        return int(module.run(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"tensorscope: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("tensorscope: interrupted\n")
        return 130
    except BrokenPipeError:
        # `tensorscope ... | head` closed the pipe: not an error worth a traceback.
        return 0
    except Exception as exc:  # a bug in tensorscope: still one line unless asked for more
        if os.environ.get("TENSORSCOPE_DEBUG"):
            raise
        from tensorscope.errors import one_line

        sys.stderr.write(
            f"tensorscope: internal error: {one_line(exc)} "
            "(set TENSORSCOPE_DEBUG=1 for the traceback, and please report it)\n"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
