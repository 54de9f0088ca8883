'use strict';
// Webhooks seen by a Node http receiver, verified with the `pusher` server
// library's own webhook check (X-Pusher-Key / X-Pusher-Signature over the
// raw body), for events caused by pusher-js clients.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const crypto = require('node:crypto');

const {
  APP_ID, APP_KEY, APP_SECRET, connectClient, disconnectAll, disconnectClient,
  makeServerClient, ownerOf, sleep, startServer, subscribe, uniqueChannel,
} = require('./helpers');

/** A webhook receiver: records each request with its raw body. */
function startReceiver() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      requests.push({ headers: req.headers, rawBody: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}/webhooks`,
      requests,
      close: () => new Promise((r) => server.close(r)),
    }));
  });
}

describe('webhooks', () => {
  let server;
  let receiver;
  let api;

  before(async () => {
    receiver = await startReceiver();
    const config = [
      '[server.webhooks]',
      'delay_ms = 200',
      '',
      '[[apps]]',
      `id = "${APP_ID}"`,
      `key = "${APP_KEY}"`,
      `secret = "${APP_SECRET}"`,
      'enable_client_messages = true',
      'enable_subscription_count = true',
      '[[apps.webhooks]]',
      `url = "${receiver.url}"`,
      'event_types = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "subscription_count"]',
      '',
    ].join('\n');
    server = await startServer({ config });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => {
    if (server) await server.stop();
    if (receiver) await receiver.close();
  });

  /** Every event of every valid webhook so far. */
  function events() {
    const all = [];
    for (const r of receiver.requests) {
      const hook = api.webhook(r);
      assert.ok(hook.isValid(), `invalid webhook signature: ${JSON.stringify(r)}`);
      all.push(...hook.getEvents());
    }
    return all;
  }

  async function waitForEvent(pred, what, timeout = 5_000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const found = events().find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no webhook ${what} within ${timeout} ms: ${JSON.stringify(events())}`);
      await sleep(25);
    }
  }

  function authedClient(user) {
    return connectClient(server.port, {
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, callback) => {
          const presence = channelName.startsWith('presence-') ? user : undefined;
          callback(null, api.authorizeChannel(socketId, channelName, presence));
        },
      },
    });
  }

  it('occupied and vacated arrive signed with the app secret', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('hooked');
    await subscribe(client, name);
    await waitForEvent((e) => e.name === 'channel_occupied' && e.channel === name, 'channel_occupied');
    const r = receiver.requests[receiver.requests.length - 1];
    assert.equal(r.headers['x-pusher-key'], APP_KEY);
    assert.equal(r.headers['content-type'], 'application/json');
    const expected = crypto.createHmac('sha256', APP_SECRET).update(r.rawBody).digest('hex');
    assert.equal(r.headers['x-pusher-signature'], expected);
    assert.ok(Number.isInteger(JSON.parse(r.rawBody).time_ms));
    client.unsubscribe(name);
    await waitForEvent((e) => e.name === 'channel_vacated' && e.channel === name, 'channel_vacated');
  });

  it('presence members and client events from pusher-js', async () => {
    const name = uniqueChannel('presence-hooked');
    const alice = await authedClient({ user_id: 'alice', user_info: {} });
    const bob = await authedClient({ user_id: 'bob', user_info: {} });
    const achan = await subscribe(alice, name);
    await subscribe(bob, name);
    await waitForEvent((e) => e.name === 'member_added' && e.user_id === 'bob', 'member_added bob');
    achan.trigger('client-wave', { hand: 'left' });
    const ev = await waitForEvent((e) => e.name === 'client_event' && e.channel === name, 'client_event');
    assert.equal(ev.event, 'client-wave');
    assert.deepEqual(JSON.parse(ev.data), { hand: 'left' });
    assert.equal(ev.user_id, 'alice');
    assert.equal(ev.socket_id, alice.connection.socket_id);
    await disconnectClient(bob);
    const removed = await waitForEvent((e) => e.name === 'member_removed' && e.channel === name, 'member_removed');
    assert.equal(removed.user_id, 'bob');
  });

  it('subscription_count: the count on every change, the same as pusher-js is told, none for the last leave nor for presence', async () => {
    const name = uniqueChannel('counted');
    const pres = `presence-${name}`;
    const countsOf = (ch) => events().filter((e) => e.name === 'subscription_count' && e.channel === ch)
      .map((e) => { assert.deepEqual(Object.keys(e).sort(), ['channel', 'name', 'subscription_count']); return e.subscription_count; });
    const clients = await Promise.all(['u1', 'u2', 'u3'].map((u) => authedClient({ user_id: u, user_info: {} })));
    const seen = [];
    for (const c of clients) {
      const ch = c.subscribe(name);
      const mine = [];
      ch.bind('pusher:subscription_count', (d) => mine.push(d.subscription_count));
      seen.push(mine);
      await subscribe(c, name);
      await subscribe(c, pres);
    }
    await waitForEvent((e) => e.name === 'subscription_count' && e.channel === name && e.subscription_count === 3, 'count 3');
    await disconnectClient(clients[2]);
    await waitForEvent((e) => e.name === 'subscription_count' && e.channel === name && countsOf(name).length === 4, 'count 2');
    clients[1].unsubscribe(name);
    await waitForEvent((e) => e.name === 'subscription_count' && e.channel === name && countsOf(name).length === 5, 'count 1');
    clients[0].unsubscribe(name);
    // Barrier: the last leaver subscribes to a channel with the same owner
    // shard, which reports webhooks in order: its count comes after any for `name`.
    let fence;
    for (let i = 0; ; i++) {
      fence = `${name}-fence${i}`;
      if (ownerOf(fence) === ownerOf(name)) break;
    }
    await subscribe(clients[0], fence);
    await waitForEvent((e) => e.name === 'subscription_count' && e.channel === fence, 'the fence\'s count');
    assert.deepEqual(countsOf(name), [1, 2, 3, 2, 1]);
    assert.deepEqual(countsOf(pres), []);
    // pusher-js subscribers were told the same counts while subscribed.
    assert.deepEqual(seen[0], [1, 2, 3, 2, 1]);
    assert.deepEqual(seen[1].slice(-2), [3, 2]);
  });

  it('subscription_count: over 100 subscribers, at most one count per 5 s to the webhook and to pusher-js alike', { timeout: 60_000 }, async () => {
    const name = uniqueChannel('crowd');
    const countsOf = () => events().filter((e) => e.name === 'subscription_count' && e.channel === name).map((e) => e.subscription_count);
    const first = await connectClient(server.port);
    const seen = [];
    first.subscribe(name).bind('pusher:subscription_count', (d) => seen.push([d.subscription_count, Date.now()]));
    await subscribe(first, name);
    const waitSeen = async (n, timeout = 5_000) => {
      const deadline = Date.now() + timeout;
      while (!seen.some(([c]) => c === n)) {
        if (Date.now() > deadline) throw new Error(`pusher-js was not told ${n} within ${timeout} ms: ${JSON.stringify(seen.map(([c]) => c))}`);
        await sleep(10);
      }
      return seen.find(([c]) => c === n)[1];
    };
    for (let n = 2; n <= 100; n++) {
      const c = await connectClient(server.port);
      await subscribe(c, name);
    }
    const at100 = await waitSeen(100);
    const c101 = await connectClient(server.port);
    await subscribe(c101, name);
    const at101 = await waitSeen(101, 8_000);
    assert.ok(at101 - at100 >= 4_900 && at101 - at100 < 8_000, `101 told ${at101 - at100} ms after 100`);
    const c102 = await connectClient(server.port);
    await subscribe(c102, name);
    const at102 = await waitSeen(102, 8_000);
    assert.ok(at102 - at101 >= 4_900, `102 told ${at102 - at101} ms after 101`);
    await waitForEvent((e) => e.name === 'subscription_count' && e.channel === name && e.subscription_count === 102, 'count 102', 8_000);
    const want = Array.from({ length: 102 }, (_, i) => i + 1);
    assert.deepEqual(countsOf(), want);
    assert.deepEqual(seen.map(([c]) => c), want);
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
