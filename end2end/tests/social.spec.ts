import type { Locator, Page } from '@playwright/test';
import {
  CHAT_URL,
  FRESH_PASSWORD,
  LOGIN_URL,
  expect,
  expectSentToSignIn,
  messageWith,
  registerFresh,
  sendMessage,
  signIn,
  test,
  uniq,
  waitConnected,
  waitHydrated,
} from './helpers';

// Issue 7 in the browser: read state and unread counts, "Seen", typing,
// edit/delete, text markup, the account page. Each test registers fresh
// users, so counts start at zero and other tests cannot disturb them.

/** Two fresh users, each signed in in their own browser context, connected. */
async function twoUsers(newPage: (o?: object) => Promise<Page>) {
  const a = await newPage();
  const aName = await registerFresh(a);
  const b = await newPage();
  const bName = await registerFresh(b);
  await waitConnected(a);
  await waitConnected(b);
  return { a, aName, b, bName };
}

/** Opens (creating) the private room with `name` from the user search. */
async function openPrivateWith(page: Page, name: string): Promise<void> {
  await page.locator('#user-search').fill(name);
  const result = page.locator('.search-result').filter({ hasText: name });
  await expect(result).toHaveCount(1);
  await result.click();
  await expect(page.locator('#room-title')).toHaveText(name);
}

/** The room named `name` in the room list. */
function roomNamed(page: Page, name: string): Locator {
  return page.locator('#rooms .room').filter({ has: page.locator('.room-name', { hasText: name }) });
}

/** Opens the room named `name` from the room list. */
async function openRoomNamed(page: Page, name: string): Promise<void> {
  const room = roomNamed(page, name);
  await room.click();
  await expect(room).toHaveClass(/\bactive\b/);
  await expect(page.locator('#room-title')).toHaveText(name);
}

/** A message by its server id. */
function messageById(page: Page, id: string): Locator {
  return page.locator(`#messages .message[data-id="${id}"]`);
}

/** The own message that "Seen" is shown under. */
function seenMessage(page: Page): Locator {
  return page.locator('#messages .message.own:has(+ .message-seen)');
}

test.describe('read state', () => {
  test('unread counts, the tab title, the divider and "Seen" across two users and two tabs', async ({
    newPage,
  }) => {
    const { a, aName, b, bName } = await twoUsers(newPage);
    // b also has a second tab (same browser context, same session).
    const b2 = await b.context().newPage();
    await b2.goto('/');
    await waitHydrated(b2);
    await waitConnected(b2);

    await openPrivateWith(a, bName);
    const first = `first ${uniq()}`;
    await sendMessage(a, first);

    // b has General open: the new private room counts one unread message,
    // in both tabs, with a dot on the private room's avatar and in the title.
    for (const page of [b, b2]) {
      const room = roomNamed(page, aName);
      await expect(room.locator('.unread-badge')).toHaveText('1');
      await expect(room.locator('.unread-dot')).toBeVisible();
      await expect(room).toHaveClass(/\bunread\b/);
      await expect(page).toHaveTitle('(1) Redis chat');
    }
    // The sender has nothing unread, and no "Seen" yet.
    await expect(roomNamed(a, bName).locator('.unread-badge')).toHaveCount(0);
    await expect(a.locator('#messages .message-seen')).toHaveCount(0);

    // b reads it in the first tab: a divider before it, the count goes.
    await openRoomNamed(b, aName);
    await expect(messageWith(b, first)).toHaveCount(1);
    await expect(b.locator('#messages .unread-divider')).toHaveText(/New messages/i);
    await expect(b.locator('#messages .unread-divider + .message')).toContainText(first);
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveCount(0);
    await expect(b).toHaveTitle('Redis chat');
    // The other tab hears of it from the server.
    await expect(roomNamed(b2, aName).locator('.unread-badge')).toHaveCount(0);
    await expect(b2).toHaveTitle('Redis chat');

    // a sees "Seen" under the message, live.
    await expect(seenMessage(a)).toHaveCount(1);
    await expect(seenMessage(a)).toContainText(first);

    // While b has the room open, a new message is read at once: "Seen"
    // moves under it, and b counts nothing.
    const second = `second ${uniq()}`;
    await sendMessage(a, second);
    await expect(messageWith(b, second)).toHaveCount(1);
    await expect(seenMessage(a)).toContainText(second);
    await expect(a.locator('#messages .message-seen')).toHaveCount(1);
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveCount(0);
    await expect(b).toHaveTitle('Redis chat');

    // b's reply makes no "Seen" on b's side until a reads it; a has the
    // room open, so that is at once.
    const reply = `reply ${uniq()}`;
    await sendMessage(b, reply);
    await expect(messageWith(a, reply)).toHaveCount(1);
    await expect(seenMessage(b)).toContainText(reply);

    // After a reload the counts come from the server: still nothing unread
    // for b, and no divider any more (everything was read).
    await b.reload();
    await waitHydrated(b);
    await waitConnected(b);
    await expect(roomNamed(b, aName)).toHaveCount(1);
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveCount(0);
    await openRoomNamed(b, aName);
    await expect(messageWith(b, second)).toHaveCount(1);
    await expect(b.locator('#messages .unread-divider')).toHaveCount(0);
  });

  test('unread counts come from the server after a reload', async ({ newPage }) => {
    const { a, aName, b, bName } = await twoUsers(newPage);
    await openPrivateWith(a, bName);
    const texts = [1, 2, 3].map((i) => `count ${i} ${uniq()}`);
    for (const t of texts) await sendMessage(a, t);
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveText('3');

    await b.reload();
    await waitHydrated(b);
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveText('3');
    await expect(b).toHaveTitle('(3) Redis chat');
    await openRoomNamed(b, aName);
    await expect(b.locator('#messages .unread-divider + .message')).toContainText(texts[0]);
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveCount(0);
    await expect(seenMessage(a)).toContainText(texts[2]);
  });
});

