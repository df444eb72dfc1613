"""``rseq-gen explain [RULE]``: what a finding of ``rseq-gen verify`` means,
why it matters, how to fix it and an example, from the rules table
(rseq_gen.rules), so the installed tool explains every rule by itself."""

from __future__ import annotations

import argparse
import sys

from rseq_gen.errors import UsageError, did_you_mean
from rseq_gen.rules import RULE_LIST, explain_text, find_rule, list_text


def configure_parser(sub) -> None:
    p = sub.add_parser("explain", help="explain a rule of rseq-gen verify (or list them all)",
                       description="Explain a rule of rseq-gen verify: what it checks, why it "
                                   "matters, how to fix it, and an example. Without RULE, list "
                                   "the rules.")
    p.add_argument("rule", nargs="?", metavar="RULE", help="a rule ID (RSEQ602) or name (manifest-symbol-mismatch)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    if args.rule is None:
        sys.stdout.write(list_text())
        return 0
    rule = find_rule(args.rule)
    if rule is None:
        known = [r.id for r in RULE_LIST] + [r.name for r in RULE_LIST]
        hint = did_you_mean(args.rule.upper() if args.rule[:4].lower() == "rseq" else args.rule.lower(), known)
        raise UsageError(f"unknown rule {args.rule!r}{hint} (rseq-gen explain lists them)")
    sys.stdout.write(explain_text(rule))
    return 0
