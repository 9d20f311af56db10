"""FasterNet layers used by the `fire-detector` weights, importable as ``detectors.fasternet``.

The package's checkpoint was pickled from a training script, so it refers to
``__main__.FasterNetC2f`` / ``__main__.FasterNetBlock`` / ``__main__.PartialConv2d``.
The package itself "fixes" that by injecting the classes into ``__main__`` as a
side effect of ``import fire_detector`` (and its ``__init__`` also imports its
torchvision/ultralytics demo wrappers). We avoid both: this module executes the
package's own ``modules.py`` (found with ``importlib.util.find_spec``, which does
not run ``fire_detector/__init__.py``) into this namespace, so the classes are
defined exactly once, under a stable, importable name. `detectors.weights` maps
the pickle's ``__main__`` references here while unpickling, and checkpoints that
we save (fine-tuned weights) refer to ``detectors.fasternet`` and load anywhere
this project is installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CLASS_NAMES = ("FasterNetC2f", "FasterNetBlock", "PartialConv2d")


def _source() -> Path:
    spec = importlib.util.find_spec("fire_detector")
    if spec is None or spec.origin is None:
        raise ImportError(
            "the fire-detector package is not installed (pip install --no-deps fire-detector==1.0.3); "
            "its FasterNet layer definitions and default weights come from there"
        )
    return Path(spec.origin).with_name("modules.py")


_path = _source()
exec(compile(_path.read_text(encoding="utf-8"), str(_path), "exec"), globals())

FasterNetC2f = globals()["FasterNetC2f"]
FasterNetBlock = globals()["FasterNetBlock"]
PartialConv2d = globals()["PartialConv2d"]
