/**
 * A pool of worker threads for bulk AES-GCM: C2SP chunks are independent, so batches of them can
 * be sealed and opened on several cores and written back in order. Used by sealFile/openFile for
 * large inputs; small inputs stay on the calling thread.
 *
 * The message key and base nonce travel in a SharedArrayBuffer, not a copied message, so wiping it
 * once at the end wipes it for every thread.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { wipe } from '../core/bytes.ts';
import { chunkNonce } from '../core/chunk-nonce.ts';
import { CHUNK_SIZE, MAX_CHUNKS, SEALED_CHUNK_SIZE } from '../core/chunked.ts';
import { nodeGcmOpen, nodeGcmSeal } from '../core/gcm-node.ts';

/**
 * The worker's code: plain JavaScript, evaluated, so it runs from sources and builds alike. The
 * chunk nonce and AES-GCM are the main thread's own functions, from their source text.
 */
const WORKER_SOURCE = `
const { parentPort } = process.getBuiltinModule('node:worker_threads');
const crypto = process.getBuiltinModule('node:crypto');
const chunkNonce = ${chunkNonce.toString()};
const nodeGcmSeal = ${nodeGcmSeal.toString()};
const nodeGcmOpen = ${nodeGcmOpen.toString()};
const sessions = new Map();
const CHUNK = ${CHUNK_SIZE}, SEALED = ${SEALED_CHUNK_SIZE}, TAG = ${SEALED_CHUNK_SIZE - CHUNK_SIZE};
parentPort.on('message', (m) => {
  if (m.type === 'session') { sessions.set(m.id, { material: new Uint8Array(m.shared), keyLength: m.keyLength }); return; }
  if (m.type === 'end') { sessions.delete(m.id); return; }
  const s = sessions.get(m.id);
  const key = s.material.subarray(0, s.keyLength), base = s.material.subarray(s.keyLength, s.keyLength + 12);
  const input = new Uint8Array(m.data);
  const nonce = new Uint8Array(12);
  if (m.type === 'seal') {
    const chunks = Math.ceil(input.length / CHUNK);
    const out = Buffer.allocUnsafeSlow(input.length + chunks * TAG); // every byte is written below
    for (let c = 0, i = 0, o = 0; i < input.length; c++, i += CHUNK) {
      const piece = input.subarray(i, i + CHUNK);
      nodeGcmSeal(crypto, { key, nonce: chunkNonce(base, m.counter + c, nonce) }, piece, out, o);
      o += piece.length + TAG;
    }
    nonce.fill(0);
    parentPort.postMessage({ job: m.job, ok: true, data: out.buffer }, [out.buffer]);
  } else {
    const chunks = Math.ceil(input.length / SEALED);
    const out = Buffer.allocUnsafeSlow(input.length - chunks * TAG); // every byte written, or all zeroed
    let ok = true;
    for (let c = 0, i = 0, o = 0; i < input.length; c++, i += SEALED) {
      const sealed = input.subarray(i, i + SEALED);
      if (!nodeGcmOpen(crypto, { key, nonce: chunkNonce(base, m.counter + c, nonce) }, sealed, out, o)) { ok = false; break; }
      o += sealed.length - TAG;
    }
    nonce.fill(0);
    if (!ok) { out.fill(0); parentPort.postMessage({ job: m.job, ok: false }); return; }
    parentPort.postMessage({ job: m.job, ok: true, data: out.buffer }, [out.buffer]);
  }
});
`;

interface Pending {
  resolve: (data: Uint8Array | undefined) => void;
  reject: (error: Error) => void;
}

/** Cores to use: all but one for the thread that reads and writes, at least 2, at most 4. */
export function defaultWorkers(): number {
  return Math.max(2, Math.min(4, availableParallelism()));
}

export class ChunkWorkerPool {
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, Pending>();
  #nextJob = 0;
  #nextWorker = 0;
  #nextSession = 0;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.unref();
      worker.on('message', (m: { job: number; ok: boolean; data?: ArrayBuffer }) => {
        const p = this.#pending.get(m.job);
        this.#pending.delete(m.job);
        p?.resolve(m.ok ? new Uint8Array(m.data!) : undefined);
      });
      worker.on('error', (error) => {
        for (const p of this.#pending.values()) p.reject(error);
        this.#pending.clear();
      });
      this.#workers.push(worker);
    }
  }

  /** Shares a message's key and base nonce with every worker; returns the session. */
  session(key: Uint8Array, baseNonce: Uint8Array): PoolSession {
    const shared = new SharedArrayBuffer(key.length + baseNonce.length);
    const material = new Uint8Array(shared);
    material.set(key);
    material.set(baseNonce, key.length);
    const id = this.#nextSession++;
    for (const w of this.#workers) w.postMessage({ type: 'session', id, shared, keyLength: key.length });
    return new PoolSession(this, id, material);
  }

  /**
   * Runs one batch on the next worker: seal (plaintext of whole chunks) or open (sealed chunks).
   * `give`: the caller hands `data` over (it must span its whole ArrayBuffer), which then moves to
   * the worker without a copy and is detached here.
   */
  run(type: 'seal' | 'open', session: number, counter: number, data: Uint8Array, give = false): Promise<Uint8Array | undefined> {
    if (counter + Math.ceil(data.length / (type === 'seal' ? CHUNK_SIZE : SEALED_CHUNK_SIZE)) > MAX_CHUNKS) throw new RangeError('a message has at most 2^38 chunks');
    const job = this.#nextJob++;
    const whole = give && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
    // A private copy otherwise (Buffer.slice would not copy).
    const moved = whole ? (data.buffer as ArrayBuffer) : new Uint8Array(data).buffer;
    const worker = this.#workers[this.#nextWorker++ % this.#workers.length]!;
    return new Promise((resolve, reject) => {
      this.#pending.set(job, { resolve, reject });
      worker.postMessage({ type, job, id: session, counter, data: moved }, [moved]);
    });
  }

  endSession(id: number): void {
    for (const w of this.#workers) w.postMessage({ type: 'end', id });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

export class PoolSession {
  readonly #pool: ChunkWorkerPool;
  readonly #id: number;
  readonly #material: Uint8Array;

  constructor(pool: ChunkWorkerPool, id: number, material: Uint8Array) {
    this.#pool = pool;
    this.#id = id;
    this.#material = material;
  }

  /** `give`: see ChunkWorkerPool.run. */
  seal(counter: number, plaintext: Uint8Array, give = false): Promise<Uint8Array | undefined> {
    return this.#pool.run('seal', this.#id, counter, plaintext, give);
  }

  open(counter: number, sealed: Uint8Array, give = false): Promise<Uint8Array | undefined> {
    return this.#pool.run('open', this.#id, counter, sealed, give);
  }

  /** Wipes the shared key material (for every thread at once) and ends the session. */
  end(): void {
    wipe(this.#material);
    this.#pool.endSession(this.#id);
  }
}
