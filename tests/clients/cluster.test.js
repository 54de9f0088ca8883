'use strict';
// Clusters: two shardcast nodes joined through a private Redis (pub/sub) or
// NATS server started by this file on an ephemeral port. pusher-js clients on
// both nodes, the `pusher` library talking to one node:
//   - trigger / triggerBatch through node A reach subscribers on A and B, with
//     socket_id exclusion of a connection on the other node;
//   - client events from a client on A reach clients on B (not the sender);
//   - sendToUser and terminateUserConnections through A reach a user signed
//     in on B (and on A).
// Presence membership, channel queries, cache channels and webhooks are not
// cluster-wide yet and are not tested here.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const {
  APP_ID, APP_KEY, APP_SECRET, collect, connectClient, disconnectAll, makeServerClient, sleep,
  socketId, startServer, subscribe, uniqueChannel, waitFor, NOTHING_WINDOW_MS,
} = require('./helpers');
const {
  authedClient, collectConnectionErrors, signIn, unrefCloseTimer, waitConnectionError,
  waitForWithMeta, waitState,
} = require('./auth_helpers');

const NODE_TIMEOUT_SECS = 2;
const ENGINE_READY_MS = 10_000;
const ENGINE_STOP_GRACE_MS = 5_000;
const NODES_UP_MS = 15_000;
const TEST_TIMEOUT_MS = 30_000;
const HOOK_TIMEOUT_MS = 60_000;
const DEBUG = !!process.env.SHARDCAST_TEST_DEBUG;

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

// ---------------------------------------------------------------------------
// Engine processes (redis-server / nats-server)

const ENGINES = {
  redis: {
    binary: 'redis-server',
    args: (port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    ready: /Ready to accept connections/,
    url: (port) => `redis://127.0.0.1:${port}`,
  },
  nats: {
    binary: 'nats-server',
    args: (port) => ['-a', '127.0.0.1', '-p', String(port)],
    ready: /Server is ready/,
    url: (port) => `nats://127.0.0.1:${port}`,
  },
};

/** Find `name` on PATH or in the usual bin/sbin directories (Debian puts nats-server in /usr/sbin). */
function findBinary(name) {
  const dirs = [
    ...(process.env.PATH || '').split(path.delimiter).filter(Boolean),
    '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin',
  ];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch (_) { /* not here */ }
  }
  throw new Error(`${name} not found on PATH or in ${dirs.slice(-6).join(', ')}; ` +
    `cluster.test.js needs it (Debian/Ubuntu: apt-get install ${name === 'nats-server' ? 'nats-server' : 'redis-server'})`);
}

/** A port that was free a moment ago (the engine may still lose a race for it: startEngine retries). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const engines = new Set();
process.on('exit', () => {
  for (const p of engines) {
    try { p.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
});

/** Spawn the engine on `port`; resolves once it logged that it is ready, rejects if it exits first. */
function spawnEngine(kind, bin, port) {
  const spec = ENGINES[kind];
  const args = spec.args(port);
  const cmdline = `${bin} ${args.map((a) => (a === '' ? '""' : a)).join(' ')}`;
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  engines.add(proc);
  let output = '';
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => { engines.delete(proc); resolve({ code, signal }); });
  });
  const ready = new Promise((resolve, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve();
    };
    const onData = (d) => {
      output += d;
      if (DEBUG) process.stderr.write(`[${kind}] ${d}`);
      if (spec.ready.test(output)) finish(null);
    };
    for (const s of [proc.stdout, proc.stderr]) { s.setEncoding('utf8'); s.on('data', onData); }
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      finish(new Error(`${cmdline} did not log ${spec.ready} within ${ENGINE_READY_MS} ms\n--- output ---\n${output}`));
    }, ENGINE_READY_MS);
    proc.once('error', (e) => finish(new Error(`failed to spawn ${cmdline}: ${e.message}`)));
    exited.then(({ code, signal }) => finish(Object.assign(
      new Error(`${cmdline} exited before it was ready (code ${code}, signal ${signal})\n--- output ---\n${output}`),
      { exitedEarly: true },
    )));
  });

  let stopping = null;
  const stop = () => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const killer = setTimeout(() => {
          process.stderr.write(`WARNING: ${kind} engine (pid ${proc.pid}) did not exit within ${ENGINE_STOP_GRACE_MS} ms of SIGTERM; sent SIGKILL\n`);
          proc.kill('SIGKILL');
        }, ENGINE_STOP_GRACE_MS);
        const r = await exited;
        clearTimeout(killer);
        return r;
      }
      return exited;
    })();
    return stopping;
  };

  return ready.then(() => ({
    kind, port, url: spec.url(port), proc, stop, output: () => output,
    alive: () => proc.exitCode === null && proc.signalCode === null,
  }));
}

