import {
  test as base,
  expect,
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  type Locator,
  type Page,
} from '@playwright/test';

// Demo accounts created by DEMO_DATA=true (the config starts the server with it).
export const DEMO_PASSWORD = 'password123';
// Password of the users the tests register.
export const FRESH_PASSWORD = 'password123!';
export const GENERAL_ROOM_ID = '0';

/** A short random token, to make texts and user names unique per run. */
export function uniq(): string {
  return Date.now().toString(36).slice(-4) + Math.random().toString(36).slice(2, 8);
}

/**
 * The test API with two extra fixtures:
 * - `newPage(options?)`: a page in a new browser context (a separate user:
 *   separate cookies); every context is closed after the test.
 * - `pageAs(name, options?)`: the same, signed in as a demo user.
 */
export const test = base.extend<{
  newPage: (options?: BrowserContextOptions) => Promise<Page>;
  pageAs: (name: string, options?: BrowserContextOptions) => Promise<Page>;
}>({
  newPage: async ({ browser, baseURL }, use) => {
    const contexts: BrowserContext[] = [];
    await use(async (options = {}) => {
      const context = await browser.newContext({ baseURL, ...options });
      contexts.push(context);
      return context.newPage();
    });
    for (const context of contexts) await context.close();
  },
  pageAs: async ({ newPage }, use) => {
    await use(async (name, options) => {
      const page = await newPage(options);
      await signIn(page, name);
      return page;
    });
  },
});
export { expect };

/** Waits until the WASM front end has hydrated the chat page. */
export async function waitHydrated(page: Page): Promise<void> {
  await expect(page.locator('[data-hydrated="true"]').first()).toBeAttached({ timeout: 20_000 });
}

/** URL predicates for `expect(page).toHaveURL(...)` (any query string is allowed). */
export const LOGIN_URL = (url: URL) => url.pathname === '/login';
export const CHAT_URL = (url: URL) => url.pathname === '/';

/**
 * Opens `path` while signed out and expects to land on /login. The page
 * sends the visitor on by itself (once its cached WASM has hydrated, which
 * can be before the load event), so the navigation is only awaited until
 * the server's answer arrives.
 */
export async function expectSentToSignIn(page: Page, path: string): Promise<void> {
  await page.goto(path, { waitUntil: 'commit' });
  await expect(page).toHaveURL(LOGIN_URL);
}

/** Signs in on /login with the sign-in form and waits for the hydrated chat page. */
export async function signIn(page: Page, name: string, password = DEMO_PASSWORD): Promise<void> {
  await page.goto('/login');
  const form = page.locator('#login-form');
  await form.locator('input[name="username"]').fill(name);
  await form.locator('input[name="password"]').fill(password);
  await page.locator('#login-submit').click();
  await expect(page).toHaveURL(CHAT_URL);
  await expect(page.locator('#current-user')).toHaveText(name);
  await waitHydrated(page);
}

/** Registers a new user `u<random>` (password `password123!`); returns its name. */
export async function registerFresh(page: Page): Promise<string> {
  const name = `u${uniq()}`;
  await page.goto('/login');
  const form = page.locator('#register-form');
  await form.locator('input[name="username"]').fill(name);
  await form.locator('input[name="password"]').fill(FRESH_PASSWORD);
  await page.locator('#register-submit').click();
  await expect(page).toHaveURL(CHAT_URL);
  await expect(page.locator('#current-user')).toHaveText(name);
  await waitHydrated(page);
  return name;
}

/** Waits until the page's WebSocket is connected. */
export async function waitConnected(page: Page): Promise<void> {
  await expect(page.locator('#conn-status')).toHaveAttribute('data-state', 'open', { timeout: 15_000 });
}

/** Opens a room from the rooms list and waits until it is the active one. */
export async function openRoom(page: Page, roomId: string): Promise<void> {
  const room = page.locator(`#rooms .room[data-room-id="${roomId}"]`);
  await room.click();
  await expect(room).toHaveClass(/\bactive\b/);
  await expect(page.locator('#conversation')).toBeVisible();
}

/** All messages shown in the open room. */
export function messages(page: Page): Locator {
  return page.locator('#messages .message');
}

/** The messages whose text contains `text` (tests use unique texts). */
export function messageWith(page: Page, text: string): Locator {
  return messages(page).filter({ has: page.locator('.message-text', { hasText: text }) });
}

/**
 * Records, from now on, whether a `.message.pending` element containing `text`
 * ever appears in the page (a MutationObserver sees it even when the server's
 * acknowledgement arrives a few milliseconds later). Read it with `sawPending`.
 */
export async function watchPending(page: Page, text: string): Promise<void> {
  await page.evaluate((t) => {
    const w = window as unknown as { __sawPending?: Record<string, boolean> };
    const seen = (w.__sawPending ??= {});
    const check = () => {
      for (const el of Array.from(document.querySelectorAll('#messages .message.pending'))) {
        if ((el.textContent ?? '').includes(t)) seen[t] = true;
      }
    };
    new MutationObserver(check).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
      attributeFilter: ['class'],
    });
    check();
  }, text);
}

export async function sawPending(page: Page, text: string): Promise<boolean> {
  return page.evaluate(
    (t) => !!(window as unknown as { __sawPending?: Record<string, boolean> }).__sawPending?.[t],
    text,
  );
}

/**
 * Types `text` in the composer, sends it with Enter and waits until the
 * sender's own copy is confirmed by the server (no longer `pending`).
 */
export async function sendMessage(page: Page, text: string): Promise<Locator> {
  const composer = page.locator('#composer');
  await composer.fill(text);
  await composer.press('Enter');
  await expect(composer).toHaveValue('');
  const mine = messageWith(page, text).last();
  await expect(mine).toBeVisible();
  await expect(mine).toHaveClass(/\bown\b/);
  await expect(mine).not.toHaveClass(/\bpending\b/);
  await expect(mine).not.toHaveClass(/\bfailed\b/);
  return mine;
}

/**
 * A page signed in as `name` with General open and its socket connected, in
 * a new context whose base URL is `baseURL` (cookies are per port, so a
 * context talks to one server). The context is added to `contexts`, for
 * the caller to close.
 */
export async function userOn(
  browser: Browser,
  baseURL: string,
  name: string,
  contexts: BrowserContext[],
): Promise<Page> {
  const context = await browser.newContext({ baseURL });
  contexts.push(context);
  const page = await context.newPage();
  await signIn(page, name);
  await openRoom(page, GENERAL_ROOM_ID);
  await waitConnected(page);
  return page;
}
