#!/bin/sh
# Installs what is missing, builds, and runs the whole test suite:
# the normal build (unit + integration with real KVM guests), then the
# ASan+UBSan build, then the TSan build of the threaded modules.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh

build() { # dir, meson options...
	dir=$1
	shift
	if [ -d "$dir" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir"
}

build build
meson test -C build --print-errorlogs

build build-asan -Db_sanitize=address,undefined -Db_lundef=false
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	meson test -C build-asan --print-errorlogs --suite sanitize

build build-tsan -Db_sanitize=thread -Db_lundef=false
TSAN_OPTIONS=halt_on_error=1 meson test -C build-tsan --print-errorlogs --suite tsan
