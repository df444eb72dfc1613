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
    # The demo needs no root and no pip install into the system Python (PEP 668).
    assert demo == "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/rseq-gen demo"
    assert "pytest" in tests and ".ci/apt-packages.txt" in tests


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


def test_readme_c_example_counts_exactly(tmp_path):
    """A new user's program, written from the README's C API section only."""
    import os
    import subprocess

    from conftest import generate, require_tool

    snippet = re.search(r"```c\n(.+?)\n```", README, re.S).group(1)
    gen = generate(tmp_path, "compat", "mylib")
    (tmp_path / "user.c").write_text(
        "#include <pthread.h>\n#include <stdio.h>\n" + snippet + """
static void *worker(void *arg) { (void)arg; for (int i = 0; i < 100000; i++) hit(); return NULL; }
int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("%ld %s\\n", total(), mylib_owner());
    return total() == 400000 ? 0 : 1;
}
""")
    cc = require_tool("gcc")
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-I", str(gen),
                    "user.c", str(gen / "mylib_rseq.c"), "-o", "user", "-lpthread"], cwd=tmp_path, check=True)
    for tunables, owner in (("", "glibc"), ("glibc.pthread.rseq=0", "self")):
        env = dict(os.environ, GLIBC_TUNABLES=tunables)
        proc = subprocess.run([str(tmp_path / "user")], env=env, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.split() == ["400000", owner], proc.stdout


def test_apt_packages_reach_every_toolchain_the_preflight_checks():
    from toolchains import packages

    listed = set((ROOT / ".ci" / "apt-packages.txt").read_text().split())
    assert packages() <= listed, f"add to .ci/apt-packages.txt: {sorted(packages() - listed)}"
