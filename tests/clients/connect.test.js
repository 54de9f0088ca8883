'use strict';
// Connection handshake as seen by pusher-js 8 and by a raw WebSocket.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  assertNoReconnect, connectClient, disconnectAll, makeClient, rawConnect, socketId,
  startServer, waitConnected, withTimeout,
} = require('./helpers');

const SOCKET_ID = /^\d+\.\d+$/;

describe('connect', () => {
  let server;

  before(async () => { server = await startServer(); });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('pusher-js reaches state "connected" with a well-formed socket_id', async () => {
    const client = makeClient(server.port);
    // The constructor starts connecting synchronously.
    assert.equal(client.connection.state, 'connecting');
    const states = [];
    client.connection.bind('state_change', ({ current }) => states.push(current));
    await waitConnected(client);
    assert.equal(client.connection.state, 'connected');
    assert.match(socketId(client), SOCKET_ID);
    assert.deepEqual(states, ['connected']);
  });

  it('pusher-js takes the activity timeout from the handshake (default 120 s)', async () => {
    const client = await connectClient(server.port);
    // pusher-js keeps min(its own default of 120 s, the server's value) in ms.
    assert.equal(client.connection.activityTimeout, 120_000);
  });

  it('every connection gets a distinct socket_id', async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => connectClient(server.port)));
    const ids = clients.map(socketId);
    for (const id of ids) assert.match(id, SOCKET_ID);
    assert.equal(new Set(ids).size, ids.length, `duplicate socket ids: ${ids.join(', ')}`);
  });

  it('a wrong app key is refused with 4001 and pusher-js does not retry', async () => {
    const client = makeClient(server.port, { key: 'wrong-key' });
    assert.equal(client.connection.state, 'connecting');
    const errors = [];
    const states = [];
    client.connection.bind('error', (e) => errors.push(e));
    client.connection.bind('state_change', ({ current }) => states.push(current));

    await withTimeout(new Promise((resolve) => {
      const check = ({ current }) => {
        if (current !== 'connecting' && current !== 'initialized') {
          client.connection.unbind('state_change', check);
          resolve();
        }
      };
      client.connection.bind('state_change', check);
    }), 5_000, 'refused connection to leave "connecting"');

    // What pusher-js 8 really exposes: the handshake's pusher:error (or the
    // 4001 close frame) becomes
    //   {type:'WebSocketError', error:{type:'PusherError', data:{code:4001, message}}}
    // and the 4000-4099 range means "refused": the manager calls
    // disconnect(), i.e. the state goes to "disconnected" with no retry.
    assert.ok(!states.includes('connected'), `states: ${states.join(' -> ')}`);
    const refused = errors.find((e) => e && e.type === 'WebSocketError'
      && e.error && e.error.type === 'PusherError' && e.error.data && e.error.data.code === 4001);
    assert.ok(refused, `expected a WebSocketError wrapping PusherError 4001, got ${JSON.stringify(errors)}`);
    assert.equal(typeof refused.error.data.message, 'string');
    assert.equal(client.connection.state, 'disconnected', `states: ${states.join(' -> ')}`);

    // 'refused' must not reconnect (a 41xx/42xx code or a plain close would).
    assertNoReconnect(client, 'refused client');
    assert.deepEqual(states, ['disconnected']);
  });

  it('raw: first frame is pusher:connection_established with a JSON-string data', async () => {
    const raw = rawConnect(server.port);
    try {
      await raw.opened;
      const frame = await raw.next();
      assert.equal(frame.event, 'pusher:connection_established');
      assert.equal(typeof frame.data, 'string', 'data must be a JSON-encoded string');
      const data = JSON.parse(frame.data);
      assert.match(data.socket_id, SOCKET_ID);
      assert.equal(data.activity_timeout, 120);
    } finally {
      await raw.close();
    }
  });

  it('raw: a wrong key gets pusher:error 4001, then a 4001 close', async () => {
    const raw = rawConnect(server.port, { key: 'wrong-key' });
    const frame = await raw.next();
    assert.equal(frame.event, 'pusher:error');
    const data = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
    assert.equal(data.code, 4001);
    assert.equal(typeof data.message, 'string');
    const { code } = await withTimeout(raw.closed, 5_000, 'server close after pusher:error');
    assert.equal(code, 4001);
  });

  it('raw: pusher:ping is answered with pusher:pong', async () => {
    const raw = rawConnect(server.port);
    try {
      await raw.opened;
      assert.equal((await raw.next()).event, 'pusher:connection_established');
      raw.send({ event: 'pusher:ping', data: {} });
      const frame = await raw.next();
      assert.equal(frame.event, 'pusher:pong');
    } finally {
      await raw.close();
    }
  });

  it('raw: a connection without ?protocol is refused with 4008', async () => {
    const raw = rawConnect(server.port, { query: 'client=js' });
    const frame = await raw.next();
    assert.equal(frame.event, 'pusher:error');
    const data = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
    assert.equal(data.code, 4008);
    assert.equal((await withTimeout(raw.closed, 5_000, 'close after 4008')).code, 4008);
  });

  it('raw: an unsupported protocol version is refused with 4007', async () => {
    const raw = rawConnect(server.port, { query: 'protocol=4&client=js' });
    const frame = await raw.next();
    assert.equal(frame.event, 'pusher:error');
    const data = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
    assert.equal(data.code, 4007);
    assert.equal((await withTimeout(raw.closed, 5_000, 'close after 4007')).code, 4007);
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
