'use strict';
// pusher_internal:subscription_count (apps with enable_subscription_count):
// pusher-js emits it as `pusher:subscription_count` on the channel, with
// {subscription_count: N} counted over every shard, and keeps
// channel.subscriptionCount. Not sent when the app does not enable it, and
// not on presence channels (which have members instead).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, collect, disconnectAll, disconnectClient, expectNothing, makeServerClient,
  shardOf, socketId, startServer, subscribe, uniqueChannel, waitFor, watchMessages,
} = require('./helpers');
const { authedClient, presenceBarrier, until } = require('./auth_helpers');

/** Subscribe, recording every pusher:subscription_count from the start. */
async function subscribeCounting(client, name) {
  const ch = client.subscribe(name);
  const counts = collect(ch, 'pusher:subscription_count');
  await subscribe(client, name);
  return { ch, counts, last: () => counts.events.length && counts.events[counts.events.length - 1].subscription_count };
}

describe('subscription_count (enabled)', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer({ config: appConfig({ app: { enable_subscription_count: true } }) });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('the first subscriber is told the count is 1', async () => {
    const client = await authedClient(server.port, api);
    const { ch, counts } = await subscribeCounting(client, uniqueChannel('count-one'));
    const [data] = await counts.waitForCount(1);
    assert.deepEqual(data, { subscription_count: 1 });
    assert.equal(ch.subscriptionCount, 1);
  });

  it('every subscriber follows the count as others (on any shard) join and leave', async () => {
    const name = uniqueChannel('count-many');
    const clients = await Promise.all([1, 2, 3, 4].map(() => authedClient(server.port, api)));
    const subs = [];
    for (const c of clients) subs.push(await subscribeCounting(c, name));

    for (const s of subs) await until(() => s.last() === 4, `a subscriber seeing subscription_count 4 (saw ${JSON.stringify(s.counts.events)})`);
    for (const s of subs) assert.equal(s.ch.subscriptionCount, 4);
    // The first subscriber saw every step.
    assert.deepEqual(subs[0].counts.events.map((e) => e.subscription_count), [1, 2, 3, 4]);

    clients[3].unsubscribe(name);
    for (const s of subs.slice(0, 3)) await until(() => s.last() === 3, 'subscription_count 3 after an unsubscribe');
    await disconnectClient(clients[2]);
    for (const s of subs.slice(0, 2)) await until(() => s.last() === 2, 'subscription_count 2 after a disconnect');
    assert.equal(subs[0].ch.subscriptionCount, 2);
  });

  it('private channels get it too', async () => {
    const name = `private-${uniqueChannel('count')}`;
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const sa = await subscribeCounting(a, name);
    await sa.counts.waitForCount(1);
    const sb = await subscribeCounting(b, name);
    await until(() => sa.last() === 2 && sb.last() === 2, 'both private subscribers seeing 2');
  });

  it('agrees with GET /channels/{name}?info=subscription_count', async () => {
    const name = uniqueChannel('count-query');
    const clients = await Promise.all([1, 2, 3].map(() => authedClient(server.port, api)));
    const subs = [];
    for (const c of clients) subs.push(await subscribeCounting(c, name));
    await until(() => subs[0].last() === 3, 'subscription_count 3');
    const body = await (await api.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } })).json();
    assert.equal(body.subscription_count, 3);
  });

  it('presence channels do not get pusher:subscription_count', async () => {
    const name = `presence-${uniqueChannel('count')}`;
    const a = await authedClient(server.port, api, { presence: { user_id: 'a' } });
    const ch = a.subscribe(name);
    const none = expectNothing(ch, 'pusher:subscription_count');
    await subscribe(a, name);
    const b = await authedClient(server.port, api, { presence: { user_id: 'b' } });
    await subscribe(b, name);
    // The channel's owner sends both counts and member events, in order. Its
    // count for a's and b's subscriptions would come from what their shards
    // reported when they subscribed; barrier users joining from those shards
    // afterwards reach the owner later, and their member_added come after.
    await none.until(presenceBarrier(server.port, api, name, [ch],
      { shards: [...new Set([a, b].map((c) => shardOf(socketId(c))))] }));
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});

describe('subscription_count (app without enable_subscription_count)', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  // A cache channel, so that its owner (which would send the counts) also
  // answers a's joins: the answer to a's second join comes to a after any
  // count the owner sent for b's join, answered before it.
  it('no pusher:subscription_count is sent', async () => {
    const name = uniqueChannel('cache-count-off');
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    // On the wire: pusher-js hands a resubscribed channel a new Channel object.
    const wire = watchMessages(a, (m) => m.event === 'pusher_internal:subscription_count');
    const ch = await subscribe(a, name);
    await subscribe(b, name);
    assert.equal(ch.subscriptionCount, undefined);
    a.unsubscribe(name);
    const again = a.subscribe(name);
    const miss = waitFor(again, 'pusher:cache_miss');
    await waitFor(again, 'pusher:subscription_succeeded');
    await miss;
    assert.deepEqual(wire.events, []);
  });
});
