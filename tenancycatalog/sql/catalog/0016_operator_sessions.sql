-- Sessions of the operator console (the reference service's /console/): a session is valid while
-- its row exists and has not expired, and signing out deletes it. Only a hash of the session's
-- secret is kept. Like every table of the catalog, it is granted to no one: the runtime role
-- cannot read it.
CREATE TABLE tenancy.operator_sessions (
    secret_hash bytea       CONSTRAINT operator_sessions_pkey PRIMARY KEY CHECK (length(secret_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX operator_sessions_expires_idx ON tenancy.operator_sessions (expires_at);
