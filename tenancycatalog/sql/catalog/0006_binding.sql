-- Hardening: a tenant binding the runtime role cannot forge, a session that goes back to the pool
-- as it came, and a runtime role that logs in itself and can become no one else.
--
-- This file is part of the isolation support: it runs in the catalog's database and in every
-- database tenant's own database (InstallSupport).

-- The runtime pool logs in as tenancy_app directly, so SQL inside a tenant transaction has no
-- more rights than tenancy_app: RESET ROLE, SET ROLE and SET SESSION AUTHORIZATION reach no one
-- else (it is a member of no role). It has no password here: with password authentication the
-- operator gives it one (ALTER ROLE tenancy_app PASSWORD '…') and puts it in the runtime URL.
-- Roles belong to the whole server: migrations of other databases may be altering it at this
-- moment, which PostgreSQL reports as "tuple concurrently updated"; a later attempt finds it done.
DO $$
BEGIN
    FOR attempt IN 1..10 LOOP
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenancy_app'
                          AND (NOT rolcanlogin OR rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls OR rolreplication)) THEN
                ALTER ROLE tenancy_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;
            END IF;
            RETURN;
        EXCEPTION WHEN internal_error THEN
            IF attempt = 10 THEN
                RAISE;
            END IF;
            PERFORM pg_sleep(0.02 * attempt);
        END;
    END LOOP;
END $$;

