/** The checks test/runtimes/smoke.mjs runs, in order: every runtime's report must list each one. */
export const SMOKE_CHECKS = ['record', 'message', 'stream 16 MiB', 'vectors made on Node'];

export interface SmokeResult {
  runtime: string;
  /** The crypto backend the runtime got unasked. */
  backend: string;
  checks: { name: string; ok: boolean; detail: string }[];
}
