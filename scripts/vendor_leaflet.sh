#!/usr/bin/env bash
# Refresh the browser libraries the hub serves (realtime/web/static/vendor/): Leaflet (the
# maps) and uPlot (the dashboard's time-series charts), from the versions pinned in
# package-lock.json.
#
# Why vendored: `pip install` alone must give a working hub, with no npm, no JavaScript
# build step and no CDN at run time. So the pinned dist files are copied into the Python
# package and committed; this script is the only way they change. To upgrade one:
#
#   npm install --save-exact leaflet@X.Y.Z && scripts/vendor_leaflet.sh
#
# It writes a MANIFEST.json per library (version, the lock's integrity, a sha256 per file),
# which tests/web/test_assets.py checks against package-lock.json and the files themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --no-audit --no-fund --silent

manifest() {  # manifest PACKAGE DEST
python3 - "$1" "$2" <<'PY'
import hashlib
import json
import sys
from pathlib import Path

package, dest = sys.argv[1], Path(sys.argv[2])
lock = json.loads(Path("package-lock.json").read_text())["packages"][f"node_modules/{package}"]
files = {
    path.relative_to(dest).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted(dest.rglob("*"))
    if path.is_file() and path.name != "MANIFEST.json"
}
manifest = {
    "package": package,
    "version": lock["version"],
    "integrity": lock["integrity"],
    "files": files,
}
(dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(f"vendored {package} {lock['version']} into {dest} ({len(files)} files)")
PY
}

src=node_modules/leaflet
dest=realtime/web/static/vendor/leaflet
rm -rf "$dest"
mkdir -p "$dest/images"
cp "$src/dist/leaflet.js" "$src/dist/leaflet.css" "$src/LICENSE" "$dest/"
cp "$src"/dist/images/*.png "$dest/images/"
# Byte-identical copies (source map comment included), so they can be checked against the
# package; the map itself is not shipped (developer tools ask for it and get a 404).
manifest leaflet "$dest"

# uPlot as an ES module (the pages are modules) and its stylesheet.
src=node_modules/uplot
dest=realtime/web/static/vendor/uplot
rm -rf "$dest"
mkdir -p "$dest"
cp "$src/dist/uPlot.esm.js" "$src/dist/uPlot.min.css" "$src/LICENSE" "$dest/"
manifest uplot "$dest"
