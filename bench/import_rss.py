"""RSS of a fresh interpreter after importing modules, for source trees side by side.

    .venv/bin/python bench/import_rss.py --tree main=../main/src --tree new=src --runs 5

Each run is a new process (`python -c "import ...; read /proc/self/statm"`) with PYTHONPATH set
to the tree, the trees interleaved (A B A B ...) so that a change in the machine's load or page
cache hits both alike. Prints the medians and writes every sample to bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchlib import machine_info, write_result

CODE = """
import os, sys
import {modules}
pages = int(open("/proc/self/statm").read().split()[1])
loaded = sum(1 for m in sys.modules if m.startswith("prometheus_client"))
where = sys.modules["sentinel"].__file__
print(pages * os.sysconf("SC_PAGE_SIZE"), len(sys.modules), loaded, where)
"""


def measure(src: Path, modules: str, python: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [python, "-c", CODE.format(modules=modules)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.split()
    return {
        "rss_mib": round(int(out[0]) / 2**20, 3),
        "modules": int(out[1]),
        "prometheus_client_modules": int(out[2]),
        # the tree under test was the one imported (no machine path in the results)
        "sentinel_from_tree": out[3].startswith(str(src) + os.sep),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", required=True, help="NAME=PATH of a src directory")
    p.add_argument("--modules", default="sentinel.cli, sentinel.daemon")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args()
    trees = {name: Path(path).resolve() for name, path in (t.split("=", 1) for t in args.tree)}
    samples: dict[str, list[dict[str, object]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, src in trees.items():
            samples[name].append(measure(src, args.modules, args.python))
    summary = {}
    for name, runs in samples.items():
        rss = [float(str(r["rss_mib"])) for r in runs]
        summary[name] = {
            "median_rss_mib": round(statistics.median(rss), 3),
            "min_rss_mib": min(rss),
            "max_rss_mib": max(rss),
            "modules": runs[0]["modules"],
            "prometheus_client_modules": runs[0]["prometheus_client_modules"],
        }
        assert all(r["sentinel_from_tree"] for r in runs), f"{name}: sentinel not from its tree"
        print(f"{name}: {summary[name]}")
    result = {
        "params": {"modules": args.modules, "runs": args.runs, "trees": list(trees)},
        "machine": machine_info(),
        "summary": summary,
        "runs": samples,
    }
    print("saved", write_result("import-rss", result))


if __name__ == "__main__":
    main()
