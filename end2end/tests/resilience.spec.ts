import type { Browser, BrowserContext, Page } from '@playwright/test';
import {
  GENERAL_ROOM_ID,
  expect,
  messageWith,
  openRoom,
  sendMessage,
  test,
  uniq,
  waitConnected,
  waitHydrated,
  userOn as signedInOn,
} from './helpers';
import { Instance, freePort, mainRedisEnv } from './instances';

// Resilience across server instances: extra redis-chat processes that share
// the Redis of the server Playwright started (its embedded redis-server
// listens on <REDIS_CHAT_E2E_DATA_DIR>/redis.sock), restarted under a
// connected browser.

const MAIN_URL = 'http://127.0.0.1:3100';

/** Browser contexts opened by `userOn`, closed after each test. */
const contexts: BrowserContext[] = [];
const userOn = (browser: Browser, baseURL: string, name: string) =>
  signedInOn(browser, baseURL, name, contexts);

/**
 * Waits until the page's socket is open again after its server came back.
 * (The client's backoff may have grown to several seconds meanwhile.)
 */
async function waitReconnected(page: Page): Promise<void> {
  await expect(page.locator('#conn-status')).toHaveAttribute('data-state', 'open', { timeout: 30_000 });
}

/** The texts of the open room's messages, in display order. */
async function texts(page: Page): Promise<string[]> {
  return page.locator('#messages .message .message-text').allTextContents();
}

/** Fails unless each of `wanted` is shown exactly once, in this order. */
async function expectOnceInOrder(page: Page, wanted: string[]): Promise<void> {
  await expect
    .poll(async () => (await texts(page)).filter((t) => wanted.includes(t)), {
      message: 'the messages, each once and in order',
      timeout: 15_000,
    })
    .toEqual(wanted);
}

