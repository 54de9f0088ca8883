'use strict';
// `socket_id` exclusion: the publishing client's own connection does not get
// its event back, whichever shard it (and the HTTP request) landed on.
//
// Six clients on one channel with two shards, at least one on each (the
// socket_id names the shard; setup checks it), and every client takes a turn
// at being the excluded one, so the exclusion is exercised on both shards.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  collect, connectClient, connectOnShard, disconnectAll, makePublisher, publishedBarrier, shardOf, socketId,
  startServer, subscribe, uniqueChannel,
} = require('./helpers');

const N = 6;

describe('socket_id exclusion', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    // One keep-alive connection: its later `barrier` event follows every
    // earlier trigger to each client, so absences end on it.
    api = makePublisher(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  async function setup(channelCount = 1) {
    const clients = await Promise.all(Array.from({ length: N - 1 }, () => connectClient(server.port)));
    // Both shards, whatever the kernel's spread: the last one on the other
    // shard if the first ones all landed on one.
    const first = new Set(clients.map((c) => shardOf(socketId(c))));
    clients.push(first.size === 2
      ? await connectClient(server.port)
      : await connectOnShard(() => connectClient(server.port), 1 - [...first][0]));
    assert.equal(new Set(clients.map((c) => shardOf(socketId(c)))).size, 2, 'clients on both shards');
    const names = Array.from({ length: channelCount }, () => uniqueChannel('excl'));
    const channels = await Promise.all(clients.map(
      (c) => Promise.all(names.map((n) => subscribe(c, n))),
    ));
    const ids = clients.map(socketId);
    assert.equal(new Set(ids).size, N, `socket ids not unique: ${ids}`);
    return { clients, names, channels, ids };
  }

  /** every client j must have exactly the events whose excluded index != j */
  function assertExcluded(recs, ids, label) {
    for (let j = 0; j < N; j++) {
      const got = recs[j].events.map((e) => e.from).sort((a, b) => a - b);
      const want = [...Array(N).keys()].filter((i) => i !== j);
      assert.deepEqual(got, want,
        `${label}: client ${j} (socket ${ids[j]}) received events excluded-for ${JSON.stringify(got)}, ` +
        `expected ${JSON.stringify(want)} (socket ids: ${ids.join(', ')})`);
    }
  }

  it('trigger with socket_id: everybody but the excluded socket receives it (one excluded client)', async () => {
    const { names, channels, ids } = await setup();
    const excluded = 0;
    const recs = channels.map(([ch]) => collect(ch, 'ex'));
    await api.trigger(names[0], 'ex', { from: excluded }, { socket_id: ids[excluded] });
    await Promise.all(recs.filter((_, j) => j !== excluded).map((r) => r.waitForCount(1)));
    await publishedBarrier(api, channels.map(([ch]) => ch));
    assert.deepEqual(recs[excluded].events, [], `excluded socket ${ids[excluded]} got the event`);
    for (let j = 1; j < N; j++) assert.equal(recs[j].events.length, 1);
  });

  it('trigger with socket_id: each of 6 clients excluded in turn', async () => {
    const { names, channels, ids } = await setup();
    const recs = channels.map(([ch]) => collect(ch, 'turn'));
    for (let i = 0; i < N; i++) {
      await api.trigger(names[0], 'turn', { from: i }, { socket_id: ids[i] });
    }
    await Promise.all(recs.map((r) => r.waitForCount(N - 1)));
    await publishedBarrier(api, channels.map(([ch]) => ch));
    assertExcluded(recs, ids, 'trigger');
  });

  it('multi-channel trigger with socket_id excludes the socket on every channel', async () => {
    const { names, channels, ids } = await setup(2);
    const recs = channels.map((chs) => chs.map((ch) => collect(ch, 'mc')));
    for (let i = 0; i < N; i++) {
      await api.trigger(names, 'mc', { from: i }, { socket_id: ids[i] });
    }
    for (let c = 0; c < names.length; c++) {
      const perChannel = recs.map((r) => r[c]);
      await Promise.all(perChannel.map((r) => r.waitForCount(N - 1)));
    }
    await publishedBarrier(api, channels.flat());
    for (let c = 0; c < names.length; c++) assertExcluded(recs.map((r) => r[c]), ids, `channel ${c}`);
  });

  it('triggerBatch with a socket_id per item excludes each item\'s socket', async () => {
    const { names, channels, ids } = await setup();
    const recs = channels.map(([ch]) => collect(ch, 'b'));
    const batch = ids.map((id, i) => ({ channel: names[0], name: 'b', data: { from: i }, socket_id: id }));
    const res = await api.triggerBatch(batch);
    assert.equal(res.status, 200);
    await Promise.all(recs.map((r) => r.waitForCount(N - 1)));
    await publishedBarrier(api, channels.map(([ch]) => ch));
    assertExcluded(recs, ids, 'batch');
  });

  it('triggerBatch mixing excluded and non-excluded items', async () => {
    const { names, channels, ids } = await setup();
    const recs = channels.map(([ch]) => collect(ch, 'mix'));
    const res = await api.triggerBatch([
      { channel: names[0], name: 'mix', data: { k: 'all-1' } },
      { channel: names[0], name: 'mix', data: { k: 'not-3' }, socket_id: ids[3] },
      { channel: names[0], name: 'mix', data: { k: 'all-2' } },
    ]);
    assert.equal(res.status, 200);
    await Promise.all(recs.map((r, j) => r.waitForCount(j === 3 ? 2 : 3)));
    await publishedBarrier(api, channels.map(([ch]) => ch));
    for (let j = 0; j < N; j++) {
      const want = j === 3 ? ['all-1', 'all-2'] : ['all-1', 'not-3', 'all-2'];
      assert.deepEqual(recs[j].events.map((e) => e.k), want, `client ${j} (socket ${ids[j]})`);
    }
  });

  it('a socket_id that matches no connection excludes nobody', async () => {
    const { names, channels, ids } = await setup();
    const recs = channels.map(([ch]) => collect(ch, 'ghost'));
    // Well-formed but not one of ours.
    let ghost = '987654.123456789';
    while (ids.includes(ghost)) ghost = `${Math.floor(Math.random() * 1e6)}.${Math.floor(Math.random() * 1e9)}`;
    await api.trigger(names[0], 'ghost', { from: -1 }, { socket_id: ghost });
    await Promise.all(recs.map((r) => r.waitForCount(1)));
    await publishedBarrier(api, channels.map(([ch]) => ch));
    recs.forEach((r, j) => assert.deepEqual(r.events, [{ from: -1 }], `client ${j} (socket ${ids[j]})`));
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
