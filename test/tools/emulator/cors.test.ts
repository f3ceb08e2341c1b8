/**
 * The `cors` option, so a browser page can call the emulator: preflights answered and the
 * Access-Control-* headers on both APIs, errors included. Plain fetch with an Origin header plays
 * the browser.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningEmulator, startEmulator } from '../../../src/tools/emulator/index.ts';
import { signedParams, tc3Headers } from './wire.ts';

const PAGE = 'http://page.test:5173';
const TC3_HEADERS = 'authorization,content-type,x-tc-action,x-tc-timestamp,x-tc-version,x-tc-region,x-tc-token,x-tc-language';

let open: RunningEmulator;
let listed: RunningEmulator;
let closed: RunningEmulator;
beforeAll(async () => {
  [open, listed, closed] = await Promise.all([startEmulator({ cors: true }), startEmulator({ cors: [PAGE, 'http://other.test'] }), startEmulator()]);
});
afterAll(() => Promise.all([open.close(), listed.close(), closed.close()]));

const preflight = (emulator: RunningEmulator, path: string, origin = PAGE) =>
  fetch(`${emulator.url}${path}`, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': TC3_HEADERS },
  });

function tc3Fetch(emulator: RunningEmulator, origin: string, payload: object, action = 'ListKeys'): Promise<Response> {
  const body = JSON.stringify(payload);
  return fetch(emulator.url, { method: 'POST', headers: { ...tc3Headers({ action, body, credentials: emulator.credentials[0]! }), Origin: origin }, body });
}

function v2Fetch(emulator: RunningEmulator, origin: string): Promise<Response> {
  const params = signedParams(emulator.credentials[0]!, { Action: 'ListKey' }, { method: 'POST', host: new URL(emulator.url).host, path: '/v2/index.php' });
  return fetch(`${emulator.url}/v2/index.php`, { method: 'POST', headers: { Origin: origin }, body: new URLSearchParams(params) });
}

describe('cors: true', () => {
  it.each(['/', '/v2/index.php'])('answers the preflight of %s: any origin, GET and POST, the headers asked for', async (path) => {
    const response = await preflight(open, path);
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('access-control-allow-methods')?.split(/,\s*/)).toEqual(expect.arrayContaining(['GET', 'POST']));
    const allowed = response.headers.get('access-control-allow-headers')?.toLowerCase().split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(TC3_HEADERS.split(',')));
    expect(await response.text()).toBe('');
  });

  it('API 3.0: the answer and an error answer carry Access-Control-Allow-Origin', async () => {
    const ok = await tc3Fetch(open, PAGE, { Limit: 10 });
    expect(ok.headers.get('access-control-allow-origin')).toBe('*');
    expect(((await ok.json()) as { Response: { TotalCount?: number } }).Response.TotalCount).toBe(0);
    const failed = await tc3Fetch(open, PAGE, { KeyId: 'missing' }, 'GenerateDataKey');
    expect(failed.headers.get('access-control-allow-origin')).toBe('*');
    expect(((await failed.json()) as { Response: { Error: { Code: string } } }).Response.Error.Code).toBe('ResourceUnavailable.CmkNotFound');
  });

  it('the legacy API: the answer carries Access-Control-Allow-Origin', async () => {
    const response = await v2Fetch(open, PAGE);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(((await response.json()) as { code: number }).code).toBe(0);
  });
});

describe('cors: a list of origins', () => {
  it('names a listed origin (and varies by Origin), on the preflight and the answer', async () => {
    const pre = await preflight(listed, '/');
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe(PAGE);
    expect(pre.headers.get('vary')).toMatch(/Origin/);
    const answer = await tc3Fetch(listed, PAGE, { Limit: 10 });
    expect(answer.headers.get('access-control-allow-origin')).toBe(PAGE);
    expect((await v2Fetch(listed, 'http://other.test')).headers.get('access-control-allow-origin')).toBe('http://other.test');
  });

  it('gives an origin not listed no Access-Control-Allow-Origin, so the browser keeps the answer from the page', async () => {
    const pre = await preflight(listed, '/', 'http://evil.test');
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    const answer = await tc3Fetch(listed, 'http://evil.test', { Limit: 10 });
    expect(answer.headers.get('access-control-allow-origin')).toBeNull();
    expect(answer.headers.get('vary')).toMatch(/Origin/);
  });
});

describe('without cors', () => {
  it('adds no Access-Control-* header, and a preflight is an unsupported method', async () => {
    const pre = await preflight(closed, '/');
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    expect(((await pre.json()) as { Response: { Error: { Code: string } } }).Response.Error.Code).toBe('UnsupportedProtocol');
    const answer = await tc3Fetch(closed, PAGE, { Limit: 10 });
    expect(answer.headers.get('access-control-allow-origin')).toBeNull();
  });
});
