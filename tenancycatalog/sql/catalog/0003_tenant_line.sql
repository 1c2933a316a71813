-- Provisioning and the tenant migration line's ledger.

-- A schema or database tenant is 'provisioning' until its schema or database exists and carries
-- the tenant line; requests for it are refused meanwhile. provision_error keeps why the last
-- attempt failed, for `tenancy tenant show`.
ALTER TABLE tenancy.tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenancy.tenants ADD CONSTRAINT tenants_status_check
    CHECK (status IN ('active', 'suspended', 'deleted', 'provisioning'));
ALTER TABLE tenancy.tenants ADD COLUMN provision_error text;

-- One row per target of the tenant line: 'shared' (the shared schema, for every shared-model
-- tenant) or a tenant's id (its schema or database). version is the last migration applied; so
-- "is anything pending anywhere?" is one query, whatever the number of tenants.
CREATE TABLE tenancy.tenant_line (
    target     text        PRIMARY KEY,
    tenant_id  uuid        UNIQUE REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    version    int         NOT NULL DEFAULT 0,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((target = 'shared') = (tenant_id IS NULL)),
    CHECK (target = 'shared' OR target = tenant_id::text)
);
CREATE INDEX tenant_line_version_idx ON tenancy.tenant_line (version);
