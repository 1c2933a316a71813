-- The tenant line: applied to the shared schema, to every schema tenant's schema and to every
-- database tenant's database. Keys and references lead with tenant_id; tenancy.isolate makes each
-- table a tenant table (tenant_id filled from the transaction, row-level security forced).
CREATE TABLE users (
    tenant_id uuid NOT NULL,
    id        uuid NOT NULL DEFAULT gen_random_uuid(),
    email     text NOT NULL CHECK (email LIKE '%@%'),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);
SELECT tenancy.isolate('users');

CREATE TABLE notes (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    author_id  uuid        NOT NULL,
    body       text        NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
    color      text        NOT NULL DEFAULT 'yellow',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, author_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX notes_author_idx ON notes (tenant_id, author_id);
SELECT tenancy.isolate('notes');
