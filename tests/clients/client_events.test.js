'use strict';
// Client events (channel.trigger('client-...')) between pusher-js clients:
// relayed to the other subscribers of private and presence channels (with
// the sender's user_id as metadata on presence), never back to the sender;
// refused with a pusher:error 4301 (connection `error` event in pusher-js)
// when the app disables them, on public channels, on channels the sender is
// not subscribed to, and above max_client_events_per_second.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, clientEventBarrier, collect, connectOnShard, disconnectAll, makeServerClient,
  pingBarrier, shardOf, socketId, startServer, subscribe, uniqueChannel, waitFor, watchMessages,
} = require('./helpers');
const {
  authedClient, collectConnectionErrors, until, waitConnectionError, waitForWithMeta,
} = require('./auth_helpers');

const RATE = 5;

describe('client events (enabled)', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer({
      config: appConfig({ app: { enable_client_messages: true, max_client_events_per_second: RATE } }),
    });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('on a private channel: reach the other subscribers but not the sender', async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => authedClient(server.port, api)));
    const name = uniqueChannel('private-chat');
    const [cha, chb, chc] = await Promise.all([a, b, c].map((cl) => subscribe(cl, name)));
    const recA = collect(cha, 'client-msg');
    const errsA = collectConnectionErrors(a);
    const gotB = waitForWithMeta(chb, 'client-msg');
    const gotC = waitForWithMeta(chc, 'client-msg');
    assert.equal(cha.trigger('client-msg', { from: 'a' }), true, 'pusher-js refused to send');
    const [dataB, metaB] = await gotB;
    const [dataC] = await gotC;
    assert.deepEqual(dataB, { from: 'a' });
    assert.deepEqual(dataC, { from: 'a' });
    assert.equal(metaB.user_id, undefined, 'no user_id on a private channel');
    // An echo to the sender could only come from its own shard, where the
    // client event is delivered to local subscribers while the server handles
    // it, before it reads the ping sent after it: the pong comes after.
    await pingBarrier(a);
    assert.deepEqual(recA.events, [], 'the sender got its own client event back');
    assert.deepEqual(errsA.errors, []);
  });

  it('a subscriber of another channel does not get them', async () => {
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const name = uniqueChannel('private-chat');
    const other = uniqueChannel('private-chat');
    const cha = await subscribe(a, name);
    const [chaOther, chbOther] = await Promise.all([subscribe(a, other), subscribe(b, other)]);
    const wire = watchMessages(b, (m) => m.event === 'client-msg');
    cha.trigger('client-msg', 1);
    // a's next client event, on the channel b is on, comes after it.
    await clientEventBarrier(chaOther, [chbOther]);
    assert.deepEqual(wire.events, []);
  });

  it('several client events arrive in order', async () => {
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const name = uniqueChannel('private-order');
    const [cha, chb] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
    const rec = collect(chb, 'client-n');
    for (let i = 0; i < RATE; i++) cha.trigger('client-n', { i });
    const got = await rec.waitForCount(RATE);
    assert.deepEqual(got.map((d) => d.i), [...Array(RATE).keys()]);
  });

  it('on a presence channel the handler\'s metadata carries the sender\'s user_id', async () => {
    const name = uniqueChannel('presence-chat');
    const alice = await authedClient(server.port, api, { presence: { user_id: 'alice', user_info: { n: 'A' } } });
    const bob = await authedClient(server.port, api, { presence: { user_id: 'bob', user_info: { n: 'B' } } });
    const cha = await subscribe(alice, name);
    const chb = await subscribe(bob, name);
    const recA = collect(cha, 'client-typing');
    const got = waitForWithMeta(chb, 'client-typing');
    assert.equal(cha.trigger('client-typing', { typing: true }), true);
    const [data, metadata] = await got;
    assert.deepEqual(data, { typing: true });
    assert.deepEqual(metadata, { user_id: 'alice' });

    const back = waitForWithMeta(cha, 'client-typing');
    chb.trigger('client-typing', { typing: false });
    const [data2, meta2] = await back;
    assert.deepEqual(data2, { typing: false });
    assert.equal(meta2.user_id, 'bob');
    assert.equal(recA.events.length, 1, 'alice only got bob\'s event');
  });

  it('a client event on a public channel is refused with 4301 and not relayed', async () => {
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const name = uniqueChannel('public-chat');
    const [cha, chb] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
    const barrierName = uniqueChannel('private-barrier');
    const [bara, barb] = await Promise.all([subscribe(a, barrierName), subscribe(b, barrierName)]);
    const recB = collect(chb, 'client-x');
    const err = waitConnectionError(a, 4301);
    cha.trigger('client-x', {});
    const e = await err;
    assert.equal(e.type, 'PusherError');
    assert.equal(typeof e.data.message, 'string');
    // a's next client event to b (on a private channel) comes after it.
    await clientEventBarrier(bara, [barb]);
    assert.deepEqual(recB.events, []);
    assert.equal(a.connection.state, 'connected', 'a 4301 refusal must not close the connection');
  });

  it('a client event on a channel the sender has not subscribed to is refused with 4301', async () => {
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const name = uniqueChannel('private-not-mine');
    const chb = await subscribe(b, name);
    const barrierName = uniqueChannel('private-barrier');
    const [bara, barb] = await Promise.all([subscribe(a, barrierName), subscribe(b, barrierName)]);
    const recB = collect(chb, 'client-x');
    const err = waitConnectionError(a, 4301);
    a.send_event('client-x', { sneaky: true }, name);
    await err;
    // a's next client event to b (on a channel a is on) comes after it.
    await clientEventBarrier(bara, [barb]);
    assert.deepEqual(recB.events, []);
  });

  it(`more than max_client_events_per_second (${RATE}) are refused with 4301`, async () => {
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const name = uniqueChannel('private-flood');
    const [cha, chb] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
    const rec = collect(chb, 'client-flood');
    const errs = collectConnectionErrors(a);
    const SENT = 4 * RATE;
    for (let i = 0; i < SENT; i++) cha.trigger('client-flood', { i });
    await until(() => rec.events.length + errs.codes().filter((c) => c === 4301).length >= SENT,
      'every flooded client event being either relayed or refused');
    // Every refusal is a reply to one of a's messages, all sent before the ping.
    await pingBarrier(a);
    const refused = errs.codes().filter((c) => c === 4301).length;
    // Every relay to b comes before a's next relayed client event (sent again
    // until a new rate window lets it through; its refusals come after the count above).
    await clientEventBarrier(cha, [chb]);
    const relayed = rec.events.length;
    // The burst may straddle a second boundary: at most two windows' worth.
    assert.ok(relayed >= RATE && relayed <= 2 * RATE, `relayed ${relayed} of ${SENT}`);
    assert.equal(relayed + refused, SENT, `relayed ${relayed}, refused ${refused}`);
    assert.equal(a.connection.state, 'connected');
  });

  it('server is still running after all of the above', () => {
    assert.ok(server.alive(), `server died:\n${server.stderr()}`);
  });
});

