#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""What the sandbox costs (docs/SECURITY.md), sandboxed and --no-sandbox
runs interleaved in one invocation so both see the same host:

- start-up: `cleave run --append mode=poweroff -m 128M`, fork to exit
  (3 processes; the sandboxed run also builds the jails, the PID namespace
  holder, and every process's seccomp filter);
- migration throughput: two `cleave run` on loopback, 1 GiB guest with MIB
  MiB touched (idle), 4 multifd channels, driven over QMP like
  bench/migrator/bench-migrate.py; throughput = RAM bytes sent / total-time.

Prints medians and the sandbox's cost.  Targets: <= 5 ms start-up,
<= 5 % throughput.

usage: bench-sandbox.py CLEAVE [--runs N] [--mib MIB] [--channels N]
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


class QMP:
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
        self.f.readline()
        self.cmd('qmp_capabilities')

    def cmd(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.f.write(json.dumps(msg).encode() + b'\r\n')
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError('QMP closed')
            r = json.loads(line)
            if 'event' in r:
                continue
            if 'error' in r:
                raise RuntimeError('%s: %s' % (name, r['error']))
            return r['return']


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def boot_ms(cleave, sandbox, tmp):
    argv = [cleave, 'run', '--append', 'mode=poweroff', '-m', '128M',
            '--state-dir', os.path.join(tmp, 'st-boot'), '--serial', 'file:' + os.path.join(tmp, 'boot.serial')]
    if not sandbox:
        argv.append('--no-sandbox')
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError('cleave run exited %d' % r.returncode)
    return ms


class VM:
    def __init__(self, cleave, tmp, name, sandbox, append, incoming=None):
        self.qmp_path = os.path.join(tmp, name + '.qmp')
        self.serial = os.path.join(tmp, name + '.serial')
        argv = [cleave, 'run', '--name', name, '-m', '1G', '--append', append,
                '--serial', 'file:' + self.serial, '--qmp', 'unix:' + self.qmp_path,
                '--state-dir', os.path.join(tmp, 'st-' + name)]
        if incoming:
            argv += ['--incoming', incoming]
        if not sandbox:
            argv.append('--no-sandbox')
        self.log = open(os.path.join(tmp, name + '.log'), 'w')
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
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
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def migrate(cleave, sandbox, mib, channels):
    tmp = tempfile.mkdtemp(prefix='bench-sbx-')
    port = free_port()
    append = 'mode=idle mib=%d hb=1000' % mib
    src = dst = None
    try:
        src = VM(cleave, tmp, 'src', sandbox, append)
        dst = VM(cleave, tmp, 'dst', sandbox, append, 'tcp:127.0.0.1:%d' % port)
        src.wait_serial('HB 0 ')
        for q in (src.qmp, dst.qmp):
            q.cmd('migrate-set-capabilities',
                  capabilities=[{'capability': 'multifd', 'state': channels > 1}])
            q.cmd('migrate-set-parameters', **{'multifd-channels': channels,
                                               'max-bandwidth': 100 << 30,
                                               'downtime-limit': 300})
        src.qmp.cmd('migrate', uri='tcp:127.0.0.1:%d' % port)
        end = time.time() + 60
        while True:
            r = src.qmp.cmd('query-migrate')
            if r.get('status') in ('completed', 'failed', 'cancelled'):
                break
            if time.time() > end:
                raise RuntimeError('no convergence in 60 s')
            time.sleep(0.005)
        if r['status'] != 'completed':
            raise RuntimeError('%s: %s' % (r['status'], r.get('error-desc')))
        return r['ram']['transferred'] / (1 << 20) / (r['total-time'] / 1000.0), r['total-time']
    finally:
        for vm in (src, dst):
            if vm:
                vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cleave')
    ap.add_argument('--runs', type=int, default=7)
    ap.add_argument('--mib', type=int, default=512)
    ap.add_argument('--channels', type=int, default=4)
    args = ap.parse_args()
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        print('SKIP: /dev/kvm not available')
        return 77
    tmp = tempfile.mkdtemp(prefix='bench-sbx-boot-')
    boot = {True: [], False: []}
    mig = {True: [], False: []}
    try:
        for i in range(args.runs * 2):
            sb = i % 2 == 0
            boot[sb].append(boot_ms(args.cleave, sb, tmp))
        for i in range(args.runs * 2):
            sb = i % 2 == 0
            mig[sb].append(migrate(args.cleave, sb, args.mib, args.channels))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    b_on, b_off = med(boot[True]), med(boot[False])
    t_on = med([m[0] for m in mig[True]])
    t_off = med([m[0] for m in mig[False]])
    print('runs per cell: %d (medians), sandboxed and --no-sandbox interleaved' % args.runs)
    print('%-44s %12s %12s %10s' % ('', 'sandbox', 'no-sandbox', 'cost'))
    print('%-44s %9.1f ms %9.1f ms %+7.1f ms' % ('cleave run mode=poweroff, start to exit',
                                                  b_on, b_off, b_on - b_off))
    print('%-44s %7.0f MiB/s %7.0f MiB/s %+8.1f %%' % (
        'migration, 1 GiB, %d MiB touched, %d ch' % (args.mib, args.channels),
        t_on, t_off, (t_off - t_on) / t_off * 100))
    print('%-44s %9.0f ms %9.0f ms' % ('migration total-time',
                                       med([m[1] for m in mig[True]]),
                                       med([m[1] for m in mig[False]])))
    print('boot ms sandbox:    ' + ' '.join('%.0f' % x for x in boot[True]))
    print('boot ms no-sandbox: ' + ' '.join('%.0f' % x for x in boot[False]))
    print('MiB/s sandbox:      ' + ' '.join('%.0f' % x[0] for x in mig[True]))
    print('MiB/s no-sandbox:   ' + ' '.join('%.0f' % x[0] for x in mig[False]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
