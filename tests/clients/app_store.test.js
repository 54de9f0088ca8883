'use strict';
// Apps from a PostgreSQL table, changed while the server runs (issue 15),
// seen by real clients: pusher-js connects to an app inserted into a table
// made with soketi's documented SQL, the `pusher` library signs with a
// rotated secret (and the old one is refused), a disabled app's pusher-js
// client gets 4003 and is closed, and with the database stopped and started
// again the known apps keep working and later changes are seen. Each change
// is polled for with a deadline of 1 s from the commit.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const {
  binaryPath, connectClient, disconnectAll, makeClient, makeServerClient, startServer,
  subscribe, uniqueChannel, waitConnected, waitFor,
} = require('./helpers');
const { unrefCloseTimer } = require('./auth_helpers');
const { startPostgres } = require('./pg');

const BOUND_MS = 1000;

// soketi's documented PostgreSQL table, unchanged.
const SOKETI_TABLE = `CREATE TABLE IF NOT EXISTS apps (
    id varchar(255) PRIMARY KEY,
    "key" varchar(255) NOT NULL,
    secret varchar(255) NOT NULL,
    max_connections integer NOT NULL,
    enable_client_messages smallint NOT NULL,
    "enabled" smallint NOT NULL,
    max_backend_events_per_sec integer NOT NULL,
    max_client_events_per_sec integer NOT NULL,
    max_read_req_per_sec integer NOT NULL,
    max_presence_members_per_channel integer DEFAULT NULL,
    max_presence_member_size_in_kb integer DEFAULT NULL,
    max_channel_name_length integer DEFAULT NULL,
    max_event_channels_at_once integer DEFAULT NULL,
    max_event_name_length integer DEFAULT NULL,
    max_event_payload_in_kb integer DEFAULT NULL,
    max_event_batch_size integer DEFAULT NULL,
    webhooks json,
    enable_user_authentication smallint NOT NULL
);`;

const insert = (id, key, secret) => `INSERT INTO apps (id, "key", secret, max_connections,
  enable_client_messages, "enabled", max_backend_events_per_sec, max_client_events_per_sec,
  max_read_req_per_sec, webhooks, enable_user_authentication)
  VALUES ('${id}', '${key}', '${secret}', -1, 1, 1, -1, -1, -1, '[]', 0)`;

