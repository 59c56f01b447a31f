import {
  GENERAL_ROOM_ID,
  expect,
  messageWith,
  messages,
  openRoom,
  sawPending,
  sendMessage,
  signIn,
  test,
  uniq,
  waitConnected,
  watchPending,
} from './helpers';

test.describe('chat', () => {
  test('a message in General reaches another user live', async ({ pageAs }) => {
    const pablo = await pageAs('Pablo');
    const joe = await pageAs('Joe');
    await openRoom(pablo, GENERAL_ROOM_ID);
    await openRoom(joe, GENERAL_ROOM_ID);
    await waitConnected(pablo);
    await waitConnected(joe);

    const text = `hello from Pablo ${uniq()}`;
    await watchPending(pablo, text);
    const mine = await sendMessage(pablo, text);
    // The sender's copy showed up at once as pending, then was confirmed.
    expect(await sawPending(pablo, text), 'the own copy was never .pending').toBe(true);
    await expect(mine).not.toHaveClass(/\bpending\b/);
    await expect(mine.locator('.message-from')).toHaveText(/Pablo/);

    // Joe gets it over the WebSocket, without reloading.
    const theirs = messageWith(joe, text);
    await expect(theirs).toHaveCount(1);
    await expect(theirs.locator('.message-text')).toHaveText(text);
    await expect(theirs).not.toHaveClass(/\bown\b/);
  });

  test('a private room: Pablo writes to Mary', async ({ pageAs }) => {
    const pablo = await pageAs('Pablo');
    await waitConnected(pablo);
    await pablo.locator('#user-search').fill('Mary');
    const result = pablo.locator('.search-result').filter({ hasText: /\bMary\b/ }).first();
    await expect(result).toBeVisible();
    await result.click();
    await expect(pablo.locator('#conversation')).toBeVisible();
    await expect(pablo.locator('#room-title')).toContainText('Mary');

    const text = `psst Mary ${uniq()}`;
    await sendMessage(pablo, text);

    const mary = await pageAs('Mary');
    const room = mary
      .locator('#rooms .room')
      .filter({ has: mary.locator('.room-name', { hasText: /^\s*Pablo\s*$/ }) });
    await expect(room).toHaveCount(1);
    await room.click();
    await expect(mary.locator('#room-title')).toContainText('Pablo');
    await expect(messageWith(mary, text)).toHaveCount(1);
    await expect(messageWith(mary, text).locator('.message-text')).toHaveText(text);
  });

  test('message text is shown literally, never run as HTML', async ({ pageAs }) => {
    const pablo = await pageAs('Pablo');
    const joe = await pageAs('Joe');
    await openRoom(pablo, GENERAL_ROOM_ID);
    await openRoom(joe, GENERAL_ROOM_ID);
    await waitConnected(pablo);
    await waitConnected(joe);

    const tag = uniq();
    const img = `<img src=x onerror="window.__xss=1"> ${tag}`;
    const script = `<script>window.__xss=2</script> ${tag}`;
    await sendMessage(pablo, img);
    await sendMessage(pablo, script);

    const check = async (page: typeof pablo) => {
      await expect(messageWith(page, `window.__xss=1"> ${tag}`).locator('.message-text')).toHaveText(img);
      await expect(messageWith(page, `window.__xss=2</script> ${tag}`).locator('.message-text')).toHaveText(
        script,
      );
      await expect(page.locator('#messages .message-text img, #messages .message-text script')).toHaveCount(0);
      expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    };
    // As sent (client-rendered), as received live, and as rendered by the server after a reload.
    await check(pablo);
    await check(joe);
    await joe.reload();
    await openRoom(joe, GENERAL_ROOM_ID);
    await check(joe);
  });

  test('older history loads when scrolling to the top', async ({ pageAs }) => {
    test.setTimeout(180_000);
    const pablo = await pageAs('Pablo');
    await openRoom(pablo, GENERAL_ROOM_ID);
    await waitConnected(pablo);

    const run = uniq();
    const label = (i: number) => `page ${run} #${String(i).padStart(2, '0')}`;
    const COUNT = 60;
    for (let i = 1; i <= COUNT; i++) await sendMessage(pablo, label(i));

    await pablo.reload();
    await openRoom(pablo, GENERAL_ROOM_ID);
    await waitConnected(pablo);
    // The newest page only: the last message is there, the first is not yet.
    await expect(messageWith(pablo, label(COUNT))).toHaveCount(1);
    await expect(messageWith(pablo, label(1))).toHaveCount(0);
    const initial = await messages(pablo).count();
    expect(initial).toBeLessThanOrEqual(50);

    const list = pablo.locator('#messages');
    let count = initial;
    for (let attempt = 0; attempt < 5 && (await messageWith(pablo, label(1)).count()) === 0; attempt++) {
      // Scroll away from the top first so that going to the top is a real scroll.
      await list.evaluate((el) => {
        el.scrollTop = el.scrollHeight;
      });
      await list.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve(null))));
      await list.evaluate((el) => {
        el.scrollTop = 0;
      });
      const before = count;
      await expect.poll(() => messages(pablo).count(), { message: 'no older page was loaded' }).toBeGreaterThan(before);
      count = await messages(pablo).count();
    }
    await expect(messageWith(pablo, label(1))).toHaveCount(1);
    expect(count).toBeGreaterThan(initial);
  });

  test('phone layout: rooms list first, then the conversation, and back', async ({ newPage }) => {
    const page = await newPage({ viewport: { width: 390, height: 800 } });
    await signIn(page, 'Pablo');
    await expect(page.locator('#rooms')).toBeVisible();
    await expect(page.locator('#conversation')).toBeHidden();

    await page.locator(`.room[data-room-id="${GENERAL_ROOM_ID}"]`).click();
    await expect(page.locator('#conversation')).toBeVisible();
    await expect(page.locator('#composer')).toBeVisible();
    await expect(page.locator('#back-to-rooms')).toBeVisible();

    await page.locator('#back-to-rooms').click();
    await expect(page.locator('#rooms')).toBeVisible();
    await expect(page.locator('#conversation')).toBeHidden();
  });
});
