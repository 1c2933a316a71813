-- What a live move of a tenant (tenancymove) needs in the database it leaves: a fence that keeps
-- the tenant's units of work out of a placement it is leaving or has left, and the capture of the
-- rows the tenant changes while its rows are copied.
--
-- This file is part of the isolation support (catalog and tenant databases).

-- A fence is keyed by the tenant's binding proof (HMAC of its id under the binding key) and the
-- placement it closes: "shared", a tenant schema's name, or "database" (a tenant's own
-- database).
--   switching: the move's final switch is under way; units that may write are refused (the
--              driver waits and tries again), read-only ones are served.
--   moved:     the tenant lives elsewhere now; every unit is refused, and the driver looks the
--              tenant up again.
-- Every scoping statement (tenancypgx) reads it, after setting app.tenant_proof:
--
--   SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_proof', $2, true), now(),
--          (SELECT tenancy.fenced(f.state) FROM tenancy.fences f WHERE f.proof = $2 AND f.placement = $3
--             AND (f.state = 'moved' OR NOT current_setting('transaction_read_only')::boolean))
--
-- which refuses a fenced tenant (SQLSTATE TNCY3, from tenancy.fenced) before the unit runs, and
-- costs an index probe of an empty table otherwise (no function call: about half a SECURITY
-- DEFINER function's cost). The runtime role may read only the fences of the proof its
-- transaction set, which no other tenant can make: no tenant learns that another is moving, and
-- no proof is ever readable.
CREATE TABLE tenancy.fences (
    proof     text        NOT NULL,
    placement text        NOT NULL,
    tenant_id uuid        NOT NULL,
    state     text        NOT NULL CHECK (state IN ('switching', 'moved')),
    move_id   bigint,
    since     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fences_pkey PRIMARY KEY (proof, placement)
);
REVOKE ALL ON tenancy.fences FROM PUBLIC;
ALTER TABLE tenancy.fences ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_fences ON tenancy.fences FOR SELECT
    USING (proof OPERATOR(pg_catalog.=) pg_catalog.current_setting('app.tenant_proof', true));
GRANT SELECT (proof, placement, state) ON tenancy.fences TO PUBLIC;

-- tenancy.fenced refuses a unit of work of a fenced tenant: the scoping statement calls it only
-- for a fence it found.
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

-- While a move copies a tenant's rows, triggers on its tables (added by the move, dropped when it
-- switches or is abandoned) record the key of every row of that tenant that changes; the move
-- copies those rows again from the source's current state until none is left.
CREATE TABLE tenancy.move_changes (
    seq     bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT move_changes_pkey PRIMARY KEY,
    move_id bigint NOT NULL,
    tbl     text   NOT NULL,
    key     jsonb  NOT NULL
);
CREATE INDEX move_changes_move_idx ON tenancy.move_changes (move_id, seq);
REVOKE ALL ON tenancy.move_changes FROM PUBLIC;

-- The capture trigger's routine: TG_ARGV is the move's id, the table's label, then the names of
-- the primary key's columns. The trigger's WHEN clause names the tenant, so other tenants' writes
-- do not call it.
CREATE FUNCTION tenancy.capture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols text[] := TG_ARGV[2:];
BEGIN
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