test.describe('hidden tab', () => {
  test('while hidden: the open room counts unread, a notification shows; shown again: read', async ({
    newPage,
  }) => {
    const { a, aName, b, bName } = await twoUsers(newPage);
    // b's browser: a stand-in Notification API that records what is shown,
    // and a switch for document.hidden (a headless page is always visible).
    await b.context().addInitScript(() => {
      const w = window as unknown as Record<string, unknown>;
      let hidden = false;
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
      Object.defineProperty(document, 'visibilityState', {
        configurable: true,
        get: () => (hidden ? 'hidden' : 'visible'),
      });
      w.__setHidden = (h: boolean) => {
        hidden = h;
        document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
      };
      const shown: { title: string; body?: string }[] = [];
      w.__notifications = shown;
      // The permission outlives a reload, as a real one does.
      class FakeNotification {
        static permission = localStorage.getItem('test:permission') ?? 'default';
        static requestPermission(): Promise<string> {
          FakeNotification.permission = 'granted';
          localStorage.setItem('test:permission', 'granted');
          return Promise.resolve('granted');
        }
        constructor(title: string, options?: { body?: string }) {
          shown.push({ title, body: options?.body });
        }
      }
      w.Notification = FakeNotification;
    });
    await b.reload();
    await waitHydrated(b);
    await waitConnected(b);

    await openPrivateWith(a, bName);
    await sendMessage(a, `hello ${uniq()}`);
    await openRoomNamed(b, aName);
    await expect(seenMessage(a)).toHaveCount(1);

    const toggle = b.locator('#notify-toggle');
    await expect(toggle).toHaveText('Enable notifications');
    await toggle.click();
    await expect(toggle).toHaveText('Notifications on');

    await b.evaluate(() => (window as unknown as { __setHidden: (h: boolean) => void }).__setHidden(true));
    const text = `while away <b>${uniq()}</b>`;
    await sendMessage(a, text);
    await expect(messageWith(b, text)).toHaveCount(1);
    // Hidden: not read, though the room is open.
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveText('1');
    await expect(b).toHaveTitle('(1) Redis chat');
    await expect(b.locator('#messages .unread-divider + .message')).toContainText(text);
    await expect
      .poll(() => b.evaluate(() => (window as unknown as { __notifications: unknown[] }).__notifications))
      .toEqual([{ title: aName, body: text }]);
    // a's newest message is not read yet: no "Seen" anywhere.
    await expect(a.locator('#messages .message-seen')).toHaveCount(0);

    // Shown again: read, and a sees it.
    await b.evaluate(() => (window as unknown as { __setHidden: (h: boolean) => void }).__setHidden(false));
    await expect(roomNamed(b, aName).locator('.unread-badge')).toHaveCount(0);
    await expect(b).toHaveTitle('Redis chat');
    await expect(seenMessage(a)).toContainText(text);

    // The choice is remembered across a reload.
    await b.reload();
    await waitHydrated(b);
    await expect(b.locator('#notify-toggle')).toHaveText('Notifications on');
  });
});

