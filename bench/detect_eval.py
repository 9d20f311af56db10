"""Smoke/fire per image, leave one source out: what a choice of operating point does on a source it never saw.

    python bench/detect_eval.py [--imgsz 416] [--quick [N]] [--json OUT] [--no-check]
        [--rule per-class|image] [--margin STEPS]

Sources (bench/eval_sources.py): five labelled fire/smoke datasets (fire8 and four folders of fire-mix: recall,
image-level — an image with a smoke/fire box is caught when the pipeline flags it, whatever the box) and the
everyday-scene sources (clinic CCTV, opencv-doc frames and photographs, Debian desktop backgrounds, one frame per
second of each everyday video: false-positive rate). Each source is measured in its own fold, with every choice
fitted on the other sources only:

  (a) the default pipeline before this bench: thresholds 0.1, colour rules, verifier ≥ 0.8, the verifier's table
      rebuilt from the other sources' boxes (as `firelink train-verifier` would from them);
  (b) the model alone at confidence ≥ 0.5 (no colour rules, no verifier): nothing is fitted;
  (c) the proposed default, *chosen* by `fit` on the other sources: the per-class thresholds and second stage (none,
      colour rules, verifier at 0.5–0.9, both) that are never worse than (b) on any of the fitting sources — with
      anything learned (the verifier) itself judged source-out inside the fit — and gain the most there.

The table is printed worst source first (by (c)'s miss rate or false-positive rate). Decisions are
`FireDetector.image_decision` — the same code as `firelink detect-image` — on the model's cached raw boxes
(bench/eval_cache.py: one inference pass per source and size); the fit sweeps thresholds on per-box measurements
taken by the same pipeline functions, and `--no-check` skips replaying the table's pipelines through
`FireDetector` (the replay fails the run if a single decision differs from the sweep's).

`--quick N` (default 4) measures N images per source: a protocol check for CI, not a measurement.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import json
import operator
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from eval_cache import Measured, measured, read_image  # noqa: E402
from eval_sources import Source, all_sources  # noqa: E402

from config.detectors import DetectorsConfig, SecondStage, Thresholds  # noqa: E402
from detectors.fire import FireDetector  # noqa: E402
from detectors.model import YoloRunner  # noqa: E402
from detectors.verifier import BoxVerifier, Rows  # noqa: E402

THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))  # 0.10 … 0.90
VERIFIER_THRESHOLDS = (0.5, 0.7, 0.8, 0.9)
_DEFAULT_STAGE = SecondStage()


# ---------------------------------------------------------------- pipelines
@dataclass(frozen=True)
class Pipeline:
    """One per-image operating point: class thresholds and the second stage (masks play no part here)."""

    smoke: float
    fire: float
    colour: bool = False
    verifier: float | None = None  # verifier threshold; None: no verifier
    min_box_area: float = Thresholds().min_box_area

    def config(self, imgsz: int) -> DetectorsConfig:
        """The detectors' config that runs this pipeline (the verifier object itself is handed in by the fold)."""
        return DetectorsConfig.model_validate({
            "imgsz": imgsz,
            "thresholds": {"smoke": self.smoke, "fire": self.fire, "min_box_area": self.min_box_area},
            "second_stage": {"colour": self.colour, "verifier": "builtin" if self.verifier else None,
                             "verifier_threshold": self.verifier or _DEFAULT_STAGE.verifier_threshold,
                             "learn_hard_negatives": False},
        })

    def stages(self) -> int:
        return int(self.colour) + int(self.verifier is not None)

    def label(self) -> str:
        parts = [f"smoke ≥ {self.smoke:.2f}", f"fire ≥ {self.fire:.2f}"]
        if self.colour:
            parts.append("colour rules")
        if self.verifier is not None:
            parts.append(f"verifier ≥ {self.verifier:.1f}")
        return ", ".join(parts)


CURRENT_DEFAULT = Pipeline(0.1, 0.1, colour=True, verifier=0.8)
MODEL_ALONE = Pipeline(0.5, 0.5)


