#!/bin/sh
# A stand-in for Prisma's schema engine, which `prisma generate` wants on disk but does not run
# for generating a client: the real one would be downloaded, which cannot be done here.
echo "kms-envelope test fixture: no schema engine here (prisma generate only)" >&2
exit 1
