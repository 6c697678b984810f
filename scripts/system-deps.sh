#!/usr/bin/env bash
# Debian packages whose files ITR's offline demo data, benchmarks and tests use: the Noto colour emoji
# font, Unicode CLDR annotations (names/keywords of emoji in 100+ languages) and the Open Clip Art
# library (public-domain drawings with titles and keywords), and GCompris' data (real photos and
# drawings named in many languages: the evaluation set `itr eval gcompris`) and Tux Paint's stamps (cut-out
# photos and drawings described in many languages: `itr eval tuxpaint`, a training source). Chromium drives the web page's end-to-end
# test (headless, through Playwright). Installs them if missing.
set -euo pipefail
need=()
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
[ -f /usr/share/unicode/cldr/common/annotations/en.xml ] || need+=(unicode-cldr-core)
[ -d /usr/share/openclipart/svg ] || need+=(openclipart-svg)
[ -d /usr/share/openclipart/png ] || need+=(openclipart-png)
[ -d /usr/share/gcompris-qt/rcc ] || need+=(gcompris-qt-data)
[ -d /usr/share/tuxpaint/stamps ] || need+=(tuxpaint-stamps-default)
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "missing Debian packages: ${need[*]}; install them with: apt-get install ${need[*]}" >&2; exit 1
fi
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
