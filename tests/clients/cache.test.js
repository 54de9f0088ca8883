'use strict';
// Cache channels (cache-, private-cache-, presence-cache-,
// private-encrypted-cache-): the last event triggered on the channel is
// delivered to each new subscriber right after pusher:subscription_succeeded;
// with nothing cached the subscriber gets pusher:cache_miss on the channel.
// The cached event expires after the app's cache_ttl.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const {
  appConfig, collect, connectOnShard, disconnectAll, makeServerClient, pingBarrier, shardOf,
  sleep, socketId, startServer, uniqueChannel, waitFor,
} = require('./helpers');
const { authedClient, until } = require('./auth_helpers');

const MASTER_KEY = crypto.randomBytes(32).toString('base64');

// What a subscription sends (subscription_succeeded, then the cached event or
// pusher:cache_miss) is queued in one go when the join completes on the
// subscriber's shard, so a ping sent after subscription_succeeded arrived is
// answered after all of it: checks that nothing more came end on that pong.

/**
 * Subscribe and record, in order, subscription_succeeded / cache_miss and
 * the given events; resolves once subscription_succeeded has arrived.
 */
async function subscribeRecording(client, name, events) {
  const ch = client.subscribe(name);
  const log = [];
  for (const e of ['pusher:subscription_succeeded', 'pusher:cache_miss', 'pusher:subscription_error', ...events]) {
    ch.bind(e, (data) => log.push({ event: e, data }));
  }
  const deadline = Date.now() + 5_000;
  while (!log.some((l) => l.event === 'pusher:subscription_succeeded' || l.event === 'pusher:subscription_error')) {
    if (Date.now() > deadline) throw new Error(`no subscription answer for ${name}: ${JSON.stringify(log)}`);
    await sleep(10);
  }
  return { ch, log };
}

/** Wait until `log` has an entry for `event`. */
async function logged(log, event, timeout = 5_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const hit = log.find((l) => l.event === event);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`"${event}" not received within ${timeout} ms: ${JSON.stringify(log)}`);
    await sleep(10);
  }
}

