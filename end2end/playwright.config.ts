import { defineConfig, devices } from '@playwright/test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// Browser tests of redis-chat, in Debian's chromium (never a downloaded browser).
//
// By default Playwright starts the release server itself (build it first:
// `make build`, or just `make test-e2e`) on 127.0.0.1:3100 with demo data and
// its own embedded redis-server in a fresh temporary directory, so the tests
// never touch a Redis that happens to listen on 6379. The server is a copy of
// the release binary alone in an empty directory (no SITE_ROOT, no target/site
// beside it): every test runs against the front end the binary carries.
//
// E2E_BASE_URL=http://host:port runs the tests against a server that is
// already running instead (and then starts none).

const PORT = 3100;
const DEFAULT_BASE_URL = `http://127.0.0.1:${PORT}`;
const baseURL = process.env.E2E_BASE_URL || DEFAULT_BASE_URL;
const startServer = baseURL === DEFAULT_BASE_URL;

const projectRoot = path.resolve(__dirname, '..');
// cargo-leptos puts the server binary under cargo's target dir (CARGO_TARGET_DIR
// when set) and the site (JS, WASM, CSS) under target/site in the project.
const targetDir = path.resolve(projectRoot, process.env.CARGO_TARGET_DIR || 'target');
const serverBinary = path.join(targetDir, 'release', 'redis-chat');

// This file is evaluated by the runner and again by every worker: create the
// data directory once, in the runner, and hand its path down through the
// environment (workers inherit it).
const DATA_DIR_VAR = 'REDIS_CHAT_E2E_DATA_DIR';
if (startServer && !process.env[DATA_DIR_VAR]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-chat-e2e-'));
  process.env[DATA_DIR_VAR] = dir;
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
}
const dataDir = process.env[DATA_DIR_VAR] ?? '';
// The empty directory the copied binary runs in (inside the data directory).
const binDir = dataDir && path.join(dataDir, 'bin');

export default defineConfig({
  testDir: './tests',
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: 'list',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  outputDir: './test-results',
  use: {
    baseURL,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        launchOptions: {
          executablePath: '/usr/bin/chromium',
          args: [
            '--headless',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
          ],
        },
      },
    },
  ],
  webServer: startServer
    ? {
        command: `mkdir -p ${JSON.stringify(binDir)} && cp ${JSON.stringify(serverBinary)} ${JSON.stringify(binDir)}/redis-chat && cd ${JSON.stringify(binDir)} && exec ./redis-chat`,
        cwd: projectRoot,
        env: {
          PORT: String(PORT),
          ADDR: '127.0.0.1',
          REDIS_DATA_DIR: dataDir,
          // Empty, so a REDIS_URL in the environment or in .env (the server
          // reads .env but never overrides a variable that is set) cannot point
          // the tests at a shared Redis: the server starts its own.
          REDIS_URL: '',
          BCRYPT_COST: '4',
          DEMO_DATA: 'true',
          COOKIE_SECURE: 'false',
          ALLOWED_ORIGINS: '',
          RUST_LOG: 'info',
          // No message rate limit (default 30 per 10 s per user and room): the
          // history test sends 60 messages as fast as they are confirmed.
          MSG_RATE_LIMIT: '0',
          // No registration limit (default 10 per hour per address): every
          // test registers fresh users from 127.0.0.1.
          REGISTER_RATE_LIMIT: '0',
        },
        url: `${DEFAULT_BASE_URL}/healthz`,
        reuseExistingServer: false,
        timeout: 60_000,
        // SIGTERM lets the server stop its redis-server before exiting.
        gracefulShutdown: { signal: 'SIGTERM', timeout: 10_000 },
        stdout: 'pipe',
        stderr: 'pipe',
      }
    : undefined,
});
