'use strict';
// Presence channels through pusher-js: the members object handed to
// pusher:subscription_succeeded, pusher:member_added / member_removed, one
// member per user however many connections (and shards) it has, and the
// app's max_presence_members limit (pusher:subscription_error, status 4100).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, collect, disconnectAll, disconnectClient, expectNothing, makePublisher,
  makeServerClient, pingBarrier, publishedBarrier, shardOf, socketId, startServer, subscribe,
  uniqueChannel, waitFor, watchMessages,
} = require('./helpers');
const { authedClient, presenceBarrier, until } = require('./auth_helpers');

/** Member events of real users (not of presenceBarrier's users). */
const real = (events) => events.filter((m) => !String(m.id).startsWith('barrier-'));

/** Every member of a pusher-js Members object, sorted by id. */
function memberList(members) {
  const out = [];
  members.each((m) => out.push(m));
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

describe('presence channels', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer();
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  const user = (id, info) => ({ presence: { user_id: id, user_info: info } });

  it('pusher:subscription_succeeded hands over a members object (count, me, each, get)', async () => {
    const name = uniqueChannel('presence-snap');
    const alice = await authedClient(server.port, api, user('alice', { name: 'Alice' }));
    await subscribe(alice, name);
    const bob = await authedClient(server.port, api, user('bob', { name: 'Bob', n: 2 }));
    const ch = bob.subscribe(name);
    const wire = watchMessages(bob, (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name);
    const members = await waitFor(ch, 'pusher:subscription_succeeded');

    assert.equal(members, ch.members, 'the handler gets the channel\'s Members object');
    assert.equal(members.count, 2);
    assert.deepEqual(members.me, { id: 'bob', info: { name: 'Bob', n: 2 } });
    assert.deepEqual(members.get('alice'), { id: 'alice', info: { name: 'Alice' } });
    assert.equal(members.get('nobody'), null);
    assert.deepEqual(memberList(members), [
      { id: 'alice', info: { name: 'Alice' } },
      { id: 'bob', info: { name: 'Bob', n: 2 } },
    ]);

    // On the wire: data.presence = {ids, hash, count}.
    assert.equal(wire.events.length, 1);
    const data = typeof wire.events[0].data === 'string' ? JSON.parse(wire.events[0].data) : wire.events[0].data;
    assert.ok(data.presence, JSON.stringify(data));
    assert.deepEqual([...data.presence.ids].sort(), ['alice', 'bob']);
    assert.equal(data.presence.count, 2);
    assert.deepEqual(data.presence.hash, { alice: { name: 'Alice' }, bob: { name: 'Bob', n: 2 } });
  });

  it('members, member_added and member_removed (unsubscribe)', async () => {
    const name = uniqueChannel('presence-room');
    const alice = await authedClient(server.port, api, user('alice', { name: 'Alice' }));
    const achan = await subscribe(alice, name);
    assert.equal(achan.members.count, 1);
    assert.equal(achan.members.me.id, 'alice');

    const added = waitFor(achan, 'pusher:member_added');
    const bob = await authedClient(server.port, api, user('bob', { name: 'Bob' }));
    const bchan = await subscribe(bob, name);
    assert.deepEqual(await added, { id: 'bob', info: { name: 'Bob' } });
    assert.equal(bchan.members.count, 2);
    assert.deepEqual(bchan.members.get('alice'), { id: 'alice', info: { name: 'Alice' } });
    assert.equal(achan.members.count, 2);

    const removed = waitFor(achan, 'pusher:member_removed');
    bob.unsubscribe(name);
    assert.deepEqual(await removed, { id: 'bob', info: { name: 'Bob' } });
    assert.equal(achan.members.count, 1);
  });

  it('a member that disconnects is removed', async () => {
    const name = uniqueChannel('presence-gone');
    const alice = await authedClient(server.port, api, user('alice', {}));
    const achan = await subscribe(alice, name);
    const carol = await authedClient(server.port, api, user('carol', { c: true }));
    const added = waitFor(achan, 'pusher:member_added');
    await subscribe(carol, name);
    await added;
    const removed = waitFor(achan, 'pusher:member_removed');
    await disconnectClient(carol);
    assert.deepEqual(await removed, { id: 'carol', info: { c: true } });
    assert.equal(achan.members.count, 1);
  });

  it('the joiner does not get member_added for itself', async () => {
    const name = uniqueChannel('presence-self');
    const alice = await authedClient(server.port, api, user('alice', {}));
    const ch = alice.subscribe(name);
    const rec = collect(ch, 'pusher:member_added');
    await waitFor(ch, 'pusher:subscription_succeeded');
    // The owner answered alice's join before the barrier user joined.
    const [barrierId] = await presenceBarrier(server.port, api, name, [ch]);
    assert.deepEqual(rec.events.map((m) => m.id), [barrierId]);
  });

  it('the same user on several connections is one member: one member_added, member_removed after the last leaves', async () => {
    const name = uniqueChannel('presence-multi');
    const watcher = await authedClient(server.port, api, user('watcher', {}));
    const wchan = await subscribe(watcher, name);
    const addedRec = collect(wchan, 'pusher:member_added');
    const removedRec = collect(wchan, 'pusher:member_removed');

    // Three connections for dave: with two shards at least two likely land on different shards.
    const daves = await Promise.all([1, 2, 3].map(() => authedClient(server.port, api, user('dave', { d: 1 }))));
    const dchans = [];
    for (const d of daves) dchans.push(await subscribe(d, name));
    await addedRec.waitForCount(1);
    // The owner answered every join of dave's before the barrier user joined.
    await presenceBarrier(server.port, api, name, [wchan, ...dchans]);
    assert.deepEqual(real(addedRec.events), [{ id: 'dave', info: { d: 1 } }], 'member_added once per user');
    assert.equal(wchan.members.count, 2);
    for (const ch of dchans) assert.equal(ch.members.count, 2, 'each of dave\'s connections sees 2 members');

    // Users endpoint and user_count agree: dave is counted once.
    const users = await (await api.get({ path: `/channels/${name}/users` })).json();
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['dave', 'watcher']);
    const info = await (await api.get({ path: `/channels/${name}`, params: { info: 'user_count' } })).json();
    assert.equal(info.user_count, 2);
    assert.equal(info.occupied, true);

    // Two of dave's three connections leave: dave is still there.
    const leaving = [socketId(daves[0]), socketId(daves[1])];
    await disconnectClient(daves[0]);
    daves[1].unsubscribe(name);
    // Once each shard has dropped them (the channel counts 2 subscribers:
    // watcher and daves[2]), their leaves are on the way to the owner; a
    // barrier user joining from each of their shards reaches it after them.
    await until(async () => {
      const info = await (await api.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } })).json();
      return info.subscription_count === 2;
    }, 'the shards dropping two of dave\'s subscriptions');
    await presenceBarrier(server.port, api, name, [wchan], { shards: [...new Set(leaving.map(shardOf))] });
    assert.deepEqual(real(removedRec.events), [], 'member_removed before dave\'s last connection left');
    assert.equal(wchan.members.count, 2);

    const removedBefore = removedRec.events.length;
    await disconnectClient(daves[2]);
    await removedRec.waitForCount(removedBefore + 1);
    assert.deepEqual(real(removedRec.events), [{ id: 'dave', info: { d: 1 } }]);
    assert.equal(wchan.members.count, 1);
  });

  it('server events on a presence channel reach every member', async () => {
    const name = uniqueChannel('presence-news');
    const a = await authedClient(server.port, api, user('a1', {}));
    const b = await authedClient(server.port, api, user('b1', {}));
    const [cha, chb] = [await subscribe(a, name), await subscribe(b, name)];
    const got = [waitFor(cha, 'news'), waitFor(chb, 'news')];
    await api.trigger(name, 'news', { x: 1 });
    assert.deepEqual(await got[0], { x: 1 });
    assert.deepEqual(await got[1], { x: 1 });
  });

  it('a presence subscription signed with the wrong secret is refused (401)', async () => {
    const wrong = makeServerClient(server.port, { secret: 'nope' });
    const c = await authedClient(server.port, wrong, user('eve', {}));
    const ch = c.subscribe(uniqueChannel('presence-bad'));
    const err = waitFor(ch, 'pusher:subscription_error');
    const none = expectNothing(ch, 'pusher:subscription_succeeded');
    const status = await err;
    // The subscribe was answered once; the pong to a later ping comes after anything it queued.
    await none.until(pingBarrier(c));
    assert.equal(status.status, 401, JSON.stringify(status));
  });

  it('channel_data changed after signing is refused (401)', async () => {
    const c = await authedClient(server.port, api, {
      options: {
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, cb) => {
            const auth = api.authorizeChannel(socketId, channelName, { user_id: 'mallory' });
            auth.channel_data = JSON.stringify({ user_id: 'admin' });
            cb(null, auth);
          },
        },
      },
    });
    const ch = c.subscribe(uniqueChannel('presence-forged'));
    const status = await waitFor(ch, 'pusher:subscription_error');
    assert.equal(status.status, 401, JSON.stringify(status));
  });

  it('numeric user ids (as Laravel sends them) work', async () => {
    const name = uniqueChannel('presence-numeric');
    const one = await authedClient(server.port, api, { presence: { user_id: 1, user_info: { n: 1 } } });
    const ch1 = await subscribe(one, name);
    assert.equal(ch1.members.count, 1);
    assert.deepEqual(ch1.members.me.info, { n: 1 });
    const added = waitFor(ch1, 'pusher:member_added');
    const two = await authedClient(server.port, api, { presence: { user_id: 2, user_info: { n: 2 } } });
    const ch2 = await subscribe(two, name);
    const member = await added;
    assert.equal(String(member.id), '2');
    assert.deepEqual(member.info, { n: 2 });
    assert.equal(ch2.members.count, 2);
    assert.deepEqual(ch2.members.get('1'), { id: '1', info: { n: 1 } });
  });

  it('unsubscribe + immediate resubscribe leaves the user a member, with no ghost or lost member', async () => {
    const name = uniqueChannel('presence-flap');
    const alice = await authedClient(server.port, api, user('alice', {}));
    const achan = await subscribe(alice, name);
    const bob = await authedClient(server.port, api, user('bob', {}));
    const added = waitFor(achan, 'pusher:member_added');
    await subscribe(bob, name);
    await added;
    for (let i = 0; i < 5; i++) {
      bob.unsubscribe(name);
      const again = await subscribe(bob, name);
      assert.equal(again.members.count, 2, `round ${i}: bob sees ${again.members.count} members`);
    }
    // The owner answered bob's last join before the barrier user joined.
    await presenceBarrier(server.port, api, name, [achan]);
    assert.equal(achan.members.count, 2, 'alice lost bob');
    const users = await (await api.get({ path: `/channels/${name}/users` })).json();
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
    // And bob really is subscribed: events reach him.
    const got = waitFor(bob.channel(name), 'e');
    await api.trigger(name, 'e', 'still here');
    assert.equal(await got, 'still here');
  });

  it('a connection that closes while its presence join is in flight leaves no ghost member', async () => {
    const name = uniqueChannel('presence-ghost');
    const alice = await authedClient(server.port, api, user('alice', {}));
    const achan = await subscribe(alice, name);
    const removedRec = collect(achan, 'pusher:member_removed');
    const addedRec = collect(achan, 'pusher:member_added');
    const ghosts = await Promise.all([1, 2, 3, 4, 5].map((i) => authedClient(server.port, api, user(`ghost${i}`, {}))));
    for (const g of ghosts) g.subscribe(name);
    await Promise.all(ghosts.map((g) => disconnectClient(g)));
    let users;
    await until(async () => {
      users = (await (await api.get({ path: `/channels/${name}/users` })).json()).users.map((u) => u.id);
      return users.length === 1;
    }, `ghost members leaving (users: ${JSON.stringify(users)})`).catch(() => {});
    assert.deepEqual(users, ['alice'], 'ghost members stayed on the channel');
    // The owner answered that query after removing the ghosts (and sending
    // their member_removed); the barrier user joined after the answer.
    await presenceBarrier(server.port, api, name, [achan]);
    assert.equal(achan.members.count, 1, `alice sees ${achan.members.count} members`);
    assert.equal(addedRec.events.length, removedRec.events.length, 'every member_added has its member_removed');
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});

