'use strict';
// Private channels, authorized by the `pusher` library's authorizeChannel()
// through pusher-js 8's channelAuthorization.customHandler (no HTTP auth
// endpoint needed). Presence channels and client events have their own files.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  collect, disconnectAll, expectNothing, makePublisher, makeServerClient, pingBarrier,
  publishedBarrier, rawConnect, socketId, startServer, subscribe, uniqueChannel, waitFor,
  watchMessages,
} = require('./helpers');
const { authedClient } = require('./auth_helpers');

describe('private channels', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    // One keep-alive connection, so its `barrier` events end absence checks.
    api = makePublisher(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  /** Subscribe expecting a refusal; resolves to the subscription_error data. */
  async function expectRefused(client, name) {
    const ch = client.subscribe(name);
    const failure = waitFor(ch, 'pusher:subscription_error');
    const success = expectNothing(ch, 'pusher:subscription_succeeded');
    const status = await failure;
    // The subscribe was answered once; the pong to a later ping comes after anything it queued.
    await success.until(pingBarrier(client));
    assert.equal(ch.subscribed, false);
    return { ch, status };
  }

  it('a correctly signed private subscription succeeds and receives events', async () => {
    const client = await authedClient(server.port, api);
    const name = uniqueChannel('private-ok');
    const ch = await subscribe(client, name);
    assert.equal(ch.subscribed, true);
    const got = waitFor(ch, 'secret');
    await api.trigger(name, 'secret', { s: 1 });
    assert.deepEqual(await got, { s: 1 });
  });

  it('several subscribers on different connections all receive the event', async () => {
    const clients = await Promise.all([1, 2, 3, 4].map(() => authedClient(server.port, api)));
    const name = uniqueChannel('private-many');
    const chans = await Promise.all(clients.map((c) => subscribe(c, name)));
    const got = chans.map((ch) => waitFor(ch, 'e'));
    await api.trigger(name, 'e', 'hello');
    for (const g of got) assert.equal(await g, 'hello');
  });

  it('a private subscription signed with the wrong secret gets pusher:subscription_error 401', async () => {
    const wrong = makeServerClient(server.port, { secret: 'not-the-secret' });
    const client = await authedClient(server.port, wrong);
    const name = uniqueChannel('private-bad');
    const { ch, status } = await expectRefused(client, name);
    // pusher-js passes the server's error data through unchanged:
    // {type:'AuthError', error:'...', status:401}.
    assert.ok(status && typeof status === 'object', JSON.stringify(status));
    assert.equal(status.status, 401, JSON.stringify(status));
    assert.equal(status.type, 'AuthError', JSON.stringify(status));
    assert.equal(typeof status.error, 'string', JSON.stringify(status));

    // The socket stays usable (this client signs everything with the wrong
    // secret; a public channel still works), and nothing published on the
    // refused channel reaches it: the publisher's next event, on the public
    // channel, comes after.
    const pub = await subscribe(client, uniqueChannel('public-after-bad'));
    assert.equal(pub.subscribed, true);
    const none = expectNothing(ch, 'leak');
    const wire = watchMessages(client, (m) => m.channel === name);
    await api.trigger(name, 'leak', {});
    await none.until(publishedBarrier(api, [pub]));
    assert.deepEqual(wire.events, []);
    assert.equal(client.connection.state, 'connected');
  });

  it('a signature made for another socket id is refused (401)', async () => {
    const client = await authedClient(server.port, api, {
      options: {
        channelAuthorization: {
          customHandler: ({ socketId: _own, channelName }, cb) => cb(null, api.authorizeChannel('1234.5678', channelName)),
        },
      },
    });
    const { status } = await expectRefused(client, uniqueChannel('private-stolen'));
    assert.equal(status.status, 401, JSON.stringify(status));
  });

  it('a signature made for another channel is refused (401)', async () => {
    const other = uniqueChannel('private-other');
    const client = await authedClient(server.port, api, {
      options: {
        channelAuthorization: {
          customHandler: ({ socketId: id }, cb) => cb(null, api.authorizeChannel(id, other)),
        },
      },
    });
    const { status } = await expectRefused(client, uniqueChannel('private-wanted'));
    assert.equal(status.status, 401, JSON.stringify(status));
  });

  it('a signature with another app key is refused (401)', async () => {
    const otherKey = makeServerClient(server.port, { key: 'other-key' });
    const client = await authedClient(server.port, otherKey);
    const { status } = await expectRefused(client, uniqueChannel('private-key'));
    assert.equal(status.status, 401, JSON.stringify(status));
  });

  it('a raw private subscribe without auth gets pusher:subscription_error 401', async () => {
    const raw = rawConnect(server.port);
    try {
      const hello = await raw.next();
      assert.equal(hello.event, 'pusher:connection_established');
      const name = uniqueChannel('private-raw');
      raw.send({ event: 'pusher:subscribe', data: { channel: name } });
      const frame = await raw.next();
      assert.equal(frame.event, 'pusher:subscription_error', JSON.stringify(frame));
      assert.equal(frame.channel, name);
      const data = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
      assert.equal(data.status, 401, JSON.stringify(frame));
    } finally {
      await raw.close();
    }
  });

  it('socket_id excludes the sender connection on a private channel', async () => {
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const name = uniqueChannel('private-excl');
    const [cha, chb] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
    const recA = collect(cha, 'e');
    const gotB = waitFor(chb, 'e');
    await api.trigger(name, 'e', { n: 1 }, { socket_id: socketId(a) });
    assert.deepEqual(await gotB, { n: 1 });
    await publishedBarrier(api, [cha]);
    assert.deepEqual(recA.events, []);
  });

  it('after unsubscribing, private events stop arriving', async () => {
    const client = await authedClient(server.port, api);
    const name = uniqueChannel('private-unsub');
    await subscribe(client, name);
    // pusher-js forgets the channel on unsubscribe, so watch the wire.
    const wire = watchMessages(client, (m) => m.channel === name && m.event === 'e');
    client.unsubscribe(name);
    // Handled in order: once this later subscribe succeeded, the unsubscribe is done.
    const still = await subscribe(client, uniqueChannel('barrier'));
    await api.trigger(name, 'e', 1);
    await publishedBarrier(api, [still]);
    assert.deepEqual(wire.events, []);
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
