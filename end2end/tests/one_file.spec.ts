import * as http from 'node:http';
import {
  GENERAL_ROOM_ID,
  expect,
  messageWith,
  openRoom,
  sendMessage,
  test,
  uniq,
  waitConnected,
} from './helpers';

// The server under test is a copy of the release binary alone in an empty
// directory (playwright.config.ts): everything the browser loads comes
// from inside the binary.

/** Raw bytes and headers of a GET (Node's http does not decompress). */
function rawGet(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

test.describe('one file', () => {
  test('the binary alone serves a front end that signs in and chats', async ({ pageAs }) => {
    const pablo = await pageAs('Pablo');
    const joe = await pageAs('Joe');
    await openRoom(pablo, GENERAL_ROOM_ID);
    await openRoom(joe, GENERAL_ROOM_ID);
    await waitConnected(pablo);
    await waitConnected(joe);
    const text = `from the one file ${uniq()}`;
    await sendMessage(pablo, text);
    await expect(messageWith(joe, text)).toHaveCount(1);

    // The browser got the WASM brotli-encoded, at least 3x smaller.
    const wasm = await pablo.evaluate(() =>
      (performance.getEntriesByType('resource') as PerformanceResourceTiming[])
        .filter((e) => e.name.endsWith('.wasm'))
        .map((e) => ({ name: e.name, encoded: e.encodedBodySize, decoded: e.decodedBodySize })),
    );
    expect(wasm.length, 'the page loaded a WASM').toBeGreaterThan(0);
    // Named by content hash, so it can be cached for good.
    expect(new URL(wasm[0].name).pathname).toMatch(/^\/pkg\/redis-chat\.[0-9a-f]{16}\.wasm$/);
    expect(wasm[0].decoded).toBeGreaterThan(3 * wasm[0].encoded);
  });

  test('hashed files are brotli or gzip as asked, immutable, with an ETag', async ({ page, baseURL }) => {
    await page.goto('/login');
    const wasmPath = await page.locator('link[rel="preload"][as="fetch"]').getAttribute('href');
    expect(wasmPath).toMatch(/^\/pkg\/redis-chat\.[0-9a-f]{16}\.wasm$/);
    const url = `${baseURL}${wasmPath}`;

    const plain = await rawGet(url, { 'Accept-Encoding': 'identity' });
    const br = await rawGet(url, { 'Accept-Encoding': 'gzip, deflate, br' });
    const gz = await rawGet(url, { 'Accept-Encoding': 'gzip' });
    expect(plain.status).toBe(200);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers['content-type']).toBe('application/wasm');
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers['content-type']).toBe('application/wasm');
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(br.bytes * 3).toBeLessThanOrEqual(plain.bytes);
    expect(gz.bytes).toBeLessThan(plain.bytes);
    for (const r of [plain, br, gz]) {
      expect(r.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect(r.headers['vary']).toMatch(/Accept-Encoding/i);
    }
    expect(br.headers['etag']).toBeTruthy();
    expect(br.headers['etag']).not.toBe(plain.headers['etag']);

    // A cache that has it asks again with its ETag: 304, no body.
    const again = await rawGet(url, {
      'Accept-Encoding': 'br',
      'If-None-Match': String(br.headers['etag']),
    });
    expect(again.status).toBe(304);
    expect(again.bytes).toBe(0);

    // The stylesheet is named the same way; other files are cached briefly.
    const css = await page.locator('link[rel="stylesheet"]').first().getAttribute('href');
    expect(css).toMatch(/^\/pkg\/redis-chat\.[0-9a-f]{16}\.css$/);
    const icon = await rawGet(`${baseURL}/favicon.svg`, { 'Accept-Encoding': 'br' });
    expect(icon.status).toBe(200);
    expect(icon.headers['cache-control']).toBe('public, max-age=300');
  });
});
