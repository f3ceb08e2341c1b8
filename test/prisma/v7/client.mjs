/**
 * The Prisma 7 client of the conformance suite, over PostgreSQL through @prisma/adapter-pg, with
 * its queries in the given PostgreSQL schema. Imported by test/adapters/prisma-v7.test.ts (a
 * file here, so that its imports resolve in this fixture's node_modules).
 */
import { PrismaPg } from '@prisma/adapter-pg';
import { Prisma, PrismaClient } from './generated/client.ts';

/** Prisma's decimal class (decimal.js), for Decimal values given to the extension. */
export const Decimal = Prisma.Decimal;

export function makeClient(url, schema) {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 4 }, { schema }) });
}
