/** kms-envelope/prisma on Prisma 7 (test/prisma/v7): the conformance suite of prisma-conformance.ts. */
import { conformance } from './prisma-conformance.ts';

conformance('v7');
