/** Node adapters for the WHATWG streams, loaded without a static `node:` import. */
import type * as NodeStream from 'node:stream';

export type NodeDuplex = NodeStream.Duplex;

export function toNodeDuplex(stream: TransformStream<Uint8Array, Uint8Array>): NodeDuplex {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const mod = proc?.getBuiltinModule?.('node:stream') as typeof NodeStream | undefined;
  if (!mod) throw new TypeError('Node stream adapters need node:stream; use sealStream()/openStream() in this runtime');
  return mod.Duplex.fromWeb(stream as unknown as Parameters<typeof mod.Duplex.fromWeb>[0]);
}
