"""rseq-gen demo: builds and runs in every environment this machine offers."""

from __future__ import annotations

import json
import os

from conftest import require_tool, run_rseq_gen
from rseq_gen.protocols import PROTOCOLS

def test_demo_runs_everywhere_and_matches_the_protocol_table():
    require_tool("musl-gcc", "musl-tools")
    for protocol in ("compat", "glibc"):
        proc = run_rseq_gen("demo", "--protocol", protocol, "--json")
        data = json.loads(proc.stdout)
        assert data["version"] == 1 and data["protocol"] == protocol
        rows = {r["env_id"]: r for r in data["rows"]}
        assert set(rows) == {"glibc", "glibc-rseq-off", "glibc-static", "musl-static"}
        for env, row in rows.items():
            assert "skipped" not in row and "error" not in row, row
            assert row["owner"] == PROTOCOLS[protocol].owner[env], (env, row)
            assert row["exact"] is True
            assert row["cpu"] >= 0
            if row["owner"] == "glibc":
                assert row["registrations"] == 0
            # dynamic builds dlopen the plugin, a peer of the program
            if env in ("glibc", "glibc-rseq-off"):
                assert row["plugin_owner"] == PROTOCOLS[protocol].peer_owner[env], (env, row)
            else:
                assert row["plugin_owner"] == "-", (env, row)


def test_demo_text_table(tmp_path):
    proc = run_rseq_gen("demo", "--keep", tmp_path / "demo")
    assert "environment" in proc.stdout and "musl static" in proc.stdout
    assert (tmp_path / "demo" / "demo_rseq.c").exists()


def test_demo_without_compiler_is_one_line_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env["PATH"] = str(tmp_path)  # nothing in it
    proc = run_rseq_gen("demo", check=False, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["rseq-gen demo: error: no C compiler found (install gcc or set CC)"]
