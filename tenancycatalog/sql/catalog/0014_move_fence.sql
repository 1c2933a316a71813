-- What a live move of a tenant (tenancymove) needs in the database it leaves: a barrier that
-- holds the tenant's writes back while the move switches, a fence that keeps the tenant's units
-- of work out of a placement it has left, and the capture of the rows the tenant changes while
-- its rows are copied.
--
-- This file is part of the isolation support (catalog and tenant databases).

-- The barrier is an advisory lock keyed by the tenant's unit key: 64 bits of its binding proof
-- (HMAC of its id under the binding key), so pg_locks, which every role reads, links it to no
-- tenant. Every unit of work that may write takes it shared, without waiting, in its scoping
-- statement (and every write of a moving tenant's rows does, in the capture trigger); the move's
-- switch takes it exclusive, which waits for exactly the tenant's units in flight, and holds it
-- while it copies the last changes and switches. A unit refused the lock gets SQLSTATE TNCY3
-- (DETAIL switching): the driver waits and tries again. Read-only units take no lock and are
-- served throughout. Should the mover die, its session ends and the lock with it.
--
-- A fence is keyed by the tenant's proof and the placement it closes: "shared", a tenant
-- schema's name, or "database" (a tenant's own database). A move opens one on the placement it
-- leaves when it starts (open: lets everything through) and marks it moved at the switch: every
-- unit is refused there (TNCY3, DETAIL moved) and the driver looks the tenant up again. Every
-- scoping statement (tenancypgx; the SQL is tenancycatalog.FenceCheckSQL) reads it after setting
-- app.tenant_proof, in a subquery (an index probe of an empty table, no function call); the
-- runtime role may read only the fences of the proof its transaction set, which no other tenant
-- can make, and never whose they are.
CREATE TABLE tenancy.fences (
    proof     text        NOT NULL,
    placement text        NOT NULL,
    tenant_id uuid        NOT NULL,
    state     text        NOT NULL CHECK (state IN ('open', 'moved')),
    move_id   bigint,
    since     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fences_pkey PRIMARY KEY (proof, placement),
    CONSTRAINT fences_tenant_key UNIQUE (tenant_id, placement)
);
REVOKE ALL ON tenancy.fences FROM PUBLIC;
ALTER TABLE tenancy.fences ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_fences ON tenancy.fences FOR SELECT
    USING (proof OPERATOR(pg_catalog.=) pg_catalog.current_setting('app.tenant_proof', true));
GRANT SELECT (proof, placement, state) ON tenancy.fences TO PUBLIC;

-- tenancy.fenced refuses a unit of work of a tenant whose move holds it back ('switching') or
-- has taken it elsewhere ('moved'): the scoping statement calls it only then.
CREATE FUNCTION tenancy.fenced(state text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF state = 'moved' THEN
        RAISE EXCEPTION 'tenancy: the tenant has moved out of this placement'
            USING ERRCODE = 'TNCY3', DETAIL = 'moved', HINT = 'look the tenant up again (tenancypgx.Config.Store does)';
    END IF;
    RAISE EXCEPTION 'tenancy: the tenant is being moved: its writes wait for the switch'
        USING ERRCODE = 'TNCY3', DETAIL = 'switching', HINT = 'try again shortly (tenancypgx waits and does)';
END $$;

-- While a move copies a tenant's rows, triggers on its tables record the key of every row of
-- that tenant that changes; the move copies those rows again from the source's current state
-- until none is left.
CREATE TABLE tenancy.move_changes (
    seq     bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT move_changes_pkey PRIMARY KEY,
    move_id bigint NOT NULL,
    tbl     text   NOT NULL,
    key     jsonb  NOT NULL
);
CREATE INDEX move_changes_move_idx ON tenancy.move_changes (move_id, seq);
REVOKE ALL ON tenancy.move_changes FROM PUBLIC;

-- The capture trigger's routine, on the old placement's tenant tables from the move's start to
-- its end (finalized or aborted); the trigger's WHEN clause names the tenant, so other tenants'
-- writes do not call it. TG_ARGV: the move's id, the table's label, the placement's fence name,
-- the tenant's unit key, then the primary key's columns. Every write of the tenant's rows here —
-- whichever way SQL came to write them, its unit's scoping statement or not — takes the barrier
-- (refused while the switch holds it), locks the tenant's fence (a repeatable-read transaction
-- that began before the switch gets a serialization failure) and is refused once the fence says
-- moved; until then the row's key is recorded.
CREATE FUNCTION tenancy.capture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols   text[] := TG_ARGV[4:];
    tenant uuid;
    st     text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        tenant := OLD.tenant_id::text::uuid;
    ELSE
        tenant := NEW.tenant_id::text::uuid;
    END IF;
    IF NOT pg_try_advisory_xact_lock_shared(TG_ARGV[3]::bigint) THEN
        PERFORM tenancy.fenced('switching');
    END IF;
    SELECT f.state INTO st FROM tenancy.fences f WHERE f.tenant_id = tenant AND f.placement = TG_ARGV[2] FOR SHARE;
    IF st IS NULL THEN
        -- The fence is made before the triggers and outlives them: a transaction that does not see
        -- it took its snapshot before the move began, and may not write here (the move could
        -- have switched since).
        RAISE EXCEPTION 'tenancy: this transaction began before the tenant''s move: try it again'
            USING ERRCODE = '40001';
    ELSIF st = 'moved' THEN
        PERFORM tenancy.fenced('moved');
    END IF;
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO tenancy.move_changes (move_id, tbl, key)
        SELECT TG_ARGV[0]::bigint, TG_ARGV[1], jsonb_object_agg(e.key, e.value)
          FROM jsonb_each(to_jsonb(OLD)) e WHERE e.key = ANY (cols);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO tenancy.move_changes (move_id, tbl, key)
        SELECT TG_ARGV[0]::bigint, TG_ARGV[1], jsonb_object_agg(e.key, e.value)
          FROM jsonb_each(to_jsonb(NEW)) e WHERE e.key = ANY (cols);
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION tenancy.capture_change() FROM PUBLIC;

-- The barrier's keys are secret only if no tenant can list the advisory locks others hold: a
-- tenant that read another's key from pg_locks could take that lock and hold the other's writes
-- back. pg_locks and the function under it are taken from PUBLIC (monitoring keeps them through
-- pg_monitor). That needs a superuser; a migration role that is not one leaves them, and
-- tenancy doctor reports it with the statement to run.
DO $$
BEGIN
    REVOKE SELECT ON pg_catalog.pg_locks FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION pg_catalog.pg_lock_status() FROM PUBLIC;
    GRANT SELECT ON pg_catalog.pg_locks TO pg_monitor;
    GRANT EXECUTE ON FUNCTION pg_catalog.pg_lock_status() TO pg_monitor;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'tenancy: pg_locks stays readable by every role (not a superuser): tenancy doctor reports it';
END $$;