test.describe('typing', () => {
  test('"… is typing" shows live, ends with the message and after a timeout', async ({ newPage }) => {
    const { a, aName, b, bName } = await twoUsers(newPage);
    await openPrivateWith(a, bName);
    await sendMessage(a, `hello ${uniq()}`);
    await openRoomNamed(b, aName);

    // Typing notices are throttled (the client sends one every 3 s at
    // most, the server drops closer ones): keep typing until one goes out.
    const composer = a.locator('#composer');
    let n = 0;
    const keepTypingUntilShown = async () => {
      await expect(async () => {
        await composer.fill(`I am writing ${n++}`);
        await expect(b.locator('#typing')).toHaveText(`${aName} is typing…`, { timeout: 1_000 });
      }).toPass({ timeout: 15_000 });
    };
    await keepTypingUntilShown();
    // Never to oneself.
    await expect(a.locator('#typing')).toHaveText('');

    // The message ends it at once.
    const text = `done typing ${uniq()}`;
    await composer.fill(text);
    await composer.press('Enter');
    await expect(messageWith(b, text)).toHaveCount(1);
    await expect(b.locator('#typing')).toHaveText('');

    // Typing again shows it again, and it goes by itself after a few seconds.
    await keepTypingUntilShown();
    await expect(b.locator('#typing')).toHaveText('', { timeout: 12_000 });
  });
});

test.describe('edit and delete', () => {
  test('own messages are edited and deleted live for both users; markup renders', async ({ newPage }) => {
    const { a, aName, b, bName } = await twoUsers(newPage);
    await openPrivateWith(a, bName);
    const original = `original ${uniq()}`;
    const sent = await sendMessage(a, original);
    const id = await sent.getAttribute('data-id');
    expect(id).toBeTruthy();
    // By id from now on: the text changes.
    const mine = messageById(a, id!);
    await openRoomNamed(b, aName);
    const theirs = messageById(b, id!);
    await expect(theirs.locator('.message-text')).toHaveText(original);
    // Not b's message: no actions for b.
    await expect(theirs.locator('.message-action')).toHaveCount(0);

    // Escape cancels an edit.
    await mine.hover();
    await mine.locator('.message-action.edit').click();
    const box = mine.locator('textarea.edit-input');
    await expect(box).toBeFocused();
    await box.fill('never sent');
    await box.press('Escape');
    await expect(box).toHaveCount(0);
    await expect(mine.locator('.message-text')).toHaveText(original);

    // Enter saves: both see the new text, marked edited.
    const edited = `edited *bold* \`x_y\` ${uniq()}`;
    await mine.hover();
    await mine.locator('.message-action.edit').click();
    await box.fill(edited);
    await box.press('Enter');
    for (const m of [mine, theirs]) {
      await expect(m.locator('.message-text strong')).toHaveText('bold');
      await expect(m.locator('.message-text code')).toHaveText('x_y');
      await expect(m.locator('.message-edited')).toHaveText('(edited)');
    }
    await expect(theirs.locator('.message-text')).toContainText('edited bold x_y');
    // The room list previews follow.
    await expect(roomNamed(b, aName).locator('.room-preview')).toContainText('edited *bold*');

    // Delete: both see "message deleted", without actions.
    await mine.hover();
    await mine.locator('.message-action.delete').click();
    for (const m of [mine, theirs]) {
      await expect(m).toHaveClass(/\bdeleted\b/);
      await expect(m.locator('.message-text')).toHaveText('message deleted');
      await expect(m.locator('.message-action')).toHaveCount(0);
    }
    await expect(roomNamed(b, aName).locator('.room-preview')).toHaveText('Message deleted');
    await expect(roomNamed(a, bName).locator('.room-preview')).toHaveText('Message deleted');

    // History says the same after a reload.
    await b.reload();
    await waitHydrated(b);
    await openRoomNamed(b, aName);
    await expect(messageById(b, id!).locator('.message-text')).toHaveText('message deleted');
  });

  test('text markup: bold, italic, code and links, never HTML', async ({ newPage }) => {
    const { a, aName, b, bName } = await twoUsers(newPage);
    await openPrivateWith(a, bName);
    const tag = uniq();
    // (Not `sendMessage`: the shown text differs from the typed one.)
    const composer = a.locator('#composer');
    await composer.fill(`*strong ${tag}* _soft_ \`<b>raw</b> https://a.io\` snake_case_name 2*3*4 https://redis.io`);
    await composer.press('Enter');
    await expect(messageWith(a, `strong ${tag}`)).not.toHaveClass(/\bpending\b/);
    await openRoomNamed(b, aName);
    const m = messageWith(b, `strong ${tag}`);
    await expect(m).toHaveCount(1);
    await expect(m.locator('.message-text strong')).toHaveText(`strong ${tag}`);
    await expect(m.locator('.message-text em')).toHaveText('soft');
    await expect(m.locator('.message-text code')).toHaveText('<b>raw</b> https://a.io');
    await expect(m.locator('.message-text b')).toHaveCount(0);
    await expect(m.locator('.message-text a')).toHaveCount(1);
    await expect(m.locator('.message-text a')).toHaveAttribute('href', 'https://redis.io');
    await expect(m.locator('.message-text')).toContainText('snake_case_name 2*3*4');
  });
});

