"""The `covfuzz` command line: the top layer; nothing in covfuzz, corpus, mutators or harness
imports it.

One module per command group: `cases` (gen, show, ops), `campaign` (fuzz), `status` (status,
plot), `triage` (crashes, replay, repro, export-tests, reduce, cmin, merge, export, import),
`run` and `selffuzz`; `commands.py` lists which module holds which command. Only the module of
the command being run is imported: most of them import torch and the op catalog (seconds),
which `covfuzz --help` and `covfuzz status` need not pay. Every subcommand prints a one-line
error and exits 2 on bad input (a malformed test case, an unknown op, a missing file, an unknown
id); tracebacks are reserved for covfuzz's own bugs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from covfuzz import __version__
from covfuzz.cli.commands import COMMANDS, module_of, summary
from covfuzz.errors import CovfuzzError, one_line

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command`'s full arguments (its module imported); every other command
    is listed by name and summary only."""
    parser = argparse.ArgumentParser(
        prog="covfuzz", description="Coverage-guided mutational fuzzer for torch.compile.")
    parser.add_argument("--version", action="version", version=f"covfuzz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    loaded = module_of(command) if command in COMMANDS else None
    for name in COMMANDS:
        if module_of(name) != loaded:
            sub.add_parser(name, help=summary(name), add_help=False)
        elif name == command:
            importlib.import_module(loaded).add_parsers(sub)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command named in `argv`: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CovfuzzError as exc:
        print(f"covfuzz {args.command}: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    except OSError as exc:
        print(f"covfuzz {args.command}: {one_line(exc.strerror or exc)}: {one_line(exc.filename or '')}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"covfuzz {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
