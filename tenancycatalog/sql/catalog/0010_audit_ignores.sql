-- Findings of `tenancy doctor` an operator has accepted, each with the reason written down. The
-- audit `serve` runs at start respects them too. Only the catalog's database has this table.
CREATE TABLE tenancy.audit_ignores (
    kind        text        NOT NULL CHECK (kind ~ '^[a-z][a-z-]*$'),
    object      text        NOT NULL CHECK (object <> ''),
    reason      text        NOT NULL CHECK (btrim(reason) <> ''),
    accepted_by text        NOT NULL DEFAULT current_user,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, object)
);
REVOKE ALL ON tenancy.audit_ignores FROM PUBLIC;
