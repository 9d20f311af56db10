"""`firelink train` end to end on the CPU on a few fire8 frames (freeze-then-unfreeze, the shipped FasterNet
weights kept), and the leave-one-source-out verdict of bench/train_loso.py: trained weights replace the shipped ones
only when no source they never saw got worse."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from detectors import weights as W
from detectors.train import backbone_layers
from firelink.cli import main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import train_loso  # noqa: E402


def tiny_dataset(fire8: Path, dest: Path, n: int = 4) -> Path:
    for sub in ("images", "labels"):
        (dest / sub).mkdir(parents=True)
    for p in sorted((fire8 / "valid" / "images").glob("*.jpg"))[:n]:
        shutil.copy(p, dest / "images")
        shutil.copy(fire8 / "valid" / "labels" / f"{p.stem}.txt", dest / "labels")
    return dest


def test_train_freezes_the_backbone_first_then_trains_everything(fire8: Path, tmp_path: Path) -> None:
    data = tiny_dataset(fire8, tmp_path / "fire")  # images/ + labels/, as fire-mix folders are laid out
    out = tmp_path / "ft.pt"
    shipped = W.load_model("fire-detector")
    rc = main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--freeze-epochs", "1",
               "--imgsz", "64", "--batch", "4", "--workers", "0", "--device", "cpu"])
    assert rc == 0
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    assert prov["settings"]["freeze_epochs"] == 1 and prov["data"][0]["train_images"] == 4
    trained = W.load_model(str(out))
    assert trained.names == shipped.names == {0: "smoke", 1: "fire"}
    # every layer kept, the FasterNet blocks included; the second phase moved the backbone too
    assert [type(m).__name__ for m in trained.model] == [type(m).__name__ for m in shipped.model]
    assert "FasterNetC2f" in {type(m).__name__ for m in trained.model}
    n = backbone_layers(W.yolo("fire-detector"))
    assert n == 10
    moved = [not torch.equal(a, b) for a, b in zip(trained.model[:n].state_dict().values(),
                                                     shipped.model[:n].state_dict().values(), strict=True)]
    assert any(moved)


def test_train_refuses_a_freeze_that_leaves_nothing_to_unfreeze(tmp_path: Path) -> None:
    from detectors.train import train

    with pytest.raises(ValueError, match="freeze_epochs"):
        train([tmp_path], out=tmp_path / "x.pt", epochs=3, freeze_epochs=3)


def scores(best: list[float], labelled: list[bool]) -> dict[str, Any]:
    return {"best": [[0.0, b] for b in best], "labelled": labelled}


def test_loso_jobs_never_train_on_what_they_are_judged_on() -> None:
    meta = {"a": {"kind": "positive", "trainable": True}, "b": {"kind": "positive", "trainable": True},
            "clinic": {"kind": "negative", "trainable": True}, "wall": {"kind": "negative", "trainable": False}}
    jobs = train_loso.jobs(meta)
    assert [j.name for j in jobs] == ["fold-a", "fold-b", "fold-clinic", "all"]
    for j in jobs:
        assert not set(j.train_on) & set(j.score_on), j
        assert "wall" in j.score_on and "wall" not in j.train_on
    assert jobs[-1].train_on == ("a", "b", "clinic") and jobs[-1].score_on == ("wall",)


def test_loso_verdict_keeps_the_shipped_weights_when_one_unseen_source_got_worse() -> None:
    meta = {"a": {"kind": "positive", "trainable": True}, "wall": {"kind": "negative", "trainable": False}}
    shipped = {"a": scores([0.9, 0.4, 0.6, 0.1], [True, True, True, False]),  # recall 2/3 (the unlabelled one
               "wall": scores([0.2, 0.6], [False, False])}                      # is neither); FP 1/2
    better = {"job": "fold-a", "scores": {"a": scores([0.9, 0.7, 0.6, 0.9], [True, True, True, False]),
                                          "wall": scores([0.2, 0.3], [False, False])}}
    doc = {"pack": meta, "shipped": shipped, "models": [better], "seconds": 1,
           "options": {"epochs": 2, "freeze_epochs": 1, "imgsz": 64}}
    pairs, losses = train_loso.compare(doc)
    assert [(o.value, n.value) for o, n in pairs] == [(pytest.approx(2 / 3), 1.0), (0.5, 0.0)]
    assert losses == [] and "may replace" in train_loso.report(doc)
    worse = {"job": "all", "scores": {"wall": scores([0.55, 0.6], [False, False])}}  # FP 1/2 -> 2/2
    doc["models"] = [better, worse]
    assert train_loso.compare(doc)[1] == ["wall (all)"]
    text = train_loso.report(doc)
    assert "shipped weights kept: worse on wall (all)" in text
    assert text.splitlines()[2].startswith("wall") and text.splitlines()[2].endswith("WORSE")  # worst first
