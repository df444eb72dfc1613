"""The import table of docs/architecture.md holds: every module of the
package has a row, and imports only what its row lists."""

from __future__ import annotations

import ast
import fnmatch
import re

from conftest import ROOT

PACKAGE = ROOT / "toolkit" / "rseq_gen"
DOC = ROOT / "docs" / "architecture.md"
MARK = "<!-- imports table: read by tests/test_architecture.py -->"


def _table() -> list[tuple[list[str], set[str]]]:
    """(module patterns, allowed imports) of each row."""
    text = DOC.read_text(encoding="utf-8").split(MARK, 1)[1]
    rows = []
    for line in text.splitlines()[3:]:
        if not line.startswith("|"):
            break
        who, may = [c.strip() for c in line.strip("|").split("|")]
        rows.append((re.findall(r"`([^`]+)`", who), set(re.findall(r"`([^`]+)`", may))))
    return rows


def _modules() -> dict[str, set[str]]:
    """{module: package modules it imports}, names relative to rseq_gen."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rseq_gen":
                base = node.module[len("rseq_gen."):] if node.module != "rseq_gen" else ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    is_module = (PACKAGE / sub.replace(".", "/")).with_suffix(".py").exists() \
                        or (PACKAGE / sub.replace(".", "/") / "__init__.py").exists()
                    deps.add(sub if is_module else base)
            elif isinstance(node, ast.Import):
                deps |= {a.name[len("rseq_gen."):] for a in node.names if a.name.startswith("rseq_gen.")}
        out[name] = {d for d in deps if d and d != name}
    return out


def _row(rows, module: str):
    exact = [may for who, may in rows if module in who]
    if exact:
        return exact[0]
    wild = [may for who, may in rows if any("*" in w and fnmatch.fnmatchcase(module, w)
                                             and module.count(".") == w.count(".") for w in who)]
    return wild[0] if wild else None


def test_every_module_imports_only_what_its_row_allows():
    rows = _table()
    assert rows, f"no imports table after {MARK} in {DOC}"
    for module, deps in _modules().items():
        allowed = _row(rows, module)
        assert allowed is not None, f"docs/architecture.md has no row for {module}"
        allowed = {"__init__"} | allowed
        extra = {d for d in deps if not any(fnmatch.fnmatchcase(d, a) for a in allowed)}
        assert not extra, f"{module} imports {sorted(extra)}, which its row in docs/architecture.md does not list"
