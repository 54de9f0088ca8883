'use strict';
// Clusters: two shardcast nodes joined through a private Redis (pub/sub) or
// NATS server started by this file on an ephemeral port. pusher-js clients on
// both nodes, the `pusher` library talking to one node:
//   - trigger / triggerBatch through node A reach subscribers on A and B, with
//     socket_id exclusion of a connection on the other node;
//   - client events from a client on A reach clients on B (not the sender);
//   - sendToUser and terminateUserConnections through A reach a user signed
//     in on B (and on A);
//   - presence membership is per user across nodes: a user with a connection
//     on A and one on B is announced once and removed once, after its last
//     connection anywhere left;
//   - a third node C killed with SIGKILL: its presence members are removed
//     (member_removed on A and B) within the node timeout;
//   - channel queries (/channels, /channels/{name}, /channels/{name}/users,
//     trigger info) give the same cluster-wide answer through A and through B;
//   - GET /connections counts every node's connections, through A and B, and
//     a SIGKILLed node's connections leave the count;
//   - pusher:subscription_count is the cluster's count on every node, also
//     after a node is killed; watchlist online/offline once for the cluster.
// Cache channels and webhooks are not tested here.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const {
  APP_ID, APP_KEY, APP_SECRET, assertNoReconnect, collect, connectClient, connectOnShard, disconnectAll,
  disconnectClient, makePublisher, makeServerClient, ownerOf, pingBarrier, publishedBarrier, shardOf, sleep,
  socketId, startServer, subscribe, uniqueChannel, waitFor,
} = require('./helpers');
const {
  authedClient, collectConnectionErrors, presenceBarrier, signIn, unrefCloseTimer, until,
  waitConnectionError, waitForWithMeta, waitState, waitUserEvent,
} = require('./auth_helpers');

/** Member events of real users (not of presenceBarrier's users). */
const real = (events) => events.filter((m) => !String(m.id).startsWith('barrier-'));

const NODE_TIMEOUT_SECS = 2;
const ENGINE_READY_MS = 10_000;
const ENGINE_STOP_GRACE_MS = 5_000;
const NODES_UP_MS = 15_000;
const TEST_TIMEOUT_MS = 30_000;
const NODE_DEATH_TEST_TIMEOUT_MS = 45_000;
// A killed node's members must be gone within node_timeout (plus a check
// interval of a quarter of it, plus the engine); generous for a debug build.
const NODE_GONE_MS = 6_000;
// How long other nodes may take to learn a membership change (it crosses the
// engine in milliseconds; polled, so this is only the upper bound).
const PROPAGATION_MS = 5_000;
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

/** The test clusters' shared secret (cluster.secret). */
const CLUSTER_SECRET = 'js-cluster-secret-0123456789';

