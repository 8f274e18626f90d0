#!/usr/bin/env bash
# Open a `landscape report` page in headless Chromium and take a screenshot: the page
# renders and its embedded images load. Needs a Chromium (Debian: apt install chromium); this
# project's CI machines have none, so the suite checks the page's structure instead
# (tests/test_report.py) and this script is the browser check, run by hand:
#     bash benchmarks/check_report_in_browser.sh report.html shot.png
set -euo pipefail
PAGE=${1:?report.html}
SHOT=${2:-report.png}
BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$BROWSER" ] || { echo "no Chromium found: apt install chromium" >&2; exit 2; }
"$BROWSER" --headless --disable-gpu --no-sandbox --window-size=1400,2400 \
  --screenshot="$SHOT" "file://$(realpath "$PAGE")"
python - "$PAGE" <<'PY'
import base64, re, sys
html = open(sys.argv[1]).read()
images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
assert images, "no embedded image"
assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images), "an image does not decode"
print(f"{len(images)} embedded images decode")
PY
echo "screenshot: $SHOT (check it shows the figures and the table)"