# ---------------------------------------------------------------- verifiers fitted on chosen sources
class VerifierBank:
    """Verifiers fitted on the table rows of given sources (memoised by the set of sources), and their scores."""

    def __init__(self, threshold: float = 0.5) -> None:
        self._fits: dict[frozenset[str], BoxVerifier | None] = {}
        self._scores: dict[tuple[frozenset[str], str], np.ndarray] = {}
        self.threshold = threshold

    def fitted(self, on: Sequence[Measured]) -> BoxVerifier | None:
        """The verifier fitted on exactly these sources' rows (None when they lack positives or negatives)."""
        key = frozenset(m.source for m in on)
        if key not in self._fits:
            parts = [Rows(m.feat[m.row >= 0], m.row[m.row >= 0].astype(np.int8),
                          np.zeros(int((m.row >= 0).sum()), np.int16), [f"{m.kind}: {m.source}"])
                     for m in sorted(on, key=lambda m: m.source)]
            try:
                self._fits[key] = BoxVerifier(functools.reduce(operator.add, parts), self.threshold)
            except (ValueError, TypeError):  # rows of one class only; no sources at all
                self._fits[key] = None
        return self._fits[key]

    def scores(self, on: Sequence[Measured], target: Measured) -> np.ndarray | None:
        """P(real) for every box of `target` from the verifier fitted on `on` (which must not include it)."""
        if any(m.source == target.source for m in on):
            raise ValueError(f"a verifier fitted on {target.source} cannot judge {target.source}")
        v = self.fitted(on)
        if v is None:
            return None
        key = (frozenset(m.source for m in on), target.source)
        if key not in self._scores:
            self._scores[key] = v.score_features(target.feat)
        return self._scores[key]


