-- Cheaper ends of units of work: for database tenants, tenancy.end_unit; for everyone, the
-- proven reset in an order that costs about half as much.
--
-- What tenancy.reset_session_proven does at the end of a unit is for the next tenant that gets
-- the connection. A database tenant's connections never serve another tenant: each tenant
-- database has its own pools (tenancyrouter), and every session on it is in the tenant's own
-- database, whose advisory locks, LISTEN channels, sequences and temporary objects are its own.
-- So between a database tenant's own units the reseeding of random() and the count of the
-- driver's statements buy nothing: tenancy.end_unit keeps the checks inside the unit that
-- protect everyone (TNCY1: the unit ended the transaction it was given; TNCY2: it changed a role,
-- whose session defaults every later connection of every tenant would start with) and clears what a unit can leave for the tenant's own next unit (held
-- cursors, LISTEN, advisory locks, session settings, sequence values, temporary objects, and
-- statements prepared with SQL, after which it answers -1 and the connection is closed), and
-- proves its answer as the proven reset does.
--
-- The proven reset of 0012 read the key and listed the prepared statements after the reset's RESET
-- ALL, which made PostgreSQL plan both again on every call (about 30 µs of its 70 on the machine
-- BENCHMARKS.md describes): both now come first — neither is changed by the reset — and the HMAC
-- is an expression over the key read before. RESET ALL comes last in every function here, and
-- each pins search_path first: a schema tenant's unit runs the reset under the tenant's path, and
-- PostgreSQL planned every statement of the reset again whenever the path differed from the last
-- call's (about 50 µs a unit when schema and shared tenants alternate on a connection).
--
-- This file is part of the isolation support (catalog and tenant databases).

