import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { Logger } from '../../src/logger';
import { type FraudViewsServer, createFraudViewsServer } from '../../src/streams/fraud-views/server';
import { launchChromium } from '../support/chromium';
import { type ScriptedViewsSource, createScriptedViewsSource } from '../support/fraud-views-source';

// The fraud-views page in a real browser: Debian's Chromium driven by playwright-core (which never
// downloads a browser) against the real server, fed by a scripted ViewsSource the test advances.
// Every wait is for a condition with a deadline. FRAUD_PAGE_SCREENSHOT=<path> keeps the screenshot
// (npm run fraud-page:screenshot writes docs/fraud-views-page.png).

const WAIT_MS = 15_000; // "within a few seconds", with room for a busy 2-core machine

// What the functions run in the page use: tsconfig has no DOM lib (this is Node code), so it is declared here.
interface PageElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  hidden: boolean;
  offsetParent: unknown;
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageElement | null;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
};

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const clock = (iso: string): string => iso.slice(11, 19);

describe('the fraud-views page in Chromium', () => {
  let browser: Browser;
  const servers: FraudViewsServer[] = [];

  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await browser?.close();
  });

  async function serve(source: ScriptedViewsSource, port = 0, staleAfterMs = 120_000): Promise<FraudViewsServer> {
    const server = await createFraudViewsServer({
      source,
      pollIntervalMs: 200,
      port,
      host: '127.0.0.1',
      logger: quiet,
      // Staleness by age is the browser's clock against event time: far off, unless a test is about it.
      staleAfterMs,
    });
    servers.push(server);
    return server;
  }

  /** A page whose uncaught errors fail the test. */
  async function open(url: string, viewport = { width: 1440, height: 900 }): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage({ viewport });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(url, { timeout: 30_000 });
    return { page, errors };
  }

  /** Resolves when every card shows `asOf` (attribute and text), or throws saying what the page shows. */
  async function waitForAsOf(page: Page, names: string[], asOf: string): Promise<void> {
    try {
      await page.waitForFunction(
        ({ names, asOf, time }) =>
          names.every((name) => {
            const age = document.querySelector(`[data-view="${name}"] [data-testid=view-age]`);
            return age?.dataset['asOf'] === asOf && (age.textContent ?? '').includes(`as of ${time} UTC`);
          }),
        { names, asOf, time: clock(asOf) },
        { timeout: WAIT_MS, polling: 100 },
      );
    } catch (err) {
      const shown = await page
        .locator('[data-testid=view-age]')
        .allTextContents()
        .catch(() => []);
      throw new Error(`the page did not show as-of ${asOf} within ${WAIT_MS} ms; it shows ${JSON.stringify(shown)}`, {
        cause: err,
      });
    }
  }

  const staleStates = (page: Page): Promise<{ view: string; stale: boolean; reason: string }[]> =>
    page.evaluate(() =>
      [...document.querySelectorAll('[data-testid=view-card]')].map((card) => {
        const badge = card.querySelector('[data-testid=stale-badge]');
        return {
          view: card.dataset['view'] ?? '',
          stale: !!badge && !badge.hidden && badge.offsetParent !== null,
          reason: card.querySelector('[data-testid=stale-reason]')?.textContent ?? '',
        };
      }),
    );

  it('loads, shows every view and the alerts, and its as-of advances after the source’s does', async (t) => {
    const source = createScriptedViewsSource({ seed: 13 });
    const server = await serve(source);
    const { page, errors } = await open(`${server.url}/`);
    const expected = source.peek();
    const names = expected.views.map((v) => v.name);

    await page.waitForFunction(
      (names) => names.every((n) => document.querySelector(`[data-testid=view-card][data-view="${n}"]`)),
      names,
      { timeout: WAIT_MS },
    );
    assert.deepEqual(
      await page.evaluate(() =>
        [...document.querySelectorAll('[data-testid=view-card]')].map((c) => c.dataset['view']),
      ),
      names,
      'one card per view, in the snapshot’s order',
    );
    for (const view of expected.views) {
      const card = page.locator(`[data-view="${view.name}"]`);
      assert.equal(await card.locator('[data-testid=view-title]').textContent(), view.title);
      assert.equal(await card.locator('[data-testid=view-description]').textContent(), view.description);
      assert.equal(await card.locator('[data-testid=view-row]').count(), Math.min(10, view.rows.length), view.name);
    }
    // uPlot drew the time series: decline rate against its baseline, events/s per region.
    for (const charted of ['decline-rate', 'region-throughput']) {
      assert.equal(await page.locator(`[data-view="${charted}"] [data-testid=view-chart] canvas`).count(), 1, charted);
    }

    const alerts = page.locator('[data-testid=alert]');
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid=alert]').length === n,
      expected.alerts.length,
      {
        timeout: WAIT_MS,
      },
    );
    assert.deepEqual(await alerts.locator('[data-testid=alert-rule]').allTextContents(), [
      'decline-spike',
      'card-testing',
    ]);
    assert.deepEqual(
      await alerts.locator('[data-testid=alert-message]').allTextContents(),
      expected.alerts.map((a) => a.message),
    );
    assert.equal(await page.locator('[data-testid=connection-status]').getAttribute('data-state'), 'live');
    assert.equal(await page.locator('[data-testid=store-status]').getAttribute('data-state'), 'reachable');
    await waitForAsOf(page, names, expected.views[0]!.age.asOf!);
    assert.ok(
      (await staleStates(page)).every((s) => !s.stale),
      'nothing stale while the store answers',
    );

    for (let i = 0; i < 3; i++) {
      const asOf = source.advance(1500);
      const started = Date.now();
      await waitForAsOf(page, names, asOf);
      t.diagnostic(`as-of ${asOf} on the page ${Date.now() - started} ms after the source advanced`);
    }
    // A newly raised alert appears on top.
    const raised = source.raise({
      rule: 'amount-outlier',
      key: { merchantId: 'm-contoso-travel' },
      windowStart: new Date().toISOString(),
      value: 2_990_000,
      threshold: 96_000,
      eventTime: new Date().toISOString(),
      message: 'm-contoso-travel: 29,900.00 EUR is 134σ above its trailing mean',
    });
    await page.waitForFunction(
      (id) => document.querySelector('[data-testid=alert]')?.getAttribute('data-alert-id') === id,
      raised.id,
      {
        timeout: WAIT_MS,
      },
    );
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('shows STALE and keeps the last values while the store is unreachable, and recovers after', async () => {
    const source = createScriptedViewsSource({ seed: 7 });
    const server = await serve(source);
    const { page, errors } = await open(`${server.url}/`);
    const names = source.peek().views.map((v) => v.name);
    const lastAsOf = source.advance(1000);
    await waitForAsOf(page, names, lastAsOf);
    const rowsBefore = await page.locator('[data-view="velocity-merchant"] [data-testid=view-rows]').textContent();

    source.fail('connect ECONNREFUSED 127.0.0.1:5433');
    const unseenAsOf = source.advance(5000); // the store moved on, but cannot be read
    try {
      await page.waitForFunction(
        () =>
          [...document.querySelectorAll('[data-testid=view-card]')].every((card) => card.dataset['stale'] === 'true') &&
          document.querySelector('[data-testid=store-status]')?.dataset['state'] === 'unreachable',
        undefined,
        { timeout: WAIT_MS, polling: 100 },
      );
    } catch (err) {
      throw new Error(`the page did not go STALE: ${JSON.stringify(await staleStates(page))}`, { cause: err });
    }
    const during = await staleStates(page);
    assert.deepEqual(
      during,
      names.map((view) => ({ view, stale: true, reason: 'store unreachable' })),
      'every card shows a visible STALE badge saying why',
    );
    assert.equal(
      await page.locator('[data-testid=store-status]').getAttribute('title'),
      'connect ECONNREFUSED 127.0.0.1:5433',
    );
    // The last values stay, with their as-of.
    assert.equal(
      await page.locator('[data-view="velocity-merchant"] [data-testid=view-rows]').textContent(),
      rowsBefore,
    );
    await waitForAsOf(page, names, lastAsOf);

    source.recover();
    await waitForAsOf(page, names, unseenAsOf);
    await page.waitForFunction(
      () => [...document.querySelectorAll('[data-testid=view-card]')].every((c) => c.dataset['stale'] === 'false'),
      undefined,
      { timeout: WAIT_MS },
    );
    assert.ok((await staleStates(page)).every((s) => !s.stale));
    assert.equal(await page.locator('[data-testid=store-status]').getAttribute('data-state'), 'reachable');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('marks a view STALE when its as-of falls behind the threshold though the store answers, and clears it when it catches up', async () => {
    // Event time a minute behind the clock: a consumer cut off from Kafka, its store still readable.
    const source = createScriptedViewsSource({ seed: 5, now: Date.now() - 60_000 });
    const server = await serve(source, 0, 10_000);
    const { page, errors } = await open(`${server.url}/`);
    const names = source.peek().views.map((v) => v.name);
    await waitForAsOf(page, names, source.peek().views[0]!.age.asOf!);
    await page.waitForFunction(
      () => [...document.querySelectorAll('[data-testid=view-card]')].every((c) => c.dataset['stale'] === 'true'),
      undefined,
      { timeout: WAIT_MS },
    );
    for (const state of await staleStates(page)) {
      assert.ok(state.stale, state.view);
      assert.match(state.reason, /^\d+ s behind$/, state.view);
    }
    assert.equal(await page.locator('[data-testid=store-status]').getAttribute('data-state'), 'reachable');
    assert.match(
      (await page.locator('[data-view="decline-rate"] [data-testid=view-age]').textContent()) ?? '',
      / s behind · consumer lag /,
    );

    await waitForAsOf(page, names, source.advance(60_000)); // caught up
    await page.waitForFunction(
      () => [...document.querySelectorAll('[data-testid=view-card]')].every((c) => c.dataset['stale'] === 'false'),
      undefined,
      { timeout: WAIT_MS },
    );
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('reconnects its event stream after the server restarts, STALE while it is away', async () => {
    const source = createScriptedViewsSource({ seed: 3 });
    const first = await serve(source);
    const { page, errors } = await open(`${first.url}/`);
    const names = source.peek().views.map((v) => v.name);
    await waitForAsOf(page, names, source.advance(1000));

    await first.close();
    await page.waitForFunction(
      () => document.querySelector('[data-testid=connection-status]')?.dataset['state'] === 'reconnecting',
      undefined,
      { timeout: WAIT_MS },
    );
    assert.ok((await staleStates(page)).every((s) => s.stale && s.reason === 'page disconnected'));

    await serve(source, first.port); // the same address, as a restarted process would have
    const asOf = source.advance(1000);
    await waitForAsOf(page, names, asOf);
    await page.waitForFunction(
      () => document.querySelector('[data-testid=connection-status]')?.dataset['state'] === 'live',
      undefined,
      { timeout: WAIT_MS },
    );
    assert.ok((await staleStates(page)).every((s) => !s.stale));
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('screenshot: the page with every view, charts with history and alerts', async (t) => {
    // Event time starts 30 s back and catches up in 2.5 s steps, so the charts have a history to draw.
    const source = createScriptedViewsSource({ seed: 13, now: Date.now() - 30_000 });
    const server = await serve(source);
    const { page, errors } = await open(`${server.url}/`, { width: 1600, height: 1000 });
    const names = source.peek().views.map((v) => v.name);
    for (let i = 0; i < 11; i++) await waitForAsOf(page, names, source.advance(2_500));
    // The last step catches up with the clock, so the page shows a healthy lag of about a second.
    const behind = Date.now() - 1_200 - Date.parse(source.peek().views[0]!.age.asOf!);
    await waitForAsOf(page, names, source.advance(Math.max(1, behind)));
    const scratch = process.env['FRAUD_PAGE_SCREENSHOT'] ? undefined : mkdtempSync(join(tmpdir(), 'fraud-page-'));
    const target = scratch ? join(scratch, 'page.png') : resolve(process.env['FRAUD_PAGE_SCREENSHOT']!);
    t.after(() => scratch && rmSync(scratch, { recursive: true, force: true }));
    await page.screenshot({ path: target, fullPage: true });
    const png = readFileSync(target);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.ok(png.length > 50_000, `${png.length} bytes: a blank page would be far smaller`);
    t.diagnostic(`screenshot: ${target} (${png.length} bytes)`);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
