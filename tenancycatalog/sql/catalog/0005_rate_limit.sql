-- A tenant's own request rate, overriding its plan's ("500/min"); NULL means the plan's.
ALTER TABLE tenancy.tenants ADD COLUMN rate_limit text CHECK (rate_limit ~ '^[0-9]+/[0-9a-z.]+(,burst=[0-9]+)?$');
