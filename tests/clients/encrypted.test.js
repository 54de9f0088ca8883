'use strict';
// private-encrypted- channels: the `pusher` library (with
// encryptionMasterKeyBase64) encrypts in trigger() and hands each client the
// channel's shared_secret in authorizeChannel(); pusher-js (its Node build
// bundles tweetnacl) decrypts. The server only relays {nonce, ciphertext}.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const {
  PusherClient, appConfig, clientEventBarrier, collect, connectOnShard, disconnectAll, expectNothing, makePublisher,
  makeServerClient, pingBarrier, publishedBarrier, shardOf, socketId, startServer, subscribe, uniqueChannel,
  waitFor, watchMessages,
} = require('./helpers');
const { authedClient, collectConnectionErrors, until } = require('./auth_helpers');

const MASTER_KEY = crypto.randomBytes(32).toString('base64');
const OTHER_KEY = crypto.randomBytes(32).toString('base64');

describe('private-encrypted channels', () => {
  let server;
  let api;
  let wrongKeyApi;
  const logs = [];
  let savedLog;

  before(async () => {
    // Capture pusher-js's logger (copied into pusher-js at each `new Pusher`).
    savedLog = PusherClient.log;
    PusherClient.log = (msg) => {
      logs.push(String(msg));
      if (savedLog) savedLog(msg);
    };
    // Client events enabled, so the refusal tested below is about the channel kind.
    server = await startServer({ config: appConfig({ app: { enable_client_messages: true } }) });
    // One keep-alive connection, so its `barrier` events end absence checks.
    api = makePublisher(server.port, { encryptionMasterKeyBase64: MASTER_KEY });
    // Same app credentials (so its signatures are valid) but another master
    // key: the shared_secret it hands out is not the channel's real one.
    wrongKeyApi = makeServerClient(server.port, { encryptionMasterKeyBase64: OTHER_KEY });
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => {
    PusherClient.log = savedLog;
    if (server) await server.stop();
  });

  it('round trip: the server library encrypts, pusher-js decrypts', async () => {
    const client = await authedClient(server.port, api);
    const name = uniqueChannel('private-encrypted-rt');
    const ch = await subscribe(client, name);
    const got = waitFor(ch, 'secret');
    const payload = { msg: 'top secret', n: 42, nested: { ok: true }, text: 'üñí ☃' };
    await api.trigger(name, 'secret', payload);
    assert.deepEqual(await got, payload);
  });

  it('string payloads decrypt to the same string', async () => {
    const client = await authedClient(server.port, api);
    const name = uniqueChannel('private-encrypted-str');
    const ch = await subscribe(client, name);
    const got = waitFor(ch, 'e');
    await api.trigger(name, 'e', 'plain words');
    assert.equal(await got, 'plain words');
  });

  it('only ciphertext and nonce travel over the WebSocket', async () => {
    const client = await authedClient(server.port, api);
    const name = uniqueChannel('private-encrypted-wire');
    const ch = await subscribe(client, name);
    const wire = watchMessages(client, (m) => m.channel === name && m.event === 'e');
    const got = waitFor(ch, 'e');
    await api.trigger(name, 'e', { marker: 'PLAINTEXT-MARKER' });
    assert.deepEqual(await got, { marker: 'PLAINTEXT-MARKER' });
    assert.equal(wire.events.length, 1);
    const data = wire.events[0].data;
    assert.equal(typeof data, 'object', JSON.stringify(wire.events[0]));
    assert.equal(typeof data.nonce, 'string');
    assert.equal(typeof data.ciphertext, 'string');
    assert.equal(Buffer.from(data.nonce, 'base64').length, 24);
    assert.ok(!JSON.stringify(wire.events[0]).includes('PLAINTEXT-MARKER'));
  });

  it('several subscribers (across shards) each decrypt; socket_id excludes one', async () => {
    const clients = await Promise.all([1, 2].map(() => authedClient(server.port, api)));
    // The third on the shard the first two are not both on (across shards).
    const shards = clients.map((c) => shardOf(socketId(c)));
    clients.push(await connectOnShard(() => authedClient(server.port, api), shards[0] === shards[1] ? 1 - shards[0] : shards[1]));
    assert.equal(new Set(clients.map((c) => shardOf(socketId(c)))).size, 2, 'subscribers on both shards');
    const name = uniqueChannel('private-encrypted-many');
    const chans = await Promise.all(clients.map((c) => subscribe(c, name)));
    const rec0 = collect(chans[0], 'e');
    const got = [waitFor(chans[1], 'e'), waitFor(chans[2], 'e')];
    await api.trigger(name, 'e', { k: 'v' }, { socket_id: socketId(clients[0]) });
    assert.deepEqual(await got[0], { k: 'v' });
    assert.deepEqual(await got[1], { k: 'v' });
    await publishedBarrier(api, [chans[0]]);
    assert.deepEqual(rec0.events, []);
  });

  it('a client with the wrong shared secret cannot decrypt: pusher-js re-authorizes, logs and drops the event', async () => {
    const name = uniqueChannel('private-encrypted-wrong');
    const good = await authedClient(server.port, api);
    const calls = [];
    const bad = await authedClient(server.port, wrongKeyApi, { calls });
    const goodCh = await subscribe(good, name);
    // The signature is valid (same app secret), so the subscription succeeds.
    const badCh = await subscribe(bad, name);
    assert.equal(calls.length, 1);
    // A plain channel of the bad client's, for a barrier it can read.
    const badPlain = await subscribe(bad, uniqueChannel('plain'));

    const badRec = collect(badCh, 'secret');
    const badWire = watchMessages(bad, (m) => m.channel === name && m.event === 'secret');
    const got = waitFor(goodCh, 'secret');
    const logStart = logs.length;
    await api.trigger(name, 'secret', { s: 'only for the right key' });
    assert.deepEqual(await got, { s: 'only for the right key' });

    // What pusher-js 8 really does: the event reaches the bad client, the
    // first secretbox.open fails, it logs (debug) "Failed to decrypt an
    // event ..." and calls the channel authorizer again for a new key; that
    // key fails too, it logs (error) "Failed to decrypt event with new key.
    // Dropping encrypted event" and emits nothing.
    await until(() => logs.slice(logStart).some((l) => l.includes('Failed to decrypt event with new key')),
      'pusher-js logging "Failed to decrypt event with new key"');
    const newLogs = logs.slice(logStart);
    assert.ok(newLogs.some((l) => l.includes('Failed to decrypt an event')), JSON.stringify(newLogs));
    // No second copy on the wire: the publisher's next event came after it.
    await publishedBarrier(api, [badPlain]);
    assert.equal(badWire.events.length, 1, 'the encrypted event did reach the bad client');
    assert.equal(calls.length, 2, 'pusher-js asked the authorizer for a fresh key once');
    // pusher-js logs "Dropping encrypted event" and returns without emitting:
    // after that log (awaited above) it can no longer emit this event.
    assert.deepEqual(badRec.events, [], 'pusher-js emitted an event it could not decrypt');
    assert.equal(bad.connection.state, 'connected');
    assert.equal(badCh.subscribed, true);
  });

  it('an encrypted subscription signed with the wrong app secret is refused (401)', async () => {
    const wrongSecret = makeServerClient(server.port, { secret: 'nope', encryptionMasterKeyBase64: MASTER_KEY });
    const client = await authedClient(server.port, wrongSecret);
    const ch = client.subscribe(uniqueChannel('private-encrypted-bad'));
    const err = waitFor(ch, 'pusher:subscription_error');
    const none = expectNothing(ch, 'pusher:subscription_succeeded');
    const status = await err;
    // The subscribe was answered once; the pong to a later ping comes after anything it queued.
    await none.until(pingBarrier(client));
    assert.equal(status.status, 401, JSON.stringify(status));
  });

  it('pusher-js refuses client events on encrypted channels; sent raw, the server refuses them (4301)', async () => {
    const name = uniqueChannel('private-encrypted-client');
    const [a, b] = await Promise.all([authedClient(server.port, api), authedClient(server.port, api)]);
    const [cha, chb] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
    const barrierName = uniqueChannel('private-barrier');
    const [bara, barb] = await Promise.all([subscribe(a, barrierName), subscribe(b, barrierName)]);
    assert.throws(() => cha.trigger('client-x', { a: 1 }), /not currently supported for encrypted channels/);

    const errs = collectConnectionErrors(a);
    const wire = watchMessages(b, (m) => m.channel === name && m.event === 'client-x');
    assert.equal(a.send_event('client-x', { a: 1 }, name), true);
    await until(() => errs.codes().includes(4301), 'pusher:error 4301 for a client event on an encrypted channel');
    // a's next client event to b (on a private channel) comes after it.
    await clientEventBarrier(bara, [barb]);
    assert.deepEqual(wire.events, [], 'the client event was relayed on an encrypted channel');
    assert.equal(chb.subscribed, true);
    assert.equal(a.connection.state, 'connected');
  });
});
