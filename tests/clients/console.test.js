'use strict';
// The debug console page in a real browser: Debian's `chromium`, headless,
// driven by puppeteer-core (no browser download; CHROMIUM_BIN names another
// binary). Signs in (a wrong token is refused), sees an API event and a
// client event appear with an HTML payload shown as text, filters by kind,
// pauses and resumes, sends an event with the Event Creator that a pusher-js
// client receives, and sees the charts and the busiest channels update.
// Takes a screenshot (SHARDCAST_CONSOLE_SCREENSHOT=path keeps it, e.g. for
// docs/console.png).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

const {
  APP_ID, APP_KEY, APP_SECRET, disconnectAll, makeServerClient, startServer, subscribe, waitFor,
} = require('./helpers');
const { authedClient, until } = require('./auth_helpers');

const TOKEN = 'browser-console-token-42';
const CONFIG = `
[server.metrics]
enabled = true
port = 0

[server.console]
enabled = true
token = "${TOKEN}"

[[apps]]
id = "${APP_ID}"
key = "${APP_KEY}"
secret = "${APP_SECRET}"
enable_client_messages = true
`;
const UI_TIMEOUT_MS = 10_000;

function chromiumPath() {
  const bin = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  if (!fs.existsSync(bin)) {
    throw new Error(`no chromium at ${bin}: install Debian's chromium (scripts/test.sh does) or set CHROMIUM_BIN`);
  }
  return bin;
}

/** The metrics port from the server's `debug console on http://…:PORT/console` line. */
async function consolePort(server) {
  return until(() => {
    const m = server.stderr().match(/debug console on http:\/\/127\.0\.0\.1:(\d+)\/console/);
    return m && Number(m[1]);
  }, 'the console line in the log');
}