# ---------------------------------------------------------------- the per-image decision, swept
def best_passing(m: Measured, p: Pipeline, vscores: np.ndarray | None, smoke_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the highest confidence among smoke boxes and among fire boxes that pass every stage but the class
    threshold (−1: none), as `FireDetector._rules` and `keep_batch` judge them: the image alarms at thresholds
    (s, f) exactly when best_smoke ≥ s or best_fire ≥ f."""
    h = m.hw[m.img, 0].astype(np.float64)
    w = m.hw[m.img, 1].astype(np.float64)
    x1, y1, x2, y2 = m.xyxy.T
    ok = ~((x2 - x1) * (y2 - y1) < p.min_box_area * w * h)
    is_smoke = m.cls == smoke_idx
    if p.colour:
        ss = _DEFAULT_STAGE
        ok &= np.where(is_smoke, ~(m.msat > ss.smoke_max_saturation), ~(m.flame < ss.fire_min_flame_fraction))
    if p.verifier is not None:
        if vscores is None:
            raise ValueError("this pipeline needs verifier scores")
        ok &= vscores >= p.verifier
    best = np.full((2, m.n_images), -1.0)
    for k, sel in enumerate((ok & is_smoke, ok & ~is_smoke)):
        np.maximum.at(best[k], m.img[sel], m.conf[sel])
    return best[0], best[1]


def alarms(m: Measured, p: Pipeline, vscores: np.ndarray | None, smoke_idx: int) -> np.ndarray:
    s, f = best_passing(m, p, vscores, smoke_idx)
    return (s >= p.smoke) | (f >= p.fire)


def rate(m: Measured, flagged: np.ndarray) -> float:
    """Recall on a positive source, false-positive rate on a negative one (fraction of images flagged)."""
    return float(np.mean(flagged)) if len(flagged) else float("nan")


# ---------------------------------------------------------------- the fit (sees only its training sources)
@dataclass(frozen=True)
class Fit:
    choice: Pipeline
    fitted_on: tuple[str, ...]
    gain: float  # mean recall gain over positive sources + mean false-positive reduction over negative ones
    candidates: int
    feasible: int


def stage_variants() -> list[Pipeline]:
    """Second stages the fit may choose (thresholds are swept separately)."""
    out = [Pipeline(0.5, 0.5), Pipeline(0.5, 0.5, colour=True)]
    for vt, colour in itertools.product(VERIFIER_THRESHOLDS, (False, True)):
        out.append(Pipeline(0.5, 0.5, colour=colour, verifier=vt))
    return out


Rule = Literal["per-class", "image"]


def per_class(m: Measured, s: np.ndarray, f: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold of `grid`: on a negative source the fraction of images with a passing smoke box and with
    a passing fire box; on a positive source the fraction of smoke-labelled images caught by a smoke box and of
    fire-labelled images caught by a fire box (NaN where the source has no image of that class)."""
    out = []
    for best, k in ((s, 0), (f, 1)):
        sel = slice(None) if m.kind == "negative" else m.labelled[:, k]
        b = best[sel]
        out.append((b[None, :] >= grid[:, None]).mean(axis=1) if len(b) else np.full(len(grid), np.nan))
    return out[0], out[1]


def with_margin(feasible: np.ndarray, grid: np.ndarray, baseline: Pipeline, steps: int) -> np.ndarray:
    """Thresholds (i, j) stay feasible only when moving each of them up to `steps` grid steps further away from the
    baseline's is feasible too: the edge of what the fitting sources allow is where an unseen source differs."""
    n = len(grid)
    di = np.sign(grid - baseline.smoke).astype(int)  # direction of each smoke threshold's move (0: none)
    dj = np.sign(grid - baseline.fire).astype(int)
    out = feasible.copy()
    for i, j in zip(*np.nonzero(feasible), strict=True):
        for k in range(1, steps + 1):
            a, b = i + k * di[i], j + k * dj[j]
            if not (0 <= a < n and 0 <= b < n and feasible[a, b]):
                out[i, j] = False
                break
    return out


def fit(train: Sequence[Measured], bank: VerifierBank, smoke_idx: int,
        baseline: Pipeline = MODEL_ALONE, *, rule: Rule = "per-class", margin: int = 1) -> Fit:
    """The operating point to ship, chosen on `train` alone: among every (stage, smoke threshold, fire threshold)
    those never worse than `baseline` on any training source, the one with the largest mean gain (recall gain averaged
    over the positive sources plus false-positive reduction averaged over the negative ones); ties go to fewer
    stages, then to thresholds nearer the baseline's. A verifier's effect on source t is measured with the verifier
    fitted on the other training sources (never on t).

    "Never worse", rule "per-class" (the default): image recall ≥ the baseline's on each positive source, and for
    each class separately — on each positive source the share of that class's pictures caught by a box of that
    class ≥ the baseline's, on each negative source the share of images with a box of that class ≤ the baseline's.
    Rule "image" judges whole images only; it lets one class pay for the other (fewer smoke alarms here buying more
    fire alarms there), a balance that belongs to each source's mix of pictures and did not carry over to unseen
    sources (docs/detectors.md, "Leave one source out"). `margin`: see `with_margin` (without it, the edge of the
    fitting sources' feasible thresholds let one more clinic CCTV frame through on that unseen source)."""
    names = tuple(sorted(m.source for m in train))
    grid = np.array(THRESHOLDS)
    base: dict[str, tuple[float, float, float]] = {}
    for m in train:
        s, f = best_passing(m, baseline, None, smoke_idx)
        cs, cf = per_class(m, s, f, np.array([baseline.smoke]))
        base[m.source] = (rate(m, (s >= baseline.smoke) | (f >= baseline.fire)), float(cs[0]), float(cf[0]))
    n_pos = sum(m.kind == "positive" for m in train)
    n_neg = len(train) - n_pos
    best: tuple[tuple[float, int, float], Pipeline] | None = None
    n_cand = n_feas = 0
    for stage in stage_variants():
        feasible = np.ones((len(grid), len(grid)), bool)
        gain = np.zeros((len(grid), len(grid)))
        usable = True
        for m in train:
            vs = None
            if stage.verifier is not None:
                vs = bank.scores([o for o in train if o.source != m.source], m)
                if vs is None:
                    usable = False
                    break
            s, f = best_passing(m, stage, vs, smoke_idx)
            flagged = (s[None, None, :] >= grid[:, None, None]) | (f[None, None, :] >= grid[None, :, None])
            r = flagged.mean(axis=2) if m.n_images else np.zeros((len(grid), len(grid)))
            b_img, b_s, b_f = base[m.source]
            sign = 1.0 if m.kind == "positive" else -1.0  # recall must not fall, false positives must not rise
            feasible &= sign * (r - b_img) >= 0
            gain += sign * (r - b_img) / max(n_pos if m.kind == "positive" else n_neg, 1)
            if rule == "per-class":
                cs, cf = per_class(m, s, f, grid)
                if not np.isnan(b_s):
                    feasible &= (sign * (cs - b_s) >= 0)[:, None]
                if not np.isnan(b_f):
                    feasible &= (sign * (cf - b_f) >= 0)[None, :]
        if not usable:
            continue
        if margin:
            feasible = with_margin(feasible, grid, baseline, margin)
        n_cand += feasible.size
        n_feas += int(feasible.sum())
        for i, j in zip(*np.nonzero(feasible), strict=True):
            p = replace(stage, smoke=float(grid[i]), fire=float(grid[j]))
            dist = abs(p.smoke - baseline.smoke) + abs(p.fire - baseline.fire)
            key = (round(float(gain[i, j]), 9), -p.stages(), -dist)
            if best is None or key > best[0]:
                best = (key, p)
    if best is None:  # the baseline itself is always feasible unless a training source is empty
        return Fit(baseline, names, 0.0, n_cand, n_feas)
    return Fit(best[1], names, best[0][0], n_cand, n_feas)


# ---------------------------------------------------------------- folds
@dataclass
class Row:
    source: str
    kind: str
    n: int
    fitted_on: tuple[str, ...]
    choice: Pipeline
    values: dict[str, float] = field(default_factory=dict)  # pipeline key → recall or FP rate

    @property
    def error(self) -> float:
        """(c)'s miss rate on a positive source, its false-positive rate on a negative one."""
        v = self.values["proposed"]
        return 1.0 - v if self.kind == "positive" else v


@dataclass
class Report:
    imgsz: int
    rows: list[Row]
    final: Fit  # the fit on every source: what the defaults ship
    seconds: float
    checked: int = 0  # image decisions replayed through FireDetector (0: --no-check)


PIPELINES = ("current", "model_alone", "proposed")
HEADINGS = {"current": "(a) previous default", "model_alone": "(b) model ≥ 0.5", "proposed": "(c) proposed"}


def evaluate(data: Sequence[Measured], smoke_idx: int, bank: VerifierBank | None = None,
             log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), *,
             rule: Rule = "per-class", margin: int = 1) -> tuple[list[Row], Fit]:
    """Every source in its own fold: (a), (b) and (c) fitted on the others, measured on it; plus the fit on all."""
    bank = bank or VerifierBank()
    rows = []
    for m in data:
        train = [o for o in data if o.source != m.source]
        f = fit(train, bank, smoke_idx, rule=rule, margin=margin)
        v_all = bank.scores(train, m)
        values = {}
        for key, p in (("current", CURRENT_DEFAULT), ("model_alone", MODEL_ALONE), ("proposed", f.choice)):
            if p.verifier is not None and v_all is None:
                values[key] = float("nan")
                continue
            values[key] = rate(m, alarms(m, p, v_all if p.verifier is not None else None, smoke_idx))
        rows.append(Row(m.source, m.kind, m.n_images, f.fitted_on, f.choice, values))
        log(f"fold {m.source}: fitted on {len(train)} sources → {f.choice.label()} "
            f"({f.feasible} of {f.candidates} candidates never worse than the model alone there)")
    final = fit(list(data), bank, smoke_idx, rule=rule, margin=margin)
    return rows, final