/** Start a private redis-server / nats-server on an ephemeral port (a few tries if the port was taken). */
async function startEngine(kind) {
  const bin = findBinary(ENGINES[kind].binary);
  let lastErr;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return await spawnEngine(kind, bin, port);
    } catch (e) {
      lastErr = e;
      if (!e.exitedEarly) throw e;
    }
  }
  throw lastErr;
}

// ---------------------------------------------------------------------------
// shardcast nodes

function clusterConfig(engine, prefix) {
  return [
    '[[apps]]',
    `id = ${JSON.stringify(APP_ID)}`,
    `key = ${JSON.stringify(APP_KEY)}`,
    `secret = ${JSON.stringify(APP_SECRET)}`,
    'enable_client_messages = true',
    '',
    '[cluster]',
    `adapter = ${JSON.stringify(engine.kind)}`,
    `url = ${JSON.stringify(engine.url)}`,
    `prefix = ${JSON.stringify(prefix)}`,
    `node_timeout_secs = ${NODE_TIMEOUT_SECS}`,
    '',
  ].join('\n');
}

/** The node id a server logged in "cluster: node <hex> joins through …". */
async function nodeId(server, timeout = NODES_UP_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const m = server.stderr().replace(ANSI, '').match(/cluster: node ([0-9a-f]+) joins through/);
    if (m) return m[1];
    if (!server.alive()) throw new Error(`shardcast exited:\n${server.stderr()}`);
    if (Date.now() > deadline) {
      throw new Error(`no "cluster: node <hex> joins through" line within ${timeout} ms\n--- stderr ---\n${server.stderr()}`);
    }
    await sleep(50);
  }
}

/** Wait until `server` logged "cluster: node <id> is up" for the other node. */
async function waitNodeUp(server, id, label, timeout = NODES_UP_MS) {
  const deadline = Date.now() + timeout;
  const needle = `cluster: node ${id} is up`;
  for (;;) {
    if (server.stderr().replace(ANSI, '').includes(needle)) return;
    if (!server.alive()) throw new Error(`${label} exited:\n${server.stderr()}`);
    if (Date.now() > deadline) {
      throw new Error(`${label} did not log "${needle}" within ${timeout} ms\n--- stderr ---\n${server.stderr()}`);
    }
    await sleep(50);
  }
}

/** Wait for `event` on the signed-in user facade (pusher.user). */
function waitUserEvent(client, event, timeout = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.user.unbind(event, handler);
      reject(new Error(`user event "${event}" did not arrive within ${timeout} ms`));
    }, timeout);
    function handler(data) {
      clearTimeout(timer);
      client.user.unbind(event, handler);
      resolve(data);
    }
    client.user.bind(event, handler);
  });
}

// ---------------------------------------------------------------------------

