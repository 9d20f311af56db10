"""Blocked-exit bench: the exit watcher on the composited set of bench/exit_scenes.py, against ground truth.

    python bench/exit_eval.py [--split tune|held] [--baseline REV] [--no-persons] [--only SUBSTR] [--set-seed N]
                              [-j JOBS] [-v] [--json OUT] [--report JSON]

Every scenario is one camera (one background) with all its zones watched by one `ExitWatcher` at 1 frame/s, its
clear reference captured at t = 0 (no object, no people, as an officer does in the console), dwell 30 s, minimum
obstructed share 0.25 (the default), clear after 30 s. Printed per scenario: the obstruction's share of its zone
(ground truth), contrast class, zone size (% of the frame), lighting, detection delay after the dwell (seconds from
placing + dwell to the hazard; "miss" when none came by dwell + 10 s), false flags (hazards on a zone without an
obstruction for the dwell; a flag on a neighbouring zone that the object reaches into, covering ≥ 20 % of it, is
true and counted apart) and the clear zone-time. Summary per split (tune: the backgrounds and objects the thresholds
were chosen on; held: never looked at while tuning): obstructions flagged in time, dark-on-dark in zones ≤ 1 %,
delays, false flags per zone-hour, and the analysis cost in frames per second per zone (person model excluded: it
runs only on static unexplained change).

`--baseline REV` also runs `detectors/exits.py` as it was at git revision REV (e.g. the branch point) on the same
frames, for the before/after figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from exit_scenes import Scenario, Scene, contrast_class, normalised, scenarios, zone_mask  # noqa: E402

from config.detectors import DetectorsConfig, ExitZoneConfig  # noqa: E402
from ingest.contract import ExitHazard  # noqa: E402

GRACE_S = 10.0  # flagged within dwell + this (the target)
SPILL = 0.2  # a flag on another zone the object covers this much of is not a false flag


@dataclass
class Result:
    name: str
    split: str
    background: str
    zone: str
    obj: str
    fraction: float  # the obstruction's share of its zone (ground truth)
    contrast: str
    zone_pct: float
    lighting: str
    dwell_s: float
    delay_s: float | None  # hazard time − (placed + dwell); None: no hazard while the object was there
    in_time: bool | None  # flagged by dwell + GRACE_S (None: no obstruction in this scenario)
    false_flags: int
    clear_zone_s: float
    analysis_s: float  # seconds spent in update() minus the person model
    zone_frames: int
    peak_fraction: float  # the watcher's highest obstructed share for the obstructed zone
    spill: int = 0  # flags on a neighbouring zone the object reaches into (≥ SPILL of it): true, not counted false


class TimedPersons:
    def __init__(self, inner: Callable[[np.ndarray], list[tuple[float, float, float, float]]]) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        t0 = time.perf_counter()
        try:
            return self.inner(frame)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def baseline_module(rev: str) -> types.ModuleType:
    """detectors/exits.py as it was at `rev` (its ExitAnalysis fields supplied with their defaults of then)."""
    src = subprocess.run(["git", "show", f"{rev}:detectors/exits.py"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    mod = types.ModuleType("exits_baseline")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    mod.__dict__["_BENCH_NEEDS_OLD_ANALYSIS"] = "cell_px" in src and "min_cell_px" not in src
    exec(compile(src, f"{rev}:detectors/exits.py", "exec"), mod.__dict__)  # our own file at a revision
    return mod


def old_analysis() -> Any:
    return types.SimpleNamespace(fps=1.0, cell_px=16, diff_threshold=28.0, min_ncc=0.6, motion_window_s=3.0,
                                 person_weights=None, person_conf=0.35, person_imgsz=416)


def run(scn: Scenario, makers: dict[str, Callable[[list[ExitZoneConfig]], Any]],
        persons: TimedPersons | None) -> dict[str, Result]:
    """Feeds the scenario's frames to one watcher per maker (same frames, in lockstep) and scores each."""
    scene = Scene(scn)
    shape = scene.shape
    zones = [ExitZoneConfig(id=z.id, polygon=normalised(z, shape), dwell_s=scn.dwell_s, min_fraction=0.25,
                            clear_s=30.0) for z in scene.spec.zones]
    clear = scene.clear_frame()
    watchers = {label: make(zones) for label, make in makers.items()}
    for w in watchers.values():
        w.set_reference(clear)
    spent = dict.fromkeys(watchers, 0.0)
    hazards: dict[str, list[tuple[float, ExitHazard]]] = {k: [] for k in watchers}
    peak = dict.fromkeys(watchers, 0.0)
    clear_s = 0.0
    for t, frame, truth in scene.frames():
        for label, w in watchers.items():
            p0 = persons.seconds if persons else 0.0
            t0 = time.perf_counter()
            events = w.update(t, frame)
            spent[label] += time.perf_counter() - t0 - ((persons.seconds - p0) if persons else 0.0)
            hazards[label] += [(t, e) for e in events if isinstance(e, ExitHazard)]
            if scn.zone is not None:
                peak[label] = max(peak[label], next(s["fraction"] for s in w.state() if s["zone_id"] == scn.zone))
        clear_s += sum(1.0 for frac in truth.values() if frac == 0)
    area = float(zone_mask(shape, next(z for z in scene.spec.zones if z.id == (scn.zone or zones[0].id))).sum())
    frac = scene.placed.fraction if scene.placed else 0.0
    contrast = contrast_class(scene)
    out: dict[str, Result] = {}
    for label in watchers:
        delay: float | None = None
        false_flags = spill = 0
        for t, hz in hazards[label]:
            started = hz.started_at.timestamp()
            # a true flag: confirmed while the obstruction is there, timed from it (people just before it may have
            # started the timer: up to a fifth of the dwell early)
            if (hz.zone_id == scn.zone and scn.place_t <= t < scn.remove_t
                    and started >= scn.place_t - 0.2 * scn.dwell_s):
                if delay is None:
                    delay = t - (scn.place_t + scn.dwell_s)
            elif (hz.zone_id != scn.zone and scene.covered(hz.zone_id) >= SPILL and scn.place_t <= t < scn.remove_t
                  and started >= scn.place_t - 0.2 * scn.dwell_s):
                spill += 1  # the object reaches into this zone too: a true flag, not the one timed
            else:
                false_flags += 1
        in_time = None if scn.obj is None else (delay is not None and delay <= GRACE_S)
        out[label] = Result(scn.name, scn.split, scn.background, scn.zone or "-", scn.obj or "-", round(frac, 3),
                            contrast, round(100 * area / (shape[0] * shape[1]), 2), scn.lighting, scn.dwell_s,
                            None if delay is None else round(delay, 1), in_time, false_flags, clear_s,
                            spent[label], len(zones) * scn.duration_s, round(peak[label], 3), spill)
    return out


