-- tenancy.isolate drops its policy before it creates it (DROP POLICY IF EXISTS), and a schema
-- tenant's owner constraint (DROP CONSTRAINT IF EXISTS): the first time a table is isolated,
-- PostgreSQL sends a NOTICE for each ("... does not exist, skipping"), which reads like a problem
-- to whoever runs the migration. The function runs with client_min_messages at warning: its
-- warnings and errors still reach the caller, those notices do not.
ALTER FUNCTION tenancy.isolate(regclass, name) SET client_min_messages = warning;
