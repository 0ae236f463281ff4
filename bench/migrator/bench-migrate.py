#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Live migration over loopback: cleave (`cleave run`, QMP through
cleave-monitor) against QEMU 7.2 (microvm, KVM), same guest ELF, command
line, RAM size, vCPUs, channels and parameters, both driven over QMP.

Scenarios: 4 GiB with 64 MiB touched, idle; 1 GiB with 256 MiB dirtied
continuously (guest mode=dirty rate=RATE MiB/s); each with 1 channel
(multifd off) and 4 multifd channels; max-bandwidth raised to 100 GiB/s
and downtime-limit 300 ms on both.  Prints medians of --runs runs of
total-time, downtime, bytes transferred and throughput (bytes / total
time), and the cleave/QEMU ratios; then, when it is built next to CLEAVE,
bench-migrator-loopback: this host's one-stream loopback ceiling.

usage: bench-migrate.py CLEAVE GUEST_ELF [--runs N] [--rate MIB/S] [--only cleave|qemu]
                        [--scenario idle|dirty] [--channels 1|4] [--keep DIR [--verbose]]
--keep DIR keeps each run's logs (and with --verbose, cleave's debug logs:
the migrator's per-phase timings) in DIR/<n>-<name>.log.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

QEMU = 'qemu-system-x86_64'


