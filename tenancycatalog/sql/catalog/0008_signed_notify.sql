-- Catalog change notifications are signed. Anyone connected to the catalog's database may NOTIFY
-- on any channel — SQL inside a tenant's transaction too — and every instance drops caches and
-- asks the catalog again for each notification it hears: unsigned, a tenant could keep every
-- instance flushing. The payload is the tenant's id, a dot, and the hex HMAC-SHA256 of
-- 'tenancy_catalog:' and the id under the binding key (a purpose of its own: a transaction's
-- proof, which its SQL can read, is the HMAC of the bare id). Watch ignores anything else.
CREATE OR REPLACE FUNCTION tenancy.notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    id  text;
    sig text;
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        IF TG_OP = 'UPDATE' THEN
            NEW.updated_at := now();
        END IF;
        id := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END::text;
    ELSE
        id := CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END::text;
    END IF;
    SELECT encode(sha256(k.outer_key || sha256(k.inner_key || convert_to('tenancy_catalog:' || id, 'UTF8'))), 'hex')
      INTO sig FROM tenancy.binding_key k;
    PERFORM pg_notify('tenancy_catalog', id || '.' || coalesce(sig, ''));
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
REVOKE EXECUTE ON FUNCTION tenancy.notify_tenant_change() FROM PUBLIC;
