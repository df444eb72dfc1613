"""Renderers for ``rseq-gen verify``. The JSON report (``report`` below, see
verify-schema.json) is the canonical form; every other format is rendered
from it."""

from __future__ import annotations

import json
import os

from rseq_gen import __version__
from rseq_gen.adopters import LIBC_ENVIRONMENT_TITLES
from rseq_gen.coexistence import THREADS
from rseq_gen.rules import RULE_LIST, RULES

REPORT_VERSION = 2
RULES_URI = "docs/rules.md"
_GITHUB_LIMIT = 10  # annotations per kind that GitHub shows per step


def escape(text: str) -> str:
    """XML character data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoteattr(text: str) -> str:
    """A double-quoted XML attribute value."""
    return '"' + escape(text).replace('"', "&quot;").replace("\n", "&#10;") + '"'


def _where(f: dict) -> str:
    return f"{f['file']}({f['member']})" if f.get("member") else f["file"]


def render(report: dict, fmt: str, notes: bool = False) -> str:
    """``notes``: show informational notes in the text output (the other
    formats, read by tools, always carry every finding)."""
    if fmt == "text":
        return render_text(report, notes)
    return {"json": render_json, "sarif": render_sarif,
            "junit": render_junit, "github": render_github}[fmt](report)


# ---- text -----------------------------------------------------------------

def render_text(report: dict, notes: bool = False) -> str:
    """One line per finding, then an indented ``fix:`` line; notes only
    when asked for (``--notes``, ``-v``)."""
    lines = []
    hidden = 0
    for f in report["findings"]:
        if f["severity"] == "note" and not notes:
            hidden += 1
            continue
        lines.append(f"{_where(f)}: {f['severity']} {f['rule']} {f['name']}: {f['message']}")
        lines.append(f"    fix: {f.get('fix') or RULES[f['rule']].fix}")
    # Unreadable inputs are not repeated here: verify prints one line for
    # each on stderr, and the summary counts them.
    for c in report.get("closures", []):
        lines += closure_table(c)
    s = report["summary"]
    shown = f" ({hidden} not shown: --notes)" if hidden else ""
    lines.append(f"rseq-gen verify: {s['files']} file(s), {s['errors']} error(s), "
                 f"{s['warnings']} warning(s), {s['notes']} note(s){shown}, "
                 f"{s['unreadable']} unreadable input(s)")
    return "\n".join(lines) + "\n"


def _short_labels(members: list[dict]) -> dict[str, str]:
    """Member labels with file names instead of paths (the path where two
    files share a name)."""
    names = [os.path.basename(m["file"]) for m in members]
    out = {}
    for m, name in zip(members, names):
        base = name if names.count(name) == 1 else m["file"]
        out[m["label"]] = base + m["label"][len(m["file"]):]
    return out


def _yes_no(flags: dict) -> str:
    return "/".join("yes" if flags[t] else "no" for t in THREADS)


def closure_table(c: dict) -> list[str]:
    """A closure's prediction as a short table: the members in lookup order,
    then one row per environment the process can meet (two when the order
    in which modules touch a thread changes the outcome)."""
    pred = c["prediction"]
    short = _short_labels(pred["members"])
    libc = pred["libc"] or "none in the closure"
    what = "closure" if c.get("kind") == "closure" else "inputs given together"
    lines = [f"{c['root']}: rseq registration per environment ({what}, libc: {libc}); "
             "members in symbol lookup order:"]
    if not pred["members"]:
        lines.append("  (no rseq adopter besides the libc)")
    for i, m in enumerate(pred["members"], 1):
        kind = f"rseq-gen {m['protocol']}" if m["adopter"] == "rseq-gen" else m["adopter"]
        later = ", dlopen'd later" if m["loaded"] == "dlopen" else ""
        lines.append(f"  {i}. {short[m['label']]} ({kind}{later})")
    rows = [("environment", "first", "registrant main/worker", "fast path main/worker", "peers main/worker")]
    for env in pred["applicable"]:
        outcomes = pred["environments"][env]
        firsts = list(outcomes) if pred["order_matters"][env] else [next(iter(outcomes))]
        for first in firsts:
            o = outcomes[first]
            th = o["threads"]
            regs = [th[t]["registrant"] for t in THREADS]
            reg = "/".join(short.get(r, r) for r in regs)
            fast = ", ".join(f"{short[l]} {_yes_no(f)}" for l, f in o["fast_path"].items()) or "-"
            peers = ", ".join(f"{short[l]} " + "/".join(th[t]["peers"].get(l, "-") for t in THREADS)
                              for l in th[THREADS[0]]["peers"]) or "-"
            rows.append((LIBC_ENVIRONMENT_TITLES[env], first if len(firsts) > 1 else "either",
                         reg, fast, peers))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1])
    return lines


# ---- json -----------------------------------------------------------------

def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


# ---- sarif ----------------------------------------------------------------

_LEVEL = {"error": "error", "warning": "warning", "note": "note"}


def _uri(path: str) -> str:
    """Repository-relative when the file is under the working directory."""
    try:
        rel = os.path.relpath(os.path.abspath(path))
    except ValueError:
        rel = path
    if rel.startswith(".."):
        return "file://" + os.path.abspath(path)
    return rel.replace(os.sep, "/")


def render_sarif(report: dict) -> str:
    rules = [{
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.summary},
        "help": {"text": r.fix},
        "helpUri": f"{RULES_URI}#{r.id.lower()}-{r.name}",
        "defaultConfiguration": {"level": _LEVEL[r.severity]},
        "properties": {"category": r.category},
    } for r in RULE_LIST]
    index = {r.id: i for i, r in enumerate(RULE_LIST)}
    results = []
    for f in report["findings"]:
        src = f.get("source")
        if src and src.get("file"):
            loc = {"artifactLocation": {"uri": _uri(src["file"])}}
            if src.get("line"):
                loc["region"] = {"startLine": int(src["line"])}
        else:
            loc = {"artifactLocation": {"uri": _uri(f["file"])}}
        props = {"binary": f["file"]}
        for key in ("member", "symbol", "section", "address"):
            if f.get(key) is not None:
                props[key] = f[key]
        results.append({
            "ruleId": f["rule"],
            "ruleIndex": index[f["rule"]],
            "level": _LEVEL[f["severity"]],
            "message": {"text": f"{f['message']} ({_where(f)})"},
            "locations": [{"physicalLocation": loc}],
            "properties": props,
        })
    notifications = [{"level": "error", "message": {"text": f"{_where(e)}: {e['message']}"}}
                     for e in report["errors"]]
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "rseq-gen", "version": __version__,
                                "informationUri": "https://github.com/rseq-gen/rseq-gen",
                                "rules": rules}},
            "invocations": [{"executionSuccessful": not report["errors"],
                             "toolExecutionNotifications": notifications}],
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2) + "\n"


# ---- junit ----------------------------------------------------------------

def render_junit(report: dict) -> str:
    fail_levels = {"error"} | ({"warning"} if report["options"]["fail_on"] == "warning" else set())
    by_file: dict[str, list] = {}
    for f in report["files"]:
        by_file.setdefault(f["path"], [])
    for f in report["findings"]:
        by_file.setdefault(f["file"], []).append(f)
    errors_by_file: dict[str, list] = {}
    for e in report["errors"]:
        errors_by_file.setdefault(e["file"], []).append(e)
        by_file.setdefault(e["file"], [])
    suites = []
    total_tests = total_fail = total_err = 0
    for path, findings in by_file.items():
        cases = []
        fails = errs = 0
        for rule in RULE_LIST:
            mine = [f for f in findings if f["rule"] == rule.id]
            name = f"{rule.id} {rule.name}"
            failing = [f for f in mine if f["severity"] in fail_levels]
            body = ""
            if failing:
                fails += 1
                text = "\n".join(f"{_where(f)}: {f['message']}" for f in failing)
                body = (f"<failure message={quoteattr(failing[0]['message'])} "
                        f"type={quoteattr(failing[0]['severity'])}>{escape(text)}</failure>")
            elif mine:
                body = "<system-out>" + escape("\n".join(f"{_where(f)}: {f['message']}" for f in mine)) \
                       + "</system-out>"
            cases.append(f'    <testcase classname={quoteattr(path)} name={quoteattr(name)}>{body}'
                         f'</testcase>')
        for e in errors_by_file.get(path, []):
            errs += 1
            cases.append(f'    <testcase classname={quoteattr(path)} name="input"><error '
                         f'message={quoteattr(e["message"])}>{escape(_where(e))}</error></testcase>')
        total_tests += len(cases)
        total_fail += fails
        total_err += errs
        suites.append(f'  <testsuite name={quoteattr(path)} tests="{len(cases)}" failures="{fails}" '
                      f'errors="{errs}">\n' + "\n".join(cases) + "\n  </testsuite>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuites name="rseq-gen verify" tests="{total_tests}" failures="{total_fail}" '
            f'errors="{total_err}">\n' + "\n".join(suites) + "\n</testsuites>\n")


# ---- github -----------------------------------------------------------------

def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(report: dict) -> str:
    lines = []
    shown = {"error": 0, "warning": 0, "notice": 0}
    hidden = 0
    items = [(f["severity"], f) for f in report["findings"]]
    items += [("error", {"file": e["file"], "member": e.get("member"), "rule": "input",
                         "name": "unreadable", "message": e["message"], "source": None})
              for e in report["errors"]]
    for sev, f in items:
        kind = "notice" if sev == "note" else sev
        if shown[kind] >= _GITHUB_LIMIT:
            hidden += 1
            continue
        shown[kind] += 1
        src = f.get("source") or {}
        file = src.get("file") or f["file"]
        props = [f"file={_gh_escape(_uri(file), True)}"]
        if src.get("line"):
            props.append(f"line={int(src['line'])}")
        props.append(f"title={_gh_escape(f['rule'] + ' ' + f['name'], True)}")
        lines.append(f"::{kind} {','.join(props)}::{_gh_escape(f['message'] + ' (' + _where(f) + ')')}")
    s = report["summary"]
    more = f"; {hidden} more not annotated (see --format text)" if hidden else ""
    lines.append(f"rseq-gen verify: {s['files']} file(s), {s['errors']} error(s), {s['warnings']} "
                 f"warning(s), {s['notes']} note(s), {s['unreadable']} unreadable input(s){more}")
    return "\n".join(lines) + "\n"


def rule_ids() -> list[str]:
    return list(RULES)
