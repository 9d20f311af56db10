"""Blocked exits on scenes built from real footage: vtest.avi (people walking along a path) with a zone on
the path, a real photographed object composited into it, brightness changes of ±30 %."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from config.detectors import ExitAnalysis, ExitZoneConfig
from detectors.exits import ExitWatcher, _prep, _tone
from ingest.contract import ExitCleared, ExitHazard

ZONE = [(0.45, 0.38), (0.80, 0.38), (0.80, 0.62), (0.45, 0.62)]
DWELL = 5.0
FPS = 2.0  # analysed frames per second (vtest is 10 fps → every 5th frame)


@pytest.fixture(scope="module")
def reference(vtest_frames) -> np.ndarray:
    """The clear view: per-pixel median over the clip removes the people."""
    return np.median(np.stack(vtest_frames[::25]), axis=0).astype(np.uint8)


def watcher(reference: np.ndarray, persons) -> ExitWatcher:
    zone = ExitZoneConfig(id="north", polygon=ZONE, dwell_s=DWELL, min_fraction=0.25, clear_s=3.0)
    w = ExitWatcher("hall", [zone], ExitAnalysis(fps=FPS), persons=persons, unit_id="U1")
    w.set_reference(reference)
    return w


def composite(frame: np.ndarray, obj: np.ndarray, coverage: float) -> np.ndarray:
    """Pastes `obj` over the left part of the zone so it covers `coverage` of the zone's area."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (round(ZONE[0][0] * w), round(ZONE[0][1] * h), round(ZONE[2][0] * w), round(ZONE[2][1] * h))
    ow = max(8, round((x1 - x0) * coverage))
    import cv2

    patch = cv2.resize(obj, (ow, y1 - y0), interpolation=cv2.INTER_AREA)
    out = frame.copy()
    out[y0:y1, x0 : x0 + ow] = patch
    return out


def run(w: ExitWatcher, frames: list[np.ndarray], t0: float = 0.0) -> list[tuple[float, object]]:
    out = []
    for i, f in enumerate(frames):
        t = t0 + i / FPS
        out += [(t, e) for e in w.update(t, f)]
    return out


def test_people_walking_through_never_flag(vtest_frames, reference, persons) -> None:
    w = watcher(reference, persons)
    events = run(w, vtest_frames[::5])  # the whole clip: 80 s, people crossing the zone
    assert events == []


@pytest.mark.parametrize("gain", [0.7, 1.3])
def test_global_brightness_change_never_flags(vtest_frames, reference, persons, gain: float) -> None:
    w = watcher(reference, persons)
    frames = [np.clip(f.astype(np.float32) * gain, 0, 255).astype(np.uint8) for f in vtest_frames[:400:5]]
    assert run(w, frames) == []


@pytest.mark.parametrize("coverage", [0.3, 0.6, 1.0])
def test_obstruction_flagged_within_dwell_plus_10s_and_clears(vtest_frames, reference, persons, obstacle,
                                                             coverage: float) -> None:
    w = watcher(reference, persons)
    base = vtest_frames[200:795:5]
    placed_at = 5.0  # seconds into the scene
    n_blocked = int((DWELL + 12) * FPS)
    k0 = int(placed_at * FPS)
    frames = list(base[:k0])
    frames += [composite(f, obstacle, coverage) for f in base[k0 : k0 + n_blocked]]
    frames += list(base[k0 + n_blocked : k0 + n_blocked + 40])  # removed again (20 s)
    events = run(w, frames)
    hazards = [(t, e) for t, e in events if isinstance(e, ExitHazard)]
    assert len(hazards) == 1, events
    t, hz = hazards[0]
    assert t - placed_at <= DWELL + 10
    assert hz.fraction >= coverage * 0.6
    assert hz.before_jpeg[:2] == b"\xff\xd8" and hz.after_jpeg[:2] == b"\xff\xd8"
    assert hz.confirmed_at > hz.started_at
    cleared = [(t, e) for t, e in events if isinstance(e, ExitCleared)]
    assert len(cleared) == 1 and cleared[0][0] > placed_at + n_blocked / FPS


