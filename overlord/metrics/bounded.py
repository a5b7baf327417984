"""Label values from device or operator data, bounded so ``/metrics`` stays small.

A device chooses its role names and versions, and a value that reached the database by any
path (an older release, a restore, a hand edit) is exported as stored. So every such label
value is cut to a short, plain charset when exported, and each family keeps at most
``max_series`` label sets: the largest counts are exported as they are, the rest are summed
into one ``(other)`` series, so totals still add up. ``fleet_metric_series_dropped`` says how
many label sets a family folded away at this scrape.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily

# Longer than every value the request schemas admit (rollout names: 100 characters; a
# release label is a role name, a dash and a version: 104), so valid values are unchanged.
MAX_LABEL_CHARS = 128
# No schema admits parentheses, and label_value() replaces them, so no data can name it.
OTHER = "(other)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:+-]")
_DIGEST_CHARS = 12
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def label_value(raw: object) -> str:
    """``raw`` as a label value: at most MAX_LABEL_CHARS of ``[A-Za-z0-9._:+-]``.

    A value that had to change ends in ``~`` and a digest of the whole original, so two
    different values never export as the same label set (which would be a duplicate series).
    """
    text = str(raw)
    head = text[: MAX_LABEL_CHARS + 1]
    if len(head) <= MAX_LABEL_CHARS and not _UNSAFE.search(head):
        return head
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    return f"{_UNSAFE.sub('_', head[: MAX_LABEL_CHARS - _DIGEST_CHARS - 1])}~{digest}"


def method_label(method: str) -> str:
    """An HTTP method as a label: any other token a client sends is one ``OTHER``."""
    return method if method in _HTTP_METHODS else OTHER


class CountFamily:
    """A gauge of counts by label set, at most ``max_series`` series when exported.

    ``kept`` names labels whose values the Overlord computes from a closed set (a status
    enum): they survive folding, so ``sum by (status)`` stays exact. Every other label is
    treated as hostile: bounded by :func:`label_value`, and folded into ``OTHER`` past the cap.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        *,
        max_series: int,
        kept: Iterable[str] = (),
    ) -> None:
        self.name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._kept = frozenset(kept)
        self._max_series = max_series
        self._counts: Counter[tuple[str, ...]] = Counter()
        self.dropped = 0

    def add(self, values: Sequence[object], count: int = 1) -> None:
        key = tuple(
            str(v) if label in self._kept else label_value(v)
            for label, v in zip(self._labels, values, strict=True)
        )
        self._counts[key] += count

    def family(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(self.name, self._documentation, labels=self._labels)
        series = self._capped()
        for key in sorted(series):
            family.add_metric(list(key), series[key])
        return family

    def _capped(self) -> Counter[tuple[str, ...]]:
        if len(self._counts) <= self._max_series:
            return self._counts
        folded: Counter[tuple[str, ...]] = Counter()
        for key, count in self._counts.items():
            folded[self._fold(key)] += count
        # Room for the (other) series: at most one per value of the kept labels.
        room = max(self._max_series - len(folded), 0)
        ranked = sorted(self._counts.items(), key=lambda item: (-item[1], item[0]))
        series: Counter[tuple[str, ...]] = Counter(dict(ranked[:room]))
        for key, count in ranked[room:]:
            series[self._fold(key)] += count
        self.dropped = len(ranked) - room
        return series

    def _fold(self, key: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(
            v if label in self._kept else OTHER for label, v in zip(self._labels, key, strict=True)
        )


def dropped_family(families: Iterable[tuple[str, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "fleet_metric_series_dropped",
        "label sets not exported one by one at this scrape (folded into (other), or rollouts "
        "past the cap left out)",
        labels=["metric"],
    )
    for name, dropped in families:
        family.add_metric([name], dropped)
    return family
