'use strict';
// A server started with --config FILE uses that file's [server] settings and
// [[apps]] credentials instead of the built-in defaults.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, connectClient, disconnectAll, makeClient, makeServerClient,
  rawConnect, startServer, subscribe, uniqueChannel, waitFor, withTimeout,
} = require('./helpers');

describe('config file', () => {
  let server;

  before(async () => {
    server = await startServer({
      config: appConfig({
        server: { activity_timeout: 42 },
        app: {
          id: 'cfg-app', key: 'cfg-key', secret: 'cfg-secret',
          enable_client_messages: true, max_event_payload_kb: 2,
        },
      }),
    });
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('the handshake carries the configured activity_timeout', async () => {
    const raw = rawConnect(server.port, { key: 'cfg-key' });
    try {
      const frame = await raw.next();
      assert.equal(frame.event, 'pusher:connection_established');
      assert.equal(JSON.parse(frame.data).activity_timeout, 42);
    } finally {
      await raw.close();
    }
    const client = await connectClient(server.port, { key: 'cfg-key' });
    assert.equal(client.connection.activityTimeout, 42_000);
  });

  it('the configured app works end to end', async () => {
    const client = await connectClient(server.port, { key: 'cfg-key' });
    const name = uniqueChannel('cfg');
    const ch = await subscribe(client, name);
    const api = makeServerClient(server.port, { appId: 'cfg-app', key: 'cfg-key', secret: 'cfg-secret' });
    const got = waitFor(ch, 'e');
    await api.trigger(name, 'e', { via: 'config' });
    assert.deepEqual(await got, { via: 'config' });
  });

  it('the per-app max_event_payload_kb is enforced (413 above 2 KB, 200 below)', async () => {
    const api = makeServerClient(server.port, { appId: 'cfg-app', key: 'cfg-key', secret: 'cfg-secret' });
    const ok = await api.trigger(uniqueChannel('small'), 'e', 'a'.repeat(1500));
    assert.equal(ok.status, 200);
    await assert.rejects(api.trigger(uniqueChannel('big'), 'e', 'b'.repeat(3 * 1024)), (err) => {
      assert.equal(err.status, 413, `status ${err.status}: ${err.body}`);
      return true;
    });
  });

  it('the default app-key is not accepted when a config file defines the apps', async () => {
    const client = makeClient(server.port);
    const errors = [];
    client.connection.bind('error', (e) => errors.push(e));
    await withTimeout(new Promise((resolve) => {
      client.connection.bind('state_change', ({ current }) => {
        if (current !== 'connecting') resolve();
      });
    }), 5_000, 'connection with the default key to be refused');
    assert.equal(client.connection.state, 'disconnected');
    assert.ok(errors.some((e) => e.error && e.error.data && e.error.data.code === 4001), JSON.stringify(errors));
  });

  it('the default credentials are not accepted by the HTTP API either', async () => {
    const api = makeServerClient(server.port);
    await assert.rejects(api.trigger(uniqueChannel('x'), 'e', {}), (err) => {
      assert.ok([401, 404].includes(err.status), `status ${err.status}: ${err.body}`);
      return true;
    });
  });
});
