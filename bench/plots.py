#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Runs the benchmarks that need no KVM and draws their figures.

  restore-vs-ram.png    lazy restore through the fault service against
                        guest RAM size (bench-vcpu-fault)
  migration-tls.png     the migration engine, plaintext and TLS, 1/2/4
                        channels (bench-migrator-engine --tls)
  qmp-crowd.png         1000 QMP clients x 10 calls at once, per command
                        (bench-qmp-latency)

Each figure gets its data next to it (NAME.csv) and its table on stdout.
gnuplot comes from the bench set-up: WITH_BENCH=1 scripts/setup.sh.

usage: bench/plots.py [BUILD_DIR] [OUT_DIR]     (build, docs/figures)
"""
import csv
import os
import re
import shutil
import subprocess
import sys


def run(cmd):
    print('$', ' '.join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    print(out, flush=True)
    return out


def gnuplot(script):
    subprocess.run(['gnuplot'], input=script, check=True, text=True)


def write_csv(path, header, rows):
    """The header as a comment line, which gnuplot skips."""
    with open(path, 'w', newline='') as f:
        f.write('# ' + ','.join(header) + '\n')
        csv.writer(f).writerows(rows)


def restore_vs_ram(build, out):
    text = run([os.path.join(build, 'bench/vcpu/bench-vcpu-fault'), '3', '/tmp',
                '1', '2', '4', '8', '16'])
    rows, ram = [], None
    for line in text.splitlines():
        m = re.match(r'(\d+) GiB\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/([\d.]+)\s+([\d.]+)\s+([\d.]+)',
                     line)
        if m:
            ram = [int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(7))]
            continue
        m = re.search(r'\(eager\): ([\d.]+) ms', line)
        if m and ram:
            rows.append(ram + [float(m.group(1))])
            ram = None
    if not rows:
        sys.exit('bench-vcpu-fault printed no rows')
    data = os.path.join(out, 'restore-vs-ram.csv')
    write_csv(data, ['ram_gib', 'register_us', 'first_fault_us', 'fill_ms', 'eager_ms'], rows)
    gnuplot(f'''
set terminal pngcairo size 800,480 font ",11"
set output "{os.path.join(out, 'restore-vs-ram.png')}"
set datafile separator ","
set title "Lazy restore, 256 MiB of data: cost against guest RAM (bench-vcpu-fault)"
set xlabel "guest RAM (GiB)"
set logscale x 2
set ylabel "ms (fill)"
set y2label "µs (register, first touch)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key outside bottom center horizontal maxrows 2
set grid
plot "{data}" using 1:4 with linespoints lw 2 title "background fill of all RAM (ms)", \\
     "{data}" using 1:5 with linespoints lw 2 dt 2 title "ceiling: pread+pwrite of the data into a fresh memfd (ms)", \\
     "{data}" using 1:3 axes x1y2 with linespoints lw 2 title "first touch to its page (µs)", \\
     "{data}" using 1:2 axes x1y2 with linespoints lw 2 title "register the region (µs)"
''')


def migration_tls(build, out):
    text = run([os.path.join(build, 'bench/migrator/bench-migrator-engine'), '3', '--tls'])
    rows = {}
    for line in text.splitlines():
        m = re.match(r'(plain|tls)\s+(\d+)\s+([\d.]+)\s+\d+\s+([\d.]+)\s+([\d.]+)', line)
        if m:
            rows.setdefault(int(m.group(2)), {})[m.group(1)] = (float(m.group(3)),
                                                                 float(m.group(5)))
    table = [[ch, v['plain'][0], v['plain'][1], v['tls'][0], v['tls'][1]]
             for ch, v in sorted(rows.items()) if 'plain' in v and 'tls' in v]
    if not table:
        sys.exit('bench-migrator-engine printed no rows')
    data = os.path.join(out, 'migration-tls.csv')
    write_csv(data, ['channels', 'plain_ms', 'plain_gibs', 'tls_ms', 'tls_gibs'], table)
    gnuplot(f'''
set terminal pngcairo size 800,480 font ",11"
set output "{os.path.join(out, 'migration-tls.png')}"
set datafile separator ","
set title "Migration engine, 1 GiB (256 MiB data), loopback, both ends on this host (bench-migrator-engine --tls)"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xlabel "channels"
set ylabel "GiB/s on the wire"
set yrange [0:*]
set key top left
set grid ytics
plot "{data}" using 3:xtic(1) title "plaintext (splice)", \\
     "" using 5 title "mutual TLS 1.3"
''')


def qmp_crowd(build, out):
    text = run([os.path.join(build, 'bench/monitor/bench-qmp-latency'),
                os.path.join(build, 'monitor/cleave-monitor'), '2000'])
    rows = []
    for line in text.splitlines():
        m = re.match(r'(\S+)\s+cleave-monitor\s+1000 clients x 10 calls: median=([\d.]+) us '
                     r'p99=([\d.]+) us max=[\d.]+ us, (\d+) calls/s', line)
        if m:
            rows.append([m.group(1), float(m.group(2)) / 1000, float(m.group(3)) / 1000,
                         int(m.group(4))])
    if not rows:
        sys.exit('bench-qmp-latency printed no crowd rows')
    data = os.path.join(out, 'qmp-crowd.csv')
    write_csv(data, ['command', 'median_ms', 'p99_ms', 'calls_per_s'], rows)
    gnuplot(f'''
set terminal pngcairo size 800,480 font ",11"
set output "{os.path.join(out, 'qmp-crowd.png')}"
set datafile separator ","
set title "1000 QMP clients x 10 calls at once (bench-qmp-latency)"
set style data histogram
set style fill solid 0.8 border -1
set boxwidth 0.6
set ylabel "calls per second"
set y2label "p99 per call (ms)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key outside bottom center horizontal
set grid ytics
plot "{data}" using 4:xtic(1) title "calls/s", \\
     "" using 0:3 axes x1y2 with points pt 7 ps 2 title "p99 (ms)"
''')


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else 'build'
    out = sys.argv[2] if len(sys.argv) > 2 else 'docs/figures'
    if not shutil.which('gnuplot'):
        sys.exit('gnuplot is missing: WITH_BENCH=1 scripts/setup.sh')
    os.makedirs(out, exist_ok=True)
    restore_vs_ram(build, out)
    migration_tls(build, out)
    qmp_crowd(build, out)


if __name__ == '__main__':
    main()
