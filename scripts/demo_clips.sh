#!/usr/bin/env bash
# Fetches the demo/test video clips into var/clips/ (not committed: they come from a registry package).
# Source: Debian's opencv-doc package (OpenCV's sample data, BSD/Apache licence), which ships
# vtest.avi (people walking through a hall, 768×576, 10 fps) and a few more clips.
# Needs apt-get (Debian/Ubuntu) and dpkg; idempotent; no root needed for `apt-get download`.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=var/clips
want=(vtest.avi tree.avi Megamind.avi)
missing=0
for f in "${want[@]}"; do [ -s "$dest/$f" ] || missing=1; done
[ "$missing" -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "demo_clips: apt-get not found; put vtest.avi into $dest by hand" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
( cd "$scratch" && apt-get download -q opencv-doc >/dev/null 2>&1 ) || {
  echo "demo_clips: 'apt-get download opencv-doc' failed (run 'apt-get update' first?)" >&2; exit 1; }
dpkg -x "$scratch"/opencv-doc_*.deb "$scratch/x"
mkdir -p "$dest"
src="$scratch/x/usr/share/doc/opencv-doc/examples/data"
for f in "${want[@]}"; do
  if [ -f "$src/$f" ]; then cp "$src/$f" "$dest/$f"; elif [ -f "$src/$f.gz" ]; then gunzip -c "$src/$f.gz" > "$dest/$f"; fi
done
ls -l "$dest"
