'use strict';
// Sparse routing between shards (a publication goes only to the shards with
// subscribers of its channel) with real clients: the moment pusher-js reports
// pusher:subscription_succeeded on a fresh channel, a client event from a
// pusher-js client on the other shard and a trigger from the `pusher` library
// (a fresh HTTP connection each time, so either shard handles it) are sent;
// the subscriber must get both, every round, in both directions.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  appConfig, connectOnShard, disconnectAll, makeServerClient, startServer, subscribe,
  uniqueChannel, waitFor,
} = require('./helpers');
const { authedClient } = require('./auth_helpers');

describe('sparse routing between shards', () => {
  let server;
  let api;

  before(async () => {
    server = await startServer({
      config: appConfig({ app: { enable_client_messages: true, max_client_events_per_second: 100000 } }),
    });
    api = makeServerClient(server.port);
  });
  afterEach(async () => { await disconnectAll(); });
  after(async () => { if (server) await server.stop(); });

  it('events sent right after subscription_succeeded reach the new subscriber', async () => {
    for (const [a, b] of [[0, 1], [1, 0]]) {
      const sender = await connectOnShard(() => authedClient(server.port, api), a);
      const sub = await connectOnShard(() => authedClient(server.port, api), b);
      for (let round = 0; round < 25; round++) {
        const name = uniqueChannel('private-sparse');
        const senderCh = await subscribe(sender, name);
        const subCh = sub.subscribe(name);
        const gotClient = waitFor(subCh, 'client-race');
        const gotApi = waitFor(subCh, 'race');
        const sent = await new Promise((resolve) => {
          subCh.bind('pusher:subscription_succeeded', () => {
            assert.equal(senderCh.trigger('client-race', { round }), true, 'pusher-js refused to send');
            resolve(api.trigger(name, 'race', { round }));
          });
        });
        assert.equal(sent.status, 200);
        assert.deepEqual(await gotClient, { round }, `round ${round}, subscriber on shard ${b}`);
        assert.deepEqual(await gotApi, { round }, `round ${round}, subscriber on shard ${b}`);
        sub.unsubscribe(name);
        sender.unsubscribe(name);
      }
    }
  });
});