for (const kind of Object.keys(ENGINES)) {
  describe(`cluster of two nodes over ${kind}`, () => {
    let engine;
    let nodeA;
    let nodeB;
    let apiA; // `pusher` library talking to node A
    let apiB;

    before(async () => {
      engine = await startEngine(kind);
      const prefix = `sc_${kind}_${process.pid}_${Date.now().toString(36)}`;
      const config = clusterConfig(engine, prefix);
      [nodeA, nodeB] = await Promise.all([startServer({ config }), startServer({ config })]);
      const [idA, idB] = await Promise.all([nodeId(nodeA), nodeId(nodeB)]);
      assert.notEqual(idA, idB, 'both nodes logged the same node id');
      await Promise.all([waitNodeUp(nodeA, idB, 'node A'), waitNodeUp(nodeB, idA, 'node B')]);
      apiA = makeServerClient(nodeA.port);
      apiB = makeServerClient(nodeB.port);
    }, { timeout: HOOK_TIMEOUT_MS });

    afterEach(async () => { await disconnectAll(); }, { timeout: HOOK_TIMEOUT_MS });

    after(async () => {
      await disconnectAll();
      await Promise.all([nodeA && nodeA.stop(), nodeB && nodeB.stop()]);
      if (engine) await engine.stop();
    }, { timeout: HOOK_TIMEOUT_MS });

    it('trigger through A with the socket_id of a client on B reaches every other subscriber on A and B, not that client', { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a1, a2, b1, b2] = await Promise.all([
        connectClient(nodeA.port), connectClient(nodeA.port),
        connectClient(nodeB.port), connectClient(nodeB.port),
      ]);
      const name = uniqueChannel('cluster-trigger');
      const [cha1, cha2, chb1, chb2] = await Promise.all([a1, a2, b1, b2].map((c) => subscribe(c, name)));
      const excluded = socketId(b1);
      const recs = [cha1, cha2, chb1, chb2].map((ch) => collect(ch, 'news'));
      const [recA1, recA2, recB1, recB2] = recs;

      const first = { text: 'héllo ✓ from A', n: 42, nested: { list: [1, 'two', null, true] } };
      const res = await apiA.trigger(name, 'news', first, { socket_id: excluded });
      assert.equal(res.status, 200);
      for (const [label, rec] of [['a1', recA1], ['a2', recA2], ['b2', recB2]]) {
        assert.deepEqual(await rec.waitForCount(1), [first], `${label} on ${label[0] === 'a' ? 'node A' : 'node B'}`);
      }

      // Without socket_id the excluded client does get the next one; events
      // from A reach B in order, so the first would have arrived before it.
      const second = { text: 'second, for everyone' };
      await apiA.trigger(name, 'news', second);
      await Promise.all(recs.map((r) => r.waitForCount(r === recB1 ? 1 : 2)));
      await sleep(NOTHING_WINDOW_MS);
      assert.deepEqual(recB1.events, [second], `excluded socket ${excluded} on node B got the first event`);
      for (const rec of [recA1, recA2, recB2]) assert.deepEqual(rec.events, [first, second]);
    });

    it('trigger through B with the socket_id of a client on A', { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a1, a2, b1] = await Promise.all([
        connectClient(nodeA.port), connectClient(nodeA.port), connectClient(nodeB.port),
      ]);
      const name = uniqueChannel('cluster-reverse');
      const [cha1, cha2, chb1] = await Promise.all([a1, a2, b1].map((c) => subscribe(c, name)));
      const [recA1, recA2, recB1] = [cha1, cha2, chb1].map((ch) => collect(ch, 'rev'));
      await apiB.trigger(name, 'rev', { k: 'not-a1' }, { socket_id: socketId(a1) });
      await apiB.trigger(name, 'rev', { k: 'all' });
      await Promise.all([recA1.waitForCount(1), recA2.waitForCount(2), recB1.waitForCount(2)]);
      await sleep(NOTHING_WINDOW_MS);
      assert.deepEqual(recA1.events, [{ k: 'all' }]);
      assert.deepEqual(recA2.events, [{ k: 'not-a1' }, { k: 'all' }]);
      assert.deepEqual(recB1.events, [{ k: 'not-a1' }, { k: 'all' }]);
    });

    it('triggerBatch through A: per-item socket_id exclusion of a client on B', { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a1, b1, b2] = await Promise.all([
        connectClient(nodeA.port), connectClient(nodeB.port), connectClient(nodeB.port),
      ]);
      const name = uniqueChannel('cluster-batch');
      const other = uniqueChannel('cluster-batch');
      const [cha1, chb1, chb2] = await Promise.all([a1, b1, b2].map((c) => subscribe(c, name)));
      const chb2other = await subscribe(b2, other);
      const [recA1, recB1, recB2] = [cha1, chb1, chb2].map((ch) => collect(ch, 'b'));
      const recOther = collect(chb2other, 'b');
      const res = await apiA.triggerBatch([
        { channel: name, name: 'b', data: { k: 'all-1' } },
        { channel: name, name: 'b', data: { k: 'not-b1' }, socket_id: socketId(b1) },
        { channel: other, name: 'b', data: { k: 'other' }, socket_id: socketId(b1) },
        { channel: name, name: 'b', data: { k: 'all-2' } },
      ]);
      assert.equal(res.status, 200);
      await Promise.all([recA1.waitForCount(3), recB1.waitForCount(2), recB2.waitForCount(3), recOther.waitForCount(1)]);
      await sleep(NOTHING_WINDOW_MS);
      assert.deepEqual(recA1.events.map((e) => e.k), ['all-1', 'not-b1', 'all-2']);
      assert.deepEqual(recB1.events.map((e) => e.k), ['all-1', 'all-2']);
      assert.deepEqual(recB2.events.map((e) => e.k), ['all-1', 'not-b1', 'all-2']);
      assert.deepEqual(recOther.events.map((e) => e.k), ['other']);
    });

    it('a client event from a client on A reaches clients on B (and A), not the sender', { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a, a2, b, b2] = await Promise.all([
        authedClient(nodeA.port, apiA), authedClient(nodeA.port, apiA),
        authedClient(nodeB.port, apiB), authedClient(nodeB.port, apiB),
      ]);
      const name = uniqueChannel('private-cluster-chat');
      const [cha, cha2, chb, chb2] = await Promise.all([a, a2, b, b2].map((c) => subscribe(c, name)));
      const recA = collect(cha, 'client-msg');
      const errsA = collectConnectionErrors(a);
      const gotB = waitForWithMeta(chb, 'client-msg');
      const gotB2 = waitFor(chb2, 'client-msg');
      const gotA2 = waitFor(cha2, 'client-msg');
      const payload = { from: 'a', text: 'über ✓', n: [1, 2, 3] };
      assert.equal(cha.trigger('client-msg', payload), true, 'pusher-js refused to send');
      const [dataB, metaB] = await gotB;
      assert.deepEqual(dataB, payload);
      assert.equal(metaB.user_id, undefined, 'no user_id on a private channel');
      assert.deepEqual(await gotB2, payload);
      assert.deepEqual(await gotA2, payload);
      await sleep(NOTHING_WINDOW_MS);
      assert.deepEqual(recA.events, [], 'the sender got its own client event back');
      assert.deepEqual(errsA.errors, []);

      // And back: B → A.
      const back = waitFor(cha, 'client-reply');
      const recB = collect(chb, 'client-reply');
      chb.trigger('client-reply', { from: 'b' });
      assert.deepEqual(await back, { from: 'b' });
      await sleep(NOTHING_WINDOW_MS);
      assert.deepEqual(recB.events, [], 'the sender on B got its own client event back');
    });

    it('sendToUser and terminateUserConnections through A reach a user signed in on B', { timeout: TEST_TIMEOUT_MS }, async () => {
      const userId = uniqueChannel(`user-${kind}`);
      const bystanderId = `${userId}-other`;
      const onB = await authedClient(nodeB.port, apiB, { user: { id: userId } });
      await signIn(onB);
      const onA = await authedClient(nodeA.port, apiA, { user: { id: userId } });
      await signIn(onA);
      const bystander = await authedClient(nodeB.port, apiB, { user: { id: bystanderId } });
      await signIn(bystander);
      const recBystander = collect(bystander.user, 'note');

      const gotB = waitUserEvent(onB, 'note');
      const gotA = waitUserEvent(onA, 'note');
      const res = await apiA.sendToUser(userId, 'note', { hello: userId, text: 'ünïcode ✓' });
      assert.equal(res.status, 200);
      assert.deepEqual(await gotB, { hello: userId, text: 'ünïcode ✓' });
      assert.deepEqual(await gotA, { hello: userId, text: 'ünïcode ✓' });
      await sleep(NOTHING_WINDOW_MS);
      assert.deepEqual(recBystander.events, [], 'another user got the server-to-user event');

      unrefCloseTimer(onB);
      unrefCloseTimer(onA);
      const errB = waitConnectionError(onB, 4009);
      const downB = waitState(onB, 'disconnected');
      const errA = waitConnectionError(onA, 4009);
      const downA = waitState(onA, 'disconnected');
      const bystanderErrors = collectConnectionErrors(bystander);
      const bystanderStates = [];
      bystander.connection.bind('state_change', ({ current }) => bystanderStates.push(current));

      const term = await apiA.terminateUserConnections(userId);
      assert.equal(term.status, 200);
      const e = await errB;
      assert.equal(e.type, 'PusherError');
      await Promise.all([downB, errA, downA]);
      // pusher-js treats 4000-4099 as "refused": it does not reconnect.
      await sleep(NOTHING_WINDOW_MS);
      assert.equal(onB.connection.state, 'disconnected');
      assert.equal(onA.connection.state, 'disconnected');

      assert.equal(bystander.connection.state, 'connected');
      assert.deepEqual(bystanderStates, []);
      assert.deepEqual(bystanderErrors.errors, []);
      const still = waitUserEvent(bystander, 'still');
      await apiA.sendToUser(bystanderId, 'still', 'here');
      assert.equal(await still, 'here');
    });

    it('engine and both nodes are still running after all of the above', () => {
      assert.ok(nodeA.alive(), `node A died:\n${nodeA.stderr()}`);
      assert.ok(nodeB.alive(), `node B died:\n${nodeB.stderr()}`);
      assert.ok(engine.alive(), `${kind} engine died:\n${engine.output()}`);
    });
  });
}
