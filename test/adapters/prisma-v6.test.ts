/** kms-envelope/prisma on Prisma 6 (test/prisma/v6): the conformance suite of prisma-conformance.ts. */
import { conformance } from './prisma-conformance.ts';

conformance('v6');
