-- The tenant catalog: who the tenants are and which names reach them.

CREATE TABLE tenancy.tenants (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    slug       text        NOT NULL CONSTRAINT tenants_slug_key UNIQUE
                           CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan       text        NOT NULL DEFAULT 'free' CHECK (plan ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    isolation  text        NOT NULL DEFAULT 'shared' CHECK (isolation IN ('shared', 'schema', 'database')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenancy.domains (
    domain     text        CONSTRAINT domains_pkey PRIMARY KEY CHECK (domain = lower(domain) AND length(domain) <= 253),
    tenant_id  uuid        NOT NULL REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_tenant_id_idx ON tenancy.domains (tenant_id);

-- Every change is pushed to every running instance: the payload is the tenant's id, delivered at commit.
CREATE FUNCTION tenancy.notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        IF TG_OP = 'UPDATE' THEN
            NEW.updated_at := now();
        END IF;
        PERFORM pg_notify('tenancy_catalog', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END::text);
    ELSE
        PERFORM pg_notify('tenancy_catalog', CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END::text);
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER tenants_notify BEFORE INSERT OR UPDATE OR DELETE ON tenancy.tenants
    FOR EACH ROW EXECUTE FUNCTION tenancy.notify_tenant_change();
CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OR DELETE ON tenancy.domains
    FOR EACH ROW EXECUTE FUNCTION tenancy.notify_tenant_change();