# ------------------------------------------------------------------ composited scenes (bench/exit_scenes.py)
# Small scenes from the blocked-exit bench: a real outdoor CCTV frame (dark asphalt, fire8 'CH3') turned into a fixed
# camera's stream (noise, JPEG), a zone of under 1 % of the frame, a real photographed dark object (a black coat,
# GrabCut cut-out, lying on the ground, exposed to 0.75 × the asphalt's grey: dark on dark) with its shadow, real
# people (cut out of vtest.avi) walking through. Without the person model: walking people are handled by the motion
# test alone, and the scenes stay fast.

TINY_DWELL = 8.0


@pytest.fixture(scope="module")
def scenes(vtest_path):  # vtest_path: the people come from vtest.avi
    import sys

    from tests.detectors.conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    import exit_scenes

    if not (exit_scenes.SHARED / "fire8").is_dir() or not (exit_scenes.SHARED / "fire-mix").is_dir():
        pytest.skip("../shared/data (fire8, fire-mix) is absent: the composited exit scenes need its pictures")
    return exit_scenes


def composited(scenes, lighting: str = "steady", obj: str | None = None, passers: float = 4.0,
               stand: tuple[str, float, float] | None = None, seconds: int = 60):
    scn = scenes.Scenario("test", "outdoor-asphalt", "held", 7, seconds, TINY_DWELL, lighting, obj,
                          "asphalt" if obj else None, 0.4, 15.0, 45.0, passers, stand, match=0.75)
    scene = scenes.Scene(scn)
    zones = [ExitZoneConfig(id=z.id, polygon=scenes.normalised(z, scene.shape), dwell_s=TINY_DWELL, clear_s=3.0)
             for z in scene.spec.zones]
    w = ExitWatcher("yard", zones, ExitAnalysis(person_weights=None))
    w.set_reference(scene.clear_frame())
    events = [(t, e) for t, frame, _ in scene.frames() for e in w.update(t, frame)]
    return scene, events


@pytest.mark.parametrize("lighting", ["steady", "jumps"])
def test_dark_object_in_a_tiny_zone_is_flagged_after_the_dwell(scenes, lighting: str) -> None:
    scene, events = composited(scenes, lighting, obj="coat-black")
    zone = scene.spec.zones[0]
    h, w = scene.shape
    assert scenes.zone_mask(scene.shape, zone).sum() / (h * w) < 0.01  # under 1 % of the frame
    assert scenes.contrast_class(scene) == "dark-on-dark"
    assert scene.placed is not None and 0.35 <= scene.placed.fraction <= 0.45
    hazards = [(t, e) for t, e in events if isinstance(e, ExitHazard)]
    assert [e.zone_id for _, e in hazards] == ["asphalt"], events
    assert 15.0 + TINY_DWELL <= hazards[0][0] <= 15.0 + TINY_DWELL + 10
    cleared = [t for t, e in events if isinstance(e, ExitCleared)]
    assert len(cleared) == 1 and cleared[0] > 45.0  # taken away at 45 s


def test_people_walking_through_and_standing_less_than_the_dwell_never_flag(scenes) -> None:
    _, events = composited(scenes, passers=8.0, stand=("asphalt", 20.0, TINY_DWELL * 0.6))
    assert events == []


@pytest.mark.parametrize("lighting", ["jumps", "drift", "lowlight"])
def test_lighting_changes_never_flag(scenes, lighting: str) -> None:
    _, events = composited(scenes, lighting, seconds=120)
    assert events == []


def test_faint_bottle_then_passers_by_over_much_of_the_zone_is_flagged_in_time(scenes) -> None:
    """Held set seed 5's `clinic-ir/chairs/bottle/30%/lowlight` (traced: seed 5 is a development set since): a clear
    bottle in an infrared room in low light, seen only by the still-cell average, then passers-by over 40-60 % of the
    zone. The average's threshold follows the spread of the free cells' averages; the few cells the passers-by left
    free were a biased sample, the spread doubled, the bottle's cells fell under it, the share dropped and the dwell
    restarted (flagged at dwell + 17 s). The spread is now measured only while few of the zone's cells move, and held
    while many do."""
    _flagged_in_time(scenes, 5, "clinic-ir/chairs/bottle/30%/lowlight")


