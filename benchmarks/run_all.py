"""Run every ``benchmarks/bench_*.py`` script and write ``benchmarks/results/<name>.json``.

Each script defines ``run(quick: bool) -> dict``; speeds are reported as ratios against a
baseline measured in the same run. ``--quick`` uses tiny inputs (what the tests run).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from benchmarks.common import RESULTS_DIR, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny inputs, for a smoke test")
    parser.add_argument("--only", nargs="*", help="names of benchmarks to run (e.g. synth embed)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    names = sorted(
        m.name[len("bench_"):] for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_")
    )
    for name in names:
        if args.only and name not in args.only:
            continue
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"[bench] {name} ...", flush=True)
        path = write_result(name, module.run(quick=args.quick), args.out)
        print(f"[bench] {name} -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
