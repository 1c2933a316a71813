-- Where a database-model tenant's data lives: a server alias (its address and credentials are
-- configuration, never stored here) and a database name.
ALTER TABLE tenancy.tenants ADD COLUMN server text, ADD COLUMN database_name text;
ALTER TABLE tenancy.tenants ADD CONSTRAINT tenants_placement_key UNIQUE (server, database_name);
ALTER TABLE tenancy.tenants ADD CONSTRAINT tenants_placement_check
    CHECK ((server IS NULL) = (database_name IS NULL)
       AND (database_name IS NULL OR database_name ~ '^tenant_[0-9a-f]{32}$')
       AND (server IS NULL OR server ~ '^[a-z0-9][a-z0-9_-]{0,62}$'));
