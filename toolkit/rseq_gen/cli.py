"""Command-line entry point. Each subcommand lives in its own module with
``configure_parser(sub)`` and ``execute(args)``; importing one builds only
its parser (the work is imported when it runs)."""

from __future__ import annotations

import argparse
import re
import sys

from rseq_gen import __version__, demo, explain, generate, probe, selftest, verify
from rseq_gen.errors import UsageError, did_you_mean, unknown_choice

#: Subcommand modules, in --help order.
SUBCOMMAND_MODULES = (generate, verify, explain, demo, probe, selftest)
SUBCOMMANDS = tuple(m.__name__.rpartition(".")[2] for m in SUBCOMMAND_MODULES)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``rseq-gen <subcommand>:
    error: ...``, exit code 2) that names the closest valid option or choice."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        # A misspelt option is the likely cause of a missing one: say so first.
        unknown = [a for a in getattr(self, "_given", []) if a.startswith("--") and a != "--"
                   and not any(s.startswith(a.partition("=")[0]) for s in self._option_string_actions)]
        if unknown and message.startswith("the following arguments are required"):
            raise self.unrecognized(unknown)
        raise UsageError(re.sub(r"^argument ", "", message), prog=self.prog)

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            if isinstance(action, argparse._SubParsersAction):
                raise UsageError(f"unknown command {value!r}{did_you_mean(value, action.choices)} "
                                 f"(one of: {', '.join(action.choices)})", prog=self.prog)
            option = "/".join(action.option_strings) or action.metavar or action.dest
            error = unknown_choice(option, "value", value, action.choices)
            error.prog = self.prog
            raise error

    def unrecognized(self, extras: list[str]) -> UsageError:
        """The error for arguments no option of this parser takes."""
        first = next((a for a in extras if a.startswith("-")), extras[0])
        if not first.startswith("-"):
            return UsageError(f"unexpected argument {first!r}", prog=self.prog)
        option = first.partition("=")[0]
        known = [s for a in self._actions for s in a.option_strings]
        return UsageError(f"unknown option {option}{did_you_mean(option, known)}", prog=self.prog)


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rseq-gen", description="Generate and verify Linux rseq registration code.",
                     allow_abbrev=False)
    parser.add_argument("-V", "--version", action="version", version=f"rseq-gen {__version__}")
    parser.add_argument("--cmakedir", action="store_true",
                        help="print the directory of RseqGenConfig.cmake (for -DRseqGen_DIR=...)")
    parser.add_argument("--pkgconfigdir", action="store_true",
                        help="print the directory of rseq-gen.pc (for PKG_CONFIG_PATH)")
    parser.add_argument("--aclocaldir", action="store_true",
                        help="print the directory of rseq-gen.m4 and rseq-gen.mk (for ACLOCAL_PATH)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in SUBCOMMAND_MODULES:
        module.configure_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    prog = "rseq-gen"
    try:
        parser = build_parser()
        args, extras = parser.parse_known_args(argv)
        command = getattr(args, "command", None)
        if command:
            prog = f"rseq-gen {command}"
        if extras:
            raise _subparser(parser, command).unrecognized(extras)
        from rseq_gen.cmakedir import INSTALLED_DIRS

        asked = [name for name in INSTALLED_DIRS if getattr(args, name)]
        if asked:
            for name in asked:
                print(INSTALLED_DIRS[name].path())
            return 0
        if not getattr(args, "func", None):
            raise UsageError(f"a command is required (one of: {', '.join(SUBCOMMANDS)}); "
                             "see rseq-gen --help")
        return args.func(args)
    except UsageError as exc:
        print(f"{exc.prog or prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (`rseq-gen verify ... | head`): not an error of
        # ours; point stdout at /dev/null so the interpreter's final flush is quiet
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except OSError as exc:
        # Reading or writing a path failed in a way the command did not
        # expect: name the path and what is wrong with it, in one line.
        from rseq_gen.errors import os_error_words

        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{os_error_words(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
