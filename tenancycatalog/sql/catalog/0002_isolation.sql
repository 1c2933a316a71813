-- The runtime role and the function that turns a table into a tenant table.

-- tenancy_app is what tenant transactions run as (SET LOCAL ROLE): it cannot log in, is not a
-- superuser, does not bypass row-level security and owns nothing. Roles belong to the whole
-- server, so another database may have created it already, even at this moment.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenancy_app') THEN
        BEGIN
            CREATE ROLE tenancy_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- The owner switches to the runtime role inside each transaction; a non-superuser owner needs
    -- membership for that.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT tenancy_app TO %I', current_user);
    END IF;
END $$;

-- tenancy.isolate(table) makes table a tenant table, and may be run again at any time:
--   * a tenant_id column (uuid, or the text/uuid column already there), NOT NULL, defaulting to the
--     transaction's tenant, so an INSERT never names the tenant;
--   * an index led by tenant_id unless one exists;
--   * row-level security enabled and FORCEd (the owner is bound too);
--   * one policy for every command, USING and WITH CHECK, that compares tenant_id with the tenant
--     setting read once per query (an InitPlan, so the index is used); a missing or empty setting is
--     NULL, which matches no row and refuses every insert;
--   * SELECT, INSERT, UPDATE, DELETE for the runtime role, and its sequences.
CREATE FUNCTION tenancy.isolate(tbl regclass, runtime_role name DEFAULT 'tenancy_app') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    col_type text;
    tenant   text;
    seq      regclass;
BEGIN
    SELECT format_type(a.atttypid, NULL) INTO col_type
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = 'tenant_id' AND NOT a.attisdropped;
    IF col_type IS NULL THEN
        col_type := 'uuid';
        EXECUTE format('ALTER TABLE %s ADD COLUMN tenant_id uuid', tbl);
    ELSIF col_type NOT IN ('uuid', 'text') THEN
        RAISE EXCEPTION 'tenancy.isolate(%): tenant_id is %, want uuid or text', tbl, col_type;
    END IF;
    tenant := format('NULLIF(current_setting(%L, true), %L)::%s', 'app.tenant_id', '', col_type);

    EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id SET DEFAULT %s, ALTER COLUMN tenant_id SET NOT NULL', tbl, tenant);

    IF NOT EXISTS (SELECT FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = tbl AND a.attname = 'tenant_id') THEN
        EXECUTE format('CREATE INDEX ON %s (tenant_id)', tbl);
    END IF;

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', tbl);
    EXECUTE format('CREATE POLICY tenant_isolation ON %s FOR ALL USING (tenant_id = (SELECT %s)) WITH CHECK (tenant_id = (SELECT %s))',
                   tbl, tenant, tenant);

    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', tbl, runtime_role);
    FOR seq IN SELECT d.objid::regclass FROM pg_depend d
                WHERE d.refobjid = tbl AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                  AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
    LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', seq, runtime_role);
    END LOOP;
END $$;
