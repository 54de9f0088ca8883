'use strict';
// Channel queries through the `pusher` library: GET /channels,
// /channels/{name}, /channels/{name}/users (server.get({path, params})) and
// the `info` attributes of trigger / triggerBatch, with subscribers spread
// over both shards; bodies and 400s.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, connectClient, connectOnShard, disconnectAll, disconnectClient, makeServerClient, startServer,
  subscribe, uniqueChannel,
} = require('./helpers');
const { authedClient, until } = require('./auth_helpers');

describe('channel queries', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer({ config: appConfig({ app: { enable_subscription_count: true } }) });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  const get = async (path, params) => {
    const res = await api.get({ path, params });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') || '', /application\/json/);
    return res.json();
  };

  /** Expect a 400 with a JSON {error} body from api.get. */
  async function expect400(path, params) {
    await assert.rejects(api.get({ path, params }), (err) => {
      assert.equal(err.name, 'PusherRequestError', String(err && err.stack));
      assert.equal(err.status, 400, `status ${err.status}: ${err.body}`);
      const body = JSON.parse(err.body);
      assert.equal(typeof body.error, 'string', err.body);
      return true;
    });
  }

  /** n clients subscribed to `name` (presence: user ids from `users`). */
  async function subscribers(name, n, users) {
    const out = [];
    for (let i = 0; i < n; i++) {
      const presence = users ? { user_id: users[i], user_info: {} } : undefined;
      const c = await authedClient(server.port, api, { presence });
      await subscribe(c, name);
      out.push(c);
    }
    return out;
  }

  it('GET /channels lists occupied channels (any kind), with an empty attribute object each', async () => {
    const tag = uniqueChannel('q');
    const pub = `${tag}-pub`;
    const priv = `private-${tag}-priv`;
    const pres = `presence-${tag}-pres`;
    await subscribers(pub, 2);
    await subscribers(priv, 1);
    await subscribers(pres, 1, ['u1']);
    const body = await get('/channels');
    assert.deepEqual(body.channels[pub], {});
    assert.deepEqual(body.channels[priv], {});
    assert.deepEqual(body.channels[pres], {});
    assert.equal(body.channels[`${tag}-nobody`], undefined);
  });

  it('GET /channels with nothing subscribed is {"channels":{}} (after everyone left)', async () => {
    const tag = uniqueChannel('qempty');
    const clients = await subscribers(tag, 2);
    assert.ok((await get('/channels', { filter_by_prefix: tag })).channels[tag]);
    for (const c of clients) await disconnectClient(c);
    let body;
    await until(async () => {
      body = await get('/channels', { filter_by_prefix: tag });
      return Object.keys(body.channels).length === 0;
    }, 'the channel leaving GET /channels').catch(() => {});
    assert.deepEqual(body, { channels: {} });
  });

  it('GET /channels?filter_by_prefix= only returns matching channels', async () => {
    const tag = uniqueChannel('qpre');
    await subscribers(`${tag}-a`, 1);
    await subscribers(`${tag}-b`, 1);
    await subscribers(`other-${tag}`, 1);
    const body = await get('/channels', { filter_by_prefix: `${tag}-` });
    assert.deepEqual(Object.keys(body.channels).sort(), [`${tag}-a`, `${tag}-b`]);
  });

  it('GET /channels?filter_by_prefix=presence-&info=user_count counts distinct users', async () => {
    const tag = uniqueChannel('qu');
    const room1 = `presence-${tag}-1`;
    const room2 = `presence-${tag}-2`;
    await subscribers(room1, 3, ['a', 'b', 'a']);
    await subscribers(room2, 1, ['z']);
    const body = await get('/channels', { filter_by_prefix: `presence-${tag}`, info: 'user_count' });
    assert.deepEqual(body, { channels: { [room1]: { user_count: 2 }, [room2]: { user_count: 1 } } });
  });

  it('GET /channels?info=user_count without a presence- prefix is a 400', async () => {
    await expect400('/channels', { info: 'user_count' });
    await expect400('/channels', { info: 'user_count', filter_by_prefix: 'private-' });
  });

  it('GET /channels with an unknown info attribute is a 400', async () => {
    await expect400('/channels', { info: 'bogus' });
  });

  it('GET /channels/{name}: occupied false for an unknown channel, true with subscribers', async () => {
    const name = uniqueChannel('qone');
    assert.deepEqual(await get(`/channels/${name}`), { occupied: false });
    await subscribers(name, 1);
    assert.deepEqual(await get(`/channels/${name}`), { occupied: true });
  });

  it('GET /channels/{name}?info=subscription_count sums subscribers on every shard', async () => {
    const name = uniqueChannel('qcount');
    const clients = await subscribers(name, 4);
    assert.deepEqual(await get(`/channels/${name}`, { info: 'subscription_count' }), { occupied: true, subscription_count: 4 });
    await disconnectClient(clients[0]);
    await until(async () => (await get(`/channels/${name}`, { info: 'subscription_count' })).subscription_count === 3,
      'subscription_count dropping to 3').catch(() => {});
    assert.deepEqual(await get(`/channels/${name}`, { info: 'subscription_count' }), { occupied: true, subscription_count: 3 });
  });

  it('GET /channels/{presence}?info=user_count,subscription_count', async () => {
    const name = `presence-${uniqueChannel('qp')}`;
    await subscribers(name, 3, ['x', 'y', 'x']);
    assert.deepEqual(await get(`/channels/${name}`, { info: 'user_count,subscription_count' }),
      { occupied: true, user_count: 2, subscription_count: 3 });
  });

  it('GET /channels/{name}: 400 for user_count on a non-presence channel, unknown attributes, bad names', async () => {
    await expect400(`/channels/${uniqueChannel('q400')}`, { info: 'user_count' });
    await expect400(`/channels/private-${uniqueChannel('q400')}`, { info: 'user_count' });
    await expect400(`/channels/${uniqueChannel('q400')}`, { info: 'nope' });
    await expect400(`/channels/${encodeURIComponent('bad channel!')}`);
    await expect400(`/channels/${'x'.repeat(201)}`);
  });

  it('GET /channels/{presence}/users lists each user once', async () => {
    const name = `presence-${uniqueChannel('qusers')}`;
    await subscribers(name, 4, ['amy', 'bo', 'amy', 'cy']);
    const body = await get(`/channels/${name}/users`);
    assert.deepEqual(Object.keys(body), ['users']);
    assert.deepEqual(body.users.map((u) => u.id).sort(), ['amy', 'bo', 'cy']);
    for (const u of body.users) assert.deepEqual(Object.keys(u), ['id']);
  });

  it('GET /channels/{presence}/users of an empty channel is {"users":[]}', async () => {
    assert.deepEqual(await get(`/channels/presence-${uniqueChannel('qnone')}/users`), { users: [] });
  });

  it('GET /channels/{name}/users of a non-presence channel is a 400', async () => {
    const name = uniqueChannel('qnp');
    await subscribers(name, 1);
    await expect400(`/channels/${name}/users`);
    await expect400(`/channels/private-${uniqueChannel('qnp')}/users`);
  });

  it('trigger with info=subscription_count returns the counts per channel', async () => {
    const a = uniqueChannel('qta');
    const b = uniqueChannel('qtb');
    await subscribers(a, 2);
    const res = await api.trigger([a, b], 'e', {}, { info: 'subscription_count' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { channels: { [a]: { subscription_count: 2 }, [b]: { subscription_count: 0 } } });
  });

  it('trigger on a presence channel with info=user_count,subscription_count', async () => {
    const name = `presence-${uniqueChannel('qtp')}`;
    await subscribers(name, 3, ['p', 'q', 'p']);
    const res = await api.trigger(name, 'e', {}, { info: 'user_count,subscription_count' });
    assert.deepEqual(await res.json(), { channels: { [name]: { user_count: 2, subscription_count: 3 } } });
  });

  it('trigger without info returns an empty object', async () => {
    const res = await api.trigger(uniqueChannel('qnoinfo'), 'e', {});
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
  });

  it('trigger with an unknown info attribute is a 400', async () => {
    await assert.rejects(api.trigger(uniqueChannel('qbad'), 'e', {}, { info: 'bogus' }), (err) => {
      assert.equal(err.status, 400, `status ${err.status}: ${err.body}`);
      return true;
    });
  });

  it('triggerBatch with info per item returns a batch array in request order', async () => {
    const a = uniqueChannel('qba');
    const p = `presence-${uniqueChannel('qbp')}`;
    await subscribers(a, 3);
    await subscribers(p, 2, ['m', 'n']);
    const res = await api.triggerBatch([
      { channel: a, name: 'e', data: '1', info: 'subscription_count' },
      { channel: p, name: 'e', data: '2', info: 'user_count' },
      { channel: a, name: 'e', data: '3' },
    ]);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { batch: [{ subscription_count: 3 }, { user_count: 2 }, {}] });
  });

  it('GET /connections (the library\'s generic get) counts open connections on both shards', async () => {
    const count = async () => (await get('/connections')).connections;
    // Earlier tests' clients are disconnected by afterEach; wait for the server to see it.
    await until(async () => (await count()) === 0, 'no connections left from earlier tests');
    const on0 = await Promise.all([1, 2].map(() => connectOnShard(() => connectClient(server.port), 0)));
    const on1 = await connectOnShard(() => connectClient(server.port), 1);
    // connectOnShard dropped the clients that landed elsewhere: wait until those closes are seen.
    let n;
    await until(async () => (n = await count()) === 3, 'GET /connections counting 3').catch(() => {});
    assert.equal(n, 3);
    await disconnectClient(on1);
    await disconnectClient(on0[0]);
    await until(async () => (n = await count()) === 1, 'GET /connections counting 1').catch(() => {});
    assert.equal(n, 1);
    // Signed like every endpoint: a wrong secret is a 401.
    const bad = makeServerClient(server.port, { secret: 'not-the-secret' });
    await assert.rejects(bad.get({ path: '/connections' }), (err) => {
      assert.equal(err.status, 401, `status ${err.status}: ${err.body}`);
      return true;
    });
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});
