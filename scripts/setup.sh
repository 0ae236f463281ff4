#!/bin/sh
# Installs exactly what cleave needs on Debian 12 (build, tests, benchmarks;
# clang and its libFuzzer runtime for scripts/fuzz.sh).
# Safe to run twice: apt-get skips what is already installed.
set -eu
PKGS="build-essential meson ninja-build pkg-config cmake
libnng-dev libprotobuf-c-dev protobuf-c-compiler libseccomp-dev
libcmocka-dev libjansson-dev libgnutls28-dev
clang libclang-rt-14-dev"
# The reference VMM for side-by-side benchmarks (bench/), and gnuplot for
# bench/plots.py; not needed to build.
BENCH_PKGS="qemu-system-x86 gnuplot-nox"

missing=""
for p in $PKGS ${WITH_BENCH:+$BENCH_PKGS}; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