describe('cache channels', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    api = makeServerClient(server.port, { encryptionMasterKeyBase64: MASTER_KEY });
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('the last event triggered before subscribing is delivered right after subscription_succeeded', async () => {
    const name = uniqueChannel('cache-news');
    await api.trigger(name, 'update', { v: 1 });
    const client = await authedClient(server.port, api);
    const { log } = await subscribeRecording(client, name, ['update']);
    await logged(log, 'update');
    await pingBarrier(client);
    assert.deepEqual(log.map((l) => l.event), ['pusher:subscription_succeeded', 'update']);
    assert.deepEqual(log[1].data, { v: 1 });
  });

  it('only the latest event is cached', async () => {
    const name = uniqueChannel('cache-latest');
    await api.trigger(name, 'first', { n: 1 });
    await api.trigger(name, 'second', { n: 2 });
    await api.trigger(name, 'third', { n: 3 });
    const client = await authedClient(server.port, api);
    const { log } = await subscribeRecording(client, name, ['first', 'second', 'third']);
    await logged(log, 'third');
    await pingBarrier(client);
    assert.deepEqual(log.map((l) => l.event), ['pusher:subscription_succeeded', 'third']);
    assert.deepEqual(log[1].data, { n: 3 });
  });

  it('events from triggerBatch are cached too', async () => {
    const name = uniqueChannel('cache-batch');
    await api.triggerBatch([
      { channel: name, name: 'b1', data: 'one' },
      { channel: name, name: 'b2', data: 'two' },
    ]);
    const client = await authedClient(server.port, api);
    const { log } = await subscribeRecording(client, name, ['b1', 'b2']);
    const hit = await logged(log, 'b2');
    assert.equal(hit.data, 'two');
    await pingBarrier(client);
    assert.ok(!log.some((l) => l.event === 'b1'), JSON.stringify(log));
  });

  it('with nothing cached the subscriber gets pusher:cache_miss bound on the channel', async () => {
    const name = uniqueChannel('cache-empty');
    const client = await authedClient(server.port, api);
    const ch = client.subscribe(name);
    const miss = waitFor(ch, 'pusher:cache_miss');
    await waitFor(ch, 'pusher:subscription_succeeded');
    await miss;
  });

  it('a cache miss goes only to the joiner, and a cached event is not repeated to existing subscribers', async () => {
    const name = uniqueChannel('cache-join');
    const first = await authedClient(server.port, api);
    const { ch: ch1, log: log1 } = await subscribeRecording(first, name, ['e']);
    await logged(log1, 'pusher:cache_miss');

    const live = waitFor(ch1, 'e');
    await api.trigger(name, 'e', { live: true });
    assert.deepEqual(await live, { live: true });

    const rec1 = collect(ch1, 'e');
    // The second subscriber on the first's shard: a replay to the channel made
    // while the join completes there is queued for the first before the
    // second's frames. A replay the owner shard sent as a publication of its
    // own after answering the join travels the owner's queue to this shard
    // ahead of its answer to a third joiner on the same shard. Either way, the
    // first's ping, sent once the third got its cached event, is answered
    // after it.
    const firstShard = shardOf(socketId(first));
    const second = await connectOnShard(() => authedClient(server.port, api), firstShard);
    const { log: log2 } = await subscribeRecording(second, name, ['e']);
    const hit = await logged(log2, 'e');
    assert.deepEqual(hit.data, { live: true });
    assert.ok(!log2.some((l) => l.event === 'pusher:cache_miss'), JSON.stringify(log2));
    const third = await connectOnShard(() => authedClient(server.port, api), firstShard);
    const { log: log3 } = await subscribeRecording(third, name, ['e']);
    assert.deepEqual((await logged(log3, 'e')).data, { live: true });
    await pingBarrier(first);
    assert.deepEqual(rec1.events, [], 'the first subscriber got the cached event again');
    assert.equal(log1.filter((l) => l.event === 'pusher:cache_miss').length, 1);
  });

  it('a plain public channel never sends pusher:cache_miss or replays events', async () => {
    const name = uniqueChannel('plain');
    await api.trigger(name, 'e', 1);
    const client = await authedClient(server.port, api);
    const { log } = await subscribeRecording(client, name, ['e']);
    await pingBarrier(client);
    assert.deepEqual(log.map((l) => l.event), ['pusher:subscription_succeeded']);
  });

  it('private-cache-: cached event delivered after authorization; cache_miss when empty', async () => {
    const name = uniqueChannel('private-cache-p');
    const client = await authedClient(server.port, api);
    const { log } = await subscribeRecording(client, name, ['e']);
    await logged(log, 'pusher:cache_miss');
    await api.trigger(name, 'e', { p: 1 });
    await logged(log, 'e');

    const other = await authedClient(server.port, api);
    const { log: log2 } = await subscribeRecording(other, name, ['e']);
    assert.deepEqual((await logged(log2, 'e')).data, { p: 1 });
  });

  it('a refused private-cache- subscription gets no cached event', async () => {
    const name = uniqueChannel('private-cache-refused');
    await api.trigger(name, 'e', { secret: true });
    const wrong = makeServerClient(server.port, { secret: 'wrong' });
    const client = await authedClient(server.port, wrong);
    const { log } = await subscribeRecording(client, name, ['e']);
    await pingBarrier(client);
    assert.deepEqual(log.map((l) => l.event), ['pusher:subscription_error']);
  });

  it('presence-cache-: members and the cached event', async () => {
    const name = uniqueChannel('presence-cache-room');
    const alice = await authedClient(server.port, api, { presence: { user_id: 'alice', user_info: {} } });
    const { log: la } = await subscribeRecording(alice, name, ['topic']);
    await logged(la, 'pusher:cache_miss');
    await api.trigger(name, 'topic', { t: 'hello' });
    await logged(la, 'topic');

    const bob = await authedClient(server.port, api, { presence: { user_id: 'bob', user_info: {} } });
    const { ch, log: lb } = await subscribeRecording(bob, name, ['topic']);
    assert.equal(ch.members.count, 2);
    assert.deepEqual((await logged(lb, 'topic')).data, { t: 'hello' });
  });

  it('private-encrypted-cache-: the cached event is still encrypted end to end and pusher-js decrypts it', async () => {
    const name = uniqueChannel('private-encrypted-cache-vault');
    await api.trigger(name, 'sealed', { gold: 24 });
    const client = await authedClient(server.port, api);
    const { log } = await subscribeRecording(client, name, ['sealed']);
    assert.deepEqual((await logged(log, 'sealed')).data, { gold: 24 });
  });

  it('GET /channels/{name}?info=cache exposes the cached event', async () => {
    const name = uniqueChannel('cache-query');
    await api.trigger(name, 'e', { q: 1 });
    const body = await (await api.get({ path: `/channels/${name}`, params: { info: 'cache' } })).json();
    assert.equal(body.occupied, false);
    assert.ok(body.cache, JSON.stringify(body));
    assert.deepEqual(JSON.parse(body.cache.data), { q: 1 });
    assert.ok(body.cache.ttl > 0 && body.cache.ttl <= 30 * 60, JSON.stringify(body));
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});

describe('cache channels: cache_ttl', () => {
  let server;
  let api;
  const TTL = 1;

  before(async () => {
    server = await startServer({ config: appConfig({ app: { cache_ttl: TTL } }) });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it(`the cached event expires after cache_ttl (${TTL} s): later subscribers get pusher:cache_miss`, async () => {
    const name = uniqueChannel('cache-ttl');
    await api.trigger(name, 'e', { fresh: true });
    const early = await authedClient(server.port, api);
    const { log: l1 } = await subscribeRecording(early, name, ['e']);
    assert.deepEqual((await logged(l1, 'e')).data, { fresh: true });

    // Wait for the expiry itself (the owner shard drops the entry), not a guess.
    const cacheOf = async () => (await (await api.get({ path: `/channels/${name}`, params: { info: 'cache' } })).json()).cache;
    await until(async () => !(await cacheOf()), 'the cached event expiring', TTL * 1000 + 5_000);
    const late = await authedClient(server.port, api);
    const { log: l2 } = await subscribeRecording(late, name, ['e']);
    await logged(l2, 'pusher:cache_miss');
    await pingBarrier(late);
    assert.ok(!l2.some((l) => l.event === 'e'), JSON.stringify(l2));
  });
});
