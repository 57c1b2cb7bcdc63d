/** The systemd units as shipped, and socket activation the way systemd does it. */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, cliEnv, removeDir, ROOT, runCli, tempDir } from '../helpers/cli.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

describe('systemd', () => {
  it('systemd-analyze verify accepts the units', async () => {
    const dir = tempDir('hbu');
    dirs.push(dir);
    for (const f of ['hybrid-backup.service', 'hybrid-backup.socket']) copyFileSync(path.join(ROOT, 'systemd', f), path.join(dir, f));
    const r = await execa('systemd-analyze', ['verify', path.join(dir, 'hybrid-backup.service'), path.join(dir, 'hybrid-backup.socket')], { reject: false, all: true });
    expect(r.all).toBe('');
    expect(r.exitCode).toBe(0);
  });

  it('systemd-analyze security rates the service unit 2.0 or better', async () => {
    const r = await execa('systemd-analyze', ['security', '--offline=true', path.join(ROOT, 'systemd/hybrid-backup.service')], { reject: false, all: true });
    const m = /Overall exposure level for hybrid-backup\.service: (\d+\.\d+)/.exec(String(r.all));
    expect(m, String(r.all).slice(-500)).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.0);
  });

  it('the service unit has the hardening and the pieces the README promises', async () => {
    const unit = readFileSync(path.join(ROOT, 'systemd/hybrid-backup.service'), 'utf8');
    for (const line of [
      'ExecStart=/usr/bin/node /opt/hybrid-backup/dist/src/cli.js daemon',
      'User=hybrid-backup',
      'Restart=on-failure',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/hybrid-backup',
      'PrivateTmp=yes',
      'ProtectHome=yes',
      'RuntimeDirectory=hybrid-backup',
      'EnvironmentFile=-/etc/hybrid-backup/env',
      'KillMode=mixed',
    ]) {
      expect(unit.split('\n')).toContain(line);
    }
    expect(unit).toMatch(/^#LoadCredential=DATABASE_URL:/m);
  });

  it('uses a listening socket passed by systemd-socket-activate (LISTEN_FDS/LISTEN_PID)', async () => {
    const dir = tempDir('hbsa');
    dirs.push(dir);
    const sock = path.join(dir, 's.sock');
    writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *' } }));
    const env = { DATABASE_URL: 'postgresql://postgres@127.0.0.1:5432/postgres', BACKUP_DIR: path.join(dir, 'b'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), HYBRID_BACKUP_SOCKET: sock };
    const activator = execa(
      'systemd-socket-activate',
      ['-l', sock, ...Object.keys(env).flatMap((k) => ['-E', k]), 'node', CLI, 'daemon'],
      { env: cliEnv(env), extendEnv: false, reject: false, all: true },
    );
    try {
      // the activator listens first; the service starts on the first connection
      for (let i = 0; i < 100; i++) {
        if (existsSync(sock)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const r = await runCli(['schedule', '--json'], env);
      expect(r.exitCode, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.service.running).toBe(true);
      expect(doc.service.pid).toBe(activator.pid); // the activator execs the service in place
      expect((await runCli(['list', '--json'], env)).exitCode).toBe(0);
    } finally {
      process.kill(activator.pid!, 'SIGTERM');
    }
    const res = await activator;
    const out = String(res.all);
    expect(out).toMatch(/listening on the socket systemd passed \(socket activation\)/);
    expect(out).toMatch(/service stopped/);
    expect(res.exitCode).toBe(0);
  });
});
