-- Schema and database tenants by isolation and slug: what the migration ledger's status, the audit
-- and a filtered tenant list read. Shared tenants, which may be millions, are not in it, so none of
-- those reads grows with them.
CREATE INDEX tenants_placed_idx ON tenancy.tenants (isolation, slug) WHERE isolation <> 'shared';
