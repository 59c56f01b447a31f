import {
  expect,
  messageWith,
  registerFresh,
  sendMessage,
  test,
  uniq,
  waitConnected,
  waitHydrated,
} from './helpers';
import type { Page } from '@playwright/test';

/** Opens the private room with `name` through "Find people…". */
async function openPrivateWith(page: Page, name: string): Promise<void> {
  await page.locator('#user-search').fill(name);
  const result = page.locator('.search-result').filter({ hasText: name }).first();
  await expect(result).toBeVisible();
  await result.click();
  await expect(page.locator('#room-title')).toHaveText(name);
}

test.describe('blocking', () => {
  test('block from the chat, the other side is refused, unblock on the account page', async ({ newPage }) => {
    const alicePage = await newPage();
    const alice = await registerFresh(alicePage);
    const bobPage = await newPage();
    const bob = await registerFresh(bobPage);
    await waitConnected(alicePage);
    await waitConnected(bobPage);

    // Alice writes to Bob; Bob opens the room it made.
    await openPrivateWith(alicePage, bob);
    const hello = `hello ${uniq()}`;
    await sendMessage(alicePage, hello);
    const room = bobPage.locator('#rooms .room').filter({ hasText: alice });
    await expect(room).toHaveCount(1);
    await room.click();
    await expect(messageWith(bobPage, hello)).toHaveCount(1);

    // Alice blocks Bob from the room's header (after confirming).
    alicePage.once('dialog', (dialog) => dialog.accept());
    await alicePage.locator('#block-user').click();
    await expect(alicePage.locator('#blocked-note')).toContainText('You blocked this user');

    // Bob's message is refused: shown as failed on his side, never on hers.
    const refused = `are you there ${uniq()}`;
    const composer = bobPage.locator('#composer');
    await composer.fill(refused);
    await composer.press('Enter');
    const failed = messageWith(bobPage, refused);
    await expect(failed).toHaveClass(/\bfailed\b/);
    await expect(failed.locator('.message-error')).toHaveText('You cannot send messages in this conversation.');
    await expect(messageWith(alicePage, refused)).toHaveCount(0);

    // Unblock on the account page: the list shows Bob (as text), then nobody.
    await alicePage.locator('#account-link').click();
    await waitHydrated(alicePage);
    const row = alicePage.locator('#blocked-list .blocked-user');
    await expect(row).toHaveCount(1);
    await expect(row.locator('.blocked-name')).toHaveText(bob);
    await row.locator('button.unblock').click();
    await expect(alicePage.locator('#blocked-empty')).toBeVisible();

    // Back in the chat, Bob's next message arrives.
    await alicePage.locator('#back-to-chat').click();
    await waitHydrated(alicePage);
    await waitConnected(alicePage);
    await openPrivateWith(alicePage, bob);
    await expect(alicePage.locator('#block-user')).toBeVisible();
    const after = `back again ${uniq()}`;
    await sendMessage(bobPage, after);
    await expect(messageWith(alicePage, after)).toHaveCount(1);
  });
});
