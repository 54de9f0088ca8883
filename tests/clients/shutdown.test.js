'use strict';
// SIGTERM: connected clients are told to reconnect (4200, which pusher-js
// treats as "retry now") and the process exits cleanly.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');

const {
  connectClient, disconnectAll, rawConnect, startServer, subscribe,
  uniqueChannel, withTimeout,
} = require('./helpers');

describe('graceful shutdown', () => {
  after(async () => { await disconnectAll(); });

  it('SIGTERM closes WebSockets with 4200 and the process exits 0', async () => {
    const server = await startServer();
    let result;
    try {
      const client = await connectClient(server.port);
      await subscribe(client, uniqueChannel('bye'));
      const errors = [];
      client.connection.bind('error', (e) => errors.push(e));

      const raws = [rawConnect(server.port), rawConnect(server.port)];
      for (const raw of raws) {
        assert.equal((await raw.next()).event, 'pusher:connection_established');
      }

      result = await withTimeout(server.stop(), 10_000, 'server exit after SIGTERM');
      for (const raw of raws) {
        const { code } = await withTimeout(raw.closed, 5_000, 'raw socket close');
        const err = raw.frames.find((f) => f.event === 'pusher:error');
        assert.equal(code, 4200,
          `close code ${code}; frames before close: ${JSON.stringify(raw.frames)}`);
        if (err) {
          const data = typeof err.data === 'string' ? JSON.parse(err.data) : err.data;
          assert.equal(data.code, 4200);
        }
      }
      assert.deepEqual(result, { code: 0, signal: null },
        `exit ${JSON.stringify(result)}; stderr:\n${server.stderr()}`);
    } finally {
      await server.stop();
    }
  });
});
