#!/bin/sh
# Installs what is missing, builds, and runs the whole test suite:
# the normal build (unit + integration with real KVM guests), then the
# ASan+UBSan build, then the TSan build of the threaded modules, then the
# fuzz harnesses (scripts/fuzz.sh).
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

# Runs one build's suite, then its summary (skips by reason, failures by
# name, "LABEL: N passed, N failed, N skipped"); a failure is kept for the end.
status=0
run_suite() { # label, dir, meson test options...
	label=$1
	dir=$2
	shift 2
	rm -f "$dir/meson-logs/testlog.json" # a summary of this run, never a stale one
	meson test -C "$dir" --print-errorlogs "$@" || true
	python3 scripts/test-summary.py "$dir" "$label" >"$dir/summary.txt" || status=1
	cat "$dir/summary.txt"
}

build build -Dfault_injection=true
run_suite plain build

build build-asan -Dfault_injection=true -Db_sanitize=address,undefined -Db_lundef=false
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	run_suite asan+ubsan build-asan --suite sanitize

build build-tsan -Dfault_injection=true -Db_sanitize=thread -Db_lundef=false
TSAN_OPTIONS=halt_on_error=1 run_suite tsan build-tsan --suite tsan

# The fuzz harnesses, 20 s each from their committed corpora; its own summary.
./scripts/fuzz.sh 20 || status=1

# The three summaries together, where a reader of the log looks first.
echo
echo "== test summary =="
cat build/summary.txt build-asan/summary.txt build-tsan/summary.txt
awk -F'[:,] *' '/: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ {
	p += $2; f += $3; s += $4 }
	END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' \
	build/summary.txt build-asan/summary.txt build-tsan/summary.txt
exit $status
