-- The conformance suite's tables (schema.prisma's Customer and Order), made with SQL, not prisma
-- migrate; test/adapters/prisma-conformance.ts runs this in a PostgreSQL schema of its own.
CREATE TABLE customers (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  name TEXT,
  email TEXT,
  email_idx TEXT,
  age TEXT,
  balance TEXT,
  score TEXT,
  vip TEXT,
  born TEXT,
  prefs TEXT,
  photo BYTEA,
  credit TEXT,
  email_tokens BIGINT[] NOT NULL DEFAULT '{}',
  born_tokens BIGINT[] NOT NULL DEFAULT '{}',
  credit_tokens BIGINT[] NOT NULL DEFAULT '{}',
  key_version INTEGER
);
CREATE INDEX ON customers (tenant, email_idx);
CREATE TABLE orders (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  customer_id TEXT NOT NULL REFERENCES customers (id),
  note TEXT,
  note_idx TEXT,
  note_grams BIGINT[] NOT NULL DEFAULT '{}',
  total INTEGER NOT NULL,
  key_version INTEGER
);
CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  iban TEXT,
  holder TEXT,
  customer_id TEXT REFERENCES customers (id),
  row_version BIGINT,
  key_version INTEGER
);
