"""The README's commands and code, and the generated tables of the docs,
stay true to the code."""

from __future__ import annotations

import re

from conftest import ROOT
from rseq_gen.coexistence import PAIRING_NOTES, pairing_markdown, pairing_rows
from rseq_gen.protocols import markdown_table

README = (ROOT / "README.md").read_text()
PROTOCOLS_DOC = (ROOT / "docs" / "protocols.md").read_text()
C_API_DOC = (ROOT / "docs" / "c-api.md").read_text()


def _commands():
    return re.findall(r"```sh\n(.+?)\n```", README, re.S)


def test_readme_opens_with_demo_and_test_commands():
    demo, tests = _commands()[:2]
    # The demo needs no root and no pip install into the system Python (PEP 668).
    assert demo == "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/rseq-gen demo"
    assert "pytest" in tests and ".ci/apt-packages.txt" in tests


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\n" + test_command + "\n" in ci


def test_readme_is_a_front_page():
    """Short enough to read: at most 250 lines of at most 100 characters,
    the library recipe on the first screen, every docs page it links to
    present."""
    lines = README.splitlines()
    assert len(lines) <= 250
    assert [n for n, line in enumerate(lines, 1) if len(line) > 100] == []
    assert any("## Add per-CPU counters to your library" in line for line in lines[:40])
    for page in set(re.findall(r"\]\((docs/[^)#]+)", README)):
        assert (ROOT / page).is_file(), page


#: A commit hash (7 to 40 hex digits, with a digit and a letter) or an issue number.
COMMIT_OR_ISSUE = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b|\b[Ii]ssue \d+")


def test_user_docs_name_no_commit_or_issue():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"0x[0-9a-fA-F]+", "", page.read_text())
        assert COMMIT_OR_ISSUE.findall(text) == [], page.name


def test_protocol_table_is_generated_from_the_protocol_rows():
    begin, end = "<!-- protocol-table:begin -->\n", "<!-- protocol-table:end -->"
    table = PROTOCOLS_DOC[PROTOCOLS_DOC.index(begin) + len(begin):PROTOCOLS_DOC.index(end)].strip()
    assert table == markdown_table(), "run: python -m rseq_gen.protocols and paste into docs/protocols.md"


def test_pairing_table_is_generated_from_the_prediction():
    begin, end = "<!-- pairing-table:begin -->\n", "<!-- pairing-table:end -->"
    table = PROTOCOLS_DOC[PROTOCOLS_DOC.index(begin) + len(begin):PROTOCOLS_DOC.index(end)].strip()
    assert table == pairing_markdown(), "run: python -m rseq_gen.coexistence and paste into docs/protocols.md"


def test_every_conflict_of_the_pairing_table_is_explained():
    """Each peer's note names every conflict its rows show (a model change
    that makes a new one needs its explanation and remedy)."""
    for adopter, _, cells in pairing_rows():
        for mark in re.findall(r"\*\*[a-z ]+\*\*|\*[a-z ]+\*", " ".join(cells)):
            assert mark in PAIRING_NOTES[adopter], f"{adopter}: the note does not explain {mark}"


def test_apt_packages_are_listed_one_per_line():
    names = (ROOT / ".ci" / "apt-packages.txt").read_text().split()
    assert names and all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", n) for n in names)
    assert len(names) == len(set(names)), "duplicate package names"


def test_readme_c_example_counts_exactly(tmp_path):
    """A new user's program, written from the README's library recipe only."""
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
    if (counters_init() != 0) return 2;
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


def test_operations_table_is_generated_from_the_operation_rows():
    from rseq_gen.operations import markdown_table as operations_table

    begin, end = "<!-- operations-table:begin -->\n", "<!-- operations-table:end -->"
    table = C_API_DOC[C_API_DOC.index(begin) + len(begin):C_API_DOC.index(end)].strip()
    assert table == operations_table(), "run: python -m rseq_gen.operations and paste into docs/c-api.md"


_MMCID_NAMES = (("_percpu_", "_mmcid_"), ("mylib_current_cpu()", "mylib_mmcid_index()"),
                ("MYLIB_POOL_CPU", "MYLIB_POOL_MM_CID"), ("mylib_max_cpus()", "mylib_max_mm_cids()"))

