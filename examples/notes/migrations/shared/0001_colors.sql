-- Reference data every tenant reads: declared shared, so the runtime role may only read it
-- (tenancy doctor reports any other table it can read).
CREATE TABLE colors (name text PRIMARY KEY);
INSERT INTO colors VALUES ('yellow'), ('blue'), ('green');
SELECT tenancy.share('colors');
