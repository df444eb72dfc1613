"""Tables (Markdown, printed and written to docs) and the goal checks."""

from __future__ import annotations

import math

#: Issue 12: every generated fast path within this factor of its floor.
FLOOR_GOAL = 1.05
#: Goals of issue 6, as ratios measured in the same run.
CPU_GOAL = 1.2          # bench_current_cpu() / plain TLS load, at most
SHARED_GOAL = 25.0      # shared atomic / percpu_counter_add at N threads, at least
SCHED_GOAL = 10.0       # sched_getcpu()+atomic / percpu_counter_add at N threads, at least


def _f(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits}g}"


def _table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _range(pair, suffix=""):
    return f"{_f(pair[0])}–{_f(pair[1])}{suffix}" if pair else "-"


def micro_table(records, *, diagnostics=True) -> str:
    rows = []
    for r in records:
        if r["diagnostic"] and not diagnostics:
            continue
        sweep = r.get("alignment_sweep")
        runs = r.get("run_medians_ns") or []
        rr = r.get("run_ratios") or []
        rows.append([
            r["label"],
            r["env"],
            r["threads"] if r["threads"] is not None else 1,
            _f(r["median_ns"]),
            _range((min(runs), max(runs))) if len(runs) > 1 else "",
            f"{_f(r['ratio'])}x" if r.get("ratio") is not None else "**floor**",
            _range((min(rr), max(rr)), "x") if len(rr) > 1 else "",
            _range(sweep["median_ns_range"]) if sweep else "",
            _range(sweep["ratio_range"], "x") if sweep and sweep["ratio_range"] else "",
            r.get("owner") or "",
            _f(r.get("cpu_over_wall"), 2),
        ])
    return _table(["case", "glibc setting", "threads", "ns/op (median of runs)",
                   "run medians ns", "x floor", "x floor per run", "ns range over loop offsets",
                   "x floor range (same offset)", "owner", "CPU/wall"], rows)


def registration_table(records) -> str:
    rows = []
    for r in records:
        sc = r.get("syscalls_per_thread")
        ex = r.get("extra_syscalls_per_thread")
        rows.append([
            r["protocol"] + (" **(baseline: no generated code)**" if r["protocol"] == "none" else ""),
            r["env"],
            f"{r['owner']} ({r['expected_owner']})" if r["protocol"] != "none" else "-",
            _f(r["median_ns"] / 1000.0),
            _range((r["min_ns"] / 1000.0, r["max_ns"] / 1000.0)),
            f"{_f(r['ratio'])}x" if r.get("ratio") else "-",
            (f"{_f(sc['rseq_register'])} / {_f(sc['rseq_unregister'])} / {_f(sc['rseq_failed'])}"
             if sc else "-"),
            _f(sc["total"]) if sc else "-",
            (f"{_f(ex['total'])} (rseq {_f(ex['rseq_register'] + ex['rseq_unregister'] + ex['rseq_failed'])})"
             if ex and r["protocol"] != "none" else "-"),
        ])
    return _table(["protocol", "glibc setting", "owner (expected)", "median µs/thread", "min–max µs",
                   "x baseline", "rseq calls/thread: register / unregister / failed",
                   "syscalls/thread (without futex, munmap)", "extra syscalls/thread vs baseline"], rows)


def build_table(records) -> str:
    rows = []
    for r in records:
        rows.append([r["project"], _f(r["configure_s"]["median"]), _f(r["build_s"]["median"]),
                     _f(r["noop_s"]["median"]),
                     f"{_f(r['ratio_configure_build'])}x" if r.get("ratio_configure_build") else "-",
                     r.get("noop_ninja_output", "")])
    return _table(["project", "configure s (median)", "build s (median)", "no-op rebuild s (median)",
                   "configure+build x baseline", "no-op rebuild says"], rows)


