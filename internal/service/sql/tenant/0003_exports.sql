-- Exports of a project (POST /projects/{id}/export): a background job (tenancyriver) writes the
-- project and its tasks here as the tenant that asked, and GET /exports/{id} hands them out.

CREATE TABLE exports (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    project_id  uuid        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    body        jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id) ON DELETE CASCADE
);
SELECT tenancy.isolate('exports');
