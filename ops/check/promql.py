"""PromQL expressions of the dashboards and alert rules, with Grafana variables substituted, and
the metric names each one references.

Used by live.py (run every expression against a real Prometheus) and static.py.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OPS = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((OPS / "grafana" / "dashboards").glob("*.json"))
RULES = sorted((OPS / "prometheus" / "rules").glob("*.yml"))
SPANMETRICS_LIST = OPS / "otel-collector" / "spanmetrics-series.txt"

# What Grafana puts in place of its variables for the check: "All" for the template variables
# (their allValue is .*), and intervals that fit a 1 s scrape.
SUBSTITUTIONS = {
    "$__rate_interval": "10s",
    "${__rate_interval}": "10s",
    "$__interval": "2s",
    "${__interval}": "2s",
    "$__range": "1m",
    "${__range}": "1m",
    "$job": ".*",
    "$instance": ".*",
    "$replica": ".*",
    "$service": ".*",
}

FUNCTIONS_AND_KEYWORDS = {
    # aggregations and their modifiers
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "le",
    # functions used anywhere in our queries (anything followed by "(" is skipped anyway)
    "rate", "irate", "increase", "delta", "histogram_quantile", "label_values", "inf", "nan",
}


@dataclass
class Query:
    source: str  # "dashboard <uid> / <panel>" or "rule <alert>"
    expr: str
    core: bool = False  # must return data against the native stack
    metrics: set = field(default_factory=set)


def substitute(expr):
    for var, value in sorted(SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted Grafana variable in: {expr}")
    return expr


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers outside label matchers, grouping clauses
    and range selectors that are not functions or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name, rest = m.group(0), text[m.end():]
        if rest.lstrip().startswith("(") or name.lower() in FUNCTIONS_AND_KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]?", name) or re.fullmatch(r"[eE]\d*", name):
            continue
        names.add(name)
    return names


def label_values_query(query):
    """`label_values(metric{...}, label)` -> the `metric{...}` part; None for a bare label."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query)
    return m.group(1) if m else None


def dashboard_queries(core_titles):
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uid = board["uid"]
        for var in board.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            inner = label_values_query(q or "")
            if inner:
                queries.append(Query(f"dashboard {uid} / variable ${var['name']}", substitute(inner)))
        for panel in board["panels"]:
            for t in panel.get("targets", []):
                if "expr" in t:
                    core = panel["title"] in core_titles and uid == "messenger-overview"
                    queries.append(Query(f"dashboard {uid} / {panel['title']} [{t['refId']}]",
                                         substitute(t["expr"]), core=core))
    return queries


def rule_queries():
    queries = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                queries.append(Query(f"rule {name}", rule["expr"].strip()))
    return queries


def spanmetrics_series():
    lines = SPANMETRICS_LIST.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def all_queries(core_titles):
    queries = dashboard_queries(core_titles) + rule_queries()
    for q in queries:
        q.metrics = metric_names(q.expr)
    return queries
