'use strict';
// The config file's apps reloaded on SIGHUP (issue 15), seen by real
// clients within 1 s of the signal: an added app serves pusher-js, a
// rotated secret signs the `pusher` library's next request (the old one is
// refused), a disabled app's pusher-js client gets 4003, and a file that
// does not parse changes nothing.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const {
  connectClient, disconnectAll, makeClient, makeServerClient, startServer, subscribe,
  uniqueChannel, waitConnected, waitFor,
} = require('./helpers');
const { unrefCloseTimer, until } = require('./auth_helpers');

const BOUND_MS = 1000;

function appsToml(apps) {
  return apps.map((a) => [
    '[[apps]]',
    `id = ${JSON.stringify(a.appId)}`,
    `key = ${JSON.stringify(a.key)}`,
    `secret = ${JSON.stringify(a.secret)}`,
    ...(a.extra || []),
    '',
  ].join('\n')).join('\n');
}

async function within(ms, what, check) {
  const start = Date.now();
  for (;;) {
    if (await check()) return;
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function triggerStatus(port, creds) {
  try {
    return (await makeServerClient(port, creds).trigger('probe', 'e', {})).status;
  } catch (err) {
    return err.status;
  }
}

async function connects(port, key) {
  try {
    await waitConnected(makeClient(port, { key }), 2_000);
    return true;
  } catch (_) {
    return false;
  }
}

describe('apps reloaded on SIGHUP', () => {
  const A = { appId: 'a', key: 'key-a', secret: 'secret-a' };
  const C = { appId: 'c', key: 'key-c', secret: 'secret-c' };
  let server;
  let file;
  const reload = (apps) => {
    fs.writeFileSync(file, typeof apps === 'string' ? apps : appsToml(apps));
    server.proc.kill('SIGHUP');
    return Date.now();
  };

  before(async () => {
    server = await startServer({ config: appsToml([A]) });
    file = server.args[server.args.indexOf('--config') + 1];
  });
  after(async () => {
    await disconnectAll();
    if (server) await server.stop();
  });

  it('an added app and a rotated secret are used at once', async () => {
    const client = await connectClient(server.port, { key: A.key });
    const name = uniqueChannel('reload');
    const channel = await subscribe(client, name);
    const rotated = { ...A, secret: 'rotated' };
    const t0 = reload([rotated, C]);
    await within(BOUND_MS - (Date.now() - t0), 'the rotated secret', async () => (await triggerStatus(server.port, rotated)) === 200);
    assert.equal(await triggerStatus(server.port, A), 401);
    assert.ok(await connects(server.port, C.key), 'the added app serves pusher-js');
    const got = waitFor(channel, 'e');
    await makeServerClient(server.port, rotated).trigger(name, 'e', { still: 'here' });
    assert.deepEqual(await got, { still: 'here' });
  });

  it('a file that does not parse changes nothing', async () => {
    reload('[[apps]]\nid = ');
    await within(5_000, 'the refusal in the log', () => server.stderr().includes('refused, apps unchanged'));
    assert.ok(await connects(server.port, C.key));
    assert.equal(await triggerStatus(server.port, { ...A, secret: 'rotated' }), 200);
  });

  it("a disabled app's pusher-js client gets 4003", async () => {
    // Only this client of the app: pusher-js keeps a process alive 30 s
    // after a 4003 close unless its timer is unref'd (auth_helpers.js).
    await disconnectAll();
    const client = await connectClient(server.port, { key: C.key });
    unrefCloseTimer(client);
    const refused = new Promise((resolve) => {
      client.connection.bind('error', (err) => {
        if (err && err.data && err.data.code === 4003) resolve();
      });
    });
    const t0 = reload([{ ...A, secret: 'rotated' }, { ...C, extra: ['enabled = false'] }]);
    await refused;
    assert.ok(Date.now() - t0 < BOUND_MS, `4003 after ${Date.now() - t0} ms`);
    // Each shard swaps in the new apps on its own: the API connection's
    // shard may do so just after the client's did. Within the bound, 403.
    await until(async () => (await triggerStatus(server.port, C)) === 403, 'the API refusing the disabled app',
      Math.max(0, t0 + BOUND_MS - Date.now()));
  });
});
