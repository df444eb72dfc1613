"""Every rule of rseq-gen verify is explained by the installed tool
(``rseq-gen explain``), from the same rows docs/rules.md is generated from;
the text output of verify ends each finding with its fix and leaves
informational notes out unless asked for."""

from __future__ import annotations

import json
import subprocess
from xml.etree import ElementTree

import pytest

from conftest import generate, require_tool, run_rseq_gen
from rseq_gen.rules import RULE_LIST


def test_every_rule_has_a_title_a_reason_a_fix_and_an_example():
    for r in RULE_LIST:
        assert r.title and r.why and r.fix and r.example, r.id
        assert not r.title.endswith("."), r.id


@pytest.mark.parametrize("key", ["RSEQ602", "rseq602", "602", "manifest-symbol-mismatch"])
def test_explain_one_rule_by_id_or_name(key):
    rule = next(r for r in RULE_LIST if r.id == "RSEQ602")
    out = run_rseq_gen("explain", key).stdout
    assert out.startswith(f"RSEQ602 manifest-symbol-mismatch: {rule.title}\n")
    flat = " ".join(out.split())
    for label, text in (("What it checks:", rule.summary), ("Why it matters:", rule.why),
                        ("How to fix:", rule.fix), ("Example:", rule.example)):
        assert f"{label} {' '.join(text.split())}" in flat, label
    assert max(map(len, out.splitlines())) <= 78


def test_explain_without_a_rule_lists_them_all():
    lines = run_rseq_gen("explain").stdout.splitlines()
    listed = [ln.split()[0] for ln in lines if ln.startswith("RSEQ")]
    assert listed == [r.id for r in RULE_LIST]


def test_explain_unknown_rule_is_one_line_with_the_closest():
    proc = run_rseq_gen("explain", "RSEQ62", check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "rseq-gen explain: error: unknown rule 'RSEQ62'; did you mean RSEQ602? (rseq-gen explain lists them)"]


def test_verify_help_points_at_explain_not_at_files_the_wheel_lacks():
    out = run_rseq_gen("verify", "--help").stdout
    assert "rseq-gen explain" in out and "docs/" not in out


@pytest.fixture(scope="module")
def unloadable_plugin(tmp_path_factory):
    """A compat shared library linked without -z nodelete: to be dlopen'd, it
    is an RSEQ302 error; its weak glibc references give RSEQ202 notes."""
    tmp = tmp_path_factory.mktemp("explain")
    gen = generate(tmp / "gen", "compat", "pl", "--tls-model", "global-dynamic")
    lib = tmp / "libpl.so"
    subprocess.run([require_tool("gcc"), "-O2", "-fPIC", "-shared", "-I", str(gen), str(gen / "pl_rseq.c"),
                    "-o", str(lib)], check=True)
    return lib


def test_text_findings_end_with_their_fix_and_hide_notes(unloadable_plugin):
    proc = run_rseq_gen("verify", "--dlopen", unloadable_plugin, check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    i = next(i for i, ln in enumerate(lines) if " error RSEQ302 owner-without-nodelete: " in ln)
    assert lines[i + 1] == "    fix: " + next(r.fix for r in RULE_LIST if r.id == "RSEQ302")
    assert not any(" note " in ln for ln in lines), proc.stdout
    assert "note(s) (" in lines[-1] and "not shown: --notes" in lines[-1]

    for flag in ("--notes", "-v"):
        shown = run_rseq_gen("verify", "--dlopen", flag, unloadable_plugin, check=False).stdout.splitlines()
        notes = [i for i, ln in enumerate(shown) if " note RSEQ202 " in ln]
        assert notes and all(shown[i + 1].startswith("    fix: ") for i in notes), shown
        assert "not shown" not in shown[-1]


def test_machine_formats_keep_the_notes(unloadable_plugin):
    rep = json.loads(run_rseq_gen("verify", "--dlopen", "--format", "json", unloadable_plugin,
                                  check=False).stdout)
    assert any(f["rule"] == "RSEQ202" for f in rep["findings"])
    sarif = json.loads(run_rseq_gen("verify", "--dlopen", "--format", "sarif", unloadable_plugin,
                                    check=False).stdout)
    assert any(r["ruleId"] == "RSEQ202" for r in sarif["runs"][0]["results"])
    github = run_rseq_gen("verify", "--dlopen", "--format", "github", unloadable_plugin, check=False).stdout
    assert any(ln.startswith("::notice ") and "RSEQ202" in ln for ln in github.splitlines()), github
    junit = run_rseq_gen("verify", "--dlopen", "--format", "junit", unloadable_plugin, check=False).stdout
    case = next(c for c in ElementTree.fromstring(junit).iter("testcase")
                if c.get("name") == "RSEQ202 glibc-version-node")
    assert case.find("system-out") is not None and "__rseq_" in case.find("system-out").text, junit
