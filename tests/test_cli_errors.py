"""One error style for the whole command line: every usage error is one line
``rseq-gen <subcommand>: error: ...`` with exit code 2, a misspelt option or
value names the closest valid one, a file-system error names the user's path
and what is wrong with it, and a failed ``generate`` leaves nothing behind."""

from __future__ import annotations

import errno

import pytest

from conftest import run_rseq_gen
from rseq_gen import __version__
from rseq_gen.errors import os_error_words


def one_error_line(*args, cwd=None) -> str:
    proc = run_rseq_gen(*args, check=False, cwd=cwd)
    assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == "", proc.stdout
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    # a misspelt option: named with the closest one, even when a required option is missing too
    (["generate", "--protocl", "compat"],
     "rseq-gen generate: error: unknown option --protocl; did you mean --protocol?"),
    (["generate", "--output-dir", "x", "--prefx=foo"],
     "rseq-gen generate: error: unknown option --prefx; did you mean --prefix?"),
    (["verify", "--formt", "json", "x"],
     "rseq-gen verify: error: unknown option --formt; did you mean --format?"),
    (["--cmakdir"], "rseq-gen: error: unknown option --cmakdir; did you mean --cmakedir?"),
    # a misspelt value, whether argparse or the options table checks it
    (["generate", "--output-dir", "x", "--protocol", "compt"],
     "rseq-gen generate: error: --protocol: unknown protocol 'compt'; did you mean compat? "
     "(one of: glibc, own, cpu-id, refcount, handled, compat)"),
    (["verify", "--protocol", "compt", "x"],
     "rseq-gen verify: error: --protocol: unknown value 'compt'; did you mean compat? "
     "(one of: glibc, own, cpu-id, refcount, handled, compat)"),
    (["verify", "--fail-on", "warn", "x"],
     "rseq-gen verify: error: --fail-on: unknown value 'warn'; did you mean warning? (one of: error, warning)"),
    (["generate", "--output-dir", "x", "--arch", "x86-64"],
     "rseq-gen generate: error: --arch: unknown architecture 'x86-64'; did you mean x86_64?"),
    (["generate", "--output-dir", "x", "--tls-model", "initial"],
     "rseq-gen generate: error: --tls-model: unknown TLS model 'initial'; did you mean initial-exec?"),
    (["generate", "--output-dir", "x", "--registration", "extnded"],
     "rseq-gen generate: error: --registration: unknown registration mode 'extnded'; did you mean extended?"),
    (["verfy", "x"], "rseq-gen: error: unknown command 'verfy'; did you mean verify?"),
    # the other argparse errors, in the same form
    (["generate"], "rseq-gen generate: error: the following arguments are required: --output-dir"),
    (["generate", "--output-dir"], "rseq-gen generate: error: --output-dir: expected one argument"),
    (["generate", "--output-dir", "x", "stray"], "rseq-gen generate: error: unexpected argument 'stray'"),
    (["verify", "--jobs", "two", "x"], "rseq-gen verify: error: --jobs: invalid int value: 'two'"),
    (["verify", "--min-glibc", "2", "x"], "rseq-gen verify: error: --min-glibc: '2' is not a version like 2.17"),
    ([], "rseq-gen: error: a command is required"),
])
def test_usage_error_is_one_line_naming_the_subcommand(tmp_path, args, expected):
    line = one_error_line(*args, cwd=tmp_path)
    assert line.startswith(expected), line
    assert not (tmp_path / "x").exists()


def test_short_version_flag():
    for flag in ("-V", "--version"):
        proc = run_rseq_gen(flag)
        assert proc.stdout == f"rseq-gen {__version__}\n" and proc.stderr == ""


def _left_behind(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("mine\n")
    line = one_error_line("generate", "--output-dir", "afile", cwd=tmp_path)
    assert line == "rseq-gen generate: error: --output-dir afile: not a directory"
    line = one_error_line("generate", "--output-dir", "afile/gen", cwd=tmp_path)
    assert line == "rseq-gen generate: error: --output-dir afile/gen: afile: not a directory"
    assert _left_behind(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.parametrize("option", ["--manifest", "--depfile"])
def test_a_failed_side_file_leaves_no_output_directory(tmp_path, option):
    """--output-dir ok1 --manifest <unwritable>: ok1/ (and every directory
    the run would have made) is gone again, the files are not written."""
    (tmp_path / "afile").touch()
    line = one_error_line("generate", "--output-dir", "ok1/a/b", option, "afile/side", cwd=tmp_path)
    assert line == f"rseq-gen generate: error: {option} afile/side: afile: not a directory"
    (tmp_path / "d").mkdir()
    line = one_error_line("generate", "--output-dir", "ok1", option, "d", cwd=tmp_path)
    assert line == f"rseq-gen generate: error: {option} d: is a directory"
    assert _left_behind(tmp_path) == ["afile", "d"]


def test_unwritable_place_names_the_user_path_never_a_temp_file(tmp_path):
    """/sys takes no new files: sysfs refuses them (permission denied) even
    for root, and a container mounts it read-only."""
    line = one_error_line("generate", "--output-dir", "ok1", "--manifest", "/sys/rseq-gen-m.json",
                          cwd=tmp_path)
    assert line in ("rseq-gen generate: error: --manifest /sys/rseq-gen-m.json: /sys: permission denied",
                    "rseq-gen generate: error: --manifest /sys/rseq-gen-m.json: /sys: read-only file system")
    assert _left_behind(tmp_path) == []
    line = one_error_line("verify", "--output", "/sys/rseq-gen-report.txt", "/bin/true", cwd=tmp_path)
    assert line.startswith("rseq-gen verify: error: --output /sys/rseq-gen-report.txt: /sys: ")
    assert ".tmp" not in line


def test_existing_output_survives_a_failed_run(tmp_path):
    run_rseq_gen("generate", "--prefix", "foo", "--output-dir", tmp_path / "gen")
    before = {p.name: p.read_bytes() for p in (tmp_path / "gen").iterdir()}
    (tmp_path / "d").mkdir()
    one_error_line("generate", "--prefix", "foo", "--protocol", "own", "--output-dir", "gen",
                   "--manifest", "d", cwd=tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "gen").iterdir()} == before


def test_verify_manifest_errors_name_the_path(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "bad.json").write_text("{")
    assert one_error_line("verify", "--manifest", "d", "/bin/true", cwd=tmp_path) == \
        "rseq-gen verify: error: --manifest d: is a directory"
    assert one_error_line("verify", "--manifest", "none.json", "/bin/true", cwd=tmp_path) == \
        "rseq-gen verify: error: --manifest none.json: no such file or directory"
    assert one_error_line("verify", "--manifest", "bad.json", "/bin/true", cwd=tmp_path).startswith(
        "rseq-gen verify: error: --manifest bad.json: not valid JSON")


@pytest.mark.parametrize("code, words", [
    (errno.ENOTDIR, "not a directory"), (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied"), (errno.EPERM, "permission denied"),
    (errno.EISDIR, "is a directory"), (errno.ENOSPC, "no space left on device"),
])
def test_os_errors_in_the_users_words(code, words):
    # The file name an OSError carries may be an internal temp file: the
    # words never include it.
    assert os_error_words(OSError(code, "x", "/out/.m.json.abc123.tmp")) == words