class QMP:
    """Minimal QMP client: one command at a time, events kept aside."""

    def __init__(self, path, timeout=30):
        end = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > end:
                    raise
                time.sleep(0.02)
        self.f = self.sock.makefile('rwb')
        self.read()  # greeting
        self.cmd('qmp_capabilities')

    def read(self):
        line = self.f.readline()
        if not line:
            raise EOFError('QMP connection closed')
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.f.write(json.dumps(msg).encode() + b'\r\n')
        self.f.flush()
        while True:
            r = self.read()
            if 'event' in r:
                continue
            if 'error' in r:
                raise RuntimeError('%s: %s' % (name, r['error']))
            return r['return']

    def close(self):
        self.sock.close()


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class VM:
    """One side (source or destination) of one VMM."""

    def __init__(self, kind, tmp, name, mem, append, cpus, incoming, cleave, guest, logdir=None,
                 verbose=False):
        self.qmp_path = os.path.join(tmp, name + '.qmp')
        self.serial = os.path.join(tmp, name + '.serial')
        log = open(os.path.join(logdir or tmp, name + '.log'), 'w')
        if kind == 'cleave':
            argv = [cleave, 'run', '--name', name, '-m', mem, '--vcpus', str(cpus)]
            if verbose:
                argv.append('-v')
            argv += [
                    '--guest', guest, '--append', append, '--serial', 'file:' + self.serial,
                    '--qmp', 'unix:' + self.qmp_path, '--state-dir', os.path.join(tmp, 'st-' + name)]
            if incoming:
                argv += ['--incoming', incoming]
        else:
            argv = [QEMU, '-accel', 'kvm', '-M', 'microvm', '-cpu', 'host,-arch-capabilities',
                    '-smp', str(cpus), '-m', mem, '-nodefaults', '-no-user-config',
                    '-display', 'none', '-serial', 'file:' + self.serial,
                    '-device', 'isa-debug-exit,iobase=0xf4,iosize=4', '-kernel', guest,
                    '-append', append + ' cpus=%d' % cpus,
                    '-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]
            if incoming:
                argv += ['-incoming', incoming]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        self.qmp = QMP(self.qmp_path)

    def wait_serial(self, needle, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            try:
                with open(self.serial, 'rb') as f:
                    if needle.encode() in f.read():
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise RuntimeError('guest never printed %r' % needle)

    def stop(self):
        try:
            self.qmp.cmd('quit')
        except Exception:
            pass
        try:
            self.qmp.close()
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


RUN_NO = [0]


def one_run(kind, sc, channels, args):
    tmp = tempfile.mkdtemp(prefix='bench-mig-')
    port = free_port()
    src = dst = None
    logs = {}
    if args.keep:
        RUN_NO[0] += 1
        os.makedirs(args.keep, exist_ok=True)
        logs = {'logdir': args.keep, 'verbose': args.verbose}
        tag = '%d-%s-%s-%dch-' % (RUN_NO[0], kind, sc['key'], channels)
    try:
        src = VM(kind, tmp, (tag if logs else '') + 'src', sc['mem'], sc['append'], 1, None,
                 args.cleave, args.guest, **logs)
        dst = VM(kind, tmp, (tag if logs else '') + 'dst', sc['mem'], sc['append'], 1,
                 'tcp:127.0.0.1:%d' % port, args.cleave, args.guest, **logs)
        src.wait_serial('HB 0 ')  # stamping pass done
        time.sleep(0.3)
        for q in (src.qmp, dst.qmp):
            q.cmd('migrate-set-capabilities',
                  capabilities=[{'capability': 'multifd', 'state': channels > 1}])
            q.cmd('migrate-set-parameters', **{'multifd-channels': max(channels, 1),
                                               'max-bandwidth': 100 << 30,
                                               'downtime-limit': 300})
        src.qmp.cmd('migrate', uri='tcp:127.0.0.1:%d' % port)
        end = time.time() + args.timeout
        while True:
            r = src.qmp.cmd('query-migrate')
            if r.get('status') in ('completed', 'failed', 'cancelled'):
                break
            if time.time() > end:
                src.qmp.cmd('migrate_cancel')
                raise RuntimeError('no convergence in %d s' % args.timeout)
            time.sleep(0.005)
        if r['status'] != 'completed':
            raise RuntimeError('%s: %s' % (r['status'], r.get('error-desc')))
        # QEMU's source completes before its destination finished loading.
        end = time.time() + 10
        while dst.qmp.cmd('query-status')['status'] != 'running':
            if time.time() > end:
                raise RuntimeError('destination not running 10 s after completion')
            time.sleep(0.005)
        return r
    finally:
        for vm in (src, dst):
            if vm:
                vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def med(xs):
    return statistics.median(xs) if xs else float('nan')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cleave')
    ap.add_argument('guest')
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--rate', type=int, default=512, help='dirty rate of the guest, MiB/s')
    ap.add_argument('--timeout', type=int, default=60)
    ap.add_argument('--only', choices=['cleave', 'qemu'])
    ap.add_argument('--scenario', choices=['idle', 'dirty'])
    ap.add_argument('--channels', type=int, choices=[1, 4])
    ap.add_argument('--keep', metavar='DIR', help='keep every run\'s logs in DIR')
    ap.add_argument('--verbose', action='store_true', help='with --keep: cleave -v')
    args = ap.parse_args()
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        print('SKIP: /dev/kvm not available')
        return 77
    scenarios = [
        {'key': 'idle', 'name': '4 GiB, 64 MiB touched, idle', 'mem': '4G', 'append': 'mode=idle mib=64 hb=1000'},
        {'key': 'dirty', 'name': '1 GiB, 256 MiB dirtied at %d MiB/s' % args.rate, 'mem': '1G',
         'append': 'mode=dirty mib=256 rate=%d hb=1000' % args.rate},
    ]
    kinds = [args.only] if args.only else ['cleave', 'qemu']
    print('runs per cell: %d (medians); loopback TCP; 1 vCPU; max-bandwidth 100 GiB/s; '
          'downtime-limit 300 ms' % args.runs)
    print('%-36s %-3s %-6s %9s %9s %10s %10s %6s %s' % (
        'scenario', 'ch', 'vmm', 'total ms', 'down ms', 'MiB sent', 'MiB/s', 'rounds', 'ok'))
    summary = []
    for sc in scenarios:
        if args.scenario and sc['key'] != args.scenario:
            continue
        for ch in (1, 4):
            if args.channels and ch != args.channels:
                continue
            res = {}
            for kind in kinds:
                tot, down, sent, rounds, errs = [], [], [], [], []
                for _ in range(args.runs):
                    try:
                        r = one_run(kind, sc, ch, args)
                        tot.append(r['total-time'])
                        down.append(r.get('downtime', 0))
                        sent.append(r['ram']['transferred'])
                        rounds.append(r['ram']['dirty-sync-count'])
                    except Exception as e:  # a failed run is reported, not fatal
                        errs.append(str(e))
                t, d, b = med(tot), med(down), med(sent)
                thr = b / (1 << 20) / (t / 1000) if tot and t else float('nan')
                res[kind] = (t, d, b, thr)
                print('%-36s %-3d %-6s %9.0f %9.1f %10.1f %10.0f %6.0f %d/%d%s' % (
                    sc['name'], ch, kind, t, d, b / (1 << 20), thr, med(rounds), len(tot),
                    args.runs, ('  errors: ' + '; '.join(sorted(set(errs)))) if errs else ''))
                sys.stdout.flush()
            if 'cleave' in res and 'qemu' in res:
                c, q = res['cleave'], res['qemu']
                summary.append('%-36s ch=%d  total %.3fx  downtime %.2fx  bytes %.2fx  '
                               'throughput %.2fx' % (sc['name'], ch, c[0] / q[0],
                                                     c[1] / q[1] if q[1] else float('nan'),
                                                     c[2] / q[2], c[3] / q[3]))
    if summary:
        print('\ncleave / QEMU (lower is better for time, downtime, bytes):')
        for s in summary:
            print('  ' + s)
    # The host's own one-stream ceiling, same run: what the MiB/s column is bounded by.
    ceiling = os.path.join(os.path.dirname(os.path.abspath(args.cleave)), '..', 'bench',
                           'migrator', 'bench-migrator-loopback')
    if os.access(ceiling, os.X_OK):
        print()
        sys.stdout.flush()
        subprocess.run([ceiling, str(max(3, args.runs))], check=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