def replay(data: Sequence[Measured], rows: Sequence[Row], runner: YoloRunner, bank: VerifierBank,
           smoke_idx: int) -> int:
    """Re-decides every table cell with `FireDetector.image_decision` (the `firelink detect-image` code) on the
    cached boxes and the fold's verifier; raises if one image's decision differs from the sweep's. Returns the
    number of decisions replayed."""
    n = 0
    for m, row in zip(data, rows, strict=True):
        train = [o for o in data if o.source != m.source]
        verifier = bank.fitted(train)
        vs = bank.scores(train, m)
        dets = {}
        for key, p in (("current", CURRENT_DEFAULT), ("model_alone", MODEL_ALONE), ("proposed", row.choice)):
            if p.verifier is not None and verifier is None:
                continue
            fold_verifier = None
            if p.verifier is not None and verifier is not None:  # the fold's own fit, at the pipeline's threshold
                fold_verifier = copy.copy(verifier)
                fold_verifier.threshold = p.verifier
            det = FireDetector(p.config(m.imgsz), runner=runner, verifier=fold_verifier)
            dets[key] = (det, alarms(m, p, vs if p.verifier is not None else None, smoke_idx))
        for i, path in enumerate(m.paths):
            img = read_image(path)
            boxes = m.boxes_of(i)
            for key, (det, expected) in dets.items():
                got = det.image_decision(img, boxes)["alarm"]
                if got != bool(expected[i]):
                    raise AssertionError(f"{m.source} {path}: FireDetector says alarm={got} for {key}, "
                                         f"the sweep {bool(expected[i])}")
                n += 1
    return n


# ---------------------------------------------------------------- output
def pct(v: float) -> str:
    return "  n/a" if v != v else f"{100 * v:5.1f}"


