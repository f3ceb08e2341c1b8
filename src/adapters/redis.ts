/**
 * kms-envelope/redis: a FleetCoordinator over Redis, through an ioredis client the caller makes
 * and closes (ioredis is an optional peer: imported here as a type only). Every operation is one
 * Lua script run by EVAL, atomic on the server, on the server's clock (TIME): leases and marks are
 * keys with a PX expiry (a holder that dies leaves nothing behind past its TTL), the token bucket
 * is a GCRA "theoretical arrival time", and messages go through a capped stream read by polling,
 * so no connection is held in a blocking read.
 *
 * @example
 * ```ts
 * import Redis from 'ioredis';
 * import { RedisCoordinator } from 'kms-envelope/redis';
 * const coordinator = new RedisCoordinator({ client: new Redis(process.env.REDIS_URL) });
 * const hierarchy = createKeyHierarchy({ kms, store, coordinator });
 * ```
 */
import type { Redis } from 'ioredis';
import type { FleetCoordinator } from '../hierarchy.ts';

export interface RedisCoordinatorOptions {
  /** An ioredis client (or cluster node client) the caller made and closes. */
  client: Pick<Redis, 'eval'>;
  /** Prefix of every key; default `kms-envelope:fleet:`. */
  prefix?: string;
}

const ACQUIRE = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const MARK = `redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) return 1`;
const MARKED = `return redis.call('EXISTS', KEYS[1])`;
const UNMARK = `return redis.call('DEL', KEYS[1])`;
/** GCRA on the server's clock: the wait in ms as a string (Lua numbers would be truncated to integers). */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = 1000 / tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
return '0'`;
const PUBLISH = `return redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000', '*', 'm', ARGV[1])`;
/** Messages after a cursor (an exclusive range); with no cursor, the last id as the starting point. */
const RECEIVE = `
if ARGV[1] == '' then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last == 0 then return {'0-0'} end
  return {last[1][1]}
end
local out = {ARGV[1]}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', 200)) do
  out[1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out`;

export class RedisCoordinator implements FleetCoordinator {
  readonly #client: Pick<Redis, 'eval'>;
  readonly #prefix: string;

  constructor(options: RedisCoordinatorOptions) {
    if (!options?.client || typeof options.client.eval !== 'function') throw new TypeError('"client" expected an ioredis client');
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'kms-envelope:fleet:';
  }

  async acquire(name: string, ttlMs: number): Promise<string | undefined> {
    const token = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}`;
    const taken = await this.#client.eval(ACQUIRE, 1, this.#key(name), token, Math.max(1, Math.ceil(ttlMs)));
    return taken === 1 ? token : undefined;
  }

  async release(name: string, token: string): Promise<void> {
    await this.#client.eval(RELEASE, 1, this.#key(name), token);
  }

  async mark(name: string, ttlMs: number): Promise<void> {
    await this.#client.eval(MARK, 1, this.#key(name), Math.max(1, Math.ceil(ttlMs)));
  }

  async marked(name: string): Promise<boolean> {
    return (await this.#client.eval(MARKED, 1, this.#key(name))) === 1;
  }

  async unmark(name: string): Promise<void> {
    await this.#client.eval(UNMARK, 1, this.#key(name));
  }

  async take(name: string, perSecond: number, burst: number): Promise<number> {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError('a bucket needs perSecond > 0 and burst >= 1');
    return Number(await this.#client.eval(TAKE, 1, this.#key(name), perSecond, Math.floor(burst)));
  }

  async publish(message: string): Promise<void> {
    await this.#client.eval(PUBLISH, 1, this.#key('messages'), message);
  }

  async receive(cursor: string): Promise<{ cursor: string; messages: string[] }> {
    const [next, ...messages] = (await this.#client.eval(RECEIVE, 1, this.#key('messages'), cursor)) as string[];
    return { cursor: next ?? cursor, messages };
  }

  #key(name: string): string {
    return this.#prefix + name;
  }
}
