#!/bin/sh
# Installs what is missing, builds, boots the embedded guest and
# live-migrates it between two cleave instances on loopback.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build
exec ./build/launcher/cleave demo
