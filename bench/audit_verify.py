"""`firelink audit verify` runtime on a record of 100,000 entries (issue 12).

    .venv/bin/python bench/audit_verify.py                    # 100,000 entries, SQLite in a temp dir
    .venv/bin/python bench/audit_verify.py --entries 1000000 --repeat 1
    .venv/bin/python bench/audit_verify.py --db-url postgresql+asyncpg://postgres@127.0.0.1:5432/EMPTY_DB

A fresh database filled with a realistic hash-chained record (bench/record_data.py: incidents, dispatches, device
faults, hazards with notices, rechecks and penalties), then `firelink audit verify` run --repeat times as a
subprocess, as an operator runs it: each run reads every entry, recomputes the chain, then recomputes the content
hash of every document row recorded with one. Prints the wall time of each run (process start included) and its
output; exits 1 if a run does not report the chain intact.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.record_data import fill, units  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=100_000, help="record entries (default 100,000)")
    p.add_argument("--units", type=int, default=504, help="key units (default 504)")
    p.add_argument("--repeat", type=int, default=3, help="runs of audit verify (default 3)")
    p.add_argument("--db-url", help="an EMPTY database to use instead of SQLite in a temp dir")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="flbench-audit-") as tmp:
        work = Path(tmp)
        db_url = args.db_url or f"sqlite+aiosqlite:///{work}/firelink.db"
        end = datetime.now(UTC).replace(microsecond=0)
        t0 = time.perf_counter()
        asyncio.run(fill(db_url, args.entries, end - timedelta(days=365), end, args.units))
        print(f"filled {args.entries:,} record entries in {time.perf_counter() - t0:.1f} s")
        cfg = {"database": {"url": db_url}, "station": {"id": "st-bench", "name": "基准测试派出所"},
               "units": units(args.units), "log_level": "WARNING"}
        (work / "firelink.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        times = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "firelink.cli", "--config", str(work / "firelink.yaml"),
                                   "audit", "verify"], cwd=ROOT, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - t0)
            print(f"run {i + 1}: {times[-1]:.2f} s  exit {done.returncode}  {done.stdout.strip()}{done.stderr.strip()}")
            if done.returncode != 0 or "intact" not in done.stdout:
                return 1
        print(f"firelink audit verify on {args.entries:,} entries: median {statistics.median(times):.2f} s, "
              f"min {min(times):.2f} s, max {max(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
