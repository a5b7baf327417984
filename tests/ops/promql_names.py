"""Metric names used by PromQL expressions, for the metrics-contract tests.

Not a PromQL parser: it removes what cannot hold a metric name (strings, label matchers,
ranges, grouping clauses, numbers, Grafana variables) and keeps the identifiers that are not
called as functions or aggregations and are not keywords. promtool checks the syntax itself.
"""

from __future__ import annotations

import re

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan", "start", "end"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((?P<args>.*)\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """The metric names an instant or range PromQL expression reads."""
    text = _GRAFANA_VARIABLE.sub(" ", _STRING.sub(" ", expr))
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", text)))
    names: set[str] = set()
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name is None or match.group("call") or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def variable_query_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus variable query (label_values(...) or PromQL)."""
    found = _LABEL_VALUES.match(query)
    if found is None:
        return metric_names(query)
    args = found.group("args")
    # label_values(label) names no metric; label_values(selector, label) reads the selector.
    depth = 0
    for index, char in enumerate(args):
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif char == "," and depth == 0:
            return metric_names(args[:index])
    return set()
