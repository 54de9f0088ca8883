'use strict';
// User authentication through pusher-js: pusher.signin() with
// userAuthentication.customHandler signed by the `pusher` library's
// authenticateUser(); server-to-user events (sendToUser → pusher.user.bind),
// terminateUserConnections (pusher-js error 4009), watchlist online/offline
// events (pusher.user.watchlist.bind), and the sign-in deadline of apps with
// enable_user_authentication.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, assertNoReconnect, collect, connectOnShard, disconnectAll, disconnectClient, expectNothing, makePublisher, makeServerClient,
  pingBarrier, publishedBarrier, rawConnect, shardOf, sleep, socketId, startServer, subscribe, uniqueChannel, waitFor,
  watchMessages,
} = require('./helpers');
const {
  authedClient, collectConnectionErrors, signIn, unrefCloseTimer, until, waitConnectionError, waitState,
  waitUserEvent,
} = require('./auth_helpers');


/**
 * Record watchlist events of one kind ('online' / 'offline'): the set of user
 * ids announced so far (the server may split one announcement over several
 * pusher_internal:watchlist_events messages).
 */
function watchIds(client, kind) {
  const ids = [];
  const events = [];
  client.user.watchlist.bind(kind, (e) => {
    events.push(e);
    for (const id of e.user_ids) ids.push(id);
  });
  return { ids, events, sorted: () => [...ids].sort() };
}

