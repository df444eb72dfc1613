"""Each rule of the verifier's table (rseq_gen.rules) is found from its ID
in one file: exactly one module under toolkit/ emits it, that module's
docstring lists it, and a verify test exercises it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT
from rseq_gen.rules import RULES

PACKAGE = ROOT / "toolkit" / "rseq_gen"
RULE_ID = re.compile(r"RSEQ\d{3}\Z")


def _emitters() -> dict[str, set[str]]:
    """{rule ID: modules whose code (not docstring) names it as a string}."""
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "rules.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree, clean=False)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and RULE_ID.match(node.value) and node.value != doc:
                out.setdefault(node.value, set()).add(str(path.relative_to(PACKAGE)))
    return out


def test_every_rule_is_emitted_by_exactly_one_module():
    emitters = _emitters()
    assert set(emitters) <= set(RULES), f"unknown rule IDs in code: {sorted(set(emitters) - set(RULES))}"
    for rule_id in RULES:
        assert len(emitters.get(rule_id, ())) == 1, f"{rule_id} is emitted by {sorted(emitters.get(rule_id, ()))}"


def test_each_emitting_module_lists_its_rules_in_its_docstring():
    for rule_id, modules in _emitters().items():
        for module in modules:
            doc = ast.get_docstring(ast.parse((PACKAGE / module).read_text(encoding="utf-8"))) or ""
            assert rule_id in doc, f"{module} emits {rule_id} but its docstring does not list it"


def test_every_rule_is_exercised_by_a_test():
    tests = Path(__file__).parent
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(tests.glob("test_*.py"))
                   if p.name != Path(__file__).name)
    missing = [r for r in RULES if f'"{r}"' not in text]
    assert not missing, f"no test names {missing}"
