'use strict';
// Keep-alive: with a short activity_timeout, pusher-js's own ping/pong keeps
// the connection up, and the server pings a silent client and drops it with
// 4201 when no pong comes back within pong_timeout.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, connectClient, disconnectAll, rawConnect, sleep, startServer,
  subscribe, uniqueChannel, waitFor, makeServerClient, withTimeout,
} = require('./helpers');

describe('activity timeout and pings', () => {
  let server;

  before(async () => {
    server = await startServer({ config: appConfig({ server: { activity_timeout: 1, pong_timeout: 1 } }) });
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('with a 1 s activity_timeout pusher-js keeps the connection alive and never reconnects', async () => {
    // pongTimeout 1 s: without a pusher:pong pusher-js would reconnect ("connecting").
    const client = await connectClient(server.port, { pongTimeout: 1_000 });
    assert.equal(client.connection.activityTimeout, 1_000);
    const sent = [];
    const origSend = client.connection.send_event.bind(client.connection);
    client.connection.send_event = (name, data, channel) => { sent.push(name); return origSend(name, data, channel); };
    const pongs = [];
    client.connection.bind('message', (m) => { if (m.event === 'pusher:pong') pongs.push(m); });
    const states = [];
    client.connection.bind('state_change', ({ current }) => states.push(current));

    await sleep(4_000);
    // Whoever pings first: the server (pusher-js answers pusher:pong and
    // resets its own timer) or pusher-js (pusher:ping, or a WebSocket ping
    // frame where the transport supports it, answered by the server).
    const exchanged = sent.includes('pusher:pong') || (sent.includes('pusher:ping') && pongs.length > 0);
    assert.ok(exchanged, `no ping/pong exchange in 4 s: pusher-js sent ${JSON.stringify(sent)}, got ${pongs.length} pongs`);
    assert.deepEqual(states, [], `connection changed state: ${states.join(' -> ')}`);

    // Still delivering.
    const ch = await subscribe(client, uniqueChannel('alive'));
    const got = waitFor(ch, 'e');
    await makeServerClient(server.port).trigger(ch.name, 'e', { still: 'here' });
    assert.deepEqual(await got, { still: 'here' });
  });

  it('the server pings a silent client and closes it with 4201 when no pong comes', async () => {
    const raw = rawConnect(server.port, { wsOptions: { autoPong: false } });
    let wsPing = false;
    raw.ws.on('ping', () => { wsPing = true; });
    assert.equal((await raw.next()).event, 'pusher:connection_established');
    const start = Date.now();
    const { code } = await withTimeout(raw.closed, 8_000,
      'server closing a silent client (activity_timeout 1 s + pong_timeout 1 s)');
    const elapsed = Date.now() - start;
    const pinged = wsPing || raw.frames.some((f) => f.event === 'pusher:ping');
    assert.ok(pinged, `server closed without pinging first; frames: ${JSON.stringify(raw.frames)}`);
    assert.equal(code, 4201, `close code ${code} after ${elapsed} ms; frames: ${JSON.stringify(raw.frames)}`);
    assert.ok(elapsed >= 1_500, `closed too early (${elapsed} ms)`);
  });

  it('a client that answers the server\'s pings stays connected', async () => {
    const raw = rawConnect(server.port);
    raw.ws.on('message', (buf) => {
      let f;
      try { f = JSON.parse(buf.toString()); } catch (_) { return; }
      if (f.event === 'pusher:ping') raw.send({ event: 'pusher:pong', data: {} });
    });
    try {
      assert.equal((await raw.next()).event, 'pusher:connection_established');
      await sleep(4_500);
      assert.equal(raw.ws.readyState, raw.ws.OPEN,
        `closed; frames: ${JSON.stringify(raw.frames)}`);
    } finally {
      await raw.close();
    }
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
