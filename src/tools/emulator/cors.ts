/**
 * CORS, so a browser page can call the emulator: `true` lets any origin in, a list only those.
 * The emulator never refuses a request for its origin (it is the browser that keeps an answer from
 * a page); it only says which origins may read its answers.
 */

export type CorsPolicy = boolean | readonly string[];

// What Tencent's clients send, TC3 signing and temporary credentials included.
const ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  'X-TC-Action',
  'X-TC-Timestamp',
  'X-TC-Version',
  'X-TC-Region',
  'X-TC-Token',
  'X-TC-Language',
  'X-TC-RequestClient',
  'X-TC-TraceId',
].join(', ');

/** The Access-Control-* headers of an answer to `origin` (a preflight's, with `preflight`). */
export function corsHeaders(policy: CorsPolicy | undefined, origin: string | undefined, preflight: boolean): Record<string, string> {
  if (!policy) return {};
  const listed = policy !== true;
  const allowed = listed ? origin !== undefined && policy.includes(origin) : true;
  // With a list the answer depends on the Origin, so caches must keep one per origin.
  const headers: Record<string, string> = listed ? { Vary: 'Origin' } : {};
  if (!allowed) return headers;
  headers['Access-Control-Allow-Origin'] = listed ? origin! : '*';
  if (preflight) {
    headers['Access-Control-Allow-Methods'] = 'GET, POST, OPTIONS';
    headers['Access-Control-Allow-Headers'] = ALLOWED_HEADERS;
    headers['Access-Control-Max-Age'] = '600';
  }
  return headers;
}
