import {
  CHAT_URL,
  DEMO_PASSWORD,
  LOGIN_URL,
  expect,
  expectSentToSignIn,
  registerFresh,
  signIn,
  test,
  waitHydrated,
} from './helpers';

test.describe('accounts', () => {
  test('demo user Pablo signs in and out', async ({ page }) => {
    await signIn(page, 'Pablo');
    await expect(page).toHaveURL(CHAT_URL);
    await expect(page.locator('#current-user')).toHaveText('Pablo');

    await page.locator('#logout').click();
    await expect(page).toHaveURL(LOGIN_URL);
    await expect(page.locator('#login-form')).toBeVisible();

    // The session is gone: the chat page sends us back to sign in.
    await expectSentToSignIn(page, '/');
  });

  test('the sign-in page offers the demo users', async ({ page }) => {
    await page.goto('/login');
    await expect(page.locator('.demo-user').filter({ hasText: 'Pablo' })).toBeVisible();
  });

  test('a new user registers and lands in the chat under its name', async ({ page }) => {
    const name = await registerFresh(page);
    await expect(page).toHaveURL(CHAT_URL);
    await expect(page.locator('#current-user')).toHaveText(name);
    await expect(page.locator(`#rooms .room[data-room-id="0"]`)).toBeVisible();
  });

  test('a wrong password shows an error and stays on the sign-in page', async ({ page }) => {
    await page.goto('/login');
    const form = page.locator('#login-form');
    await form.locator('input[name="username"]').fill('Pablo');
    await form.locator('input[name="password"]').fill('not-the-password');
    await page.locator('#login-submit').click();
    const error = page.locator('.form-error').first();
    await expect(error).toBeVisible();
    await expect(error).toHaveText(/\S/);
    await expect(page).toHaveURL(LOGIN_URL);
    await expect(page.locator('#current-user')).toHaveCount(0);
  });

  test('signed out, the chat page redirects to sign in', async ({ page }) => {
    await expectSentToSignIn(page, '/');
    await expect(page.locator('#login-form')).toBeVisible();
  });

  test('an unknown path is a 404 page', async ({ page }) => {
    const response = await page.goto('/nope');
    expect(response, 'no response for /nope').not.toBeNull();
    expect(response!.status()).toBe(404);
    await expect(page.locator('body')).not.toBeEmpty();
  });

  test('signing in works without JavaScript', async ({ newPage }) => {
    const page = await newPage({ javaScriptEnabled: false });
    await page.goto('/login');
    const form = page.locator('#login-form');
    await form.locator('input[name="username"]').fill('Pablo');
    await form.locator('input[name="password"]').fill(DEMO_PASSWORD);
    await page.locator('#login-submit').click();
    await expect(page).toHaveURL(CHAT_URL);
    await expect(page.locator('#current-user')).toHaveText('Pablo');
  });

  test('the chat page hydrates after signing in', async ({ page }) => {
    await signIn(page, 'Joe');
    await waitHydrated(page);
    await expect(page.locator('#conn-status')).toHaveAttribute('data-state', 'open', { timeout: 15_000 });
  });
});
