import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BrowserContext, Page } from '@playwright/test';
import { expect, messageWith, sendMessage, test, uniq, userOn } from './helpers';
import { Instance, freePort, mainRedisEnv } from './instances';

// A rolling restart behind the nginx configuration of docs/deploy: two
// instances on one Redis, browsers connected through nginx; each instance
// is stopped with SIGTERM and started again, one after the other, while
// both users keep sending. Every message reaches every browser exactly
// once, in order, and no browser shows more than the reconnect indicator.

const NGINX = '/usr/sbin/nginx';
const docsConfig = path.resolve(__dirname, '..', '..', 'docs', 'deploy', 'nginx.conf');

/** Replaces `from` in `text`, failing loudly if the deploy config changed. */
function must(text: string, from: string | RegExp, to: string): string {
  const out = text.replace(from, to);
  if (out === text) throw new Error(`docs/deploy/nginx.conf no longer has ${from}: update this test`);
  return out;
}

/**
 * docs/deploy/nginx.conf as it is, but on a loopback port without TLS, in
 * front of the given instances, with its files in `dir`.
 */
function nginxConfig(dir: string, port: number, upstreams: number[]): string {
  let conf = fs.readFileSync(docsConfig, 'utf8');
  conf = must(
    conf,
    /(\s*server 10\.0\.0\.\d+:3000 max_fails=3 fail_timeout=10s;)+/,
    upstreams.map((p) => `\n        server 127.0.0.1:${p} max_fails=3 fail_timeout=10s;`).join(''),
  );
  conf = must(conf, 'listen 443 ssl;', `listen 127.0.0.1:${port};`);
  conf = must(conf, /\n\s*http2 on;/, '');
  conf = must(conf, /\n\s*ssl_certificate\s.*;/, '');
  conf = must(conf, /\n\s*ssl_certificate_key\s.*;/, '');
  conf = must(conf, 'worker_rlimit_nofile 200000;', 'worker_rlimit_nofile 4096;');
  conf = must(conf, 'worker_connections 100000;', 'worker_connections 1024;');
  const files = [
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
  ].join('\n');
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `    ${t}_temp_path ${dir}/${t};`)
    .join('\n');
  conf = must(conf, 'http {', `http {\n    access_log ${dir}/access.log;\n${temp}`);
  return `${files}\n${conf}`;
}

class Nginx {
  private child: ChildProcess | null = null;
  readonly log: string[] = [];
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-chat-nginx-'));

  constructor(readonly port: number) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(upstreams: number[]): Promise<void> {
    const conf = path.join(this.dir, 'nginx.conf');
    fs.writeFileSync(conf, nginxConfig(this.dir, this.port, upstreams));
    const child = spawn(NGINX, ['-p', this.dir, '-c', conf, '-g', 'daemon off;'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    for (const s of [child.stdout, child.stderr]) {
      s?.setEncoding('utf8');
      s?.on('data', (chunk: string) => this.log.push(chunk));
    }
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nginx exited: ${this.log.join('')}`);
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1_000) });
        if (res.status === 200) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`nginx did not answer: ${this.log.join('')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Waits until nginx sends requests to `instance` again: after a restart
   * it does so only once the failures it counted have expired
   * (`fail_timeout` in docs/deploy/nginx.conf). Which instance answered is
   * in the prefix of the request id.
   */
  async waitRoutedTo(instance: Instance): Promise<void> {
    const wanted = await instance.idPrefix();
    await expect
      .poll(
        async () => {
          const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(2_000) });
          return (res.headers.get('x-request-id') ?? '').split('-')[0];
        },
        { message: `nginx routes to ${instance.name} again`, timeout: 20_000, intervals: [200] },
      )
      .toBe(wanted);
  }

  errors(): string {
    const file = path.join(this.dir, 'error.log');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGQUIT');
    await exited;
    this.child = null;
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const contexts: BrowserContext[] = [];

/** What a user may see besides the messages: nothing but the connection pill. */
async function expectNoErrorShown(page: Page): Promise<void> {
  await expect(page.locator('#conn-status')).toHaveAttribute('data-state', 'open', { timeout: 30_000 });
  await expect(page.locator('.form-error:visible')).toHaveCount(0);
  await expect(page.locator('#messages .message.failed')).toHaveCount(0);
  expect(new URL(page.url()).pathname, 'still signed in').toBe('/');
}

test.describe('rolling restart behind nginx', () => {
  test.skip(!fs.existsSync(NGINX), 'nginx is not installed (make tools installs it)');

  let a: Instance;
  let b: Instance;
  let nginx: Nginx;

  test.beforeAll(async () => {
    nginx = new Nginx(await freePort());
    // The browsers' origin is nginx's: its port is not the instances' own.
    const env = {
      ...mainRedisEnv(),
      SITE_ROOT: '',
      TRUST_PROXY: '1',
      ALLOWED_ORIGINS: `http://127.0.0.1:${nginx.port}`,
    };
    a = new Instance('A', await freePort(), env);
    b = new Instance('B', await freePort(), env);
    await a.start();
    await b.start();
    await nginx.start([a.port, b.port]);
  });

  test.afterAll(async () => {
    for (const context of contexts.splice(0)) await context.close();
    await nginx?.stop();
    await a?.stop();
    await b?.stop();
  });

  test('every message reaches every browser once while each instance restarts', async ({ browser }, testInfo) => {
    test.setTimeout(120_000);
    const pablo = await userOn(browser, nginx.url, 'Pablo', contexts);
    const joe = await userOn(browser, nginx.url, 'Joe', contexts);
    const mary = await userOn(browser, nginx.url, 'Mary', contexts);
    const run = uniq();
    const sent: string[] = [];
    let n = 0;
    const say = async (page: Page, who: string) => {
      const text = `rolling ${run} #${++n} from ${who}`;
      await sendMessage(page, text);
      sent.push(text);
    };

    try {
      await say(pablo, 'Pablo');
      await say(joe, 'Joe');
      for (const instance of [a, b]) {
        // SIGTERM: its sockets get 1001 and reconnect through nginx to the
        // other instance; messages go on meanwhile, and after it is back.
        const stopping = instance.stop();
        await say(joe, 'Joe');
        await say(pablo, 'Pablo');
        await stopping;
        await say(mary, 'Mary');
        await say(joe, 'Joe');
        await instance.start();
        await say(pablo, 'Pablo');
        await say(mary, 'Mary');
        // The procedure (README, "Rolling restart"): the next instance
        // only once this one is ready and takes traffic again.
        await nginx.waitRoutedTo(instance);
      }

      for (const page of [pablo, joe, mary]) {
        await expect
          .poll(
            async () =>
              (await page.locator('#messages .message .message-text').allTextContents()).filter((t) =>
                t.startsWith(`rolling ${run} `),
              ),
            { message: 'every message once, in order', timeout: 20_000 },
          )
          .toEqual(sent);
        for (const text of sent) await expect(messageWith(page, text)).toHaveCount(1);
        await expectNoErrorShown(page);
      }
    } finally {
      if (testInfo.status !== testInfo.expectedStatus) {
        await testInfo.attach('instances.log', { body: [...a.log, ...b.log].join('\n'), contentType: 'text/plain' });
        await testInfo.attach('nginx-error.log', { body: nginx.errors(), contentType: 'text/plain' });
      }
    }
  });
});
