#!/usr/bin/env python3
"""Checks Grafana dashboards (monitor/dashboards/*.json) without a Grafana server.

1. Structure, as Grafana's dashboard JSON model (schemaVersion 36 and later) needs it to load:
   the top-level keys and their types, a uid Grafana accepts, the templating variables (each with
   a name and a known type; query variables with a datasource and a query), the panels (unique
   ids, including those inside rows; a known type; a title; a gridPos inside the 24-column grid,
   not overlapping another panel; a Prometheus datasource reference whose variable exists; and
   for every panel but rows and text, targets with a unique refId and a PromQL expression).
2. Every `$variable` an expression or a variable query uses is defined (or one of Grafana's).
3. Every metric name in every PromQL expression is one the endpoint serves: the sample names in
   `--metrics FILE` (the text of /metrics; `-` reads standard input) or in the answers of
   `--url URL` (repeatable: each amfd of a cluster).
4. With `--prometheus URL`: every expression, its variables given a value, is evaluated by that
   Prometheus server's HTTP API and must not be refused (syntax, types).

Usage: check_dashboards.py [--metrics FILE | --url URL...] [--prometheus URL] [--names] DASHBOARD.json...
Prints FILE: what is wrong, for every problem; exits 1 if there is any. --names prints every
metric name the dashboards use.
"""
import argparse
import json
import re
import sys
import urllib.parse
import urllib.request

PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "state-timeline", "status-history",
               "heatmap", "histogram", "text", "piechart", "barchart", "logs", "news", "dashlist", "alertlist"}
VARIABLE_TYPES = {"query", "datasource", "custom", "constant", "interval", "textbox", "adhoc"}
BUILTIN_VARIABLES = {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s", "__range_ms",
                     "__dashboard", "__from", "__to", "__name", "__org", "__user", "timeFilter", "__timeFilter"}
UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\])")

# PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "atan2", "inf", "nan", "start", "end"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                "topk", "quantile"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def strip_strings(expr):
    return re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)


def metric_names(expr):
    """The metric names an expression selects (functions, keywords, labels and durations left out)."""
    text = strip_strings(expr)
    text = VARIABLE.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)       # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)      # ranges and subqueries
    text = GROUPING.sub(" ", text)              # label lists
    names = set()
    for match in IDENTIFIER.finditer(text):
        word = match.group(0)
        before = text[:match.start()]
        after = text[match.end():].lstrip()
        if word in KEYWORDS or word in AGGREGATIONS or after.startswith("("):
            continue
        if re.search(r"[0-9.]$", before):       # the unit of a number (5m) or an exponent
            continue
        names.add(word)
    return names


def variables_in(text):
    return {next(g for g in m.groups() if g) for m in VARIABLE.finditer(text)}


def panels_of(board):
    for panel in board.get("panels", []):
        yield panel
        for inner in panel.get("panels", []) or []:
            yield inner


def check_board(path, board, problems):
    def bad(message):
        problems.append("%s: %s" % (path, message))

    for key, kind in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list), ("templating", dict),
                      ("time", dict), ("version", int), ("editable", bool), ("tags", list)):
        if not isinstance(board.get(key), kind):
            bad("'%s' must be a %s" % (key, kind.__name__))
    if isinstance(board.get("uid"), str) and not UID.match(board["uid"]):
        bad("uid '%s' is not 1-40 letters, digits, - or _" % board["uid"])
    if isinstance(board.get("schemaVersion"), int) and board["schemaVersion"] < 36:
        bad("schemaVersion %d: 36 or later (datasources as references)" % board["schemaVersion"])
    time = board.get("time") or {}
    if not isinstance(time.get("from"), str) or not isinstance(time.get("to"), str):
        bad("time needs 'from' and 'to'")
    variables = {}
    for v in (board.get("templating") or {}).get("list", []):
        name = v.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_]+$", name):
            bad("a templating variable without a proper name: %r" % name)
            continue
        if name in variables:
            bad("templating variable '%s' twice" % name)
        if v.get("type") not in VARIABLE_TYPES:
            bad("variable '%s': type %r" % (name, v.get("type")))
        if v.get("type") == "query":
            query = v.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if not isinstance(query, str) or not query:
                bad("variable '%s': no query" % name)
            check_datasource(v.get("datasource"), "variable '%s'" % name, variables, bad)
        variables[name] = v
    defined = set(variables) | BUILTIN_VARIABLES
    for name, v in variables.items():
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        for used in variables_in(query if isinstance(query, str) else ""):
            if used not in defined:
                bad("variable '%s' uses $%s, which is not defined" % (name, used))

    ids = set()
    cells = []
    expressions = []
    for panel in panels_of(board):
        pid = panel.get("id")
        where = "panel %r (%s)" % (panel.get("title"), pid)
        if not isinstance(pid, int):
            bad("%s: id must be a number" % where)
        elif pid in ids:
            bad("%s: id %d twice" % (where, pid))
        ids.add(pid)
        if panel.get("type") not in PANEL_TYPES:
            bad("%s: unknown type %r" % (where, panel.get("type")))
        if not isinstance(panel.get("title"), str):
            bad("%s: no title" % where)
        grid = panel.get("gridPos")
        if not isinstance(grid, dict) or not all(isinstance(grid.get(k), int) for k in "hwxy"):
            bad("%s: gridPos needs whole numbers h, w, x, y" % where)
        elif grid["w"] < 1 or grid["h"] < 1 or grid["x"] < 0 or grid["y"] < 0 or grid["x"] + grid["w"] > 24:
            bad("%s: gridPos %s is outside the 24-column grid" % (where, grid))
        else:
            for other, cell in cells:
                if (grid["x"] < cell["x"] + cell["w"] and cell["x"] < grid["x"] + grid["w"] and
                        grid["y"] < cell["y"] + cell["h"] and cell["y"] < grid["y"] + grid["h"]):
                    bad("%s overlaps %s" % (where, other))
            cells.append((where, grid))
        if panel.get("type") in ("row", "text"):
            continue
        check_datasource(panel.get("datasource"), where, variables, bad)
        targets = panel.get("targets")
        if not isinstance(targets, list) or not targets:
            bad("%s: no targets" % where)
            continue
        refs = set()
        for target in targets:
            ref = target.get("refId")
            if not isinstance(ref, str) or not ref or ref in refs:
                bad("%s: refId %r missing or twice" % (where, ref))
            refs.add(ref)
            if "datasource" in target:
                check_datasource(target["datasource"], where, variables, bad)
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                bad("%s, target %s: no expr" % (where, ref))
                continue
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                bad("%s, target %s: unbalanced brackets in %s" % (where, ref, expr))
            for used in variables_in(expr):
                if used not in defined:
                    bad("%s, target %s: $%s is not defined" % (where, ref, used))
            expressions.append((where + ", target " + str(ref), expr))
    return expressions, variables