-- Rows of the role catalogs (pg_authid, pg_db_role_setting, pg_auth_members) this transaction
-- wrote, from the session's own statistics counters. They also hold what earlier transactions on
-- the connection wrote until the statistics are flushed: after a rolled-back role change they are
-- not zero. A SQL function, inlined where it is used (volatile, as the counters are).
CREATE FUNCTION tenancy.role_catalog_writes() RETURNS bigint
LANGUAGE sql AS $$
SELECT pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_authid'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_authid'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted('pg_catalog.pg_authid'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_db_role_setting'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated('pg_catalog.pg_db_role_setting'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted('pg_catalog.pg_db_role_setting'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_inserted('pg_catalog.pg_auth_members'::pg_catalog.regclass)
       OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted('pg_catalog.pg_auth_members'::pg_catalog.regclass)
$$;

-- tenancy.end_unit(tx_start, nonce) ends a database tenant's unit of work, inside its transaction
-- (see above); tx_start is the transaction's start (NULL: not checked — the single-statement
-- helpers, whose one statement runs in an explicit block). It answers "answer:proof" like
-- tenancy.reset_session_proven, under its own label (a NUL byte, 'tenancy end:', the nonce, ':'
-- and the answer): where the driver runs it as a statement prepared by name, SQL in the unit can
-- swap it for a stand-in, which must not pass for it — the connection would keep the stand-in for
-- the tenant's next units, none of them checked. It proves anything but -1 only when the
-- statement running is exactly the toolkit's. It runs with its owner's rights to read the key
-- (every other operation is on the session, whoever runs it) and no SET clause (one would undo
-- RESET ALL at exit); every name in it is qualified.
CREATE FUNCTION tenancy.end_unit(tx_start timestamptz, nonce text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    stmt      pg_catalog.text;
    path      pg_catalog.text;
    answer    pg_catalog.int4 := 0;
    inner_key pg_catalog.bytea;
    outer_key pg_catalog.bytea;
BEGIN
    -- One search_path for every call: PostgreSQL plans a function's statements again whenever
    -- they run under a search_path other than last time's, and a schema tenant's unit sets its
    -- own. Every name here is qualified; RESET ALL below ends the unit's setting anyway.
    path := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF nonce IS NULL THEN
        RAISE EXCEPTION 'tenancy: end_unit needs a nonce' USING ERRCODE = '22023';
    END IF;
    SELECT k.inner_key, k.outer_key INTO inner_key, outer_key FROM tenancy.binding_key k;
    IF inner_key IS NULL THEN
        RAISE EXCEPTION 'tenancy: this database has no binding key' USING ERRCODE = '42501';
    END IF;
    IF tx_start IS NOT NULL AND pg_catalog.now() OPERATOR(pg_catalog.<>) tx_start THEN
        RAISE EXCEPTION 'tenancy: the unit of work ended the transaction it was given (a COMMIT or ROLLBACK inside it); what followed ran without a tenant'
            USING ERRCODE = 'TNCY1';
    END IF;
    IF tenancy.role_catalog_writes() OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'tenancy: the unit of work changed a role (ALTER ROLE, a password, session defaults)'
            USING ERRCODE = 'TNCY2';
    END IF;
    FOR stmt IN SELECT p.name FROM pg_catalog.pg_prepared_statements p WHERE p.from_sql LOOP
        EXECUTE 'DEALLOCATE ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(stmt);
        answer := -1;
    END LOOP;
    EXECUTE 'CLOSE ALL';
    EXECUTE 'UNLISTEN *';
    PERFORM pg_catalog.pg_advisory_unlock_all();
    EXECUTE 'DISCARD SEQUENCES';
    IF pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 THEN
        EXECUTE 'DISCARD TEMP';
    END IF;
    EXECUTE 'RESET ALL';
    IF pg_catalog.current_query() OPERATOR(pg_catalog.<>) 'SELECT tenancy.end_unit($1, $2)' THEN
        answer := -1; -- a stand-in, or a call from anywhere else
    END IF;
    RETURN answer::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||)
        pg_catalog.encode(pg_catalog.sha256(outer_key OPERATOR(pg_catalog.||) pg_catalog.sha256(inner_key
            OPERATOR(pg_catalog.||) '\x00'::pg_catalog.bytea OPERATOR(pg_catalog.||) pg_catalog.textsend('tenancy end:'
            OPERATOR(pg_catalog.||) nonce OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) answer::pg_catalog.text))), 'hex');
END $$;

