-- The reset that ends every unit of work, proven. The driver runs it as a statement it prepared
-- by name, and SQL inside a unit of work can DEALLOCATE that statement and PREPARE a stand-in under
-- its name that resets nothing (or resets, then sets session state again) and answers a plausible
-- count — after swapping the next tenant's statements too. So the reset's answer carries a proof a
-- stand-in cannot make: an HMAC under the binding key (which the runtime role cannot read) of a
-- nonce the client picks for each call (128 random bits: no proof made earlier fits) and of the
-- answer. Only tenancy.reset_session_proven makes proofs, in the same call as the reset, and only
-- of -1 (close the connection) unless the statement running is exactly one of the toolkit's three
-- reset statements: a stand-in runs as the text of the PREPARE that made it, so whatever it calls,
-- and whatever it does after, it cannot be proven clean.
--
-- This file is part of the isolation support (catalog and tenant databases).

-- The session reset of 0006 without its handling of prepared statements, which moves to
-- tenancy.reset_session_proven: it answers 0, or -1 when the connection must not be reused.
CREATE OR REPLACE FUNCTION tenancy.reset_session(in_unit boolean DEFAULT false, tx_start timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
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
    -- The generator of random(): a unit of work may have seeded it (setseed), which would make
    -- the next user's random() predictable. Reseeded from the strong generator.
    PERFORM pg_catalog.setseed(
        ((('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::pg_catalog.text), 1, 13))::pg_catalog.bit(52)::pg_catalog.int8)::pg_catalog.float8
         OPERATOR(pg_catalog./) 4503599627370496.0) OPERATOR(pg_catalog.*) 2 OPERATOR(pg_catalog.-) 1);
    RETURN protocol;
END $$;


-- tenancy.reset_session_proven(in_unit, tx_start, nonce) resets the session (tenancy.reset_session),
-- drops the statements SQL prepared on it, and answers "count:proof": the number of the driver's
-- cached statements, or -1 when the connection must not be reused — the reset said so, SQL had
-- prepared statements, or the statement running is not one of the toolkit's reset statements.
-- proof is the HMAC, under the binding key, of a NUL byte, 'tenancy reset:', the nonce, ':' and
-- the answer: no tenant binding (text, which holds no NUL) can ever equal it. It runs with its
-- owner's rights to read the key (every operation of the reset is on the session, whoever runs
-- it) and reads no tenant data; every name in it is qualified, and it has no SET clause, which
-- would undo RESET ALL at its exit.
CREATE FUNCTION tenancy.reset_session_proven(in_unit boolean, tx_start timestamptz, nonce text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    -- Types qualified: it runs with its owner's rights and has no SET clause, so an unqualified
    -- type name would be looked up in the caller's temporary schema first.
    stmt   pg_catalog.text;
    by_sql pg_catalog.bool;
    answer pg_catalog.int4;
    proof  pg_catalog.text;
BEGIN
    IF nonce IS NULL THEN
        RAISE EXCEPTION 'tenancy: reset_session_proven needs a nonce' USING ERRCODE = '22023';
    END IF;
    answer := tenancy.reset_session(in_unit, tx_start);
    FOR stmt, by_sql IN SELECT p.name, p.from_sql FROM pg_catalog.pg_prepared_statements p LOOP
        IF by_sql THEN
            EXECUTE 'DEALLOCATE ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(stmt);
            answer := -1;
        ELSIF answer OPERATOR(pg_catalog.>=) 0 AND pg_catalog.starts_with(stmt, 'stmtcache_') THEN
            answer := answer OPERATOR(pg_catalog.+) 1; -- one of the driver's statement cache
        END IF;
    END LOOP;
    IF pg_catalog.current_query() OPERATOR(pg_catalog.<>) ALL (ARRAY[
           'SELECT tenancy.reset_session_proven(false, NULL, $1)',
           'SELECT tenancy.reset_session_proven(true, NULL, $1)',
           'SELECT tenancy.reset_session_proven(true, $1, $2)']::pg_catalog.text[]) THEN
        answer := -1; -- a stand-in, or a call from anywhere else
    END IF;
    SELECT pg_catalog.encode(pg_catalog.sha256(k.outer_key OPERATOR(pg_catalog.||) pg_catalog.sha256(k.inner_key
               OPERATOR(pg_catalog.||) '\x00'::pg_catalog.bytea OPERATOR(pg_catalog.||) pg_catalog.textsend('tenancy reset:'
               OPERATOR(pg_catalog.||) nonce OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) answer::pg_catalog.text))), 'hex')
      INTO proof
      FROM tenancy.binding_key k;
    IF proof IS NULL THEN
        RAISE EXCEPTION 'tenancy: this database has no binding key' USING ERRCODE = '42501';
    END IF;
    RETURN answer::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) proof;
END $$;

-- Callable by every role (the runtime role, and any tenancy.isolate was given): it reads no tenant
-- data, and proves only what the caller's own session holds.
GRANT EXECUTE ON FUNCTION tenancy.reset_session_proven(boolean, timestamptz, text) TO PUBLIC;
