"""``rseq-gen demo``: generate, compile and run a small program and a
dlopen'd plugin in every environment this machine offers, and show who owns
the rseq registration in each."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rseq_gen.errors import UsageError
from rseq_gen.generate import render, write_outputs
from rseq_gen.protocols import DEFAULT_PROTOCOL, ENVIRONMENT_VARIABLES, PROTOCOLS
from rseq_gen.settings import GenerateOptions
from rseq_gen.templating import PACKAGE_DIR

DEMO_SRC = PACKAGE_DIR / "demo_src"


@dataclass(frozen=True)
class DemoEnv:
    name: str
    env_id: str                     # a row of rseq_gen.protocols.ENVIRONMENTS
    build: str                      # "dynamic", "static" or "musl"


DEMO_ENVS = (
    DemoEnv("glibc (default)", "glibc", "dynamic"),
    DemoEnv("glibc.pthread.rseq=0", "glibc-rseq-off", "dynamic"),
    DemoEnv("static glibc", "glibc-static", "static"),
    DemoEnv("musl static", "musl-static", "musl"),
)


def find_compiler() -> str:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return candidate
    raise UsageError("no C compiler found (install gcc or set CC)")


def _compile(cmd: list, cwd: Path) -> str | None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"{cmd[0]} failed"
    return None


def build(workdir: Path, protocol: str, cc: str) -> dict[str, tuple[Path | None, str | None]]:
    """Generate the code and build one binary per build kind. Returns
    kind -> (binary or None, reason it could not be built)."""
    for prefix, safe in (("demo", False), ("demoplugin", True)):
        opts = GenerateOptions.from_strings(protocol=protocol, prefix=prefix, arch=None, dlopen_safe=safe)
        write_outputs(render(opts), workdir, None, None)
    for name in ("demo_main.c", "demo_plugin.c"):
        shutil.copy(DEMO_SRC / name, workdir / name)
    flags = ["-O2", "-I."]
    builds: dict[str, tuple[Path | None, str | None]] = {}
    err = _compile([cc, *flags, "-fPIC", "-shared", "demo_plugin.c", "demoplugin_rseq.c",
                    "-o", "plugin.so", "-lpthread"], workdir)
    err = err or _compile([cc, *flags, "-DDEMO_DYNAMIC", "demo_main.c", "demo_rseq.c", "-o", "demo",
                           *PROTOCOLS[protocol].executable_link_flags, "-lpthread", "-ldl"], workdir)
    builds["dynamic"] = (None, err) if err else (workdir / "demo", None)
    err = _compile([cc, *flags, "-static", "demo_main.c", "demo_rseq.c", "-o", "demo-static", "-lpthread"],
                   workdir)
    builds["static"] = (None, err) if err else (workdir / "demo-static", None)
    if shutil.which("musl-gcc"):
        err = _compile(["musl-gcc", *flags, "-static", "demo_main.c", "demo_rseq.c", "-o", "demo-musl"],
                       workdir)
        builds["musl"] = (None, err) if err else (workdir / "demo-musl", None)
    else:
        builds["musl"] = (None, "musl-gcc not installed (Debian: musl-tools)")
    return builds


def run_all(workdir: Path, builds) -> list[dict]:
    rows = []
    for env in DEMO_ENVS:
        binary, reason = builds[env.build]
        row = {"environment": env.name, "env_id": env.env_id}
        if binary is None:
            row["skipped"] = reason
            rows.append(row)
            continue
        run_env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        run_env.update(ENVIRONMENT_VARIABLES[env.env_id])
        args = [str(binary)] + ([str(workdir / "plugin.so")] if env.build == "dynamic" else [])
        proc = subprocess.run(args, env=run_env, capture_output=True, text=True, timeout=120)
        try:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        except (IndexError, ValueError):
            row["error"] = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        rows.append(row)
    return rows


def format_table(protocol: str, rows: list[dict]) -> str:
    header = ("environment", "owner", "registrations", "cpu", "counter exact", "plugin owner")
    body = []
    for r in rows:
        if "skipped" in r:
            body.append((r["environment"], f"not run: {r['skipped']}", "", "", "", ""))
        elif "error" in r:
            body.append((r["environment"], f"error: {r['error']}", "", "", "", ""))
        else:
            body.append((r["environment"], r["owner"], str(r["registrations"]), str(r["cpu"]),
                         "yes" if r["exact"] else "NO", r["plugin_owner"]))
    widths = [max(len(x[i]) for x in (header, *body)) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [f"rseq-gen demo, protocol {protocol}: {PROTOCOLS[protocol].rule}", "",
           line(header), line(tuple("-" * w for w in widths))]
    out += [line(cells) for cells in body]
    return "\n".join(out)


def configure_parser(sub) -> None:
    p = sub.add_parser("demo", help="build and run a demo program in every environment available here",
                       description="Generate code, compile a program and a dlopen'd plugin, run them under "
                                   "glibc with and without its registration, static glibc and static musl, "
                                   "and show who owns rseq in each.")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=list(PROTOCOLS))
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--keep", type=Path, metavar="DIR", help="build in DIR and keep it")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    cc = find_compiler()
    if args.keep:
        workdir = args.keep
        workdir.mkdir(parents=True, exist_ok=True)
        rows = run_all(workdir, build(workdir, args.protocol, cc))
    else:
        with tempfile.TemporaryDirectory(prefix="rseq-gen-demo-") as tmp:
            workdir = Path(tmp)
            rows = run_all(workdir, build(workdir, args.protocol, cc))
    if args.json:
        json.dump({"version": 1, "protocol": args.protocol, "rows": rows}, sys.stdout, indent=2)
        print()
    else:
        print(format_table(args.protocol, rows))
    ran = [r for r in rows if "owner" in r]
    return 0 if ran and all(r["exact"] for r in ran) and not any("error" in r for r in rows) else 1
