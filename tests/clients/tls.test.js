'use strict';
// TLS on the main port (`[server.tls]` cert / key): with a fresh self-signed
// certificate for `localhost` / 127.0.0.1, pusher-js connects over wss://
// and the `pusher` library triggers and queries over https://, both
// verifying the certificate for real (a child process started with
// NODE_EXTRA_CA_CERTS, see tls_client.js); clients that do not trust the
// certificate get verification errors, and plain ws:// / http:// to the TLS
// port fail promptly without hurting the server.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');

const selfsigned = require('selfsigned');
const WebSocket = require('ws');

const {
  APP_ID, APP_KEY, APP_SECRET, startServer, withTimeout,
} = require('./helpers');

const CHILD_TIMEOUT_MS = 30_000;
const ATTEMPT_TIMEOUT_MS = 5_000;
const WS_QUERY = 'protocol=7&client=js&version=8.6.0&flash=false';

/** Certificate verification failures a client without our CA may report. */
const UNTRUSTED_CODES = [
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
];

/** A self-signed RSA-2048 / SHA-256 server certificate for localhost and 127.0.0.1. */
async function makeCertificate(dir) {
  const now = Date.now();
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60 * 60 * 1000), // tolerate a little clock skew
    notAfterDate: new Date(now + 7 * 24 * 60 * 60 * 1000),
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  const certPath = path.join(dir, 'cert.pem');
  const keyPath = path.join(dir, 'key.pem');
  fs.writeFileSync(certPath, pems.cert);
  fs.writeFileSync(keyPath, pems.private, { mode: 0o600 });
  return { cert: pems.cert, key: pems.private, certPath, keyPath };
}

/** Config text: the default app plus [server.tls]. */
function tlsConfig({ certPath, keyPath }) {
  return [
    '[server.tls]',
    `cert = ${JSON.stringify(certPath)}`,
    `key = ${JSON.stringify(keyPath)}`,
    '',
    '[[apps]]',
    `id = ${JSON.stringify(APP_ID)}`,
    `key = ${JSON.stringify(APP_KEY)}`,
    `secret = ${JSON.stringify(APP_SECRET)}`,
    '',
  ].join('\n');
}