describe('client events (app without enable_client_messages)', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer({ config: appConfig({ app: { enable_client_messages: false } }) });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  // Client events are off, so no later client event can be a barrier. What
  // bounds a wrongly relayed one: b is on a's shard, where a relay is queued
  // for b while a's message is handled, before the 4301 reply to a; a ping b
  // sends once that reply arrived is answered after the relay.
  it('the sender gets a connection error event with code 4301; nobody receives the event', async () => {
    const a = await authedClient(server.port, api);
    const b = await connectOnShard(() => authedClient(server.port, api), shardOf(socketId(a)));
    const name = uniqueChannel('private-disabled');
    const [cha, chb] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
    const recB = collect(chb, 'client-msg');
    const err = waitConnectionError(a, 4301);
    assert.equal(cha.trigger('client-msg', { from: 'a' }), true);
    const e = await err;
    assert.equal(e.type, 'PusherError');
    assert.equal(e.data.code, 4301);
    await pingBarrier(b);
    assert.deepEqual(recB.events, []);
    assert.equal(a.connection.state, 'connected');

    // Server events still flow on that channel.
    const got = waitFor(cha, 'server-e');
    await api.trigger(name, 'server-e', 1);
    assert.equal(await got, 1);
  });

  it('also refused on presence channels', async () => {
    const name = uniqueChannel('presence-disabled');
    const a = await authedClient(server.port, api, { presence: { user_id: 'a' } });
    const b = await connectOnShard(
      () => authedClient(server.port, api, { presence: { user_id: 'b' } }), shardOf(socketId(a)));
    const cha = await subscribe(a, name);
    const chb = await subscribe(b, name);
    const recB = collect(chb, 'client-msg');
    const err = waitConnectionError(a, 4301);
    cha.trigger('client-msg', {});
    await err;
    await pingBarrier(b); // b on a's shard, as above
    assert.deepEqual(recB.events, []);
  });
});
