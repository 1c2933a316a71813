-- Moves of live tenants between placements (tenancymove): what each did, how far it got, and what
-- it left to remove. A tenant has at most one move that is not over: one that copies or switches,
-- or one that switched and still keeps the old placement's data (until it is finalized).
CREATE TABLE tenancy.moves (
    id             bigint      GENERATED ALWAYS AS IDENTITY CONSTRAINT moves_pkey PRIMARY KEY,
    tenant_id      uuid        NOT NULL REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    from_isolation text        NOT NULL CHECK (from_isolation IN ('shared', 'schema', 'database')),
    from_server    text,
    to_isolation   text        NOT NULL CHECK (to_isolation IN ('shared', 'schema', 'database')),
    to_server      text,
    state          text        NOT NULL CHECK (state IN ('copying', 'switched', 'finalized', 'aborted')),
    step           text        NOT NULL DEFAULT '',
    progress       jsonb       NOT NULL DEFAULT '{}',
    last_error     text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    switched_at    timestamptz,
    finalize_after timestamptz,
    finished_at    timestamptz
);
CREATE UNIQUE INDEX moves_open_idx ON tenancy.moves (tenant_id) WHERE state IN ('copying', 'switched');
CREATE INDEX moves_tenant_idx ON tenancy.moves (tenant_id, id);