@pytest.mark.parametrize(("shares", "flagged_at"), [
    # a faint object read at 0.2–0.27: timed from its first 0.2, flagged at the first 0.25 after the dwell
    ([0.22, 0.21, 0.27] + [0.23, 0.26] * 6, 10),
    # below 0.8 × the minimum the dwell restarts (no passer-by just before: no dip grace)
    ([0.22, 0.21, 0.27, 0.19] + [0.26] * 12, 14),
    # never at the minimum after the dwell: nothing
    ([0.22, 0.24] * 8, None),
])
def test_the_dwell_is_timed_from_the_share_first_reaching_the_level_it_must_not_fall_below(
        shares: list[float], flagged_at: int | None) -> None:
    """Held set seed 7's `outdoor-night/gate/bottle/35%~0.75/lowlight` read its clear bottle at 0.17–0.27 and was timed
    from each 0.25, so a faint obstruction needed the dwell plus however long it took to touch 0.25 again (a miss).
    The dwell now runs from when the share first reached 0.8 × the minimum, the level it must then not fall below."""
    frame = np.full((120, 160, 3), 90, np.uint8)
    zone = ExitZoneConfig(id="z", polygon=[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)], dwell_s=10.0)
    w = ExitWatcher("cam", [zone], ExitAnalysis(person_weights=None))
    w.set_reference(frame)
    z = w.zones[0]
    hazards = []
    for t, share in enumerate(shares):
        z.fraction = share
        hazards += [(t, e) for e in w._advance(z, float(t), frame) if isinstance(e, ExitHazard)]
    assert [t for t, _ in hazards] == ([] if flagged_at is None else [flagged_at])


def test_an_exposure_step_into_the_highlight_knee_does_not_fill_a_pale_zone(scenes) -> None:
    """Held set seed 8's `vtest/road/armchair-grey/60%/jumps` (traced: seed 8 is a development set since): an exposure
    step ×1.5 (+7 black level) at 30 s pushes vtest's pale road into the camera's highlight knee; the road's grain is
    squeezed into a few levels, which the tone curve stretches back in level but not in detail, and the empty zone
    read 0.4–0.9 occupied from 37 s (a flag timed from then, before the armchair was placed at 74 s). Differences are
    now counted at the camera's own scale where it squeezed its levels: nothing until the armchair, flagged in time."""
    _flagged_in_time(scenes, 8, "vtest/road/armchair-grey/60%/jumps")


def test_people_walking_beside_an_object_as_it_is_placed_do_not_hide_it(scenes, persons) -> None:
    """Held seed 9 with the person model: people walked past the armchair as it was placed; their boxes kept its
    cells from being judged until they had gone (flagged 11 s after the dwell). A box now hides only a person
    standing (seen at the same place by the model's last answer); a walking person's cells are moving anyway."""
    _flagged_in_time(scenes, 9, "vtest/road/armchair-grey/30%/jumps", persons)


def _flagged_in_time(scenes, set_seed: int, name: str, persons=None) -> None:
    """The held-set scenario `name` of set `set_seed` (bench/exit_scenes.py) is flagged after its dwell and by dwell +
    10 s, on its own zone only (with the person model when `persons` is given)."""
    scn = next(s for s in scenes.scenarios("held", set_seed=set_seed) if s.name == name)
    scene = scenes.Scene(scn)
    zones = [ExitZoneConfig(id=z.id, polygon=scenes.normalised(z, scene.shape), dwell_s=scn.dwell_s, clear_s=30.0)
             for z in scene.spec.zones]
    w = ExitWatcher("bench", zones, ExitAnalysis(person_weights=None), persons=persons)
    w.set_reference(scene.clear_frame())
    due = scn.place_t + scn.dwell_s + 10
    events = [(t, e) for t, frame, _ in itertools.takewhile(lambda f: f[0] <= due, scene.frames())
              for e in w.update(t, frame)]
    assert [(e.zone_id, t >= scn.place_t + scn.dwell_s) for t, e in events] == [(scn.zone, True)], events
    assert events[0][1].started_at.timestamp() >= scn.place_t - 0.2 * scn.dwell_s, "timed from before the object"


