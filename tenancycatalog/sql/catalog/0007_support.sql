-- Which version of the isolation support (the catalog migrations InstallSupport copies: the runtime
-- role, tenancy.isolate, the binding) each database tenant's own database carries, so that
-- `tenancy migrate` brings older tenant databases up to it even when their tenant line is current.
ALTER TABLE tenancy.tenant_line ADD COLUMN support int NOT NULL DEFAULT 0;
