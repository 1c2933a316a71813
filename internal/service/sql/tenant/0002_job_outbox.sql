-- The tenant's jobs, enqueued in its transactions, waiting to be moved into River (tenancyriver).
CREATE TABLE tenancy_job_outbox (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    kind       text        NOT NULL,
    args       jsonb       NOT NULL,
    opts       jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id)
);
SELECT tenancy.isolate('tenancy_job_outbox');
