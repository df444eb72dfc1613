"""Command-line entry point. Each subcommand lives in its own module with
``configure_parser(sub)`` and ``execute(args)``."""

from __future__ import annotations

import argparse
import importlib
import sys

from rseq_gen import __version__
from rseq_gen.errors import UsageError

#: Subcommand modules, in --help order.
SUBCOMMANDS = ("generate", "verify", "demo", "probe", "selftest")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rseq-gen", description="Generate and verify Linux rseq registration code.",
                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"rseq-gen {__version__}")
    parser.add_argument("--cmakedir", action="store_true",
                        help="print the directory of RseqGenConfig.cmake (for -DRseqGen_DIR=...)")
    parser.add_argument("--pkgconfigdir", action="store_true",
                        help="print the directory of rseq-gen.pc (for PKG_CONFIG_PATH)")
    parser.add_argument("--aclocaldir", action="store_true",
                        help="print the directory of rseq-gen.m4 and rseq-gen.mk (for ACLOCAL_PATH)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"rseq_gen.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"rseq_gen.{name}":
                raise
            continue
        module.configure_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        from rseq_gen.cmakedir import INSTALLED_DIRS

        asked = [name for name in INSTALLED_DIRS if getattr(args, name)]
        if asked:
            for name in asked:
                print(INSTALLED_DIRS[name].path())
            return 0
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        return args.func(args)
    except UsageError as exc:
        print(f"rseq-gen: error: {exc}" if not str(exc).startswith("rseq-gen") else f"{exc}",
              file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # an unwritable output directory, a path that is a file, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"rseq-gen: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
