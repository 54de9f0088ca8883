'use strict';
// Events published through the official `pusher` server library reach
// pusher-js subscribers.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  collect, connectClient, disconnectAll, makePublisher, makeServerClient,
  publishedBarrier, rawConnect, startServer, subscribe, uniqueChannel, waitFor,
} = require('./helpers');

describe('trigger', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('subscribing to a public channel fires pusher:subscription_succeeded', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('pub');
    const channel = client.subscribe(name);
    await waitFor(channel, 'pusher:subscription_succeeded');
    assert.equal(channel.subscribed, true);
  });

  it('trigger(channel, event, object) arrives with the object as data', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('obj');
    const channel = await subscribe(client, name);
    const got = waitFor(channel, 'my-event');
    const res = await api.trigger(name, 'my-event', { hello: 'world' });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(typeof body, 'object');
    assert.deepEqual(await got, { hello: 'world' });
  });

  it('string data arrives as the same string', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('str');
    const channel = await subscribe(client, name);
    const got = waitFor(channel, 'text');
    await api.trigger(name, 'text', 'hello, plain world');
    assert.equal(await got, 'hello, plain world');
  });

  it('unicode, nesting and escapes survive the round trip', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('uni');
    const channel = await subscribe(client, name);
    const payload = {
      text: 'héllo wörld ✓ 日本語 🎉',
      quote: 'she said "hi"\\ back\nnewline\ttab',
      nested: { list: [1, 2.5, -3, true, false, null], empty: {} },
    };
    const got = waitFor(channel, 'uni');
    await api.trigger(name, 'uni', payload);
    assert.deepEqual(await got, payload);
  });

  it('trigger to several channels at once arrives on each', async () => {
    const client = await connectClient(server.port);
    const names = ['a', 'b', 'c'].map((x) => uniqueChannel(`multi-${x}`));
    const channels = await Promise.all(names.map((n) => subscribe(client, n)));
    const got = channels.map((ch) => waitFor(ch, 'fanout'));
    await api.trigger(names, 'fanout', { n: 1 });
    const results = await Promise.all(got);
    for (const r of results) assert.deepEqual(r, { n: 1 });
  });

  it('multi-channel trigger delivers once per subscribed client per channel', async () => {
    const [c1, c2] = await Promise.all([connectClient(server.port), connectClient(server.port)]);
    const names = [uniqueChannel('m1'), uniqueChannel('m2')];
    // c1 on both channels, c2 on the second only.
    const c1chs = await Promise.all(names.map((n) => subscribe(c1, n)));
    const c2ch = await subscribe(c2, names[1]);
    const rec = [...c1chs, c2ch].map((ch) => collect(ch, 'once'));
    const publisher = makePublisher(server.port);
    await publisher.trigger(names, 'once', { x: 1 });
    await Promise.all(rec.map((r) => r.waitForCount(1)));
    // A duplicate would come before the same publisher's next event.
    await publishedBarrier(publisher, [...c1chs, c2ch]);
    for (const r of rec) assert.equal(r.events.length, 1, JSON.stringify(r.events));
  });

  it('triggerBatch delivers every event, in order', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('batch');
    const channel = await subscribe(client, name);
    const rec = collect(channel, 'seq');
    const batch = Array.from({ length: 10 }, (_, i) => ({ channel: name, name: 'seq', data: { i } }));
    const res = await api.triggerBatch(batch);
    assert.equal(res.status, 200);
    const events = await rec.waitForCount(10);
    assert.deepEqual(events.map((e) => e.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('triggerBatch across channels arrives on each channel', async () => {
    const client = await connectClient(server.port);
    const names = [uniqueChannel('bx'), uniqueChannel('by')];
    const [x, y] = await Promise.all(names.map((n) => subscribe(client, n)));
    const rx = collect(x, 'e');
    const ry = collect(y, 'e');
    await api.triggerBatch([
      { channel: names[0], name: 'e', data: 'x1' },
      { channel: names[1], name: 'e', data: { y: 1 } },
      { channel: names[0], name: 'e', data: 'x2' },
    ]);
    assert.deepEqual(await rx.waitForCount(2), ['x1', 'x2']);
    assert.deepEqual(await ry.waitForCount(1), [{ y: 1 }]);
  });

  it('consecutive triggers to one channel arrive in order', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('order');
    const channel = await subscribe(client, name);
    const rec = collect(channel, 'n');
    for (let i = 0; i < 20; i++) await api.trigger(name, 'n', { i });
    const events = await rec.waitForCount(20);
    assert.deepEqual(events.map((e) => e.i), Array.from({ length: 20 }, (_, i) => i));
  });

  it('a keep-alive HTTP agent can send many requests over one connection', async () => {
    const http = require('node:http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set();
    agent.on('free', (socket) => sockets.add(socket));
    try {
      const keepAliveApi = makeServerClient(server.port, { agent });
      const client = await connectClient(server.port);
      const name = uniqueChannel('ka');
      const channel = await subscribe(client, name);
      const rec = collect(channel, 'ka');
      for (let i = 0; i < 20; i++) {
        const res = await keepAliveApi.trigger(name, 'ka', { i });
        assert.equal(res.status, 200);
        await res.text();
      }
      await keepAliveApi.triggerBatch([{ channel: name, name: 'ka', data: { i: 20 } }]);
      const events = await rec.waitForCount(21);
      assert.deepEqual(events.map((e) => e.i), Array.from({ length: 21 }, (_, i) => i));
      assert.equal(sockets.size, 1, `expected one reused TCP connection, saw ${sockets.size}`);
    } finally {
      agent.destroy();
    }
  });

  it('50 concurrent triggers are all delivered', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('conc');
    const channel = await subscribe(client, name);
    const rec = collect(channel, 'c');
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => api.trigger(name, 'c', { i })));
    for (const r of results) assert.equal(r.status, 200);
    const events = await rec.waitForCount(50);
    assert.deepEqual(events.map((e) => e.i).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  });

  it('every subscriber gets the event, whatever shard it is on', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, () => connectClient(server.port)));
    const name = uniqueChannel('many');
    const channels = await Promise.all(clients.map((c) => subscribe(c, name)));
    const got = channels.map((ch) => waitFor(ch, 'all'));
    await api.trigger(name, 'all', { everyone: true });
    for (const data of await Promise.all(got)) assert.deepEqual(data, { everyone: true });
  });

  it('a 90 KB payload (under the 100 KB limit) is delivered intact', async () => {
    // > 64 KiB also exercises the 64-bit WebSocket length encoding.
    const client = await connectClient(server.port);
    const name = uniqueChannel('large');
    const channel = await subscribe(client, name);
    const blob = 'abcdefghij'.repeat(9 * 1024);
    const got = waitFor(channel, 'large');
    await api.trigger(name, 'large', { blob });
    const data = await got;
    assert.equal(data.blob.length, blob.length);
    assert.ok(data.blob === blob, 'payload corrupted');
  });

  it('a channel with no subscribers still answers 200', async () => {
    const res = await api.trigger(uniqueChannel('nobody'), 'e', { x: 1 });
    assert.equal(res.status, 200);
  });

  it('channel names with every allowed punctuation character work', async () => {
    const client = await connectClient(server.port);
    const name = `${uniqueChannel('p')}_-=@,.;`;
    const channel = await subscribe(client, name);
    const got = waitFor(channel, 'punct');
    await api.trigger(name, 'punct', { ok: 1 });
    assert.deepEqual(await got, { ok: 1 });
  });

  it('raw frames: subscription_succeeded and the event carry string data', async () => {
    const raw = rawConnect(server.port);
    try {
      assert.equal((await raw.next()).event, 'pusher:connection_established');
      const name = uniqueChannel('raw');
      raw.send({ event: 'pusher:subscribe', data: { channel: name } });
      const ok = await raw.next();
      assert.equal(ok.event, 'pusher_internal:subscription_succeeded');
      assert.equal(ok.channel, name);
      assert.equal(typeof ok.data, 'string', `data should be a JSON string: ${JSON.stringify(ok)}`);

      await api.trigger(name, 'raw-event', { hello: 'world' });
      const ev = await raw.next();
      assert.equal(ev.event, 'raw-event');
      assert.equal(ev.channel, name);
      assert.equal(typeof ev.data, 'string', `data should be the string the publisher sent: ${JSON.stringify(ev)}`);
      assert.deepEqual(JSON.parse(ev.data), { hello: 'world' });

      await api.trigger(name, 'raw-text', 'not json');
      const tx = await raw.next();
      assert.equal(tx.data, 'not json');
    } finally {
      await raw.close();
    }
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