def summary(rs: list[Result], label: str) -> list[str]:
    obs = [r for r in rs if r.in_time is not None]
    ok = [r for r in obs if r.in_time]
    dod = [r for r in obs if r.contrast == "dark-on-dark" and r.zone_pct <= 1.0]
    delays = sorted(r.delay_s for r in ok if r.delay_s is not None)
    hours = sum(r.clear_zone_s for r in rs) / 3600
    ff = sum(r.false_flags for r in rs)
    fps = sum(r.zone_frames for r in rs) / max(1e-9, sum(r.analysis_s for r in rs))
    lines = [
        f"{label}: flagged within dwell + {GRACE_S:.0f} s: {len(ok)}/{len(obs)}"
        f" (dark-on-dark in zones <= 1 %: {sum(1 for r in dod if r.in_time)}/{len(dod)};"
        f" >= 30 % of the zone: {sum(1 for r in ok if r.fraction >= 0.3)}/{sum(1 for r in obs if r.fraction >= 0.3)})",
        f"{label}: delay after dwell: median {np.median(delays) if delays else float('nan'):.1f} s,"
        f" max {max(delays) if delays else float('nan'):.1f} s;"
        f" false flags {ff} in {hours:.1f} zone-hours = {ff / max(hours, 1e-9):.2f} per zone-hour"
        f" (+{sum(r.spill for r in rs)} true on a neighbouring zone the object reaches into);"
        f" analysis {fps:.0f} frames/s per zone",
    ]
    return lines


@dataclass
class _Setup:
    """What each worker process builds once: the watchers' makers and the timed person model."""

    makers: dict[str, Callable[[list[ExitZoneConfig]], Any]]
    persons: TimedPersons | None


_SETUP: _Setup | None = None


