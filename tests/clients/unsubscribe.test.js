'use strict';
// pusher.unsubscribe() stops delivery for that channel only.
//
// pusher:unsubscribe has no acknowledgement, so before publishing we make the
// client subscribe to a fresh "barrier" channel and wait for its
// subscription_succeeded: the server handles one connection's frames in
// order, so by then the unsubscribe has been processed. Checks that an event
// did NOT arrive end on a `barrier` event the same publisher (one keep-alive
// HTTP connection) sends afterwards on a channel the client is still on.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  collect, connectClient, disconnectAll, disconnectClient, makePublisher,
  publishedBarrier, startServer, subscribe, uniqueChannel, waitFor,
  watchMessages,
} = require('./helpers');
const { until } = require('./auth_helpers');

describe('unsubscribe', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    api = makePublisher(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  /** Subscribes to a fresh channel: returns it once the server has handled everything sent before. */
  async function barrier(client) {
    return subscribe(client, uniqueChannel('barrier'));
  }

  it('after unsubscribe the client no longer receives that channel\'s events', async () => {
    const [leaver, stayer] = await Promise.all([connectClient(server.port), connectClient(server.port)]);
    const name = uniqueChannel('unsub');
    const leaverCh = await subscribe(leaver, name);
    const stayerCh = await subscribe(stayer, name);

    // Both receive while subscribed.
    let a = waitFor(leaverCh, 'e');
    let b = waitFor(stayerCh, 'e');
    await api.trigger(name, 'e', { n: 1 });
    assert.deepEqual(await a, { n: 1 });
    assert.deepEqual(await b, { n: 1 });

    leaver.unsubscribe(name);
    const leaverStill = await barrier(leaver);

    // Watch the raw connection: pusher-js would drop events for a channel it
    // forgot, so this checks the server stopped sending them at all.
    const leaked = watchMessages(leaver, (m) => m.channel === name);
    b = waitFor(stayerCh, 'e');
    await api.trigger(name, 'e', { n: 2 });
    assert.deepEqual(await b, { n: 2 });
    await publishedBarrier(api, [leaverStill]);
    leaked.stop();
    assert.deepEqual(leaked.events, [], 'server still sent events for an unsubscribed channel');
  });

  it('unsubscribing one channel leaves the others delivering', async () => {
    const client = await connectClient(server.port);
    const keep = uniqueChannel('keep');
    const drop = uniqueChannel('drop');
    const keepCh = await subscribe(client, keep);
    await subscribe(client, drop);
    client.unsubscribe(drop);
    await barrier(client);

    const leaked = watchMessages(client, (m) => m.channel === drop);
    const got = waitFor(keepCh, 'e');
    await api.trigger([keep, drop], 'e', { both: true });
    assert.deepEqual(await got, { both: true });
    await publishedBarrier(api, [keepCh]);
    leaked.stop();
    assert.deepEqual(leaked.events, []);
  });

  it('resubscribing after unsubscribe delivers again, exactly once', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('again');
    await subscribe(client, name);
    client.unsubscribe(name);
    await barrier(client);
    const ch = await subscribe(client, name);
    const rec = collect(ch, 'e');
    await api.trigger(name, 'e', { back: true });
    await rec.waitForCount(1);
    await publishedBarrier(api, [ch]);
    assert.deepEqual(rec.events, [{ back: true }]);
  });

  it('subscribing twice to one channel does not duplicate delivery', async () => {
    const client = await connectClient(server.port);
    const name = uniqueChannel('dup');
    const ch = await subscribe(client, name);
    // pusher-js will not send a second pusher:subscribe for the same channel,
    // so send one by hand on the same connection.
    client.send_event('pusher:subscribe', { channel: name });
    await barrier(client);
    const raw = watchMessages(client, (m) => m.channel === name && m.event === 'e');
    await api.trigger(name, 'e', { once: true });
    await publishedBarrier(api, [ch]);
    raw.stop();
    assert.equal(raw.events.length, 1, `got ${raw.events.length} copies`);
  });

  it('a disconnected client stops receiving; others are unaffected', async () => {
    const [gone, stays] = await Promise.all([connectClient(server.port), connectClient(server.port)]);
    const name = uniqueChannel('disc');
    const goneCh = await subscribe(gone, name);
    const staysCh = await subscribe(stays, name);
    await disconnectClient(gone);
    const leaked = collect(goneCh, 'e');
    const got = waitFor(staysCh, 'e');
    const res = await api.trigger(name, 'e', { after: 'disconnect' });
    assert.equal(res.status, 200);
    assert.deepEqual(await got, { after: 'disconnect' });
    // The disconnected client has no socket to wait on: pusher-js delivers
    // nothing after disconnect(), whatever the server does. What bounds it is
    // the server side: the channel now has exactly one subscriber.
    await until(async () => {
      const info = await api.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
      assert.equal(info.status, 200);
      return (await info.json()).subscription_count === 1;
    }, `channel ${name} back to one subscriber`);
    assert.deepEqual(leaked.events, []);
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
