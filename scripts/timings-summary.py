#!/usr/bin/env python3
"""Summarises a cargo --timings report (cargo-timing.html): wall time, the
units' CPU-seconds by phase, by crate family and the largest units. Used by
scripts/build-timings.sh; docs/build.md quotes its output."""
import json
import re
import sys
from collections import defaultdict

FAMILIES = [
    ("DataFusion", lambda n: n.startswith("datafusion")),
    ("Ballista", lambda n: n.startswith("ballista")),
    ("arrow and parquet", lambda n: n.startswith("arrow") or n == "parquet"),
    ("object_store and HTTP/TLS", lambda n: n in {
        "object_store", "reqwest", "hyper", "hyper-util", "hyper-rustls", "hyper-timeout", "h2", "http",
        "http-body", "http-body-util", "rustls", "rustls-webpki", "rustls-native-certs", "rustls-pki-types",
        "ring", "tokio-rustls", "quick-xml", "tower", "tower-http", "tonic", "axum", "axum-core"}),
    ("libtorch bindings", lambda n: n in {"torch-sys", "tch"}),
    ("audience (this crate)", lambda n: n == "audience"),
    ("other crates", lambda n: True),
]


def load(path):
    text = open(path, encoding="utf-8").read()
    match = re.search(r"const UNIT_DATA = (\[.*?\n\]);", text, re.S)
    if not match:
        sys.exit(f"error: {path}: no UNIT_DATA (not a cargo --timings report?)")
    return json.loads(match.group(1))


def phases(unit):
    """CPU-seconds of a unit by phase: a build script's run, or the compiler's sections."""
    if "run-custom-build" in unit["mode"] or "run-custom-build" in unit["target"]:
        return {"build scripts (running)": unit["duration"]}
    sections = unit.get("sections") or []
    if not sections:
        return {"compile (no sections)": unit["duration"]}
    out = defaultdict(float)
    for name, span in sections:
        out[name] += span["end"] - span["start"]
    return out


def main():
    units = load(sys.argv[1])
    total = sum(u["duration"] for u in units)
    wall = max(u["start"] + u["duration"] for u in units)
    print(f"wall {wall:.0f} s ({wall / 60:.1f} min); {len(units)} units; {total:.0f} CPU-seconds "
          f"(on 2 cores at least {total / 120:.1f} min)")
    by_phase = defaultdict(float)
    by_family = defaultdict(float)
    for unit in units:
        for name, secs in phases(unit).items():
            by_phase[name] += secs
        family = next(f for f, test in FAMILIES if test(unit["name"]))
        by_family[family] += unit["duration"]
    print("by phase:", ", ".join(f"{k} {v:.0f} s ({100 * v / total:.0f}%)" for k, v in
                                 sorted(by_phase.items(), key=lambda kv: -kv[1])))
    print("by family:", ", ".join(f"{k} {v:.0f} s ({100 * v / total:.0f}%)" for k, v in
                                  sorted(by_family.items(), key=lambda kv: -kv[1])))
    print("largest units:")
    for unit in sorted(units, key=lambda u: -u["duration"])[:int(sys.argv[2]) if len(sys.argv) > 2 else 20]:
        print(f"  {unit['duration']:7.1f} s  {unit['name']} {unit['version']}{unit['target'].rstrip()}")


if __name__ == "__main__":
    main()
