"""Resident memory of the per-CPU pool (P_pool_*).

    python benchmarks/pool_rss.py [--json FILE] [--cc CC]

Builds benchmarks/c/bench_pool_rss.c against freshly generated code and runs
it for a few (items, item size, CPUs touched) cases: each case creates a
pool with one copy of every item per possible CPU, allocates the items, then
counts into each item from a thread pinned to each touched CPU. It reports
the growth of the process's anonymous RSS (RssAnon) after allocating and
after touching, against the pages the touched copies need, and the pages
mincore() finds resident in every copy. Goal (issue 11): an item for every
possible CPU costs at most one page per CPU that touched it; untouched CPUs
cost nothing. Memory, not time: the numbers are exact on any machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import C_DIR, Compiler, generate, run_kv  # noqa: E402

#: (items, item size in bytes, CPUs touched; 0 = every allowed CPU)
CASES = ((1, 64, 1), (1, 64, 0), (1000, 16, 1), (1000, 16, 0), (20000, 64, 1), (20000, 64, 0))


def measure(cc: str = "gcc", work: Path | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        gen = generate(work / "gen", "compat")
        exe = Compiler(cc).build(work / "bench_pool_rss", [C_DIR / "bench_pool_rss.c", gen / "bench_rseq.c"],
                                 gen_dir=gen)
        rows = []
        for items, size, touched in CASES:
            out = run_kv([exe, items, size, touched or 4096], {})
            copies, page = int(out["copies"]), int(out["page"])
            touched_n = int(out["touched"])
            slot = -(-size // 8) * 8  # the pool's slot: the size rounded up to the default alignment
            need = touched_n * math.ceil(items * slot / page)  # pages the touched copies need
            resident = [int(out[f"copy{c}_resident_pages"]) for c in range(copies)]
            rows.append({
                "items": items, "item_size": size, "copies": copies, "touched_cpus": touched_n,
                "rss_growth_alloc_pages": int(out["rss_after_alloc"]) - int(out["rss_before"]),
                "rss_growth_touch_pages": int(out["rss_after_touch"]) - int(out["rss_after_alloc"]),
                "pages_needed": need, "resident_pages_per_copy": resident,
                "adds_on_own_copy": {k: int(v) for k, v in out.items() if k.endswith("_adds_on_own_copy")},
            })
        return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| items × size | copies | CPUs touched | RSS growth: alloc / touch (pages) | pages the touched copies need | resident pages per copy (mincore) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['items']} × {r['item_size']} B | {r['copies']} | {r['touched_cpus']} | "
                     f"{r['rss_growth_alloc_pages']} / {r['rss_growth_touch_pages']} | {r['pages_needed']} | "
                     f"{', '.join(map(str, r['resident_pages_per_copy']))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, metavar="FILE")
    p.add_argument("--cc", default="gcc")
    args = p.parse_args(argv)
    rows = measure(args.cc)
    print(markdown(rows))
    one = [r for r in rows if r["items"] == 1]
    met = all(r["rss_growth_touch_pages"] <= r["touched_cpus"] for r in one)
    print(f"\nGoal: one item costs at most one page per touched CPU: {'met' if met else 'missed'}")
    if args.json:
        args.json.write_text(json.dumps({"pool_rss": rows, "goal_met": met}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