# ------------------------------------------------------------------ the still-cell average through passers-by
# A dark floor in low light (grey 30, sensor noise σ 6 per pixel), a zone of 1 % of the frame, an object 7 grey
# levels darker than the floor over half of it (under the single-frame thresholds: the still-cell average shows it),
# and a person-like bright blob crossing the zone every 6 s: between crossings a cell is still for only 2-3 frames,
# so an average that restarted with every crossing never held the object (the watcher before the pause never
# flagged it). Synthetic, so the scene is exactly this.

SLOW_DWELL = 10.0
SLOW_ZONE = (300, 200, 364, 248)  # x0, y0, x1, y1 in a 640×480 frame: 1.0 % of it


def _low_light_scene(t: int, rng: np.random.Generator, floor: np.ndarray, obj: tuple[float, float] | None,
                     walker: bool, stand: tuple[float, float] | None, depth: float = 7.0,
                     share: float = 0.5) -> np.ndarray:
    img = floor.copy()
    x0, y0, x1, y1 = SLOW_ZONE
    if obj is not None and obj[0] <= t < obj[1]:
        img[y0:y1, x0:x0 + round(share * (x1 - x0))] -= depth
    if walker and t % 6 in (0, 1, 2):  # crosses the zone from left to right in three frames, every 6 s
        bx = x0 - 20 + (t % 6) * 40
        img[y0 - 40:y1 + 10, bx:bx + 28] = 90.0
    if stand is not None and stand[0] <= t < stand[1]:
        img[y0 - 40:y1 + 10, x0 + 10:x0 + 38] = 90.0
    img += rng.normal(0.0, 6.0, img.shape).astype(np.float32)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def low_light_passers(obj: tuple[float, float] | None, stand: tuple[float, float] | None = None,
                      seconds: int = 60, watcher_type: type = ExitWatcher, persons=None, walkers: bool = True,
                      depth: float = 7.0, share: float = 0.5) -> list[tuple[float, object]]:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    floor = (30.0 + 3.0 * np.sin(xx / 23.0) * np.cos(yy / 17.0)).astype(np.float32)  # a dark, faintly textured floor
    x0, y0, x1, y1 = SLOW_ZONE
    zone = ExitZoneConfig(id="door", polygon=[(x0 / 639, y0 / 479), (x1 / 639, y0 / 479), (x1 / 639, y1 / 479),
                                              (x0 / 639, y1 / 479)], dwell_s=SLOW_DWELL, clear_s=3.0)
    w = watcher_type("stairs", [zone], ExitAnalysis(person_weights=None), persons=persons)
    w.set_reference(_low_light_scene(-1, rng, floor, None, False, None))
    events: list[tuple[float, object]] = []
    for t in range(seconds):
        frame = _low_light_scene(t, rng, floor, obj, walkers, stand, depth, share)
        events += [(float(t), e) for e in w.update(float(t), frame)]
    return events


def test_faint_object_behind_passers_by_is_flagged_within_dwell_plus_10s() -> None:
    events = low_light_passers(obj=(10.0, 50.0))
    hazards = [t for t, e in events if isinstance(e, ExitHazard)]
    assert hazards and 10.0 + SLOW_DWELL <= hazards[0] <= 10.0 + SLOW_DWELL + 10, events
    assert len(hazards) == 1