def goals(micro_records, reg_records, nthreads) -> list:
    out = []

    def find(item, env, case, threads=None):
        for r in micro_records:
            if (r["item"], r["env"], r["case"], r["threads"]) == (item, env, case, threads) \
                    and not r["diagnostic"]:
                return r
        return None

    def runs_note(r):
        rr = r.get("run_ratios") or []
        return f" (runs {_range((min(rr), max(rr)), 'x')})" if len(rr) > 1 else ""

    # The same goals for executable code and for shared-library code (_so).
    for suffix, where in (("", ""), ("_so", ", shared library")):
        for env in ("glibc", "glibc-rseq-off"):
            for item, case, name, threads in (
                    [("current_cpu", c, n, None) for c, n in (("rseqgen", "current_cpu"),
                                                             ("rseqgen_raw", "current_cpu_raw"),
                                                             ("rseqgen_area", "area"),
                                                             ("rseqgen_at", "current_cpu_at"))]
                    + [("percpu_counter", c, f"{n}, {t} thread(s)", t) for t in sorted({1, nthreads})
                       for c, n in (("rseqgen", "percpu_counter_add"),
                                    ("rseqgen_at", "percpu_counter_add_at"))]):
                r = find(item + suffix, env, case, threads)
                if r and r.get("ratio") is not None:
                    out.append({"goal": f"{name} <= {FLOOR_GOAL}x its floor [{env}{where}]",
                                "measured": f"{r['ratio']:.3f}x{runs_note(r)}",
                                "met": r["ratio"] <= FLOOR_GOAL})
        for env in ("glibc", "glibc-rseq-off"):
            for r in micro_records:
                if (r["item"], r["env"]) == ("percpu_ops" + suffix, env) \
                        and r.get("ratio") is not None and not r["diagnostic"]:
                    out.append({"goal": f"{r['case']} <= {FLOOR_GOAL}x its floor [{env}{where}]",
                                "measured": f"{r['ratio']:.3f}x{runs_note(r)}",
                                "met": r["ratio"] <= FLOOR_GOAL})
    for env in ("glibc", "glibc-rseq-off"):
        r, tls = find("current_cpu", env, "rseqgen"), find("current_cpu", env, "tls")
        if r and tls and tls["median_ns"]:
            ratio = r["median_ns"] / tls["median_ns"]
            out.append({"goal": f"current_cpu <= {CPU_GOAL}x plain TLS load [{env}]",
                        "measured": f"{ratio:.2f}x", "met": ratio <= CPU_GOAL})
        rs = find("percpu_counter", env, "rseqgen", nthreads)
        for case, goal, name in (("shared_atomic", SHARED_GOAL, "shared atomic"),
                                 ("sched_getcpu_atomic", SCHED_GOAL, "sched_getcpu()+per-CPU atomic")):
            r = find("percpu_counter", env, case, nthreads)
            if rs and r and rs["median_ns"]:
                ratio = r["median_ns"] / rs["median_ns"]
                cw = r.get("cpu_over_wall")
                warn = (f" (threads ran at once only part of the time: CPU/wall {cw:.2f}; "
                        f"see --realtime)" if nthreads > 1 and cw is not None and cw < 0.9 else "")
                out.append({"goal": f"percpu_counter_add >= {goal:g}x faster than {name} at "
                                    f"{nthreads} threads [{env}]",
                            "measured": f"{ratio:.1f}x{warn}", "met": ratio >= goal})
    for r in reg_records:
        ex = r.get("extra_syscalls_per_thread")
        if not ex or r["protocol"] == "none":
            continue
        if r["expected_owner"] == "glibc":
            out.append({"goal": f"{r['protocol']}: 0 extra syscalls/thread under glibc ownership "
                                f"[{r['env']}]",
                        "measured": f"{ex['total']:g} extra ({r['owner']})",
                        "met": ex["total"] == 0 and r["owner"] == "glibc"})
        elif r["expected_owner"] == "self":
            out.append({"goal": f"{r['protocol']}: exactly 1 extra syscall/thread under self "
                                f"ownership [{r['env']}]",
                        "measured": (f"{ex['total']:g} extra: {ex['rseq_register']:g} register, "
                                     f"{ex['rseq_unregister']:g} unregister ({r['owner']})"),
                        "met": ex["total"] == 1 and ex["rseq_register"] == 1
                               and r["owner"] == "self"})
    return out


def goals_table(goal_list) -> str:
    return _table(["goal", "measured", "met"],
                  [[g["goal"], g["measured"], "yes" if g["met"] else "**NO**"] for g in goal_list])
