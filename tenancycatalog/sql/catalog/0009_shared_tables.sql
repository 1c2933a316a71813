-- Shared tables, and tenant tables whose sequences count no one else's rows.
--
-- This file is part of the isolation support: it runs in the catalog's database and in every
-- database tenant's own database (InstallSupport).

-- A shared table holds reference data every tenant may read (plans, countries): tenancy.share
-- declares it, and the runtime role may then only read it. `tenancy doctor` reports any other
-- table the runtime role can read, and a shared table it can write.
CREATE TABLE tenancy.shared_tables (
    relation  regclass    PRIMARY KEY,
    shared_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON tenancy.shared_tables FROM PUBLIC;

CREATE FUNCTION tenancy.share(tbl regclass, runtime_role name DEFAULT 'tenancy_app') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = 'tenant_isolation') THEN
        RAISE EXCEPTION 'tenancy.share(%): % is a tenant table (tenancy.isolate): its rows belong to tenants', tbl, tbl
            USING ERRCODE = '42809';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p', 'v', 'm', 'f') THEN
        RAISE EXCEPTION 'tenancy.share(%): not a table or view', tbl USING ERRCODE = '42809';
    END IF;
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, %I', tbl, runtime_role);
    EXECUTE format('GRANT SELECT ON %s TO %I', tbl, runtime_role);
    INSERT INTO tenancy.shared_tables (relation) VALUES (tbl) ON CONFLICT DO NOTHING;
END $$;

CREATE FUNCTION tenancy.unshare(tbl regclass, runtime_role name DEFAULT 'tenancy_app') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, %I', tbl, runtime_role);
    DELETE FROM tenancy.shared_tables WHERE relation = tbl;
END $$;
REVOKE EXECUTE ON FUNCTION tenancy.share(regclass, name), tenancy.unshare(regclass, name) FROM PUBLIC;

-- tenancy.isolate no longer grants the runtime role its tables' sequences: a sequence's last_value
-- (SELECT) or nextval (USAGE) counts every tenant's rows. A serial column (a default of nextval on
-- a sequence the column owns) becomes an identity column, which needs no privilege on its
-- sequence, and goes on from where the sequence was; the runtime role's privileges on the table's
-- sequences are revoked. Identity values still come from one counter for all tenants: prefer uuid
-- keys where even the gaps between one's own ids matter.
CREATE OR REPLACE FUNCTION tenancy.isolate(tbl regclass, runtime_role name DEFAULT 'tenancy_app') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    col_type text;
    setting  text;
    bound    text;
    owner    text;
    col      name;
    seq      regclass;
    next_val bigint;
BEGIN
    IF EXISTS (SELECT FROM tenancy.shared_tables s WHERE s.relation = tbl) THEN
        RAISE EXCEPTION 'tenancy.isolate(%): % is shared (tenancy.share): run tenancy.unshare first', tbl, tbl
            USING ERRCODE = '42809';
    END IF;
    SELECT format_type(a.atttypid, NULL) INTO col_type
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = 'tenant_id' AND NOT a.attisdropped;
    IF col_type IS NULL THEN
        col_type := 'uuid';
        EXECUTE format('ALTER TABLE %s ADD COLUMN tenant_id uuid', tbl);
    ELSIF col_type NOT IN ('uuid', 'text') THEN
        RAISE EXCEPTION 'tenancy.isolate(%): tenant_id is %, want uuid or text', tbl, col_type;
    END IF;
    setting := format('NULLIF(current_setting(%L, true), %L)::%s', 'app.tenant_id', '', col_type);
    bound := format('tenancy.current_tenant()::%s', col_type);

    EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id SET DEFAULT %s, ALTER COLUMN tenant_id SET NOT NULL', tbl, setting);

    IF NOT EXISTS (SELECT FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = tbl AND a.attname = 'tenant_id') THEN
        EXECUTE format('CREATE INDEX ON %s (tenant_id)', tbl);
    END IF;

    SELECT substring(n.nspname FROM '^tenant_([0-9a-f]{32})$') INTO owner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF owner IS NOT NULL THEN
        owner := regexp_replace(owner, '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\1-\2-\3-\4-\5');
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS tenant_schema_owner', tbl);
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT tenant_schema_owner CHECK (tenant_id = %L::%s)', tbl, owner, col_type);
    END IF;

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', tbl);
    EXECUTE format('CREATE POLICY tenant_isolation ON %s FOR ALL USING (tenant_id = (SELECT %s)) WITH CHECK (tenant_id = (SELECT %s))',
                   tbl, bound, bound);

    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', tbl, runtime_role);
    FOR col, seq IN SELECT a.attname, d.objid::regclass
                      FROM pg_depend d
                      JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = d.refobjsubid
                      JOIN pg_attrdef ad ON ad.adrelid = tbl AND ad.adnum = a.attnum
                     WHERE d.refobjid = tbl AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                       AND d.deptype = 'a' AND a.attidentity = ''
                       AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
                       AND pg_get_expr(ad.adbin, ad.adrelid) = format('nextval(%L::regclass)', d.objid::regclass)
    LOOP
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s', seq) INTO next_val;
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, col);
        EXECUTE format('DROP SEQUENCE %s', seq);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED BY DEFAULT AS IDENTITY (START WITH %s)', tbl, col, next_val);
    END LOOP;
    FOR seq IN SELECT d.objid::regclass FROM pg_depend d
                WHERE d.refobjid = tbl AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                  AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
    LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', seq, runtime_role);
    END LOOP;
    IF NOT has_schema_privilege(runtime_role, 'tenancy', 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA tenancy TO %I', runtime_role);
    END IF;
    IF NOT (has_function_privilege(runtime_role, 'tenancy.current_tenant()', 'EXECUTE')
            AND has_function_privilege(runtime_role, 'tenancy.reset_session(boolean, timestamptz)', 'EXECUTE')
            AND has_function_privilege(runtime_role, 'tenancy.check_session()', 'EXECUTE')) THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION tenancy.current_tenant(), tenancy.reset_session(boolean, timestamptz), tenancy.check_session() TO %I', runtime_role);
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION tenancy.isolate(regclass, name) FROM PUBLIC;

-- Tables isolated before this version: their sequences are taken back.
DO $$
DECLARE
    tbl regclass;
BEGIN
    FOR tbl IN SELECT DISTINCT p.polrelid::regclass FROM pg_policy p WHERE p.polname = 'tenant_isolation' LOOP
        PERFORM tenancy.isolate(tbl);
    END LOOP;
END $$;
