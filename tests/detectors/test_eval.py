"""The leave-one-source-out bench (bench/detect_eval.py) in quick mode: a few images per source, real model.

What is checked is the protocol, not the figures (docs/detectors.md has those, from a full run): every source is
measured in its own fold, the fold's choice is fitted on the other sources only (the measured source's data cannot
change it), the table lists every source worst first, and the sweep's decisions are `FireDetector`'s own.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from detect_eval import (  # noqa: E402
    MODEL_ALONE,
    Report,
    VerifierBank,
    alarms,
    evaluate,
    fit,
    replay,
    table,
)
from eval_cache import Measured, measured  # noqa: E402
from eval_sources import all_sources  # noqa: E402

PER_SOURCE = 3


@pytest.fixture(scope="module")
def quick(fire_detector, fire8: Path) -> list[Measured]:
    """Three images of every source present (desktop backgrounds left out: a download), measured once."""
    sources = [s.subset(PER_SOURCE) for s in all_sources(wallpapers=False)]
    kinds = {s.kind for s in sources}
    if kinds != {"positive", "negative"}:
        pytest.skip(f"the sources present are all {kinds}: no protocol to check")
    runner = fire_detector.runner
    return [measured(s, runner, fire_detector.cfg.thresholds.nms_iou) for s in sources]


@pytest.fixture(scope="module")
def smoke_idx(fire_detector) -> int:
    return next(k for k, v in fire_detector.runner.names.items() if v.lower() == "smoke")


@pytest.fixture(scope="module")
def folds(quick: list[Measured], smoke_idx: int) -> tuple[list, object, VerifierBank]:
    bank = VerifierBank()
    rows, final = evaluate(quick, smoke_idx, bank, log=lambda s: None)
    return rows, final, bank


def test_every_source_is_measured_once_with_choices_fitted_on_the_others(quick, folds) -> None:
    rows, final, _ = folds
    names = {m.source for m in quick}
    assert {"fire8", "clinic-cctv-negatives", "opencv-doc"} <= names
    assert sorted(r.source for r in rows) == sorted(names)
    for r in rows:
        assert r.source not in r.fitted_on and set(r.fitted_on) == names - {r.source}
        assert r.n == PER_SOURCE and set(r.values) == {"current", "model_alone", "proposed"}
    assert set(final.fitted_on) == names  # the shipped choice: fitted on everything, judged by the folds above


def test_the_measured_source_cannot_move_its_own_fold(quick, folds, smoke_idx: int) -> None:
    """Turn one source's boxes upside down (every confidence inverted): its own fold's choice stays as it was,
    while its figures move; and a verifier is never asked to judge a source it was fitted on."""
    rows, _, bank = folds
    target = next(m for m in quick if m.source == "fire8")
    flipped = replace(target, conf=1.0 - target.conf)
    data = [flipped if m.source == "fire8" else m for m in quick]
    before = next(r for r in rows if r.source == "fire8")
    assert fit([m for m in data if m.source != "fire8"], bank, smoke_idx).choice == before.choice
    assert not np.array_equal(alarms(flipped, MODEL_ALONE, None, smoke_idx),
                              alarms(target, MODEL_ALONE, None, smoke_idx)) or len(target.conf) == 0
    with pytest.raises(ValueError, match="cannot judge"):
        bank.scores(quick, target)


def test_the_sweep_decides_as_the_pipeline_does(quick, folds, fire_detector, smoke_idx: int) -> None:
    """Each cell of the table replayed through `FireDetector.image_decision` (the `detect-image` code)."""
    rows, _, bank = folds
    n = replay(quick, rows, fire_detector.runner, bank, smoke_idx)
    assert n >= 2 * PER_SOURCE * len(quick)  # (b) and (c) always; (a) when its fold's verifier could be fitted


def test_the_table_lists_every_source_worst_first(quick, folds) -> None:
    rows, final, _ = folds
    text = table(Report(416, rows, final, 0.0))
    lines = [ln for ln in text.splitlines()[2:] if not ln.startswith("| mean of")]
    assert [ln.split(" | ")[0].lstrip("| ") for ln in lines] == [r.source for r in sorted(
        rows, key=lambda r: (-r.error, r.source))]
    assert len(lines) == len(quick)