-- The session reset of 0012, with the role check shared with end_unit, RESET ALL last, and a
-- cheaper reseed of random(): a 64-bit hash of a random UUID (122 bits from the strong
-- generator) instead of an md5 and three casts — 4 µs a call instead of 10.
CREATE OR REPLACE FUNCTION tenancy.reset_session(in_unit boolean DEFAULT false, tx_start timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    path      pg_catalog.text;
    protocol  pg_catalog.int4 := 0;
BEGIN
    -- One search_path for every call: PostgreSQL plans a function's statements again whenever
    -- they run under a search_path other than last time's, and a schema tenant's unit sets its
    -- own. Every name here is qualified; RESET ALL below ends the unit's setting anyway.
    path := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF in_unit AND tx_start IS NOT NULL AND pg_catalog.now() OPERATOR(pg_catalog.<>) tx_start THEN
        RAISE EXCEPTION 'tenancy: the unit of work ended the transaction it was given (a COMMIT or ROLLBACK inside it); what followed ran without a tenant'
            USING ERRCODE = 'TNCY1';
    END IF;
    IF tenancy.role_catalog_writes() OPERATOR(pg_catalog.>) 0 THEN
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
    -- The generator of random(): a unit of work may have seeded it (setseed), which would make
    -- the next user's random() predictable. Reseeded from the strong generator, in [-1, 1).
    PERFORM pg_catalog.setseed(pg_catalog.hashtextextended(pg_catalog.gen_random_uuid()::pg_catalog.text, 0)::pg_catalog.float8
                               OPERATOR(pg_catalog./) 9223372036854775808.0);
    EXECUTE 'CLOSE ALL';
    EXECUTE 'UNLISTEN *';
    PERFORM pg_catalog.pg_advisory_unlock_all();
    EXECUTE 'DISCARD SEQUENCES';
    IF pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 THEN
        EXECUTE 'DISCARD TEMP';
    END IF;
    EXECUTE 'RESET ALL';
    RETURN protocol;
END $$;

-- The proven reset of 0012 (see there for what it proves and why), in the cheaper order: the key
-- and the statement listing before the reset, the proof an expression after it. It also counts
-- the statements the driver prepared by name (stmt_…), which tenancypgx keeps for schema tenants.
CREATE OR REPLACE FUNCTION tenancy.reset_session_proven(in_unit boolean, tx_start timestamptz, nonce text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    -- Types qualified: it runs with its owner's rights and has no SET clause, so an unqualified
    -- type name would be looked up in the caller's temporary schema first.
    stmt      pg_catalog.text;
    by_sql    pg_catalog.bool;
    answer    pg_catalog.int4 := 0;
    inner_key pg_catalog.bytea;
    outer_key pg_catalog.bytea;
    path      pg_catalog.text;
BEGIN
    -- One search_path for every call: PostgreSQL plans a function's statements again whenever
    -- they run under a search_path other than last time's, and a schema tenant's unit sets its
    -- own. Every name here is qualified; RESET ALL below ends the unit's setting anyway.
    path := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF nonce IS NULL THEN
        RAISE EXCEPTION 'tenancy: reset_session_proven needs a nonce' USING ERRCODE = '22023';
    END IF;
    SELECT k.inner_key, k.outer_key INTO inner_key, outer_key FROM tenancy.binding_key k;
    IF inner_key IS NULL THEN
        RAISE EXCEPTION 'tenancy: this database has no binding key' USING ERRCODE = '42501';
    END IF;
    FOR stmt, by_sql IN SELECT p.name, p.from_sql FROM pg_catalog.pg_prepared_statements p LOOP
        IF by_sql THEN
            EXECUTE 'DEALLOCATE ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(stmt);
            answer := -1;
        ELSIF answer OPERATOR(pg_catalog.>=) 0 AND (pg_catalog.starts_with(stmt, 'stmtcache_') OR pg_catalog.starts_with(stmt, 'stmt_')) THEN
            -- One the driver prepared: its statement cache's, or one prepared by name (the
            -- single-statement helpers prepare schema tenants' statements so).
            answer := answer OPERATOR(pg_catalog.+) 1;
        END IF;
    END LOOP;
    IF tenancy.reset_session(in_unit, tx_start) OPERATOR(pg_catalog.<) 0
       OR pg_catalog.current_query() OPERATOR(pg_catalog.<>) ALL (ARRAY[
           'SELECT tenancy.reset_session_proven(false, NULL, $1)',
           'SELECT tenancy.reset_session_proven(true, NULL, $1)',
           'SELECT tenancy.reset_session_proven(true, $1, $2)']::pg_catalog.text[]) THEN
        answer := -1; -- the reset said so; or a stand-in, or a call from anywhere else
    END IF;
    RETURN answer::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||)
        pg_catalog.encode(pg_catalog.sha256(outer_key OPERATOR(pg_catalog.||) pg_catalog.sha256(inner_key
            OPERATOR(pg_catalog.||) '\x00'::pg_catalog.bytea OPERATOR(pg_catalog.||) pg_catalog.textsend('tenancy reset:'
            OPERATOR(pg_catalog.||) nonce OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) answer::pg_catalog.text))), 'hex');
END $$;

-- Callable by every role (the runtime role, and any tenancy.isolate was given): they read no
-- tenant data, only what the caller's own session holds.
GRANT EXECUTE ON FUNCTION tenancy.role_catalog_writes(), tenancy.end_unit(timestamptz, text) TO PUBLIC;
