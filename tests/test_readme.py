"""The README's commands and tables stay true to the code."""

from __future__ import annotations

import re

from conftest import ROOT
from rseq_gen.protocols import markdown_table

README = (ROOT / "README.md").read_text()


def _commands():
    return re.findall(r"```sh\n(.+?)\n```", README, re.S)


def test_readme_opens_with_demo_and_test_commands():
    demo, tests = _commands()[:2]
    assert "rseq-gen demo" in demo and "pip install ." in demo
    assert "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_protocol_table_is_generated_from_the_protocol_rows():
    begin, end = "<!-- protocol-table:begin -->\n", "<!-- protocol-table:end -->"
    table = README[README.index(begin) + len(begin):README.index(end)].strip()
    assert table == markdown_table(), "run: python -m rseq_gen.protocols and paste into README.md"


def test_apt_packages_are_listed_one_per_line():
    names = (ROOT / ".ci" / "apt-packages.txt").read_text().split()
    assert names and all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", n) for n in names)
    assert len(names) == len(set(names)), "duplicate package names"