-- The key that binds a transaction to its tenant: HMAC-SHA256 over the tenant's id, stored as the
-- key XOR the HMAC pads (inner_key = K ^ 0x36…, outer_key = K ^ 0x5c…). Only its owner reads it;
-- MigrateCatalog fills it with a random key, InstallSupport copies the catalog's.
CREATE TABLE tenancy.binding_key (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    inner_key  bytea       NOT NULL CHECK (length(inner_key) = 64),
    outer_key  bytea       NOT NULL CHECK (length(outer_key) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON tenancy.binding_key FROM PUBLIC;

-- tenancy.current_tenant() is the tenant the transaction is bound to: app.tenant_id, but only
-- when app.tenant_proof is its HMAC under the key above. The runtime role can set both settings
-- but cannot read the key, so it cannot bind itself to another tenant. No binding is NULL (no
-- rows, no inserts); a binding that does not verify is an error. It runs with its owner's rights
-- to read the key, with a fixed search_path; the comparison is of digests, so its time says
-- nothing about the proof.
CREATE FUNCTION tenancy.current_tenant() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tenant text := current_setting('app.tenant_id', true);
    ok     boolean;
BEGIN
    IF tenant IS NULL OR tenant = '' THEN
        RETURN NULL;
    END IF;
    -- One statement: it runs once per query that reads a tenant table.
    SELECT sha256(convert_to(coalesce(current_setting('app.tenant_proof', true), ''), 'UTF8'))
           = sha256(convert_to(encode(sha256(k.outer_key || sha256(k.inner_key || convert_to(tenant, 'UTF8'))), 'hex'), 'UTF8'))
      INTO ok
      FROM tenancy.binding_key k;
    IF ok THEN
        RETURN tenant;
    ELSIF ok IS NULL THEN
        RAISE EXCEPTION 'tenancy: this database has no binding key'
            USING ERRCODE = '42501', HINT = 'run tenancy migrate (the catalog migrations install it)';
    END IF;
    RAISE EXCEPTION 'tenancy: app.tenant_id is not bound by this database''s key'
        USING ERRCODE = '42501', HINT = 'bind transactions with tenancypgx (db.Tx), never by setting app.tenant_id';
END $$;

-- tenancy.reset_session(in_unit, tx_start) removes everything a unit of work can leave on a
-- server session, so a pooled connection goes back as it came: held cursors, LISTEN
-- registrations, session advisory locks, session-level settings (RESET ALL: back to the
-- connection's startup values), the sequence values of currval/lastval, temporary objects, and
-- statements prepared with SQL's PREPARE — which could take the name of a statement the driver
-- prepared for the next user (after a DEALLOCATE) and run the attacker's SQL in that user's
-- transaction. Statements the driver prepared through the protocol stay: they are its cache.
--
-- Before that, inside the unit's transaction (in_unit: tenancypgx calls it in the COMMIT's round
-- trip, or at the end of a single statement's pipeline), it refuses — so the transaction rolls
-- back — when the unit of work ended the transaction it was given (tx_start, the transaction's
-- start, no longer now(): what followed ran unbound) or changed a role: PostgreSQL lets any role
-- set its own password and session defaults (ALTER ROLE CURRENT_USER SET search_path …), which
-- every later connection of every tenant would start with. Defaults of the runtime role made
-- anyway (outside a transaction it could roll back) are removed by tenancypgx (a sweep of its own).
--
-- It returns how many statements the driver's statement cache holds on the connection (pgx names
-- them stmtcache_…), or -1 when the connection must not be reused: SQL-prepared statements had to
-- be dropped, or a role was changed on it. tenancypgx calls it after every ROLLBACK too (in_unit false). It runs with the caller's
-- rights and no SET clause (one would undo RESET ALL at exit); every name in it is qualified.
CREATE FUNCTION tenancy.reset_session(in_unit boolean DEFAULT false, tx_start timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    stmt      text;
    by_sql    boolean;
    role_writes bigint;
    protocol  integer := 0;
BEGIN
    IF in_unit AND tx_start IS NOT NULL AND pg_catalog.now() OPERATOR(pg_catalog.<>) tx_start THEN
        RAISE EXCEPTION 'tenancy: the unit of work ended the transaction it was given (a COMMIT or ROLLBACK inside it); what followed ran without a tenant'
            USING ERRCODE = 'TNCY1';
    END IF;
    -- Rows of the role catalogs this transaction wrote. The counters also hold what earlier
    -- transactions on the connection wrote until the statistics are flushed: after a rolled-back
    -- role change they are not zero, and the connection is closed rather than reused.
    role_writes := pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_authid'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_authid'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted('pg_catalog.pg_authid'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_db_role_setting'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_db_role_setting'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted('pg_catalog.pg_db_role_setting'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_auth_members'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted('pg_catalog.pg_auth_members'::pg_catalog.regclass);
    IF role_writes OPERATOR(pg_catalog.>) 0 THEN
        IF in_unit THEN
            RAISE EXCEPTION 'tenancy: the unit of work changed a role (ALTER ROLE, a password, session defaults)'
                USING ERRCODE = 'TNCY2';
        END IF;
        protocol := -1;
    END IF;
    -- After a ROLLBACK: a unit that ended its transaction itself and then failed may have left
    -- the role session defaults, for all databases or this one; the caller then removes them and
    -- closes the connection. (Defaults for another database are refused and removed by that
    -- database's pools when a connection starts.)
    IF NOT in_unit THEN -- nested: the check's subqueries cost the commit path nothing
        IF EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s
                     JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole
                    WHERE r.rolname OPERATOR(pg_catalog.=) SESSION_USER
                      AND (s.setdatabase OPERATOR(pg_catalog.=) 0
                           OR s.setdatabase OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                                                     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()))) THEN
            protocol := -1;
        END IF;
    END IF;
    EXECUTE 'CLOSE ALL';
    EXECUTE 'UNLISTEN *';
    PERFORM pg_catalog.pg_advisory_unlock_all();
    EXECUTE 'RESET ALL';
    EXECUTE 'DISCARD SEQUENCES';
    IF pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 THEN
        EXECUTE 'DISCARD TEMP';
    END IF;
    FOR stmt, by_sql IN SELECT p.name, p.from_sql FROM pg_catalog.pg_prepared_statements p LOOP
        IF by_sql THEN
            EXECUTE 'DEALLOCATE ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(stmt);
            protocol := -1;
        ELSIF protocol OPERATOR(pg_catalog.>=) 0 AND pg_catalog.starts_with(stmt, 'stmtcache_') THEN
            protocol := protocol OPERATOR(pg_catalog.+) 1; -- one of the driver's statement cache
        END IF;
    END LOOP;
    -- The generator of random(): a unit of work may have seeded it (setseed), which would make
    -- the next user's random() predictable. Reseeded from the strong generator.
    PERFORM pg_catalog.setseed(
        ((('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::pg_catalog.text), 1, 13))::pg_catalog.bit(52)::pg_catalog.int8)::pg_catalog.float8
         OPERATOR(pg_catalog./) 4503599627370496.0) OPERATOR(pg_catalog.*) 2 OPERATOR(pg_catalog.-) 1);
    RETURN protocol;
END $$;

-- tenancy.check_session() ends the session (FATAL) when it started with session defaults of its
-- role (ALTER ROLE … SET): SQL in a unit of work can give the role some for a moment, and a
-- connection that starts then keeps them as its defaults — every RESET goes back to them — for
-- its whole life. tenancypgx checks its own new connections; a pooler that opens server
-- connections itself runs this first on each (PgBouncer: connect_query). A pooler ignores a
-- failed connect query, so the session ends itself (exit_on_error) rather than serve; the connect
-- query turns exit_on_error on before the call, so that any other error — a statement_timeout
-- default of 1 ms, say — ends it too (see the README's PgBouncer configuration). Sessions of a
-- superuser or of the catalog's owner are left alone.
CREATE FUNCTION tenancy.check_session() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- A pooler may serve the migration role too: its defaults are its owner's business.
    IF EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) SESSION_USER
                  AND (r.rolsuper OR r.oid OPERATOR(pg_catalog.=) (SELECT n.nspowner FROM pg_catalog.pg_namespace n
                                                                     WHERE n.nspname OPERATOR(pg_catalog.=) 'tenancy'))) THEN
        RETURN;
    END IF;
    -- exit_on_error: the connect query sets it first (see below), which hides its source.
    IF EXISTS (SELECT FROM pg_catalog.pg_settings s
                WHERE s.source OPERATOR(pg_catalog.=) ANY (ARRAY['user', 'database user']::pg_catalog.text[])
                   OR (s.name OPERATOR(pg_catalog.=) 'exit_on_error' AND s.reset_val OPERATOR(pg_catalog.=) 'on')) THEN
        PERFORM pg_catalog.set_config('exit_on_error', 'on', false);
        RAISE EXCEPTION 'tenancy: this session started with session defaults of its role (ALTER ROLE … SET), which every unit of work on it would inherit'
            USING ERRCODE = 'TNCY3';
    END IF;
END $$;

-- Only the runtime role calls into the catalog schema, and only these functions.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tenancy FROM PUBLIC;
GRANT USAGE ON SCHEMA tenancy TO tenancy_app;
GRANT EXECUTE ON FUNCTION tenancy.current_tenant(), tenancy.reset_session(boolean, timestamptz), tenancy.check_session() TO tenancy_app;

-- tenancy.isolate(table) as in 0002, but the policy trusts only the verified binding
-- (tenancy.current_tenant(), read once per query), not the raw setting. The column default still
-- reads the setting (cheap, per row): a forged default is refused by WITH CHECK.
CREATE OR REPLACE FUNCTION tenancy.isolate(tbl regclass, runtime_role name DEFAULT 'tenancy_app') RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    col_type text;
    setting  text;
    bound    text;
    owner    text;
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
    setting := format('NULLIF(current_setting(%L, true), %L)::%s', 'app.tenant_id', '', col_type);
    bound := format('tenancy.current_tenant()::%s', col_type);

    EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id SET DEFAULT %s, ALTER COLUMN tenant_id SET NOT NULL', tbl, setting);

    IF NOT EXISTS (SELECT FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = tbl AND a.attname = 'tenant_id') THEN
        EXECUTE format('CREATE INDEX ON %s (tenant_id)', tbl);
    END IF;

    -- In a schema tenant's schema (tenant_ and the hex of its id), every row is that tenant's: other
    -- tenants can reach the schema's tables (one runtime role serves all), and RLS alone would
    -- let them store rows of their own there.
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
    FOR seq IN SELECT d.objid::regclass FROM pg_depend d
                WHERE d.refobjid = tbl AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                  AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
    LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', seq, runtime_role);
    END LOOP;
    -- Granted once: concurrent GRANTs on one object fail ("tuple concurrently updated"), and
    -- tenant migrations run in parallel.
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

-- Every tenant table made by the earlier isolate gets the verified policy.
DO $$
DECLARE
    tbl regclass;
BEGIN
    FOR tbl IN SELECT DISTINCT p.polrelid::regclass FROM pg_policy p WHERE p.polname = 'tenant_isolation' LOOP
        PERFORM tenancy.isolate(tbl);
    END LOOP;
END $$;

-- No temporary objects for the runtime role: they would outlive its transaction on a pooled
-- connection, and pg_temp is searched first. TEMP is PUBLIC's by default; the migrating role keeps
-- it. Changing a database's privileges needs its owner (or a superuser): without that right the
-- privilege stays, reset_session still drops what is made, and tenancy doctor reports it.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, tenancy_app', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'tenancy: cannot revoke TEMPORARY on database % from PUBLIC: run this as its owner', current_database();
END $$;

-- Functions every role may call by default that would let SQL inside one tenant's transaction
-- reach the others, since all tenants' sessions share the runtime role: ending or cancelling their
-- queries (pg_terminate_backend, pg_cancel_backend act on sessions of the same role), and large
-- objects (owned by the role, not the tenant: one tenant would read, change and unlink another's).
-- They belong to pg_catalog, whose privileges only a superuser changes: otherwise they stay, and
-- tenancy doctor reports them.
DO $$
DECLARE
    f regprocedure;
    super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace
                AND (p.proname IN ('pg_terminate_backend', 'pg_cancel_backend', 'loread', 'lowrite') OR p.proname LIKE 'lo\_%')
                AND has_function_privilege('tenancy_app', p.oid, 'EXECUTE') LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        IF NOT super THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, current_user);
        END IF;
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'tenancy: cannot revoke pg_terminate_backend, pg_cancel_backend and the large-object functions from PUBLIC in database %: run the migrations as a superuser', current_database();
END $$;