def _setup(baseline: str | None, with_persons: bool, threads: int = 0) -> None:
    global _SETUP
    import cv2

    from detectors.exits import ExitWatcher, person_detector

    if threads:
        cv2.setNumThreads(threads)  # one per worker process: the processes are the parallelism

    analysis = DetectorsConfig().exits
    persons: TimedPersons | None = None
    if with_persons:
        try:
            det = person_detector(analysis)
        except Exception as exc:  # the bench runs without the model when it is not installed
            print(f"person model unavailable ({exc}); running without it", file=sys.stderr)
            det = None
        persons = TimedPersons(det) if det is not None else None

    def make_new(zones: list[ExitZoneConfig]) -> Any:
        return ExitWatcher("bench", zones, analysis, persons=persons)

    makers: dict[str, Callable[[list[ExitZoneConfig]], Any]] = {"new": make_new}
    if baseline:
        old = baseline_module(baseline)

        def make_old(zones: list[ExitZoneConfig]) -> Any:
            cfg = old_analysis() if old._BENCH_NEEDS_OLD_ANALYSIS else analysis  # before `cells`: its own fields
            return old.ExitWatcher("bench", zones, cfg, persons=persons)

        makers["old"] = make_old
    _SETUP = _Setup(makers, persons)


def _evaluate(scn: Scenario) -> dict[str, Result]:
    assert _SETUP is not None
    return run(scn, _SETUP.makers, _SETUP.persons)


def hdr_line() -> str:
    return (f"{'scenario':<52} {'split':<5} {'frac':>5} {'contrast':<14} {'zone%':>5} {'delay':>6} {'false':>5}"
            f" {'peak':>5}")


def row(r: Result, label: str) -> str:
    d = "-" if r.in_time is None else ("miss" if r.delay_s is None else f"{r.delay_s:+.0f}")
    if r.in_time is False and r.delay_s is not None:
        d += "!"
    return (f"{r.name:<52} {r.split:<5} {r.fraction:>5.2f} {r.contrast:<14} {r.zone_pct:>5.2f} {d:>6}"
            f" {r.false_flags:>5} {r.peak_fraction:>5.2f}" + ("" if label == "new" else "  (baseline)"))


def summaries(rows: dict[str, list[Result]], baseline: str | None) -> None:
    for label, rs in rows.items():
        if not rs:
            continue
        name = "this watcher" if label == "new" else f"baseline {baseline}"
        for split in ("tune", "held"):
            part = [r for r in rs if r.split == split]
            if part:
                for line in summary(part, f"{name} [{split}]"):
                    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["tune", "held"])
    ap.add_argument("--baseline", metavar="REV", help="also run detectors/exits.py of this git revision")
    ap.add_argument("--no-persons", action="store_true", help="without the person model")
    ap.add_argument("--only", default="", help="scenarios whose name contains this")
    ap.add_argument("--set-seed", type=int, default=0,
                    help="draw a fresh set (0: the set the thresholds were chosen on)")
    ap.add_argument("--clear-s", type=int, default=900, help="length of each clear scene (seconds)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="scenarios run in parallel (processes)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per scenario")
    ap.add_argument("--report", type=Path, metavar="JSON", help="print the table of a saved --json run (no run)")
    args = ap.parse_args()

    rows: dict[str, list[Result]] = {"new": [], "old": []}
    if args.report:
        saved = json.loads(args.report.read_text())
        rows = {k: [Result(**r) for r in v] for k, v in saved.items()}
        print(hdr_line())
        for r_new, r_old in itertools.zip_longest(rows.get("new", []), rows.get("old", [])):
            for label, r in (("new", r_new), ("old", r_old)):
                if r is not None:
                    print(row(r, label))
        summaries(rows, args.baseline or "(saved)")
        return
    scns = [s for s in scenarios(args.split, clear_s=args.clear_s, set_seed=args.set_seed) if args.only in s.name]
    # clear scenes and low-contrast objects first: a run cut short still answers the targets
    scns.sort(key=lambda s: 0 if s.obj is None else 1 if s.match is not None else 2)
    print(f"{len(scns)} scenarios (set seed {args.set_seed}); person model {'off' if args.no_persons else 'on'};"
          f" {args.jobs} process(es)")
    if args.verbose:
        print(hdr_line())
    init = (args.baseline, not args.no_persons)
    if args.jobs > 1:
        pool = multiprocessing.get_context("spawn").Pool(args.jobs, initializer=_setup, initargs=(*init, 1))
        results: Iterator[dict[str, Result]] = pool.imap(_evaluate, scns)
    else:
        _setup(*init)
        results = map(_evaluate, scns)
    for res in results:
        for label, r in res.items():
            rows[label].append(r)
            if args.verbose:
                print(row(r, label), flush=True)
        if args.json:  # after every scenario: a run cut short keeps what it measured
            args.json.write_text(json.dumps({k: [asdict(r) for r in v] for k, v in rows.items()}, indent=1))
    if args.jobs > 1:
        pool.close()
        pool.join()
    summaries(rows, args.baseline)
    if args.json:
        args.json.write_text(json.dumps({k: [asdict(r) for r in v] for k, v in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
