'use strict';
// HTTP API error statuses as seen through the official `pusher` library.
//
// The library validates channel names, socket ids, event-name length and the
// 100-channel limit in trigger() and throws before sending anything, so
// server-side validation is exercised through triggerBatch() (which does not
// validate) or through requests signed by the library's own
// createSignedQueryString() and sent with fetch.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { makeServerClient, startServer, uniqueChannel, APP_ID } = require('./helpers');

/** Run `fn`, expect a rejection with a pusher RequestError of `status`. */
async function expectStatus(fn, status) {
  let err;
  try {
    const res = await fn();
    assert.fail(`expected HTTP ${Array.isArray(status) ? status.join('/') : status}, got ${res.status} ${await res.text()}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err.name, 'PusherRequestError', `not a RequestError: ${err && err.stack}`);
  const statuses = Array.isArray(status) ? status : [status];
  assert.ok(statuses.includes(err.status),
    `expected status ${statuses.join(' or ')}, got ${err.status} (body ${JSON.stringify(err.body)}, cause ${err.error})`);
  assertJsonError(err.body);
  return err;
}

/** Error bodies are JSON objects with a string "error" member. */
function assertJsonError(body) {
  let parsed;
  try { parsed = JSON.parse(body); } catch (_) {
    assert.fail(`error body is not JSON: ${JSON.stringify(body)}`);
  }
  assert.equal(typeof parsed.error, 'string', `error body lacks "error": ${body}`);
}

describe('HTTP API errors', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    api = makeServerClient(server.port);
  });
  after(async () => { if (server) await server.stop(); });

  /** POST to /apps/{appId}{sub} with a body, signed by the pusher library. */
  async function signedPost(sub, body, { client = api, rawBody, appId = APP_ID } = {}) {
    const path = `/apps/${appId}${sub}`;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const qs = client.createSignedQueryString({ method: 'POST', path, body: text });
    return fetch(`http://127.0.0.1:${server.port}${path}?${qs}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: rawBody !== undefined ? rawBody : text,
    });
  }

  async function expectFetchStatus(resPromise, status) {
    const res = await resPromise;
    const text = await res.text();
    const statuses = Array.isArray(status) ? status : [status];
    assert.ok(statuses.includes(res.status), `expected ${statuses.join(' or ')}, got ${res.status}: ${text}`);
    assertJsonError(text);
  }

  it('sanity: correct credentials get 200 {}', async () => {
    const res = await api.trigger(uniqueChannel('ok'), 'e', { a: 1 });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
  });

  it('a wrong secret is rejected with 401', async () => {
    const bad = makeServerClient(server.port, { secret: 'not-the-secret' });
    await expectStatus(() => bad.trigger(uniqueChannel('x'), 'e', { a: 1 }), 401);
  });

  it('a wrong secret is rejected with 401 on batch_events too', async () => {
    const bad = makeServerClient(server.port, { secret: 'not-the-secret' });
    await expectStatus(() => bad.triggerBatch([{ channel: uniqueChannel('x'), name: 'e', data: {} }]), 401);
  });

  it('an unknown auth_key is rejected with 401', async () => {
    const bad = makeServerClient(server.port, { key: 'unknown-key' });
    await expectStatus(() => bad.trigger(uniqueChannel('x'), 'e', { a: 1 }), 401);
  });

  it('an unknown app id gives 404', async () => {
    const bad = makeServerClient(server.port, { appId: 'no-such-app' });
    await expectStatus(() => bad.trigger(uniqueChannel('x'), 'e', { a: 1 }), 404);
  });

  it('a payload over 100 KB gives 413', async () => {
    const big = 'x'.repeat(150 * 1024);
    await expectStatus(() => api.trigger(uniqueChannel('big'), 'e', big), 413);
  });

  it('a batch item over 100 KB gives 413', async () => {
    const big = 'y'.repeat(150 * 1024);
    await expectStatus(() => api.triggerBatch([{ channel: uniqueChannel('big'), name: 'e', data: big }]), 413);
  });

  it('an expired auth_timestamp (20 minutes old) gives 401', async () => {
    const realNow = Date.now;
    let promise;
    Date.now = () => realNow() - 20 * 60 * 1000; // the library signs synchronously
    try {
      promise = api.trigger(uniqueChannel('old'), 'e', { a: 1 });
    } finally {
      Date.now = realNow;
    }
    await expectStatus(() => promise, 401);
  });

  it('a body that does not match body_md5 gives 401', async () => {
    const body = { name: 'e', channels: [uniqueChannel('md5')], data: '{}' };
    const tampered = JSON.stringify({ ...body, data: '{"evil":1}' });
    await expectFetchStatus(signedPost('/events', body, { rawBody: tampered }), 401);
  });

  it('an unsigned request gives 401', async () => {
    const res = fetch(`http://127.0.0.1:${server.port}/apps/${APP_ID}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'e', channels: ['c'], data: '{}' }),
    });
    await expectFetchStatus(res, 401);
  });

  it('an invalid channel name gives 400 (via triggerBatch, which the library does not validate)', async () => {
    await expectStatus(() => api.triggerBatch([{ channel: 'bad channel!', name: 'e', data: {} }]), 400);
  });

  it('a channel name over 200 characters gives 400', async () => {
    await expectStatus(() => api.triggerBatch([{ channel: 'c'.repeat(201), name: 'e', data: {} }]), 400);
  });

  it('an event name over 200 characters gives 400', async () => {
    await expectStatus(() => api.triggerBatch([{ channel: uniqueChannel('x'), name: 'e'.repeat(201), data: {} }]), 400);
  });

  it('a malformed socket_id gives 400', async () => {
    await expectStatus(() => api.triggerBatch([
      { channel: uniqueChannel('x'), name: 'e', data: {}, socket_id: 'not-a-socket' },
    ]), 400);
  });

  it('more than 100 channels in one trigger gives 400', async () => {
    const channels = Array.from({ length: 101 }, (_, i) => `many-${i}`);
    await expectFetchStatus(signedPost('/events', { name: 'e', channels, data: '{}' }), 400);
  });

  it('a batch of more than 10 events is rejected (400 or 413)', async () => {
    const batch = Array.from({ length: 11 }, (_, i) => ({ channel: uniqueChannel('b'), name: 'e', data: { i } }));
    await expectStatus(() => api.triggerBatch(batch), [400, 413]);
  });

  it('a body that is not JSON gives 400', async () => {
    await expectFetchStatus(signedPost('/events', 'this is not json'), 400);
  });

  it('an event without a name gives 400', async () => {
    await expectFetchStatus(signedPost('/events', { channels: [uniqueChannel('x')], data: '{}' }), 400);
  });

  it('the library refuses invalid channel names itself (nothing is sent)', () => {
    assert.throws(() => api.trigger('bad channel!', 'e', {}), /Invalid channel name/);
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