describe('user sign-in', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer({
      config: appConfig({ app: { enable_user_authentication: true, user_authentication_timeout: 120 } }),
    });
    // One keep-alive connection: its later events follow its earlier ones
    // to every socket, so absence checks end on them.
    api = makePublisher(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  const signedInClient = async (user) => {
    const c = await authedClient(server.port, api, { user });
    await signIn(c);
    return c;
  };

  it('pusher.signin() gets pusher:signin_success with the signed user_data', async () => {
    const user = { id: 'u-signin', user_info: { name: 'Sig' } };
    const client = await authedClient(server.port, api, { user });
    const data = await signIn(client);
    assert.equal(typeof data.user_data, 'string', JSON.stringify(data));
    assert.deepEqual(JSON.parse(data.user_data), user);
    assert.deepEqual(client.user.user_data, user);
    assert.equal(client.user.serverToUserChannel.name, '#server-to-user-u-signin');
    assert.equal(client.user.serverToUserChannel.subscribed, true);
  });

  it('sendToUser reaches every connection of that user and no one else', async () => {
    const [a1, a2, b] = await Promise.all([
      signedInClient({ id: 'ann' }), signedInClient({ id: 'ann' }), signedInClient({ id: 'ben' }),
    ]);
    const got1 = waitUserEvent(a1, 'note');
    const got2 = waitUserEvent(a2, 'note');
    const recB = collect(b.user, 'note');
    await api.sendToUser('ann', 'note', { hello: 'ann' });
    assert.deepEqual(await got1, { hello: 'ann' });
    assert.deepEqual(await got2, { hello: 'ann' });

    // The publisher's next event, to ben, comes after anything for ann would have.
    await api.sendToUser('ben', 'note', 'for ben');
    assert.deepEqual(await recB.waitForCount(1), ['for ben']);
  });

  it('a connection that has not signed in does not get server-to-user events', async () => {
    const signed = await signedInClient({ id: 'cat' });
    const anon = await authedClient(server.port, api);
    const anonCh = await subscribe(anon, uniqueChannel('plain'));
    const wire = watchMessages(anon, (m) => m.event === 'note');
    const got = waitUserEvent(signed, 'note');
    await api.sendToUser('cat', 'note', 1);
    await got;
    await publishedBarrier(api, [anonCh]);
    assert.deepEqual(wire.events, []);
  });

  it('#server-to-user-{id} cannot be subscribed to without signing in as {id}', async () => {
    const raw = rawConnect(server.port);
    try {
      assert.equal((await raw.next()).event, 'pusher:connection_established');
      raw.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-dan', auth: '' } });
      const frame = await raw.next();
      assert.equal(frame.event, 'pusher:subscription_error', JSON.stringify(frame));
      assert.equal(frame.channel, '#server-to-user-dan');
      const plain = uniqueChannel('plain');
      raw.send({ event: 'pusher:subscribe', data: { channel: plain } });
      assert.equal((await raw.next()).event, 'pusher_internal:subscription_succeeded');
      const dan = await signedInClient({ id: 'dan' });
      const got = waitUserEvent(dan, 'note');
      await api.sendToUser('dan', 'note', 'private');
      await got;
      // The publisher's next event, on the raw socket's channel, comes after.
      await api.trigger(plain, 'barrier', {});
      for (;;) {
        const f = await raw.next();
        if (f.event === 'barrier') break;
      }
      assert.equal(api.connectionsOpened(), 1);
      assert.ok(!raw.frames.some((f) => f.event === 'note'), JSON.stringify(raw.frames));
    } finally {
      await raw.close();
    }
  });

  it('a sign-in signed with the wrong secret gets pusher:error 4009 and no signin_success', async () => {
    const wrong = makeServerClient(server.port, { secret: 'wrong-secret' });
    const client = await authedClient(server.port, wrong, { user: { id: 'mallory' } });
    const err = waitConnectionError(client, 4009);
    const none = expectNothing(client, 'pusher:signin_success');
    client.signin();
    const e = await err;
    assert.equal(e.type, 'PusherError');
    // The sign-in was answered; the pong to a later ping comes after anything it queued.
    await none.until(pingBarrier(client));
    assert.equal(client.user.user_data, null);
    assert.equal(client.user.serverToUserChannel, null);
  });

  it('terminateUserConnections closes that user\'s connections with 4009 and no others', async () => {
    const [e1, e2, f] = await Promise.all([
      signedInClient({ id: 'eve' }), signedInClient({ id: 'eve' }), signedInClient({ id: 'fay' }),
    ]);
    unrefCloseTimer(e1);
    unrefCloseTimer(e2);
    const err1 = waitConnectionError(e1, 4009);
    const err2 = waitConnectionError(e2, 4009);
    const down1 = waitState(e1, 'disconnected');
    const down2 = waitState(e2, 'disconnected');
    const fErrors = collectConnectionErrors(f);
    const fStates = [];
    f.connection.bind('state_change', ({ current }) => fStates.push(current));

    const res = await api.terminateUserConnections('eve');
    assert.equal(res.status, 200);
    await Promise.all([err1, err2, down1, down2]);

    // pusher-js treats 4000-4099 as "refused": it disconnects for good
    // rather than arming its retry timer (what a reconnect would wait on).
    assertNoReconnect(e1, 'e1');
    assertNoReconnect(e2, 'e2');

    assert.equal(f.connection.state, 'connected');
    assert.deepEqual(fStates, []);
    assert.deepEqual(fErrors.errors, []);
    const got = waitUserEvent(f, 'still');
    await api.sendToUser('fay', 'still', 'here');
    assert.equal(await got, 'here');
  });

  it('terminateUserConnections removes the user from presence channels', async () => {
    const name = uniqueChannel('presence-term');
    const watcherC = await authedClient(server.port, api, { presence: { user_id: 'stay', user_info: {} } });
    const wch = await subscribe(watcherC, name);
    const gone = await authedClient(server.port, api, { user: { id: 'leaver' }, presence: { user_id: 'leaver', user_info: {} } });
    await signIn(gone);
    unrefCloseTimer(gone);
    const added = waitFor(wch, 'pusher:member_added');
    await subscribe(gone, name);
    await added;
    const removed = waitFor(wch, 'pusher:member_removed');
    await api.terminateUserConnections('leaver');
    assert.equal((await removed).id, 'leaver');
    assert.equal(wch.members.count, 1);
  });

  it('terminateUserConnections for a user with no connections succeeds', async () => {
    const res = await api.terminateUserConnections('nobody-here');
    assert.equal(res.status, 200);
  });

  it('watchlist: online for watched users already online at sign-in, then online/offline as they come and go', async () => {
    const tag = uniqueChannel('w');
    const bob = `${tag}-bob`;
    const carol = `${tag}-carol`;
    const dora = `${tag}-dora`;
    const bobClient = await signedInClient({ id: bob });

    const watcher = await authedClient(server.port, api, { user: { id: `${tag}-alice`, watchlist: [bob, carol, dora] } });
    const online = watchIds(watcher, 'online');
    const offline = watchIds(watcher, 'offline');
    await signIn(watcher);
    await until(() => online.ids.includes(bob), `online event for ${bob} after sign-in`);
    for (const e of online.events) assert.equal(e.name, 'online');

    // Each watched user's owner shard answers the watch, and later tells of
    // that user's comings and goings in order: carol's online event comes
    // after any wrong one at sign-in (which would make two).
    const carolClient = await signedInClient({ id: carol });
    await until(() => online.ids.includes(carol), `online event for ${carol}`);
    assert.deepEqual(online.sorted(), [bob, carol], 'only users that are online are announced');

    await disconnectClient(carolClient);
    await until(() => offline.ids.includes(carol), `offline event for ${carol}`);
    for (const e of offline.events) assert.equal(e.name, 'offline');

    await disconnectClient(bobClient);
    await until(() => offline.ids.includes(bob), `offline event for ${bob}`);
    // dora's owner sends nothing later that could be a barrier (she never
    // comes online); her check comes after the round trips above.
    assert.deepEqual(online.sorted(), [bob, carol]);
    assert.deepEqual(offline.sorted(), [bob, carol]);
  });

  it('watchlist: a user with two connections goes offline only when the last one closes', async () => {
    const tag = uniqueChannel('w2');
    const gus = `${tag}-gus`;
    const watcher = await authedClient(server.port, api, { user: { id: `${tag}-hal`, watchlist: [gus] } });
    const online = watchIds(watcher, 'online');
    const offline = watchIds(watcher, 'offline');
    await signIn(watcher);
    const shard = shardOf(socketId(watcher));
    const connections = async () => (await api.get({ path: '/connections' }).then((r) => r.json())).connections;

    // g1 on the watcher's shard (connected there first, signed in after,
    // so the tries on the other shard never sign gus in).
    const g1 = await connectOnShard(() => authedClient(server.port, api, { user: { id: gus } }), shard);
    await signIn(g1);
    await until(() => online.ids.includes(gus), `online event for ${gus}`);
    const g2 = await signedInClient({ id: gus });

    // The watcher, g1 and g2 are the app's only connections once the
    // other tries are torn down.
    await until(async () => (await connections()) === 3, 'only the watcher, g1 and g2 connected');
    await disconnectClient(g1);
    // g1's teardown has run once the app's connection count drops: it told
    // gus's owner of the leave. Barrier: a second watcher of gus signs in on
    // the same shard; its watch reaches gus's owner after that leave, and
    // the owner's answer (gus is online) comes back to that shard after any
    // wrong offline for the first watcher, which the first watcher's ping
    // round trip then proves delivered.
    await until(async () => (await connections()) === 2, 'g1 torn down');
    const second = await connectOnShard(
      () => authedClient(server.port, api, { user: { id: `${tag}-ida`, watchlist: [gus] } }), shard);
    const secondOnline = watchIds(second, 'online');
    await signIn(second);
    await until(() => secondOnline.ids.includes(gus), `online answer for ${gus} to the second watcher`);
    await pingBarrier(watcher);
    assert.deepEqual(offline.ids, [], 'offline while a connection remains');
    await disconnectClient(g2);
    await until(() => offline.ids.includes(gus), `offline event for ${gus}`);
    // Barrier: gus's owner tells the watcher of gus's sign-ins and leaves in
    // the order it handles them, and handles g3's sign-in (sent once the
    // offline event arrived) after all of the above. So when g3's online
    // event arrives, any wrong online (for g2) or extra offline (for g1's
    // leave) would have arrived before it.
    const g3 = await signedInClient({ id: gus });
    await until(() => online.ids.length === 2, `online event for ${gus} again`);
    assert.deepEqual(online.ids, [gus, gus], 'a second connection is not a new online event');
    assert.deepEqual(offline.ids, [gus], 'one offline event, after the last connection left');
    await disconnectClient(g3);
  });

  it('watchlist: terminateUserConnections makes the user go offline for watchers', async () => {
    const tag = uniqueChannel('w3');
    const ivy = `${tag}-ivy`;
    const watcher = await authedClient(server.port, api, { user: { id: `${tag}-jon`, watchlist: [ivy] } });
    const offline = watchIds(watcher, 'offline');
    const online = watchIds(watcher, 'online');
    await signIn(watcher);
    unrefCloseTimer(await signedInClient({ id: ivy }));
    await until(() => online.ids.includes(ivy), `online event for ${ivy}`);
    await api.terminateUserConnections(ivy);
    await until(() => offline.ids.includes(ivy), `offline event for ${ivy}`);
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});

describe('enable_user_authentication: sign-in deadline', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer({
      config: appConfig({ app: { enable_user_authentication: true, user_authentication_timeout: 1 } }),
    });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('a connection that does not sign in within user_authentication_timeout is closed with 4009', async () => {
    // signed first, anon after it on the same shard: anon's deadline is the
    // later one, and a shard's sweep looks at all its connections, so the
    // sweep that closes anon would have closed signed too.
    const signed = await authedClient(server.port, api, { user: { id: 'kim' } });
    await signIn(signed);
    const anon = await connectOnShard(() => authedClient(server.port, api), shardOf(socketId(signed)));
    unrefCloseTimer(anon);
    const err = waitConnectionError(anon, 4009, 5_000);
    const down = waitState(anon, 'disconnected', 5_000);
    const signedErrors = collectConnectionErrors(signed);
    await Promise.all([err, down]);
    // Had that sweep closed signed, its 4009 would come before this pong.
    await pingBarrier(signed);
    assert.equal(signed.connection.state, 'connected', 'a signed-in connection was closed');
    assert.deepEqual(signedErrors.errors, []);
  });
});
