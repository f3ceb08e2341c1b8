// The Worker that test/runtimes/workerd.test.ts bundles (esbuild, as a Workers bundler would take
// the built package) and serves with workerd: each request runs the smoke checks and answers with
// their JSON. No nodejs_compat flag: the runtime a Worker gets by default.
import { selectBackend } from '../../dist/core/select-backend.js';
import * as hierarchy from '../../dist/hierarchy.js';
import * as main from '../../dist/index.js';
import * as records from '../../dist/records.js';
import { sm4 } from '../../dist/sm4.js';
import vectors from '../vectors/envelope-v1.json';
import { smoke } from './smoke.mjs';

export default {
  async fetch() {
    return Response.json(await smoke({ ...main, ...hierarchy, ...records, sm4 }, selectBackend, vectors, 'workerd'));
  },
};