function clusterConfig(engine, prefix) {
  return [
    '[[apps]]',
    `id = ${JSON.stringify(APP_ID)}`,
    `key = ${JSON.stringify(APP_KEY)}`,
    `secret = ${JSON.stringify(APP_SECRET)}`,
    'enable_client_messages = true',
    'enable_subscription_count = true',
    '',
    '[cluster]',
    `adapter = ${JSON.stringify(engine.kind)}`,
    `url = ${JSON.stringify(engine.url)}`,
    `prefix = ${JSON.stringify(prefix)}`,
    `node_timeout_secs = ${NODE_TIMEOUT_SECS}`,
    `secret = ${JSON.stringify(CLUSTER_SECRET)}`,
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


/** Every member of a pusher-js Members object, sorted by id. */
function memberList(members) {
  const out = [];
  members.each((m) => out.push(m));
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** GET through the `pusher` library; asserts 200 and returns the JSON body. */
async function getJson(api, path, params) {
  const res = await api.get({ path, params });
  assert.equal(res.status, 200);
  return res.json();
}

/** Sorted user ids of GET /channels/{name}/users through `api`. */
async function userIds(api, channel) {
  return (await getJson(api, `/channels/${channel}/users`)).users.map((u) => u.id).sort();
}

/** Poll until `api`'s node lists exactly `ids` (sorted) as members of `channel`. */
async function waitUsers(api, channel, ids, label) {
  let last;
  await until(async () => {
    last = await userIds(api, channel);
    return JSON.stringify(last) === JSON.stringify(ids);
  }, `${label} listing ${JSON.stringify(ids)} as members of ${channel}`, PROPAGATION_MS).catch((e) => {
    throw new Error(`${e.message}; last answer ${JSON.stringify(last)}`);
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
    let config; // the TOML every node of this cluster gets
    let idA;
    let idB;
    const extraNodes = []; // nodes started by one test, stopped after it

    before(async () => {
      engine = await startEngine(kind);
      const prefix = `sc_${kind}_${process.pid}_${Date.now().toString(36)}`;
      config = clusterConfig(engine, prefix);
      // If one node fails to start, stop the other (else it outlives the file).
      const started = await Promise.allSettled([startServer({ config }), startServer({ config })]);
      const failed = started.find((r) => r.status === 'rejected');
      if (failed) {
        await Promise.all(started.filter((r) => r.status === 'fulfilled').map((r) => r.value.stop()));
        throw failed.reason;
      }
      [nodeA, nodeB] = started.map((r) => r.value);
      [idA, idB] = await Promise.all([nodeId(nodeA), nodeId(nodeB)]);
      assert.notEqual(idA, idB, 'both nodes logged the same node id');
      await Promise.all([waitNodeUp(nodeA, idB, 'node A'), waitNodeUp(nodeB, idA, 'node B')]);
      // One keep-alive connection each: a node delivers one HTTP connection's
      // events in order, locally and through the engine to the other node,
      // so a later event of the same publisher is a barrier.
      apiA = makePublisher(nodeA.port);
      apiB = makePublisher(nodeB.port);
    }, { timeout: HOOK_TIMEOUT_MS });

    /** Start one more node of this cluster (stopped after the test); wait until it and A, B have heard each other. */
    async function startThirdNode() {
      const node = await startServer({ config });
      extraNodes.push(node);
      const id = await nodeId(node);
      assert.ok(![idA, idB].includes(id), 'the third node logged the id of A or B');
      await Promise.all([
        waitNodeUp(nodeA, id, 'node A'), waitNodeUp(nodeB, id, 'node B'),
        waitNodeUp(node, idA, 'node C'), waitNodeUp(node, idB, 'node C'),
      ]);
      return { node, id };
    }

    afterEach(async () => {
      await disconnectAll();
      await Promise.all(extraNodes.splice(0).map((n) => n.stop()));
    }, { timeout: HOOK_TIMEOUT_MS });

    after(async () => {
      await disconnectAll();
      await Promise.all([nodeA && nodeA.stop(), nodeB && nodeB.stop(), ...extraNodes.splice(0).map((n) => n.stop())]);
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
      await publishedBarrier(apiA, [cha1, cha2, chb1, chb2]);
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
      await publishedBarrier(apiB, [cha1, cha2, chb1]);
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
      await publishedBarrier(apiA, [cha1, chb1, chb2, chb2other]);
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
      // An echo from a's own node would come before the pong to a later ping.
      await pingBarrier(a);

      // And back: B → A. B handled a's event before b's reply, and the reply
      // comes to a over the same way back an echo from B would take.
      const back = waitFor(cha, 'client-reply');
      const recB = collect(chb, 'client-reply');
      chb.trigger('client-reply', { from: 'b' });
      assert.deepEqual(await back, { from: 'b' });
      assert.deepEqual(recA.events, [], 'the sender got its own client event back');
      assert.deepEqual(errsA.errors, []);
      // The same for b's reply: a ping to b, and a's answer back to b.
      await pingBarrier(b);
      const ack = waitFor(chb, 'client-ack');
      cha.trigger('client-ack', {});
      await ack;
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
      // The publisher's next event, to the bystander, comes after anything for userId would have.
      await apiA.sendToUser(bystanderId, 'note', 'for the bystander');
      assert.deepEqual(await recBystander.waitForCount(1), ['for the bystander'],
        'another user got the server-to-user event');

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
      assertNoReconnect(onB, 'the user on B');
      assertNoReconnect(onA, 'the user on A');

      assert.equal(bystander.connection.state, 'connected');
      assert.deepEqual(bystanderStates, []);
      assert.deepEqual(bystanderErrors.errors, []);
      const still = waitUserEvent(bystander, 'still');
      await apiA.sendToUser(bystanderId, 'still', 'here');
      assert.equal(await still, 'here');
    });

    it('presence: u1 on A and then on B is one member: member_added once, member_removed after its last connection', { timeout: TEST_TIMEOUT_MS }, async () => {
      const name = `presence-${uniqueChannel('cluster-dedup')}`;
      const W = { id: 'watcher', info: { on: 'B' } };
      const U1 = { id: 'u1', info: { name: 'User One ✓' } };
      const as = (m) => ({ presence: { user_id: m.id, user_info: m.info } });

      const watcher = await authedClient(nodeB.port, apiB, as(W));
      const wchan = await subscribe(watcher, name);
      assert.deepEqual(memberList(wchan.members), [W]);
      const wAdded = collect(wchan, 'pusher:member_added');
      const wRemoved = collect(wchan, 'pusher:member_removed');
      // u1's snapshot on A can only list the watcher once A has heard of it.
      await waitUsers(apiA, name, ['watcher'], 'node A');

      // u1's first connection, on A.
      const u1a = await authedClient(nodeA.port, apiA, as(U1));
      const chA = await subscribe(u1a, name);
      const aAdded = collect(chA, 'pusher:member_added');
      const aRemoved = collect(chA, 'pusher:member_removed');
      assert.equal(chA.members.count, 2, 'u1 on A: count');
      assert.deepEqual(chA.members.me, U1);
      assert.deepEqual(memberList(chA.members), [U1, W], 'u1 on A: members');
      assert.deepEqual(await wAdded.waitForCount(1), [U1], 'the watcher on B was told u1 joined on A');
      assert.equal(wchan.members.count, 2);

      // u1's second connection, on B (B knows u1 is on A: it told the watcher).
      const u1b = await authedClient(nodeB.port, apiB, as(U1));
      const chB = await subscribe(u1b, name);
      const bAdded = collect(chB, 'pusher:member_added');
      const bRemoved = collect(chB, 'pusher:member_removed');
      assert.equal(chB.members.count, 2, 'u1 on B: count');
      assert.deepEqual(chB.members.me, U1);
      assert.deepEqual(memberList(chB.members), [U1, W], 'u1 on B: members');
      // Barrier: a user joining on B after u1b's join was answered; B handles
      // the joins in order and sends them to A in order, so a wrong
      // announcement of u1b (on B, or on A when A heard of it) comes first.
      await presenceBarrier(nodeB.port, apiB, name, [wchan, chA, chB]);
      assert.deepEqual(real(wAdded.events), [U1], 'member_added for u1 more than once');
      assert.deepEqual(real(aAdded.events), [], 'u1 on A got member_added (for its own second connection?)');
      assert.deepEqual(real(wRemoved.events), []);
      for (const [label, ch] of [['watcher', wchan], ['u1 on A', chA], ['u1 on B', chB]]) {
        assert.equal(ch.members.count, 2, `${label}: members.count`);
      }
      for (const [label, api] of [['A', apiA], ['B', apiB]]) {
        assert.deepEqual(await userIds(api, name), ['u1', 'watcher'], `users through node ${label}`);
        assert.deepEqual(await getJson(api, `/channels/${name}`, { info: 'user_count,subscription_count' }),
          { occupied: true, user_count: 2, subscription_count: 3 }, `/channels/${name} through node ${label}`);
      }

      // u1 leaves A: still a member through its connection on B. Once A
      // counts 2 subscriptions, u1a's shard dropped it and sent its leave on;
      // a barrier user joining from that shard of A comes after it, on A and
      // through the engine on B.
      const u1aShard = shardOf(socketId(u1a));
      await disconnectClient(u1a);
      await until(async () => (await getJson(apiA, `/channels/${name}`, { info: 'subscription_count' })).subscription_count === 2,
        'node A dropping u1\'s connection', PROPAGATION_MS);
      await presenceBarrier(nodeA.port, apiA, name, [wchan, chB], { shards: [u1aShard] });
      assert.deepEqual(real(wRemoved.events), [], 'member_removed for u1 while it is still connected on B');
      assert.deepEqual(real(bRemoved.events), [], 'u1 on B got member_removed');
      assert.deepEqual(real(aRemoved.events), []);
      assert.equal(wchan.members.count, 2);
      assert.equal(chB.members.count, 2);
      await waitUsers(apiA, name, ['u1', 'watcher'], 'node A');
      await waitUsers(apiB, name, ['u1', 'watcher'], 'node B');

      // u1 leaves B: gone, once.
      await disconnectClient(u1b);
      await until(() => real(wRemoved.events).length >= 1, 'member_removed for u1');
      // B removed u1 before the barrier user's join reached it.
      await presenceBarrier(nodeB.port, apiB, name, [wchan]);
      assert.deepEqual(real(wRemoved.events), [U1], 'member_removed for u1 more than once');
      assert.deepEqual(real(wAdded.events), [U1]);
      assert.deepEqual(real(bAdded.events), []);
      assert.equal(wchan.members.count, 1);
      assert.deepEqual(memberList(wchan.members), [W]);
      await waitUsers(apiA, name, ['watcher'], 'node A');
      await waitUsers(apiB, name, ['watcher'], 'node B');
    });

    it('presence: a member whose node (C) is killed with SIGKILL is removed on A and B within the node timeout', { timeout: NODE_DEATH_TEST_TIMEOUT_MS }, async () => {
      const { node: nodeC, id: idC } = await startThirdNode();
      const apiC = makeServerClient(nodeC.port);
      const name = `presence-${uniqueChannel('cluster-death')}`;
      const W = { id: 'watcher', info: { on: 'B' } };
      const A = { id: 'a', info: { on: 'A' } };
      const U2 = { id: 'u2', info: { on: 'C' } };
      const as = (m) => ({ presence: { user_id: m.id, user_info: m.info } });

      const watcher = await authedClient(nodeB.port, apiB, as(W));
      const wchan = await subscribe(watcher, name);
      const wAdded = collect(wchan, 'pusher:member_added');
      const wRemoved = collect(wchan, 'pusher:member_removed');
      await waitUsers(apiA, name, ['watcher'], 'node A');
      const onA = await authedClient(nodeA.port, apiA, as(A));
      const achan = await subscribe(onA, name);
      assert.deepEqual(memberList(achan.members), [A, W]);
      assert.deepEqual(await wAdded.waitForCount(1), [A]);
      const aAdded = collect(achan, 'pusher:member_added');
      const aRemoved = collect(achan, 'pusher:member_removed');

      // u2 only on C.
      await waitUsers(apiC, name, ['a', 'watcher'], 'node C');
      const u2 = await authedClient(nodeC.port, apiC, as(U2));
      const cchan = await subscribe(u2, name);
      assert.deepEqual(memberList(cchan.members), [A, U2, W], 'u2 on C: members');
      assert.deepEqual(await wAdded.waitForCount(2), [A, U2], 'the watcher on B was told u2 joined on C');
      assert.deepEqual(await aAdded.waitForCount(1), [U2], 'the member on A was told u2 joined on C');
      assert.equal(wchan.members.count, 3);
      assert.equal(achan.members.count, 3);
      await waitUsers(apiA, name, ['a', 'u2', 'watcher'], 'node A');
      await waitUsers(apiB, name, ['a', 'u2', 'watcher'], 'node B');

      const killedAt = Date.now();
      process.kill(nodeC.proc.pid, 'SIGKILL');
      await until(() => !nodeC.alive(), 'node C exiting after SIGKILL', 5_000);
      assert.equal(nodeC.proc.signalCode, 'SIGKILL');
      // The server side is gone; stop pusher-js from reconnecting to a dead port.
      await disconnectClient(u2);

      const [wGone, aGone] = await Promise.all([
        wRemoved.waitForCount(1, NODE_GONE_MS), aRemoved.waitForCount(1, NODE_GONE_MS),
      ]);
      const elapsed = Date.now() - killedAt;
      assert.ok(elapsed <= NODE_GONE_MS, `member_removed ${elapsed} ms after SIGKILL`);
      assert.deepEqual(wGone, [U2]);
      assert.deepEqual(aGone, [U2]);
      // Barriers through each node (a user joining on A, then on B, seen by
      // both): each handled C's departure before them. A second removal from
      // a later liveness check would come on a timer of its own, so a short
      // window remains for that.
      await presenceBarrier(nodeA.port, apiA, name, [wchan, achan]);
      await presenceBarrier(nodeB.port, apiB, name, [wchan, achan]);
      await sleep(NODE_TIMEOUT_SECS * 250);
      for (const rec of [wRemoved, aRemoved, wAdded, aAdded]) rec.events.splice(0, rec.events.length, ...real(rec.events));
      assert.deepEqual(wRemoved.events, [U2], 'the watcher on B: member_removed');
      assert.deepEqual(aRemoved.events, [U2], 'the member on A: member_removed');
      assert.deepEqual(wAdded.events, [A, U2]);
      assert.deepEqual(aAdded.events, [U2]);
      assert.deepEqual(memberList(wchan.members), [A, W]);
      assert.deepEqual(memberList(achan.members), [A, W]);
      await waitUsers(apiA, name, ['a', 'watcher'], 'node A');
      await waitUsers(apiB, name, ['a', 'watcher'], 'node B');
      const gone = `cluster: node ${idC} silent for ${NODE_TIMEOUT_SECS} s, taken as gone`;
      assert.ok(nodeB.stderr().replace(ANSI, '').includes(gone), `node B did not log "${gone}"`);
      assert.ok(nodeA.stderr().replace(ANSI, '').includes(gone), `node A did not log "${gone}"`);
      assert.ok(nodeA.alive() && nodeB.alive(), 'node A or B died with C');
    });

    it('channel queries through A and through B give the same cluster-wide answers', { timeout: TEST_TIMEOUT_MS }, async () => {
      const tag = uniqueChannel('cluster-q');
      const pub = `${tag}-pub`;
      const pres = `presence-${tag}-pres`;
      const PB = { presence: { user_id: 'pb', user_info: { on: 'B' } } };
      const subsA = await Promise.all([1, 2].map(() => connectClient(nodeA.port)));
      const subsB = await Promise.all([1, 2, 3].map(() => connectClient(nodeB.port)));
      await Promise.all([...subsA, ...subsB].map((c) => subscribe(c, pub)));
      const member = await authedClient(nodeB.port, apiB, PB);
      await subscribe(member, pres);
      // /users and user_count come from the members each node holds: wait until A knows pb.
      await waitUsers(apiA, pres, ['pb'], 'node A');

      /** The same GET through A and through B: equal bodies; returns A's. */
      const both = async (path, params) => {
        const [a, b] = await Promise.all([getJson(apiA, path, params), getJson(apiB, path, params)]);
        assert.deepEqual(b, a, `GET ${path} ${JSON.stringify(params || {})}: node B answers differently from node A`);
        return a;
      };
      /**
       * Same for the app-wide lists, which may also hold channels of the
       * previous tests for the moment their clients' departures take to
       * settle: poll (bounded) until A and B agree.
       */
      const bothEventually = async (path, params) => {
        let a;
        let b;
        await until(async () => {
          [a, b] = await Promise.all([getJson(apiA, path, params), getJson(apiB, path, params)]);
          return JSON.stringify(a) === JSON.stringify(b);
        }, `GET ${path} ${JSON.stringify(params)} answered the same by A and B`, PROPAGATION_MS).catch(() => {});
        assert.deepEqual(b, a, `GET ${path} ${JSON.stringify(params)}: node B answers differently from node A`);
        return a;
      };

      const all = await bothEventually('/channels', { info: 'subscription_count' });
      assert.deepEqual(all.channels[pub], { subscription_count: 5 }, JSON.stringify(all));
      assert.deepEqual(all.channels[pres], { subscription_count: 1 }, JSON.stringify(all));
      assert.deepEqual(await both('/channels', { filter_by_prefix: tag }), { channels: { [pub]: {} } });
      assert.deepEqual(await both(`/channels/${pub}`, { info: 'subscription_count' }),
        { occupied: true, subscription_count: 5 });
      assert.deepEqual(await both(`/channels/${pres}/users`), { users: [{ id: 'pb' }] });
      const presence = await bothEventually('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
      assert.deepEqual(presence.channels[pres], { user_count: 1 }, JSON.stringify(presence));
      for (const ch of Object.keys(presence.channels)) assert.ok(ch.startsWith('presence-'), ch);
      assert.deepEqual(await both(`/channels/${pres}`, { info: 'user_count,subscription_count' }),
        { occupied: true, user_count: 1, subscription_count: 1 });
      for (const [label, api] of [['A', apiA], ['B', apiB]]) {
        const res = await api.trigger(pub, 'e', {}, { info: 'subscription_count' });
        assert.deepEqual(await res.json(), { channels: { [pub]: { subscription_count: 5 } } }, `trigger info through node ${label}`);
      }

      // pb's second connection, on A: still one user, two subscriptions.
      const memberOnA = await authedClient(nodeA.port, apiA, PB);
      await subscribe(memberOnA, pres);
      await until(async () => (await getJson(apiB, `/channels/${pres}`, { info: 'subscription_count' })).subscription_count === 2,
        'node B counting pb\'s second subscription', PROPAGATION_MS).catch(() => {});
      assert.deepEqual(await both(`/channels/${pres}`, { info: 'user_count,subscription_count' }),
        { occupied: true, user_count: 1, subscription_count: 2 });
      assert.deepEqual(await both(`/channels/${pres}/users`), { users: [{ id: 'pb' }] });
      assert.deepEqual(await both('/channels', { filter_by_prefix: `presence-${tag}`, info: 'user_count' }),
        { channels: { [pres]: { user_count: 1 } } });

      // A subscriber on A leaves: both nodes count 4.
      await disconnectClient(subsA[0]);
      await until(async () => (await getJson(apiB, `/channels/${pub}`, { info: 'subscription_count' })).subscription_count === 4,
        'node B counting 4 subscriptions', PROPAGATION_MS).catch(() => {});
      assert.deepEqual(await both(`/channels/${pub}`, { info: 'subscription_count' }),
        { occupied: true, subscription_count: 4 });
    });

    it('GET /connections (the library\'s generic get) counts the whole cluster through A and B, and a killed node leaves the count', { timeout: NODE_DEATH_TEST_TIMEOUT_MS }, async () => {
      const counts = async () => Promise.all([apiA, apiB].map(async (api) => (await getJson(api, '/connections')).connections));
      const waitCounts = async (n, label, timeout = PROPAGATION_MS) => {
        let last;
        await until(async () => { last = await counts(); return last[0] === n && last[1] === n; },
          label, timeout).catch(() => {});
        assert.deepEqual(last, [n, n], `${label}: [A, B] answer ${JSON.stringify(last)}`);
      };
      await waitCounts(0, 'no connections left from earlier tests');
      const onA = await Promise.all([1, 2].map(() => connectClient(nodeA.port)));
      const onB = await connectClient(nodeB.port);
      assert.deepEqual(await counts(), [3, 3]);
      const { node: nodeC } = await startThirdNode();
      const onC = await Promise.all([1, 2].map(() => connectClient(nodeC.port)));
      assert.deepEqual(await counts(), [5, 5]);
      await disconnectClient(onA[0]);
      await waitCounts(4, 'a client on A left');
      process.kill(nodeC.proc.pid, 'SIGKILL');
      await until(() => !nodeC.alive(), 'node C exiting after SIGKILL', 5_000);
      await Promise.all(onC.map((c) => disconnectClient(c)));
      await waitCounts(2, 'node C killed', NODE_GONE_MS);
      await disconnectClient(onB);
      await waitCounts(1, 'the client on B left');
    });

    it('subscription_count: pusher-js clients on A, B and C are told the same cluster-wide count; C killed leaves it', { timeout: NODE_DEATH_TEST_TIMEOUT_MS }, async () => {
      const { node: nodeC } = await startThirdNode();
      const name = uniqueChannel('cluster-count');
      const subs = [];
      /** Subscribe a new client on `port`; everyone (it too) must be told `n`. */
      const join = async (port) => {
        const client = await connectClient(port);
        const ch = client.subscribe(name);
        const seen = [];
        ch.bind('pusher:subscription_count', (d) => seen.push(d.subscription_count));
        await subscribe(client, name);
        const sub = { client, ch, seen };
        subs.push(sub);
        return sub;
      };
      const settle = async (n, label, timeout = PROPAGATION_MS) => {
        await until(() => subs.every((s) => s.seen[s.seen.length - 1] === n), label, timeout).catch(() => {});
        for (const s of subs) {
          assert.equal(s.seen[s.seen.length - 1], n, `${label}: a subscriber was told ${JSON.stringify(s.seen)}`);
          assert.equal(s.ch.subscriptionCount, n);
        }
      };
      await join(nodeA.port); await settle(1, 'one on A');
      await join(nodeB.port); await settle(2, 'one on B');
      const onC = await join(nodeC.port); await settle(3, 'one on C');
      const leaver = await join(nodeB.port); await settle(4, 'another on B');
      subs.splice(subs.indexOf(leaver), 1);
      leaver.client.unsubscribe(name);
      await settle(3, 'the second on B left');
      const [viaA, viaB] = await Promise.all([apiA, apiB].map((api) => getJson(api, `/channels/${name}`, { info: 'subscription_count' })));
      assert.deepEqual([viaA.subscription_count, viaB.subscription_count], [3, 3]);
      subs.splice(subs.indexOf(onC), 1);
      process.kill(nodeC.proc.pid, 'SIGKILL');
      await until(() => !nodeC.alive(), 'node C exiting after SIGKILL', 5_000);
      await disconnectClient(onC.client);
      await settle(2, 'node C killed', NODE_GONE_MS);
    });

    it('watchlist: online once when a user first signs in anywhere, offline once when its last connection anywhere leaves or its node dies', { timeout: NODE_DEATH_TEST_TIMEOUT_MS }, async () => {
      const tag = uniqueChannel('cw');
      const u = `${tag}-u`;
      /** Marker users with u's owner shard: their online comes after anything u's owner sent before. */
      const marks = [];
      for (let i = 0; marks.length < 3; i++) if (ownerOf(`${tag}-m${i}`) === ownerOf(u)) marks.push(`${tag}-m${i}`);
      const watcher = await authedClient(nodeA.port, apiA, { user: { id: `${tag}-w`, watchlist: [u, ...marks] } });
      const online = [];
      const offline = [];
      watcher.user.watchlist.bind('online', (e) => online.push(...e.user_ids));
      watcher.user.watchlist.bind('offline', (e) => offline.push(...e.user_ids));
      await signIn(watcher);
      const signedIn = async (node, api, id, shard) => {
        const c = await connectOnShard(() => authedClient(node.port, api, { user: { id } }), shard);
        await signIn(c);
        return c;
      };
      const uB = await signedIn(nodeB, apiB, u, 1);
      await until(() => online.length === 1, 'online for u on B');
      const uA = await signedIn(nodeA, apiA, u, 1);
      await signedIn(nodeA, apiA, marks[0], 1); // barrier (same connection shard as uA)
      await until(() => online.length === 2, 'online for the first marker');
      await disconnectClient(uB);
      // B has closed it (its shard told u's owner) once the cluster counts 3: watcher, uA, marker.
      await until(async () => (await getJson(apiA, '/connections')).connections === 3, 'u\'s connection on B closed');
      await signedIn(nodeB, apiB, marks[1], 1); // barrier through B's owner of u
      await until(() => online.length === 3, 'online for the second marker');
      assert.deepEqual(online, [u, marks[0], marks[1]]);
      assert.deepEqual(offline, [], 'offline while u is still on A');
      await disconnectClient(uA);
      await until(() => offline.length === 1, 'offline when u\'s last connection left');
      const { node: nodeC } = await startThirdNode();
      const apiC = makeServerClient(nodeC.port);
      const uC = await signedIn(nodeC, apiC, u, 0);
      await until(() => online.length === 4, 'online for u on C');
      process.kill(nodeC.proc.pid, 'SIGKILL');
      await until(() => !nodeC.alive(), 'node C exiting after SIGKILL', 5_000);
      await disconnectClient(uC);
      await until(() => offline.length === 2, 'offline for u when C died', NODE_GONE_MS);
      await signedIn(nodeA, apiA, marks[2], 0); // barrier
      await until(() => online.length === 5, 'online for the third marker');
      assert.deepEqual(online, [u, marks[0], marks[1], u, marks[2]]);
      assert.deepEqual(offline, [u, u]);
    });

    it('engine and both nodes are still running after all of the above', () => {
      assert.ok(nodeA.alive(), `node A died:\n${nodeA.stderr()}`);
      assert.ok(nodeB.alive(), `node B died:\n${nodeB.stderr()}`);
      assert.ok(engine.alive(), `${kind} engine died:\n${engine.output()}`);
    });
  });
}