describe('presence channels: max_presence_members', () => {
  let server;
  let api;
  const MAX = 2;

  before(async () => {
    server = await startServer({ config: appConfig({ app: { max_presence_members: MAX } }) });
    api = makePublisher(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  const user = (id) => ({ presence: { user_id: id, user_info: { id } } });

  it(`a user beyond the limit of ${MAX} gets pusher:subscription_error with status 4100`, async () => {
    const name = uniqueChannel('presence-full');
    const u1 = await authedClient(server.port, api, user('u1'));
    const u2 = await authedClient(server.port, api, user('u2'));
    const ch1 = await subscribe(u1, name);
    const u2added = waitFor(ch1, 'pusher:member_added');
    await subscribe(u2, name);
    await u2added;

    const addedRec = collect(ch1, 'pusher:member_added');
    const u3 = await authedClient(server.port, api, user('u3'));
    const ch3 = u3.subscribe(name);
    const err = waitFor(ch3, 'pusher:subscription_error');
    const none = expectNothing(ch3, 'pusher:subscription_succeeded');
    const status = await err;
    // The subscribe was answered once; the pong to a later ping comes after anything it queued.
    await none.until(pingBarrier(u3));
    assert.equal(status.status, 4100, JSON.stringify(status));
    assert.equal(ch3.subscribed, false);
    assert.equal(u3.connection.state, 'connected');
    // The channel is full, so no barrier user can join: u2 leaves and comes
    // back instead. The owner refused u3 before u2's leave reached it, so
    // u2's member_removed and member_added follow any announcement of u3.
    const u2gone = waitFor(ch1, 'pusher:member_removed');
    u2.unsubscribe(name);
    assert.equal((await u2gone).id, 'u2');
    await subscribe(u2, name);
    await addedRec.waitForCount(1);
    assert.deepEqual(addedRec.events.map((m) => m.id), ['u2'], 'the refused user was announced to members');
    assert.equal(ch1.members.count, 2);

    // Not a member: events on the channel do not reach it.
    const wire = watchMessages(u3, (m) => m.channel === name && m.event === 'e');
    const u3plain = await subscribe(u3, uniqueChannel('plain'));
    const got = waitFor(ch1, 'e');
    await api.trigger(name, 'e', 1);
    await got;
    await publishedBarrier(api, [u3plain]);
    assert.deepEqual(wire.events, []);
  });

  it('another connection of a user who is already a member still gets in when full', async () => {
    const name = uniqueChannel('presence-full-same');
    const u1 = await authedClient(server.port, api, user('u1'));
    const u2 = await authedClient(server.port, api, user('u2'));
    await subscribe(u1, name);
    await subscribe(u2, name);
    const u2again = await authedClient(server.port, api, user('u2'));
    const ch = await subscribe(u2again, name);
    assert.equal(ch.members.count, 2);
  });

  it('a place freed by a leaving member can be taken', async () => {
    const name = uniqueChannel('presence-full-free');
    const u1 = await authedClient(server.port, api, user('u1'));
    const u2 = await authedClient(server.port, api, user('u2'));
    const ch1 = await subscribe(u1, name);
    await subscribe(u2, name);
    const removed = waitFor(ch1, 'pusher:member_removed');
    await disconnectClient(u2);
    await removed;
    const u3 = await authedClient(server.port, api, user('u3'));
    const ch3 = await subscribe(u3, name);
    assert.equal(ch3.members.count, 2);
  });
});