def table(report: Report) -> str:
    """Markdown table, worst source first (by (c))."""
    rows = sorted(report.rows, key=lambda r: (-r.error, r.source))
    head = ["source", "images", "measure", *(HEADINGS[k] for k in PIPELINES), "(c) − (b)", "(c) fitted on the others"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(PIPELINES) + 1) + "---|"]
    for r in rows:
        measure = "recall %" if r.kind == "positive" else "false positives %"
        diff = r.values["proposed"] - r.values["model_alone"]
        out.append("| " + " | ".join([r.source, str(r.n), measure] + [pct(r.values[k]) for k in PIPELINES]
                                      + [f"{100 * diff:+.1f}", r.choice.label()]) + " |")
    for kind, measure in (("positive", "recall %"), ("negative", "false positives %")):
        sel = [r for r in rows if r.kind == kind]
        if sel:
            means = [float(np.mean([r.values[k] for r in sel])) for k in PIPELINES]
            out.append("| " + " | ".join([f"mean of {len(sel)} {kind} sources", str(sum(r.n for r in sel)), measure]
                                          + [pct(v) for v in means] + [f"{100 * (means[2] - means[1]):+.1f}", ""])
                       + " |")
    return "\n".join(out)


def never_worse(report: Report) -> list[str]:
    """Sources where (c) is worse than (b) (empty: the proposed default holds on every unseen source)."""
    bad = []
    for r in report.rows:
        c, b = r.values["proposed"], r.values["model_alone"]
        if (r.kind == "positive" and c < b) or (r.kind == "negative" and c > b):
            bad.append(f"{r.source}: {pct(c).strip()} % vs {pct(b).strip()} %")
    return bad


def to_json(report: Report) -> dict[str, Any]:
    return {"imgsz": report.imgsz, "seconds": report.seconds, "checked_decisions": report.checked,
            "final": {**asdict(report.final), "choice": asdict(report.final.choice)},
            "rows": [{**asdict(r), "choice": asdict(r.choice), "error": r.error} for r in report.rows]}


# ---------------------------------------------------------------- main
def measure_all(sources: Iterable[Source], runner: YoloRunner, nms_iou: float) -> list[Measured]:
    return [measured(s, runner, nms_iou) for s in sources]


def run(sources: Sequence[Source], imgsz: int, *, check: bool = True, rule: Rule = "per-class", margin: int = 1,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Report:
    t0 = time.perf_counter()
    cfg = DetectorsConfig()
    runner = YoloRunner(cfg.weights, imgsz=imgsz, device=cfg.device, backend=cfg.backend, threads=cfg.threads)
    smoke_idx = next(k for k, v in runner.names.items() if v.lower() == "smoke")
    data = measure_all(sources, runner, cfg.thresholds.nms_iou)
    bank = VerifierBank()
    rows, final = evaluate(data, smoke_idx, bank, log, rule=rule, margin=margin)
    checked = replay(data, rows, runner, bank, smoke_idx) if check else 0
    return Report(imgsz, rows, final, round(time.perf_counter() - t0, 1), checked)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=DetectorsConfig().imgsz, help="model input size (default: config)")
    ap.add_argument("--quick", type=int, nargs="?", const=4, default=None, metavar="N",
                    help="N images per source (default 4): a fast protocol check, not a measurement")
    ap.add_argument("--no-check", action="store_true", help="skip replaying the table through FireDetector")
    ap.add_argument("--rule", choices=["per-class", "image"], default="per-class",
                    help="what 'never worse' means in the fit (see `fit`; 'image' did not hold on unseen sources)")
    ap.add_argument("--margin", type=int, default=1, metavar="STEPS",
                    help="threshold grid steps kept between the choice and the edge of what the fit allows (default 1)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    sources = all_sources()
    if args.quick:
        sources = [s.subset(args.quick) for s in sources]
    report = run(sources, args.imgsz, check=not args.no_check, rule=args.rule, margin=args.margin)
    print(f"imgsz {report.imgsz}, {len(report.rows)} sources, each measured with every choice fitted on the others"
          + (" (QUICK: a few images per source)" if args.quick else ""))
    print(table(report))
    print(f"\nproposed default, fitted on all sources: {report.final.choice.label()}")
    bad = never_worse(report)
    print("(c) never worse than (b) on any unseen source" if not bad else "(c) WORSE than (b) on: " + "; ".join(bad))
    if report.checked:
        print(f"{report.checked} image decisions replayed through FireDetector.image_decision: all agree")
    print(f"{report.seconds} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(report), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