test.describe('resilience', () => {
  let b: Instance;

  test.beforeAll(async () => {
    b = new Instance('B', await freePort(), mainRedisEnv());
  });

  test.afterAll(async () => {
    await b?.stop();
  });

  test.beforeEach(async () => {
    b.log.length = 0;
    await b.start();
  });

  test.afterEach(async ({}, testInfo) => {
    for (const context of contexts.splice(0)) await context.close();
    if (testInfo.status !== testInfo.expectedStatus) {
      await testInfo.attach('instance-B.log', { body: b.log.join('\n'), contentType: 'text/plain' });
    }
    await b.stop();
  });

  test('two instances: users on different servers talk live, each message once', async ({ browser }) => {
    test.setTimeout(60_000);
    const pablo = await userOn(browser, MAIN_URL, 'Pablo');
    const joe = await userOn(browser, b.url, 'Joe');

    const hello = `from Pablo on main ${uniq()}`;
    await sendMessage(pablo, hello);
    await expect(messageWith(joe, hello)).toHaveCount(1);
    await expect(messageWith(joe, hello).locator('.message-text')).toHaveText(hello);

    const reply = `Joe answers from B ${uniq()}`;
    await sendMessage(joe, reply);
    await expect(messageWith(pablo, reply)).toHaveCount(1);
    await expect(messageWith(pablo, reply).locator('.message-text')).toHaveText(reply);

    // And nothing arrives twice a little later (e.g. a second delivery through the other instance).
    await expect(pablo.locator('#messages .message-text', { hasText: hello })).toHaveCount(1);
    await expect(joe.locator('#messages .message-text', { hasText: hello })).toHaveCount(1);
    await expect(pablo.locator('#messages .message-text', { hasText: reply })).toHaveCount(1);
    await expect(joe.locator('#messages .message-text', { hasText: reply })).toHaveCount(1);
    await expectOnceInOrder(pablo, [hello, reply]);
    await expectOnceInOrder(joe, [hello, reply]);
  });

  test('the instance of a reader restarts while another user sends: nothing lost, nothing twice', async ({
    browser,
  }) => {
    test.setTimeout(60_000);
    const pablo = await userOn(browser, b.url, 'Pablo');
    const joe = await userOn(browser, MAIN_URL, 'Joe');

    const run = uniq();
    const m = [1, 2, 3, 4, 5].map((i) => `restart ${run} m${i}`);

    // m1, m2 before the restart: live.
    await sendMessage(joe, m[0]);
    await sendMessage(joe, m[1]);
    await expectOnceInOrder(pablo, m.slice(0, 2));

    // B goes away (1001 to Pablo's page); m3, m4 while it is down.
    await b.stop();
    await expect(pablo.locator('#conn-status')).not.toHaveAttribute('data-state', 'open');
    await sendMessage(joe, m[2]);
    await sendMessage(joe, m[3]);
    // (Pablo cannot have them yet: they must come from the replay on resume.)
    await expect(messageWith(pablo, m[2])).toHaveCount(0);

    // B is back on the same port; m5 as soon as it is healthy, possibly
    // before Pablo's page has reconnected.
    await b.start();
    await sendMessage(joe, m[4]);

    await waitReconnected(pablo);
    await expectOnceInOrder(pablo, m);
    await expect(pablo.locator('#messages .message.failed, #messages .message.pending')).toHaveCount(0);
  });

  test('a message typed while the server is down is delivered once after reconnecting', async ({ browser }) => {
    test.setTimeout(60_000);
    const mary = await userOn(browser, b.url, 'Mary');
    const alex = await userOn(browser, MAIN_URL, 'Alex');

    await b.stop();
    await expect(mary.locator('#conn-status')).not.toHaveAttribute('data-state', 'open');

    const text = `typed offline by Mary ${uniq()}`;
    const composer = mary.locator('#composer');
    await composer.fill(text);
    await composer.press('Enter');
    await expect(composer).toHaveValue('');
    // Sending while the socket is closed: shown at once as pending, queued.
    const mine = messageWith(mary, text);
    await expect(mine).toHaveCount(1);
    await expect(mine).toHaveClass(/\bpending\b/);
    await expect(messageWith(alex, text)).toHaveCount(0);

    await b.start();
    await waitReconnected(mary);
    // It goes out by itself once the connection is back (same nonce: never
    // stored twice), without anyone pressing Retry.
    await expect(mine).not.toHaveClass(/\b(pending|failed)\b/, { timeout: 20_000 });
    await expect(mine).toHaveClass(/\bown\b/);
    await expect(mine).toHaveCount(1);

    await expect(messageWith(alex, text)).toHaveCount(1);
    await expect(messageWith(alex, text).locator('.message-text')).toHaveText(text);

    // The history has it once too.
    await mary.reload();
    await waitHydrated(mary);
    await openRoom(mary, GENERAL_ROOM_ID);
    await waitConnected(mary);
    await expect(messageWith(mary, text)).toHaveCount(1);
    await expect(messageWith(mary, text).locator('.message-text')).toHaveText(text);
    await alex.reload();
    await waitHydrated(alex);
    await openRoom(alex, GENERAL_ROOM_ID);
    await expect(messageWith(alex, text)).toHaveCount(1);
  });

  test('a message pending in one room survives switching rooms and goes out on reconnect', async ({ browser }) => {
    test.setTimeout(60_000);
    const mary = await userOn(browser, b.url, 'Mary');
    const alex = await userOn(browser, MAIN_URL, 'Alex');
    // Mary has a second room to switch to.
    await mary.locator('#user-search').fill('Pablo');
    const result = mary.locator('.search-result').filter({ hasText: /\bPablo\b/ }).first();
    await result.click();
    await expect(mary.locator('#room-title')).toContainText('Pablo');
    await openRoom(mary, GENERAL_ROOM_ID);

    await b.stop();
    await expect(mary.locator('#conn-status')).not.toHaveAttribute('data-state', 'open');
    const text = `pending across rooms ${uniq()}`;
    const composer = mary.locator('#composer');
    await composer.fill(text);
    await composer.press('Enter');
    await expect(messageWith(mary, text)).toHaveClass(/\bpending\b/);

    // Away to the private room and back (still offline): it is still there.
    const pabloRoom = mary
      .locator('#rooms .room')
      .filter({ has: mary.locator('.room-name', { hasText: /^\s*Pablo\s*$/ }) });
    await pabloRoom.click();
    await expect(pabloRoom).toHaveClass(/\bactive\b/);
    await expect(messageWith(mary, text)).toHaveCount(0);
    await openRoom(mary, GENERAL_ROOM_ID);
    await expect(messageWith(mary, text)).toHaveCount(1);
    await expect(messageWith(mary, text)).toHaveClass(/\bpending\b/);

    // Away again; the server comes back while General is not open: the
    // message still goes out, once.
    await pabloRoom.click();
    await expect(pabloRoom).toHaveClass(/\bactive\b/);
    await b.start();
    await waitReconnected(mary);
    await expect(messageWith(alex, text)).toHaveCount(1);
    await openRoom(mary, GENERAL_ROOM_ID);
    const mine = messageWith(mary, text);
    await expect(mine).toHaveCount(1);
    await expect(mine).not.toHaveClass(/\b(pending|failed)\b/);
    await expect(messageWith(alex, text)).toHaveCount(1);
  });
});
