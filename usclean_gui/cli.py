"""The ``usclean`` command line (Qt-free front end).

Each sub-command lives in its own module under ``usclean_gui.commands`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.  Modules are
imported lazily so that ``usclean simulate`` never pays for torch, and so that a
broken optional dependency only affects the command that needs it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "simulate": "usclean_gui.commands.simulate",
    "simulate-dataset": "usclean_gui.commands.simulate_dataset",
    "train": "usclean_gui.commands.train",
    "despeckle": "usclean_gui.commands.despeckle",
    "bench": "usclean_gui.commands.bench",
    "evaluate": "usclean_gui.commands.evaluate",
}


def _load(name: str):
    return importlib.import_module(COMMANDS[name])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usclean", description="USClean: ultrasound despeckling tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help="(see usclean %s --help)" % name)
            continue
        try:
            mod = _load(name)
        except ModuleNotFoundError as exc:  # command not available in this build
            sub.add_parser(name, help="unavailable: %s" % exc)
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    mod = _load(args.command)
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        print("usclean: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print("usclean %s: error: %s" % (args.command, exc), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