def check_datasource(ref, where, variables, bad):
    if not isinstance(ref, dict) or ref.get("type") != "prometheus" or not isinstance(ref.get("uid"), str):
        bad("%s: datasource must be {type: prometheus, uid: ...}, not %r" % (where, ref))
        return
    for used in variables_in(ref["uid"]):
        if used not in variables or variables[used].get("type") != "datasource":
            bad("%s: datasource ${%s} is not a datasource variable" % (where, used))


def served_names(texts):
    names = set()
    for text in texts:
        for line in text.splitlines():
            if line and not line.startswith("#"):
                names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def label_values(prometheus, metric, label):
    url = "%s/api/v1/series?%s" % (prometheus, urllib.parse.urlencode({"match[]": metric}))
    with urllib.request.urlopen(url, timeout=10) as answer:
        series = json.load(answer)["data"]
    return sorted({s[label] for s in series if label in s})


def substitute(text, values):
    """`text` with each variable replaced by its value in `values` (".*" for one without)."""
    def value(match):
        name = next(g for g in match.groups() if g)
        return values.get(name, "1m" if name.startswith("__") else ".*")
    return VARIABLE.sub(value, text)


def evaluate(prometheus, expr, values):
    """Prometheus's verdict on the expression, the variables replaced; None when it is accepted."""
    text = substitute(expr, values)
    url = "%s/api/v1/query?%s" % (prometheus, urllib.parse.urlencode({"query": text}))
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            result = json.load(answer)
    except urllib.error.HTTPError as e:
        result = json.load(e)
    return None if result.get("status") == "success" else "%s: %s" % (text, result.get("error"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dashboards", nargs="+")
    parser.add_argument("--metrics", help="the text of /metrics ('-': standard input)")
    parser.add_argument("--url", action="append", default=[], help="a live /metrics endpoint")
    parser.add_argument("--prometheus", help="a Prometheus server whose API evaluates every expression")
    parser.add_argument("--names", action="store_true", help="print the metric names the dashboards use")
    args = parser.parse_args()

    texts = []
    if args.metrics:
        texts.append(sys.stdin.read() if args.metrics == "-" else open(args.metrics).read())
    for url in args.url:
        with urllib.request.urlopen(url, timeout=10) as answer:
            texts.append(answer.read().decode())
    served = served_names(texts) if texts else None

    problems = []
    used = set()
    for path in args.dashboards:
        try:
            with open(path) as f:
                board = json.load(f)
        except (OSError, ValueError) as e:
            problems.append("%s: %s" % (path, e))
            continue
        if not isinstance(board, dict):
            problems.append("%s: not a JSON object" % path)
            continue
        expressions, variables = check_board(path, board, problems)
        values = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
        if args.prometheus:
            for name, v in variables.items():
                query = v.get("query")
                query = query.get("query") if isinstance(query, dict) else query
                match = re.match(r"label_values\((.*),\s*([A-Za-z0-9_]+)\)$", query or "")
                if match:
                    found = label_values(args.prometheus, substitute(match.group(1), values), match.group(2))
                    values[name] = found[0] if found else ".*"
                    if not found:
                        problems.append("%s: variable '%s' has no values (%s)" % (path, name, query))
        for where, expr in expressions:
            names = metric_names(expr)
            used |= names
            if not names:
                problems.append("%s: %s: no metric in %s" % (path, where, expr))
            for name in sorted(names - (served or names)):
                problems.append("%s: %s: %s is not served by the endpoint" % (path, where, name))
            if args.prometheus:
                verdict = evaluate(args.prometheus, expr, values)
                if verdict:
                    problems.append("%s: %s: Prometheus refuses %s" % (path, where, verdict))
    if args.names:
        print("\n".join(sorted(used)))
    for p in problems:
        print(p)
    if problems:
        print("%d problem(s)" % len(problems), file=sys.stderr)
        return 1
    if served is None and not args.names:
        print("structure checked; no endpoint output given, metric names not checked", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
