#!/usr/bin/python3
"""check_metrics.py - checks Prometheus text exposition (GET /metrics) read on stdin.

Parses the text with Debian's python3-prometheus-client
(prometheus_client.parser.text_string_to_metric_families), then, because that
parser is lax, also checks what a Prometheus server would reject or misread:
samples outside a declared family (the parser turns them into "untyped"
singletons), duplicate series, and histograms whose buckets are not cumulative
or whose +Inf bucket differs from _count.

Arguments name what must be present:
  FAMILY                      a family (a counter may be named with or without _total)
  FAMILY{label="value",...}   a family with a sample carrying at least these labels

Exit status 0 and "ok: ..." when all holds; 1 with a reason per problem otherwise.
  curl -s localhost:8000/metrics | tests/e2e/check_metrics.py dabba_build_info
"""
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_requirement(arg):
    """FAMILY or FAMILY{a="b",...} -> (family, {labels})."""
    if "{" not in arg:
        return arg, {}
    name, rest = arg.split("{", 1)
    if not rest.endswith("}"):
        raise ValueError(f"requirement {arg!r}: no closing '}}'")
    body, labels, pos = rest[:-1], {}, 0
    while pos < len(body):
        m = LABEL_RE.match(body, pos)
        if not m:
            raise ValueError(f"requirement {arg!r}: cannot read labels at {body[pos:]!r}")
        labels[m.group(1)] = re.sub(r'\\(.)', lambda e: {"n": "\n"}.get(e.group(1), e.group(1)),
                                    m.group(2))
        pos = m.end()
    return name, labels


def check_histogram(fam, problems):
    """Buckets cumulative, le increasing, +Inf present and equal to _count, per series."""
    series = {}
    for s in fam.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": [], "count": None})
        if s.name == fam.name + "_bucket":
            if "le" not in s.labels:
                problems.append(f"{fam.name}: bucket without le {dict(key)}")
                continue
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name == fam.name + "_count":
            entry["count"] = s.value
    for key, e in series.items():
        b = e["buckets"]
        where = f"{fam.name}{dict(key)}"
        if not b or not math.isinf(b[-1][0]):
            problems.append(f"{where}: no +Inf bucket last")
            continue
        for (le0, c0), (le1, c1) in zip(b, b[1:]):
            if not le1 > le0 or c1 < c0:
                problems.append(f"{where}: buckets le={le0}:{c0}, le={le1}:{c1} not cumulative")
        if e["count"] is None or e["count"] != b[-1][1]:
            problems.append(f"{where}: _count {e['count']} differs from +Inf bucket {b[-1][1]}")


def main(argv):
    raw = sys.stdin.buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        print(f"check_metrics: not UTF-8: {e}")
        return 1
    try:
        requirements = [parse_requirement(a) for a in argv[1:]]
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError, IndexError, ...
        print(f"check_metrics: parse error: {type(e).__name__}: {e}")
        return 1

    problems = []
    by_name = {}
    seen_series = set()
    n_samples = 0
    for fam in families:
        if fam.name in by_name:
            problems.append(f"family {fam.name} appears twice (not contiguous)")
        by_name[fam.name] = fam
        if fam.type in ("untyped", "unknown"):
            problems.append(f"family {fam.name} has no TYPE (a sample outside its family?)")
        for s in fam.samples:
            n_samples += 1
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen_series:
                problems.append(f"duplicate series {s.name}{s.labels}")
            seen_series.add(key)
            if fam.type == "counter" and not s.value >= 0:
                problems.append(f"counter {s.name}{s.labels} is {s.value}")
        if fam.type == "histogram":
            check_histogram(fam, problems)

    for name, labels in requirements:
        # The parser names a counter family without its _total suffix.
        fam = by_name.get(name) or (by_name.get(name[:-6]) if name.endswith("_total") else None)
        if fam is None:
            problems.append(f"required family {name} is missing")
            continue
        if labels and not any(all(s.labels.get(k) == v for k, v in labels.items())
                              for s in fam.samples):
            problems.append(f"family {name} has no sample with labels {labels}")

    if problems:
        for p in problems:
            print(f"check_metrics: {p}")
        return 1
    print(f"ok: {len(families)} families, {n_samples} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