const children = new Set();
process.on('exit', () => {
  for (const child of children) {
    try { child.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
});

/**
 * Run tls_client.js in a child node process. `trust`: start it with
 * NODE_EXTRA_CA_CERTS=certPath. Resolves to the parsed JSON report.
 */
function runClient(port, host, mode, certPath, { trust }) {
  const env = { ...process.env };
  // Verification must be real: never inherit a switch that turns it off, nor
  // someone else's extra CA file.
  delete env.NODE_TLS_REJECT_UNAUTHORIZED;
  delete env.NODE_EXTRA_CA_CERTS;
  if (trust) env.NODE_EXTRA_CA_CERTS = certPath;
  const script = path.join(__dirname, 'tls_client.js');
  const child = spawn(process.execPath, [script, String(port), host, mode], {
    env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tls_client.js ${mode} ${host} did not exit within ${CHILD_TIMEOUT_MS} ms\n` +
        `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`));
    }, CHILD_TIMEOUT_MS);
    child.once('error', (err) => { clearTimeout(timer); children.delete(child); reject(err); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const line = stdout.trim().split('\n').pop() || '';
      let result;
      try { result = JSON.parse(line); } catch (_) {
        reject(new Error(`tls_client.js ${mode} ${host} exited (code ${code}, signal ${signal}) without a JSON report\n` +
          `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`));
        return;
      }
      result.exitCode = code;
      result.stderr = stderr;
      resolve(result);
    });
  });
}

/**
 * Open a WebSocket and report how the attempt ended: 'open' (with the first
 * frame), or 'error' / 'close', or throw if nothing happens within `timeout`.
 */
function wsAttempt(url, options = {}, timeout = ATTEMPT_TIMEOUT_MS) {
  const ws = new WebSocket(url, { handshakeTimeout: timeout, ...options });
  const attempt = new Promise((resolve) => {
    ws.once('open', () => {
      ws.once('message', (buf) => {
        let frame;
        try { frame = JSON.parse(buf.toString()); } catch (_) { frame = { unparsable: buf.toString() }; }
        resolve({ outcome: 'open', frame });
      });
    });
    ws.once('error', (err) => resolve({ outcome: 'error', code: err.code, message: err.message }));
    ws.once('close', (code) => resolve({ outcome: 'close', code }));
  });
  return withTimeout(attempt, timeout + 1_000, `WebSocket attempt on ${url}`)
    .finally(() => { ws.removeAllListeners('error'); ws.on('error', () => {}); ws.terminate(); });
}

/** One HTTP(S) GET, reported as { status, body } or { error: {code, message} }. */
function httpAttempt(mod, options, timeout = ATTEMPT_TIMEOUT_MS) {
  const attempt = new Promise((resolve) => {
    const req = mod.get({ agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', (err) => resolve({ error: { code: err.code, message: err.message } }));
    });
    req.on('error', (err) => resolve({ error: { code: err.code, message: err.message } }));
    req.setTimeout(timeout, () => req.destroy(Object.assign(new Error('request timed out'), { code: 'TEST_TIMEOUT' })));
  });
  return withTimeout(attempt, timeout + 1_000, `GET ${options.host}:${options.port}${options.path}`);
}

describe('TLS ([server.tls])', () => {
  let dir;
  let tls;
  let server;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-tls-'));
    tls = await makeCertificate(dir);
    server = await startServer({ config: tlsConfig(tls) });
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    if (server) await server.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the test certificate is a PKCS#8 RSA-2048 / SHA-256 certificate for localhost and 127.0.0.1', () => {
    assert.match(tls.key, /^-----BEGIN (PRIVATE KEY|RSA PRIVATE KEY)-----/);
    assert.match(tls.cert, /^-----BEGIN CERTIFICATE-----/);
    const x509 = new crypto.X509Certificate(tls.cert);
    const key = crypto.createPrivateKey(tls.key);
    assert.equal(key.asymmetricKeyType, 'rsa');
    assert.equal(key.asymmetricKeyDetails.modulusLength, 2048);
    assert.ok(x509.checkPrivateKey(key), 'certificate and key do not match');
    assert.ok(x509.verify(x509.publicKey), 'certificate is not self-signed');
    assert.equal(x509.checkHost('localhost'), 'localhost');
    assert.equal(x509.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(x509.ca, false);
  });

  it('a client that does not trust the certificate gets a verification error (https and wss)', async () => {
    const res = await httpAttempt(https, { host: '127.0.0.1', port: server.port, path: `/apps/${APP_ID}/channels` });
    assert.ok(res.error, `https without the CA got a response: ${JSON.stringify(res)}`);
    assert.ok(UNTRUSTED_CODES.includes(res.error.code), `https error: ${JSON.stringify(res.error)}`);

    const ws = await wsAttempt(`wss://127.0.0.1:${server.port}/app/${APP_KEY}?${WS_QUERY}`);
    assert.equal(ws.outcome, 'error', `wss without the CA: ${JSON.stringify(ws)}`);
    assert.ok(UNTRUSTED_CODES.includes(ws.code), `wss error: ${JSON.stringify(ws)}`);
  });

  it('pusher-js and the pusher library without the CA fail on the certificate', async () => {
    const r = await runClient(server.port, '127.0.0.1', 'untrusted', tls.certPath, { trust: false });
    assert.equal(r.ok, true, `tls_client untrusted failed: ${r.error}\n--- stderr ---\n${r.stderr}`);
    assert.equal(r.extraCaCerts, null);
    assert.notEqual(r.pusherJs.state, 'connected', JSON.stringify(r.pusherJs));
    assert.equal(r.pusherJs.socketId, null, JSON.stringify(r.pusherJs));
    const libError = JSON.stringify(r.serverLibrary);
    assert.ok(r.serverLibrary.error, `pusher library got a response without the CA: ${libError}`);
    assert.ok(UNTRUSTED_CODES.some((c) => libError.includes(c)) || /certificate/i.test(libError),
      `pusher library error is not a certificate error: ${libError}`);
  });

  it('plain ws:// and http:// to the TLS port fail promptly, and wss:// still works afterwards', async () => {
    const plainWs = await wsAttempt(`ws://127.0.0.1:${server.port}/app/${APP_KEY}?${WS_QUERY}`);
    assert.notEqual(plainWs.outcome, 'open', `plain ws:// was served on the TLS port: ${JSON.stringify(plainWs)}`);

    const plainHttp = await httpAttempt(http, { host: '127.0.0.1', port: server.port, path: `/apps/${APP_ID}/channels` });
    assert.ok(plainHttp.error || plainHttp.status >= 400,
      `plain http:// was served on the TLS port: ${JSON.stringify(plainHttp)}`);
    if (plainHttp.error) assert.notEqual(plainHttp.error.code, 'TEST_TIMEOUT', 'plain http:// hung');

    assert.ok(server.alive(), `server exited after plain-text attempts\n${server.stderr()}`);
    const wss = await wsAttempt(`wss://127.0.0.1:${server.port}/app/${APP_KEY}?${WS_QUERY}`, { ca: tls.cert });
    assert.equal(wss.outcome, 'open', `wss:// after the plain attempts: ${JSON.stringify(wss)}`);
    assert.equal(wss.frame.event, 'pusher:connection_established', JSON.stringify(wss.frame));

    const api = await httpAttempt(https, {
      host: '127.0.0.1', port: server.port, path: `/apps/${APP_ID}/channels`, ca: tls.cert,
    });
    assert.ok(!api.error, `https:// with the CA: ${JSON.stringify(api)}`);
    assert.equal(api.status, 401, `unsigned GET /channels over https: ${JSON.stringify(api)}`);
  });

  for (const host of ['127.0.0.1', 'localhost']) {
    it(`pusher-js over wss:// and the pusher library over https:// to ${host}, certificate verified`, async () => {
      const r = await runClient(server.port, host, 'trusted', tls.certPath, { trust: true });
      const ctx = `\nreport: ${JSON.stringify({ ...r, stderr: undefined })}\n--- client stderr ---\n${r.stderr}`;
      assert.equal(r.ok, true, `tls_client failed: ${r.error}${ctx}`);
      assert.equal(r.exitCode, 0, ctx);
      assert.equal(r.extraCaCerts, tls.certPath);
      assert.equal(r.rejectUnauthorized, null, 'NODE_TLS_REJECT_UNAUTHORIZED must not be set');
      assert.deepEqual(r.steps, ['connected', 'subscribed', 'triggered', 'excluded', 'queried']);
      assert.equal(r.triggerStatus, 200);
      assert.equal(r.excludedTriggerStatus, 200);
      const first = { n: 1, text: 'over TLS ✓', nested: { ok: true } };
      assert.deepEqual(r.received.a, [first, { n: 3 }], `excluded connection's events${ctx}`);
      assert.deepEqual(r.received.b, [first, { n: 2 }, { n: 3 }], `other connection's events${ctx}`);
      assert.equal(r.channelsStatus, 200);
      assert.deepEqual(r.channels[r.channel], {}, `GET /channels: ${JSON.stringify(r.channels)}`);
    });
  }

  it('the server refuses to start when the key file is missing (no silent fallback to plain text)', async () => {
    let other;
    try {
      other = await startServer({
        config: tlsConfig({ certPath: tls.certPath, keyPath: path.join(dir, 'no-such-key.pem') }),
      });
    } catch (err) {
      assert.match(err.message, /exited before it was ready/, err.message);
      return;
    } finally {
      if (other) await other.stop();
    }
    assert.fail('shardcast started with a missing [server.tls] key file');
  });
});
