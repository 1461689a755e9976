/**
 * The --syslog destination against a real datagram socket standing in for /dev/log: the line's
 * form and severity, lines a full receiver cannot take dropped and then counted in the next one
 * sent (the daemon never waits on syslog), and a receiver that went away and came back (a
 * restarted journald) reached again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SyslogStream } from '../../../src/daemon/syslog.js';
import { native } from '../../../src/native/index.js';

function drain(fd: number): string[] {
  const lines: string[] = [];
  for (let m = native.recvMsg(fd, 65536); m !== null; m = native.recvMsg(fd, 65536)) lines.push(m.data.toString());
  return lines;
}

const line = (level: number, msg: string, rest: Record<string, unknown> = {}): string => `${JSON.stringify({ level, time: 't', pid: 1, ...rest, msg })}\n`;

describe('syslog destination (--syslog)', () => {
  let dir: string;
  let path: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'damselfly-syslog-'));
    path = join(dir, 'log.sock');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('one datagram per line: <facility daemon | severity>ident[pid]: msg {other fields}', () => {
    const rx = native.bindUnixDatagram(path);
    try {
      const s = new SyslogStream('damselfly', path);
      s.write(line(30, 'listening', { component: 'virtiofsd', n: 1 }));
      s.write(line(40, 'careful'));
      s.write(line(50, 'broken'));
      s.write(line(20, 'detail'));
      s.write('not json\n');
      assert.deepEqual(drain(rx), [
        `<30>damselfly[${process.pid}]: listening {"component":"virtiofsd","n":1}`,
        `<28>damselfly[${process.pid}]: careful`,
        `<27>damselfly[${process.pid}]: broken`,
        `<31>damselfly[${process.pid}]: detail`,
        `<30>damselfly[${process.pid}]: not json`,
      ]);
    } finally {
      native.closeFd(rx);
    }
  });

  test('a full receiver: lines dropped without waiting, then counted in the next line sent', () => {
    const rx = native.bindUnixDatagram(path);
    try {
      const s = new SyslogStream('damselfly', path);
      const n = 200; // far beyond a datagram socket's queue (net.unix.max_dgram_qlen, 10 by default)
      for (let i = 0; i < n; i++) s.write(line(30, `line ${i}`));
      const got = drain(rx);
      assert.ok(got.length > 0 && got.length < n, `${got.length} of ${n} queued`);
      s.write(line(30, 'after'));
      assert.deepEqual(drain(rx), [`<30>damselfly[${process.pid}]: (${n - got.length} earlier lines could not be sent) after`]);
      s.write(line(30, 'again'));
      assert.deepEqual(drain(rx), [`<30>damselfly[${process.pid}]: again`], 'the count starts over');
    } finally {
      native.closeFd(rx);
    }
  });

  test('a receiver that went away and came back is reached again; while it is away lines are counted', () => {
    let rx = native.bindUnixDatagram(path);
    const s = new SyslogStream('damselfly', path);
    s.write(line(30, 'one'));
    assert.deepEqual(drain(rx), [`<30>damselfly[${process.pid}]: one`]);
    native.closeFd(rx);
    rmSync(path);
    const stderr = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write; // the stream says once on stderr that syslog is gone
    try {
      s.write(line(30, 'lost'));
    } finally {
      process.stderr.write = stderr;
    }
    rx = native.bindUnixDatagram(path); // the syslog daemon restarted
    try {
      s.write(line(30, 'two'));
      assert.deepEqual(drain(rx), [`<30>damselfly[${process.pid}]: (1 earlier lines could not be sent) two`]);
    } finally {
      native.closeFd(rx);
    }
  });

  test('no receiver at all: the constructor says so (the daemon then logs to stderr)', () => {
    assert.throws(() => new SyslogStream('damselfly', join(dir, 'absent.sock')), /ENOENT|ECONNREFUSED/);
  });
});
