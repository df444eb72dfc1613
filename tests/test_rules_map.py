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


def _rule_literals(tree) -> list[ast.Constant]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and RULE_ID.match(n.value)]


def _emitters() -> dict[str, set[str]]:
    """{rule ID: modules that emit it}: a call whose first argument is the
    ID (``unit.add("RSEQ101", ...)``, ``add(...)``, ``finding(...)``); a
    table that only names a rule (kernel_problems' ``rule=``) emits nothing."""
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "rules.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str) and RULE_ID.match(node.args[0].value):
                out.setdefault(node.args[0].value, set()).add(str(path.relative_to(PACKAGE)))
    return out


def test_every_rule_id_in_the_code_is_in_the_table():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in _rule_literals(ast.parse(path.read_text(encoding="utf-8"))):
            assert node.value in RULES, f"{path.relative_to(PACKAGE)} names {node.value}, not in the rules table"


def test_every_rule_is_emitted_by_exactly_one_module():
    emitters = _emitters()
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
