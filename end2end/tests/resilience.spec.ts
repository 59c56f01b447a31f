import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Browser, BrowserContext, Page } from '@playwright/test';
import {
  GENERAL_ROOM_ID,
  expect,
  messageWith,
  openRoom,
  sendMessage,
  signIn,
  test,
  uniq,
  waitConnected,
  waitHydrated,
} from './helpers';

// Resilience across server instances: extra redis-chat processes that share
// the Redis of the server Playwright started (its embedded redis-server
// listens on <REDIS_CHAT_E2E_DATA_DIR>/redis.sock), restarted under a
// connected browser.

const projectRoot = path.resolve(__dirname, '..', '..');
const serverBinary = path.join(
  path.resolve(projectRoot, process.env.CARGO_TARGET_DIR || 'target'),
  'release',
  'redis-chat',
);
const MAIN_URL = 'http://127.0.0.1:3100';

/** A free TCP port on 127.0.0.1 (the OS picks it). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** An extra redis-chat process on the main test Redis. */
class Instance {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** The last lines it printed (shown when something goes wrong). */
  readonly log: string[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private note(line: string): void {
    this.log.push(line);
    if (this.log.length > 400) this.log.shift();
  }

  /** Starts the process and waits until `/healthz` answers 200. */
  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    const dataDir = process.env.REDIS_CHAT_E2E_DATA_DIR;
    if (!dataDir) {
      throw new Error('REDIS_CHAT_E2E_DATA_DIR is not set (E2E_BASE_URL runs cannot start extra instances)');
    }
    const child = spawn(serverBinary, [], {
      cwd: projectRoot,
      env: {
        ...process.env,
        PORT: String(this.port),
        ADDR: '127.0.0.1',
        SITE_ROOT: 'target/site',
        REDIS_URL: `redis+unix://${path.join(dataDir, 'redis.sock')}`,
        REDIS_DATA_DIR: dataDir,
        BCRYPT_COST: '4',
        DEMO_DATA: 'true',
        COOKIE_SECURE: 'false',
        ALLOWED_ORIGINS: '',
        RUST_LOG: 'info',
        MSG_RATE_LIMIT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const tag = `[${this.name}:${this.port}]`;
    for (const stream of [child.stdout, child.stderr]) {
      let rest = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) this.note(`${tag} ${line}`);
      });
    }
    let exitInfo: string | null = null;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        exitInfo = `exited with code ${code} signal ${signal}`;
        this.note(`${tag} ${exitInfo}`);
        if (this.child === child) this.child = null;
        resolve();
      });
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exitInfo) throw new Error(`${this.name} ${exitInfo} before it was ready:\n${this.log.join('\n')}`);
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1_000) });
        if (res.status === 200) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`${this.name} was not healthy within 30 s:\n${this.log.join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM (graceful: sockets closed with 1001), then waits for the exit; SIGKILL after 15 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    const killed = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), 15_000)),
    ]);
    if (killed) {
      this.note(`[${this.name}] did not exit 15 s after SIGTERM: SIGKILL`);
      child.kill('SIGKILL');
      await this.exited;
    }
    this.child = null;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

/** Browser contexts opened by `userOn`, closed after each test. */
const contexts: BrowserContext[] = [];

/**
 * A page signed in as `name` with General open and its socket connected, in
 * a new context whose base URL is `baseURL` (cookies are per port, so a
 * context talks to one server).
 */
async function userOn(browser: Browser, baseURL: string, name: string): Promise<Page> {
  const context = await browser.newContext({ baseURL });
  contexts.push(context);
  const page = await context.newPage();
  await signIn(page, name);
  await openRoom(page, GENERAL_ROOM_ID);
  await waitConnected(page);
  return page;
}

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
    b = new Instance('B', await freePort());
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
