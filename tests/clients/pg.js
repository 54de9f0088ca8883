'use strict';
// A private PostgreSQL server for the app store tests: initdb in a temporary
// directory, the server on an ephemeral loopback port (as the `postgres` user
// when the tests run as root, since the server refuses root), stopped and
// removed by stop() and at process exit. Needs the Debian package
// `postgresql` (scripts/test.sh installs it).

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const USER = 'shardcast';
const PASSWORD = 'pw-n0t-1n-l0gs';

function pgBin(name) {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort() : [];
  for (const v of versions.reverse()) {
    const p = path.join(root, v, 'bin', name);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`${name} not found: install PostgreSQL (Debian package postgresql; scripts/test.sh does)`);
}

/** The uid/gid to run the server as: `postgres` when we are root. */
function runAs() {
  if (process.getuid() !== 0) return {};
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user: is the postgresql package installed?');
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const running = new Set();
process.on('exit', () => {
  for (const p of running) {
    try { p.kill('SIGKILL'); } catch (_) { /* gone */ }
  }
});

async function startPostgres() {
  const owner = runAs();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-js-pg-'));
  if (owner.uid !== undefined) fs.chownSync(dir, owner.uid, owner.gid);
  const pwfile = path.join(dir, 'pw');
  fs.writeFileSync(pwfile, PASSWORD);
  if (owner.uid !== undefined) fs.chownSync(pwfile, owner.uid, owner.gid);
  const init = spawnSync(pgBin('initdb'), [
    '-D', path.join(dir, 'data'), '-U', USER, '--auth-local=trust', '--auth-host=scram-sha-256',
    `--pwfile=${pwfile}`, '--no-sync', '--no-instructions',
  ], { ...owner, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = await freePort();
  let proc = null;

  const sql = (text) => {
    const r = spawnSync(pgBin('psql'), [
      '-h', '127.0.0.1', '-p', String(port), '-U', USER, '-d', 'postgres',
      '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', text,
    ], { env: { ...process.env, PGPASSWORD: PASSWORD, PGCONNECT_TIMEOUT: '3' }, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`SQL failed: ${r.stderr}\n${text}`);
    return r.stdout.trim();
  };

  const resume = async () => {
    proc = spawn(pgBin('postgres'), [
      '-D', path.join(dir, 'data'), '-p', String(port), '-k', dir,
      '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off',
    ], { ...owner, stdio: 'ignore' });
    running.add(proc);
    const deadline = Date.now() + 20_000;
    for (;;) {
      try { sql('SELECT 1'); return; } catch (e) {
        if (Date.now() > deadline) throw new Error(`postgres did not start: ${e.message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };

  /** Fast shutdown: clients are disconnected. */
  const pause = async () => {
    if (!proc) return;
    const p = proc;
    proc = null;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGINT');
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    running.delete(p);
  };

  const stop = async () => {
    await pause();
    fs.rmSync(dir, { recursive: true, force: true });
  };

  await resume();
  return {
    port,
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    password: PASSWORD,
    sql,
    pause,
    resume,
    stop,
  };
}

module.exports = { startPostgres };