test.describe('account', () => {
  test('change the password: checks, errors, other sessions end, the new one works', async ({ newPage }) => {
    const page = await newPage();
    const name = await registerFresh(page);
    // A second session of the same user, in another browser.
    const other = await newPage();
    await signIn(other, name, FRESH_PASSWORD);

    await page.locator('#account-link').click();
    await expect(page).toHaveURL((u) => u.pathname === '/account');
    await waitHydrated(page);
    await expect(page.locator('#account-user')).toHaveText(name);

    const form = page.locator('#password-form');
    const current = form.locator('input[name="current_password"]');
    const fresh = form.locator('input[name="new_password"]');
    const confirm = form.locator('input[name="confirm_password"]');
    const newPassword = `new-${uniq()}`;

    // The repeat must match (checked in the browser; nothing is sent).
    await current.fill(FRESH_PASSWORD);
    await fresh.fill(newPassword);
    await confirm.fill(`${newPassword}x`);
    await expect(page.locator('#password-mismatch')).toBeVisible();
    await page.locator('#password-submit').click();
    await expect(page.locator('#password-ok')).toHaveCount(0);

    // A wrong current password: the server's message.
    await confirm.fill(newPassword);
    await expect(page.locator('#password-mismatch')).toHaveCount(0);
    await current.fill('not-my-password');
    await page.locator('#password-submit').click();
    await expect(form.locator('.form-error')).toHaveText('The current password is wrong.');

    // Right: done, the form is emptied.
    await current.fill(FRESH_PASSWORD);
    await page.locator('#password-submit').click();
    await expect(page.locator('#password-ok')).toBeVisible();
    await expect(current).toHaveValue('');
    await expect(form.locator('.form-error')).toHaveCount(0);

    // The other session is over; this one goes on.
    await expectSentToSignIn(other, '/');
    await page.goto('/');
    await expect(page).toHaveURL(CHAT_URL);

    // The new password signs in.
    await signIn(other, name, newPassword);
  });

  test('sign out everywhere ends every session', async ({ newPage }) => {
    const page = await newPage();
    const name = await registerFresh(page);
    const other = await newPage();
    await signIn(other, name, FRESH_PASSWORD);

    await page.goto('/account');
    await waitHydrated(page);
    await page.locator('#logout-all').click();
    await expect(page).toHaveURL(LOGIN_URL);
    await expectSentToSignIn(page, '/');
    // The other browser's open chat page is signed out by its socket's
    // close (4001), without a reload.
    await expect(other).toHaveURL(LOGIN_URL, { timeout: 5_000 });
    await expectSentToSignIn(other, '/account');
  });

  test('without JavaScript: the password form posts and shows the server\'s errors', async ({ newPage }) => {
    const js = await newPage();
    const name = await registerFresh(js);
    const page = await newPage({ javaScriptEnabled: false });
    await page.goto('/login');
    const login = page.locator('#login-form');
    await login.locator('input[name="username"]').fill(name);
    await login.locator('input[name="password"]').fill(FRESH_PASSWORD);
    await page.locator('#login-submit').click();
    await expect(page).toHaveURL(CHAT_URL);

    await page.goto('/account');
    const form = page.locator('#password-form');
    const newPassword = `nojs-${uniq()}`;
    await form.locator('input[name="current_password"]').fill('not-my-password');
    await form.locator('input[name="new_password"]').fill(newPassword);
    await form.locator('input[name="confirm_password"]').fill(newPassword);
    await page.locator('#password-submit').click();
    await expect(page).toHaveURL((u) => u.pathname === '/account');
    await expect(form.locator('.form-error')).toHaveText('The current password is wrong.');

    // (A fresh page: a success redirects back to the Referer, which would
    // still carry the previous error in its query.)
    await page.goto('/account');
    await form.locator('input[name="current_password"]').fill(FRESH_PASSWORD);
    await form.locator('input[name="new_password"]').fill(newPassword);
    await form.locator('input[name="confirm_password"]').fill(newPassword);
    await page.locator('#password-submit').click();
    await expect(page).toHaveURL((u) => u.pathname === '/account');
    await expect(form.locator('.form-error')).toHaveCount(0);
    // The JavaScript session was another one: it is over.
    await js.goto('/');
    await expect(js).toHaveURL(LOGIN_URL);
    await signIn(js, name, newPassword);
  });

  test('signed out, /account sends to the sign-in page', async ({ newPage }) => {
    const page = await newPage();
    await expectSentToSignIn(page, '/account');
  });
});
