"""Generated files are for the user only: no template placeholder, no name
or path internal to the generator, no reference to a file the user does not
have, no line glued to the next by a template's whitespace control. Every
protocol, every architecture (one header carries them all), and the options
that select other template branches."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, run_rseq_gen
from rseq_gen.arches import ARCHES
from rseq_gen.protocols import PROTOCOLS

#: A prefix that appears nowhere in the templates, so a leftover placeholder
#: cannot pass for it.
PREFIX = "zqlib"

#: What must not appear in generated text, and why.
FORBIDDEN = [
    (re.compile(r"\bP_\w+|\bPU_\w+|\bP_POOL_\w+"), "a template placeholder instead of the user's prefix"),
    (re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}"), "jinja2 syntax"),
    (re.compile(r"\bOperation\.|\brseq_gen\.|\bbenchmarks/|\btoolkit/|\btemplates/|\.j2\b"),
     "a name or path internal to the generator"),
    (re.compile(r"\bthe seed\b|\bseed protocol\b", re.I), "the project's brief, which the user does not have"),
    (re.compile(r"shared/reference|tests/README|tests/c/|tests/test_\w+\.py"),
     "a path the user does not have"),
    (re.compile(r"#\s*(?:endif|else)/\*|\*/\s*#\s*(?:if|ifdef|ifndef|elif|else|endif|define|include)\b"),
     "a preprocessor line glued to a comment (a newline swallowed by whitespace control)"),
]

VARIANTS = {
    "default": [],
    "dlopen-extended-default-visibility": ["--dlopen-safe", "--registration", "extended",
                                           "--visibility", "default"],
}


def offending_lines(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, why in FORBIDDEN:
            m = pattern.search(line)
            if m:
                found.append(f"{number}: {m.group(0)!r} ({why}): {line.strip()[:120]}")
    return found


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_generated_text_holds_nothing_of_the_generator(tmp_path, protocol, variant):
    out = tmp_path / "gen"
    run_rseq_gen("generate", "--protocol", protocol, "--prefix", PREFIX, "--arch", ",".join(ARCHES),
                 "--output-dir", out, *VARIANTS[variant])
    problems = {}
    for name in (f"{PREFIX}_rseq.h", f"{PREFIX}_rseq.c"):
        found = offending_lines((out / name).read_text())
        if found:
            problems[name] = found
    assert not problems, "\n".join(f"{name}:{line}" for name, lines in problems.items() for line in lines)


def test_the_scan_finds_what_it_looks_for():
    """Each pattern catches the defect it names (so a clean result means
    something)."""
    samples = ["P_max_cpus()", "P_POOL_CPU", "{{ P }}", "Operation.mmcid_word_from_thread_pointer",
               "see rseq_gen.adopters", "benchmarks/hot_paths.json", "as the seed recommends",
               "shared/reference/rseq-abi.md", "tests/README", "#endif/* ---- Architecture",
               "/* x */#if defined(x)"]
    for sample in samples:
        assert offending_lines(sample), sample
    assert not offending_lines("#endif /* x */") and not offending_lines("#endif\n/* ---- Architecture")
    assert not offending_lines(f"int {PREFIX}_max_cpus(void); /* the highest possible CPU plus one */")


def test_project_files_cite_nothing_outside_the_repository():
    """Modules, templates and user docs cite public references, not files
    that only exist beside this repository."""
    outside = re.compile(r"shared/reference|shared/seed|tests/README")
    found = []
    for base in ("toolkit", "templates", "cmake", "docs", "examples"):
        for path in sorted((ROOT / base).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".j2", ".cmake", ".in", ".md", ".c", ".h", ".txt"):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if outside.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    readme = (ROOT / "README.md").read_text()
    found += [f"README.md: {m}" for m in outside.findall(readme)]
    assert not found, "\n".join(found)