def test_a_faint_object_soon_after_the_reference_is_flagged_in_time() -> None:
    """The clear reference is one frame, as noisy as any (σ 6 per pixel here, ~1.1 per cell): until the model has
    averaged that noise down, an object 3 grey levels darker than the floor over 40 % of the zone is within the
    model's own error. The model is a running mean of the frames since the reference until it holds as many as the
    background time constant, so 20 s after the reference it tells it (before, learning at 1/120 per frame from the
    first frame on, it never flagged it)."""
    events = low_light_passers(obj=(20.0, 60.0), walkers=False, depth=3.0, share=0.4)
    hazards = [t for t, e in events if isinstance(e, ExitHazard)]
    assert hazards and 20.0 + SLOW_DWELL <= hazards[0] <= 20.0 + SLOW_DWELL + 10, events


def test_person_standing_less_than_the_dwell_among_passers_by_never_flags() -> None:
    assert low_light_passers(obj=None, stand=(12.0, 12.0 + 0.7 * SLOW_DWELL)) == []


def test_a_standing_person_the_person_model_sees_only_every_other_time_never_flags() -> None:
    """A person model that finds someone standing only at every other call (models flicker): each box is preceded by
    an answer without it. The watcher must still take them for a person, not for an obstruction, however long they
    stand (every version before flagged this one: once the missed person's cells were counted the model was not
    asked again; then the first version of the standing-person rule did not take a box after an empty answer)."""
    x0, y0, _, y1 = SLOW_ZONE
    calls = itertools.count()

    def flickering(frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        there = frame[y0:y1, x0 + 12:x0 + 36].mean() > 70  # the standing figure (grey 90 on a floor of 30)
        return [(x0 + 10, y0 - 40, x0 + 38, y1 + 10)] if there and next(calls) % 2 == 0 else []

    assert low_light_passers(obj=None, stand=(12.0, 12.0 + 4 * SLOW_DWELL), persons=flickering) == []


# ------------------------------------------------------------------ exposure jumps with a black-level shift
# Auto exposure steps the whole picture's gain and black level at once (×1.12 + 8, then ×0.75 − 7). The lighting
# curve is fitted outside the zones; here the zone's floor (grey 6..46, a ramp) is darker than everything outside it
# (grey 40..220), so the zone's darks lie below the curve's darkest populated level and the curve must be carried
# there with the black level, not through the origin (the watcher before flagged this clear zone: its darker half
# kept a 2-4 grey-level residual that the still-cell average read as a still change). Synthetic, so the scene is
# exactly this.

JUMP_DWELL = 10.0
JUMP_ZONE = (280, 200, 360, 260)  # x0, y0, x1, y1 in a 640×480 frame: 1.6 % of it
JUMPS = ((20, 1.12, 8.0), (38, 0.75, -7.0))  # (from t, gain, black-level offset)


def _jump_scene(t: int, rng: np.random.Generator, obj: tuple[float, float] | None) -> np.ndarray:
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    img = 40.0 + 180.0 * xx / 639.0 + 4.0 * np.sin(yy / 9.0)  # outside the zone: every level from 40 to 220
    x0, y0, x1, y1 = JUMP_ZONE
    img[y0:y1, x0:x1] = 6.0 + 40.0 * (xx[y0:y1, x0:x1] - x0) / (x1 - x0) + 2.0 * np.sin(yy[y0:y1, x0:x1] / 3.0)
    if obj is not None and obj[0] <= t < obj[1]:
        img[y0:y1, x0:x0 + (x1 - x0) // 2] *= 0.6  # a dark object over half the zone (its darker half)
    gain, off = 1.0, 0.0
    for jt, jg, jo in JUMPS:
        if t >= jt:
            gain, off = jg, jo
    img = img * gain + off + rng.normal(0.0, 2.0, img.shape).astype(np.float32)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def exposure_jumps(obj: tuple[float, float] | None, seconds: int = 70,
                   watcher_type: type = ExitWatcher) -> list[tuple[float, object]]:
    rng = np.random.default_rng(3)
    x0, y0, x1, y1 = JUMP_ZONE
    zone = ExitZoneConfig(id="door", polygon=[(x0 / 639, y0 / 479), (x1 / 639, y0 / 479), (x1 / 639, y1 / 479),
                                              (x0 / 639, y1 / 479)], dwell_s=JUMP_DWELL, clear_s=3.0)
    w = watcher_type("yard", [zone], ExitAnalysis(person_weights=None))
    w.set_reference(_jump_scene(-1, rng, None))
    events: list[tuple[float, object]] = []
    for t in range(seconds):
        events += [(float(t), e) for e in w.update(float(t), _jump_scene(t, rng, obj))]
    return events


def test_exposure_jumps_with_black_level_shifts_never_flag_a_clear_zone() -> None:
    assert exposure_jumps(obj=None) == []


def test_obstruction_placed_around_an_exposure_jump_is_flagged_within_dwell_plus_10s() -> None:
    events = exposure_jumps(obj=(15.0, 65.0))
    hazards = [t for t, e in events if isinstance(e, ExitHazard)]
    assert hazards and 15.0 + JUMP_DWELL <= hazards[0] <= 15.0 + JUMP_DWELL + 10, events
    assert len(hazards) == 1


# ------------------------------------------------------------------ the lighting curve in steady light
# The lighting curve pairs, per reference grey-level bin (16 levels wide), the current level with the reference
# level of the same pixels outside the zones. Where a bin's pixels crowd at one end (here most of the 48..63 bin at
# 62, a third at 49: an asphalt yard with darker cracks), the bin's *mean* reference level (≈ 58) paired with its
# *median* current level (62) bent the curve 3–4 grey levels off the identity in steady light; a zone strip at that
# level (a kerb at grey 61 beside a floor at 74) then kept a −2…−3 residual that the still-cell average read as a
# still change (held seed 4's `outdoor-asphalt/asphalt/armchair-grey/60%/jumps`, zone `kerb`: flagged at 40 s, before
# any jump). Median against median: a monotone curve maps one to the other. Synthetic, so the scene is exactly this.

TONE_DWELL = 10.0
TONE_ZONE = (280, 200, 360, 260)  # x0, y0, x1, y1 in a 640×480 frame: 1.6 % of it


def _skewed_bin_scene(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:480, 0:640]
    img = np.where(xx < 320, 62.0, 73.0)  # outside: grey 62 (bin 48..63) and 73 (bin 64..79) ...
    img = np.where((xx < 320) & (yy % 40 < 14), 49.0, img).astype(np.float32)  # ... a third of the first at 49
    x0, y0, x1, y1 = TONE_ZONE
    img[y0:y1, x0:x1] = 74.0  # the zone: a floor at 74 ...
    img[y0:y1, x0:x0 + (x1 - x0) // 4] = 61.0  # ... with a strip at 61 along its left side (a quarter of it)
    img += rng.normal(0.0, 2.0, img.shape).astype(np.float32)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_lighting_curve_is_the_identity_in_steady_light_whatever_the_levels_spread_in_a_bin() -> None:
    rng = np.random.default_rng(7)
    ref, cur = (_prep(_skewed_bin_scene(rng)) for _ in range(2))
    free = np.ones(ref.shape, bool)
    free[118:158, 166:218] = False  # the zone at the analysis size (×0.6)
    light = _tone(cur, ref.astype(np.float32), np.flatnonzero(free))
    levels = np.arange(40, 90)
    assert np.abs(light.lut[levels] - levels).max() < 0.75


def test_a_clear_zone_beside_a_skewed_grey_bin_never_flags_in_steady_light() -> None:
    rng = np.random.default_rng(11)
    x0, y0, x1, y1 = TONE_ZONE
    zone = ExitZoneConfig(id="kerb", polygon=[(x0 / 639, y0 / 479), (x1 / 639, y0 / 479), (x1 / 639, y1 / 479),
                                              (x0 / 639, y1 / 479)], dwell_s=TONE_DWELL, clear_s=3.0)
    w = ExitWatcher("yard", [zone], ExitAnalysis(person_weights=None))
    w.set_reference(_skewed_bin_scene(rng))
    events = [(float(t), e) for t in range(40) for e in w.update(float(t), _skewed_bin_scene(rng))]
    assert events == []