describe('debug console page (headless chromium)', () => {
  let server;
  let browser;
  let page;
  let base;
  const pageErrors = [];

  before(async () => {
    server = await startServer({ config: CONFIG });
    base = `http://127.0.0.1:${await consolePort(server)}`;
    browser = await puppeteer.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
      userDataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'shardcast-chromium-')),
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 800 });
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });
  after(async () => {
    await disconnectAll();
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  // A DOM click: the layout moves as tables fill, so no mouse coordinates.
  const press = (selector) => page.$eval(selector, (el) => el.click());
  // Waits for `fn` in the page; on a timeout, says what the page showed.
  const waitPage = async (fn, arg) => {
    try {
      await page.waitForFunction(fn, { timeout: UI_TIMEOUT_MS }, arg);
    } catch (e) {
      const shown = await page.evaluate(() => ({
        status: document.getElementById('status').textContent,
        notice: document.getElementById('notice').textContent,
        result: document.getElementById('creator-result').textContent,
        rows: [...document.querySelectorAll('#events tbody tr')].slice(0, 8).map((tr) => tr.textContent),
      }));
      throw new Error(`${e.message} waiting for ${fn}; the page showed ${JSON.stringify(shown)}`);
    }
  };
  const rows = (kind) => page.$$eval(
    `#events tbody tr${kind ? '.' + kind : ''}`,
    (trs) => trs.map((tr) => ({
      kind: tr.className,
      channel: tr.querySelector('td.channel').textContent,
      details: tr.querySelector('td.details').textContent,
    })),
  );
  const waitRow = (kind, pred, what) => until(async () => (await rows(kind)).find(pred), what, UI_TIMEOUT_MS);

  it('shows the events of a Pusher flow, filters, sends, and charts', async () => {
    await page.goto(`${base}/console`);
    // A wrong token is refused and the page stays on the form.
    await page.type('#token', 'not-the-token-at-all');
    await press('#login-form button');
    await page.waitForSelector('#login-error:not([hidden])', { timeout: UI_TIMEOUT_MS });
    assert.equal(await page.$eval('#login-error', (e) => e.textContent), 'wrong token');
    assert.equal(await page.$eval('#main', (e) => e.hidden), true);
    await page.type('#token', TOKEN);
    await press('#login-form button');
    await page.waitForSelector('#main:not([hidden])', { timeout: UI_TIMEOUT_MS });
    // `hello` arrived (the kinds menu is filled): the shards are watched.
    await waitPage(() => document.querySelectorAll('#filter-kind option').length > 1);
    // The token is not kept in the URL or in storage.
    assert.ok(!page.url().includes(TOKEN));
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);

    const api = makeServerClient(server.port);
    const a = await authedClient(server.port, api);
    const b = await authedClient(server.port, api);
    const chat = 'private-chat';
    const [cha, chb] = await Promise.all([subscribe(a, chat), subscribe(b, chat)]);

    // An API event whose data is markup: shown as text, never run.
    const html = '<img src=x onerror="window.__owned=1"><b>bold</b>';
    const got = waitFor(cha, 'html');
    await api.trigger(chat, 'html', html);
    await got;
    const row = await waitRow('api_message', (r) => r.details.includes('event html'), 'the API event row');
    assert.ok(row.details.includes(html), row.details);
    assert.equal(await page.$$eval('#events img, #events b', (els) => els.length), 0);
    assert.equal(await page.evaluate(() => window.__owned), undefined);

    // A client event.
    const relayed = waitFor(chb, 'client-typing');
    cha.trigger('client-typing', { who: 'a' });
    await relayed;
    await waitRow('client_event', (r) => r.details.includes('client-typing'), 'the client event row');

    // Filter to client events: an API event published before the next
    // client event would be shown before it if it passed the filter.
    await page.select('#filter-kind', 'client_event');
    await press('#filters button[type=submit]');
    await waitPage(() => document.querySelectorAll('#events tbody tr').length === 0);
    await waitPage(() => document.getElementById('status').textContent === 'live');
    // The new stream is watching once its first stats line is in.
    const points = await page.$eval('#chart-connections', (e) => Number(e.dataset.points || 0));
    await waitPage((n) => Number(document.getElementById('chart-connections').dataset.points || 0) > n, points);
    const hidden = waitFor(cha, 'hidden');
    await api.trigger(chat, 'hidden', 'not shown');
    await hidden;
    const second = waitFor(chb, 'client-second');
    cha.trigger('client-second', { n: 2 });
    await second;
    await waitRow('client_event', (r) => r.details.includes('client-second'), 'the filtered client event');
    assert.deepEqual((await rows()).map((r) => r.kind), ['client_event']);

    // Pause: events wait (the notice says how many); resume shows them.
    await press('#pause');
    const third = waitFor(chb, 'client-third');
    cha.trigger('client-third', { n: 3 });
    await third;
    await waitPage(() => document.getElementById('notice').textContent.includes('paused: 1 events waiting'));
    assert.equal((await rows()).length, 1);
    await press('#pause');
    await waitRow('client_event', (r) => r.details.includes('client-third'), 'the event held while paused');

    // Back to every kind; the Event Creator refuses data that is not JSON
    // on the page, and publishes the rest to a pusher-js client.
    await page.select('#filter-kind', '');
    await press('#filters button[type=submit]');
    const c = await authedClient(server.port, api);
    const news = await subscribe(c, 'news');
    const received = waitFor(news, 'from-console');
    await page.select('#creator-app', APP_ID);
    await page.type('#creator-channel', 'news');
    await page.type('#creator-event', 'from-console');
    await page.$eval('#creator-data', (e) => { e.value = '{oops'; });
    await press('#creator button[type=submit]');
    await waitPage(() => document.getElementById('creator-result').textContent.startsWith('data is not valid JSON'));
    await page.$eval('#creator-data', (e) => { e.value = ''; });
    await page.type('#creator-data', '{"sent":"by the console"}');
    await press('#creator button[type=submit]');
    assert.deepEqual(await received, { sent: 'by the console' });
    await waitPage(() => document.getElementById('creator-result').textContent === 'sent');
    const creatorRow = await waitRow('api_message', (r) => r.details.includes('event from-console'),
      'the Event Creator row');
    assert.equal(creatorRow.channel, 'news');

    // The charts follow the connections (3 pusher-js clients), and the
    // busiest channels list private-chat with its 2 subscribers.
    await waitPage(() => Number(document.getElementById('chart-connections').dataset.last) === 3);
    await waitPage(() => Number(document.getElementById('chart-out').dataset.points) >= 2);
    const busiest = await page.$$eval('#busiest tbody tr', (trs) => trs.map((tr) => tr.textContent));
    assert.ok(busiest.some((t) => t.includes('private-chat') && t.endsWith('2')), JSON.stringify(busiest));
    assert.ok(await page.$('#chart-connections canvas'), 'uPlot drew a canvas');

    const shot = process.env.SHARDCAST_CONSOLE_SCREENSHOT
      || path.join(os.tmpdir(), `shardcast-console-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 10_000);
    if (!process.env.SHARDCAST_CONSOLE_SCREENSHOT) fs.rmSync(shot);
    assert.deepEqual(pageErrors, []);
  });
});