_EXAMPLES_MAIN = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#define NODES 64
#define ROUNDS 20000
static struct node nodes[NODES];
static int items[CAP];
static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        struct node *n = pop();
        void *p = buf_pop();
        if (n != NULL) { n->value++; push(n); }
        if (p != NULL && buf_push(p) != 0) abort();
        count_hit();
    }
    return NULL;
}
int main(void)
{
    pthread_t t[4];
    int slots = mylib_max_cpus(), found = 0, in_bufs = 0;
    long moves = 0;
    lists = calloc((size_t)slots, sizeof *lists);
    bufs = calloc((size_t)slots, sizeof *bufs);
    if (lists == NULL || bufs == NULL || stats_init() != 0) return 2;
    for (int i = 0; i < NODES; i++) push(&nodes[i]);
    /* Every node is on this CPU's list now, and a worker that never runs on
     * this CPU pops nothing: make sure pop is exercised at least once. */
    struct node *first = NULL;
    for (long tries = 0; first == NULL && tries < 100000000; tries++) first = pop();
    if (first == NULL) return 3;
    first->value++;
    push(first);
    for (int i = 0; i < CAP / 2; i++) if (buf_push(&items[i]) != 0) return 2;
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int c = 0; c < slots; c++) {
        for (intptr_t p = lists[c].head; p != 0; p = ((struct node *)p)->next) found++;
        in_bufs += (int)bufs[c].top;
    }
    for (int i = 0; i < NODES; i++) moves += nodes[i].value;
    printf("%d %d %ld %s\n", found, in_bufs, total_hits(), mylib_owner());
    return found == NODES && in_bufs == CAP / 2 && total_hits() == 4L * ROUNDS && moves > 0 ? 0 : 1;
}
"""


def test_readme_per_cpu_examples_work_in_both_modes(tmp_path):
    """The free list, the per-CPU buffer and the pool, from the code blocks
    of docs/c-api.md only, in both indexing modes, under glibc's registration,
    our own, and the fallbacks (seccomp EPERM)."""
    import os
    import subprocess

    from conftest import generate, require_tool

    blocks = re.findall(r"```c\n(.+?)\n```", C_API_DOC, re.S)
    examples = [b for b in blocks if "pop(void)" in b or "buf_pop" in b or "mylib_pool_create" in b]
    assert len(examples) == 3, "the free list, buffer and pool examples of docs/c-api.md"
    gen = generate(tmp_path, "compat", "mylib")
    cc = require_tool("gcc")
    seccomp = tmp_path / "seccomp_exec"
    subprocess.run([cc, "-O2", str(ROOT / "tests" / "c" / "seccomp_exec.c"), "-o", str(seccomp)], check=True)
    for mode in ("percpu", "mmcid"):
        code = "\n".join(examples) + _EXAMPLES_MAIN
        if mode == "mmcid":
            for a, b in _MMCID_NAMES:
                code = code.replace(a, b)
        src = tmp_path / f"examples_{mode}.c"
        src.write_text(code)
        exe = tmp_path / f"examples_{mode}"
        subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-I", str(gen),
                        str(src), str(gen / "mylib_rseq.c"), "-o", str(exe), "-lpthread"], check=True)
        for tunables, prefix, owner in (("", [], "glibc"), ("glibc.pthread.rseq=0", [], "self"),
                                        ("glibc.pthread.rseq=0", [str(seccomp), "EPERM"], "none")):
            env = dict(os.environ, GLIBC_TUNABLES=tunables)
            proc = subprocess.run([*prefix, str(exe)], env=env, capture_output=True, text=True)
            assert proc.returncode == 0 and proc.stdout.split() == ["64", "32", "80000", owner], \
                (mode, owner, proc.stdout, proc.stderr)

def test_apt_packages_reach_every_toolchain_the_preflight_checks():
    from toolchains import packages

    listed = set((ROOT / ".ci" / "apt-packages.txt").read_text().split())
    assert packages() <= listed, f"add to .ci/apt-packages.txt: {sorted(packages() - listed)}"


def test_readme_without_cmake_commands_work(tmp_path):
    """The 'Without CMake' commands, run as written (with the README's C
    block as mylib.c): the library builds and verifies clean."""
    import shlex
    import subprocess

    from conftest import RSEQ_GEN

    section = README[README.index("## Without CMake"):]
    section = section[:section.index("\n## ")]
    commands = re.search(r"```sh\n(.+?)\n```", section, re.S).group(1).splitlines()
    (tmp_path / "mylib.c").write_text(re.search(r"```c\n(.+?)\n```", README, re.S).group(1) + "\n")
    for line in commands:
        argv = shlex.split(line, comments=True)
        if argv[0] == "rseq-gen":
            argv = [*RSEQ_GEN, *argv[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
        if "verify" in line:
            assert " 0 error(s), 0 warning(s)" in proc.stdout, proc.stdout
