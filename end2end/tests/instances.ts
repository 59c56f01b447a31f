import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';

// Extra redis-chat processes for the tests that need several instances
// (resilience.spec.ts, rolling_restart.spec.ts).

const projectRoot = path.resolve(__dirname, '..', '..');
const serverBinary = path.join(
  path.resolve(projectRoot, process.env.CARGO_TARGET_DIR || 'target'),
  'release',
  'redis-chat',
);

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export async function freePort(): Promise<number> {
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

/**
 * The environment of an extra instance on the Redis of the server
 * Playwright started (its embedded redis-server listens on
 * <REDIS_CHAT_E2E_DATA_DIR>/redis.sock).
 */
export function mainRedisEnv(): Record<string, string> {
  const dataDir = process.env.REDIS_CHAT_E2E_DATA_DIR;
  if (!dataDir) {
    throw new Error('REDIS_CHAT_E2E_DATA_DIR is not set (E2E_BASE_URL runs cannot start extra instances)');
  }
  return {
    REDIS_URL: `redis+unix://${path.join(dataDir, 'redis.sock')}`,
    REDIS_DATA_DIR: dataDir,
  };
}

/** An extra redis-chat process (the release binary) on 127.0.0.1:`port`. */
export class Instance {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** The last lines it printed (shown when something goes wrong). */
  readonly log: string[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
    /** Added to (and overriding) the defaults below. */
    readonly env: Record<string, string> = {},
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private note(line: string): void {
    this.log.push(line);
    if (this.log.length > 400) this.log.shift();
  }

  /** Starts the process and waits until `/readyz` answers 200 (Redis and the subscription up). */
  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    const child = spawn(serverBinary, [], {
      cwd: projectRoot,
      env: {
        ...process.env,
        PORT: String(this.port),
        ADDR: '127.0.0.1',
        SITE_ROOT: 'target/site',
        BCRYPT_COST: '4',
        DEMO_DATA: 'true',
        COOKIE_SECURE: 'false',
        ALLOWED_ORIGINS: '',
        RUST_LOG: 'info',
        MSG_RATE_LIMIT: '0',
        ...this.env,
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
        const res = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1_000) });
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

  /** The prefix of its request ids (`X-Request-Id`: one per process). */
  async idPrefix(): Promise<string> {
    const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(2_000) });
    return (res.headers.get('x-request-id') ?? '').split('-')[0];
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