/** Polls `check` until true; fails after `ms`. Returns the time it took. */
async function within(ms, what, check) {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The HTTP status of a trigger signed with these credentials. */
async function triggerStatus(port, creds, channel = 'probe') {
  const api = makeServerClient(port, creds);
  try {
    const res = await api.trigger(channel, 'e', { n: 1 });
    return res.status;
  } catch (err) {
    return err.status;
  }
}

/** Whether pusher-js reaches `connected` with `key` (the client is kept for disconnectAll). */
async function connects(port, key) {
  try {
    await waitConnected(makeClient(port, { key }), 2_000);
    return true;
  } catch (_) {
    return false;
  }
}

describe('apps from PostgreSQL, changed live', () => {
  let pg;
  let server;
  let configDir;
  const A = { appId: 'a', key: 'key-a', secret: 'secret-a' };
  const B = { appId: 'b', key: 'key-b', secret: 'secret-b' };
  const C = { appId: 'c', key: 'key-c', secret: 'secret-c' };

  before(async () => {
    pg = await startPostgres();
    pg.sql(SOKETI_TABLE);
    pg.sql(insert('a', 'key-a', 'secret-a'));
    pg.sql(insert('b', 'key-b', 'secret-b'));
    const config = `[app_store]\ndriver = "postgres"\nurl = "${pg.url}"\n`;
    configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-js-store-'));
    const file = path.join(configDir, 'config.toml');
    fs.writeFileSync(file, config);
    const init = spawnSync(binaryPath(), ['--config', file, 'app-store', 'init'], { encoding: 'utf8' });
    assert.equal(init.status, 0, `app-store init: ${init.stdout}${init.stderr}`);
    server = await startServer({ config });
  });

  after(async () => {
    await disconnectAll();
    if (server) {
      const log = server.stderr();
      await server.stop();
      assert.ok(!log.includes(pg.password), 'the database password is never logged');
    }
    if (pg) await pg.stop();
    if (configDir) fs.rmSync(configDir, { recursive: true, force: true });
  });

  it('an inserted app is served to pusher-js and the pusher library', async () => {
    assert.equal(await connects(server.port, C.key), false, 'not yet in the table');
    const t0 = Date.now();
    pg.sql(insert('c', 'key-c', 'secret-c'));
    await within(BOUND_MS - (Date.now() - t0), 'pusher-js connects to the new app', () => connects(server.port, C.key));
    const client = await connectClient(server.port, { key: C.key });
    const name = uniqueChannel('new-app');
    const channel = await subscribe(client, name);
    const got = waitFor(channel, 'e');
    await makeServerClient(server.port, C).trigger(name, 'e', { hello: 'c' });
    assert.deepEqual(await got, { hello: 'c' });
  });

  it('a rotated secret signs the next request; the old one is refused', async () => {
    const client = await connectClient(server.port, { key: A.key });
    const name = uniqueChannel('rotate');
    const channel = await subscribe(client, name);
    const rotated = { ...A, secret: 'rotated-secret' };
    const t0 = Date.now();
    pg.sql("UPDATE apps SET secret = 'rotated-secret' WHERE id = 'a'");
    await within(BOUND_MS - (Date.now() - t0), 'the rotated secret', async () => (await triggerStatus(server.port, rotated)) === 200);
    assert.equal(await triggerStatus(server.port, A), 401, 'the old secret');
    const got = waitFor(channel, 'e');
    await makeServerClient(server.port, rotated).trigger(name, 'e', { signed: 'new' });
    assert.deepEqual(await got, { signed: 'new' }, 'the connected client is untouched');
  });

  it("a disabled app's pusher-js client gets 4003 and is closed; its API gets 403", async () => {
    const client = await connectClient(server.port, { key: B.key });
    // pusher-js's 30 s close timer after a 4000-4099 close (auth_helpers.js).
    unrefCloseTimer(client);
    const refused = new Promise((resolve) => {
      client.connection.bind('error', (err) => {
        if (err && err.data && err.data.code === 4003) resolve(err.data);
      });
    });
    const left = new Promise((resolve) => {
      client.connection.bind('state_change', ({ current }) => {
        if (current !== 'connected') resolve(current);
      });
    });
    const t0 = Date.now();
    pg.sql('UPDATE apps SET "enabled" = 0 WHERE id = \'b\'');
    const error = await refused;
    assert.ok(Date.now() - t0 < BOUND_MS, `4003 after ${Date.now() - t0} ms`);
    assert.match(error.message, /disabled/);
    await left;
    assert.equal(await triggerStatus(server.port, B), 403);
    assert.equal(await connects(server.port, B.key), false, 'new connections are refused');
  });

  it('with the database stopped the known apps keep working; changes after its restart are seen', async () => {
    const rotated = { ...A, secret: 'rotated-secret' };
    const client = await connectClient(server.port, { key: A.key });
    const name = uniqueChannel('outage');
    const channel = await subscribe(client, name);
    await pg.pause();
    const got = waitFor(channel, 'e');
    await makeServerClient(server.port, rotated).trigger(name, 'e', { during: 'outage' });
    assert.deepEqual(await got, { during: 'outage' });
    assert.ok(await connects(server.port, C.key), 'pusher-js still connects to a known app');
    await pg.resume();
    const again = { ...A, secret: 'after-restart' };
    await within(10_000, 'the store reconnects', async () => {
      try {
        pg.sql("UPDATE apps SET secret = 'after-restart' WHERE id = 'a'");
      } catch (_) { return false; }
      return true;
    });
    await within(5_000, 'the change after the restart', async () => (await triggerStatus(server.port, again)) === 200);
    const got2 = waitFor(channel, 'e');
    await makeServerClient(server.port, again).trigger(name, 'e', { after: 'restart' });
    assert.deepEqual(await got2, { after: 'restart' });
  });
});
