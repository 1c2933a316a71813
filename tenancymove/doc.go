// Package tenancymove moves a live tenant between placements — the shared tables, a schema of its
// own, a database of its own, a database on another server — losing nothing, while it is served.
//
//	mover, _ := tenancymove.New(catalog, &tenancymove.Config{Migrator: migrator}) // tenancymigrate.New
//	res, err := mover.Move(ctx, acme.ID, &tenancymove.Opts{
//		To: tenancycatalog.Placement{Isolation: tenancy.IsolationDatabase, Server: "eu-2"}})
//	// res.Tables: rows and checksum per table, as verified on both placements; res.Pause: how
//	// long the tenant's writes waited for the switch.
//
// How a move goes:
//
//   - prepare: the new placement is made (a schema or a database carrying the tenant line); what
//     an earlier, unfinalized move left there is removed first.
//   - copy: triggers on the old placement's tenant tables record the key of every row of this
//     tenant that changes (other tenants' writes do not call them); then the tenant's rows are
//     copied with COPY, every table in one snapshot, parents before children.
//   - catch up: the rows that changed meanwhile are copied again from their current state, until
//     few are left.
//   - verify: catch-up rounds until one takes every change recorded in its snapshot of the old
//     placement; both placements are then compared there, table by table (row count and an
//     order-independent checksum), while the tenant's writes go on.
//   - switch: the tenant's barrier in the old placement (an advisory lock keyed by its unit key,
//     tenancycatalog.UnitKey, that every unit that may write takes shared in its scoping
//     statement, and every write of the tenant's rows there takes in the capture trigger) is taken
//     exclusive: that waits for exactly the tenant's units in flight and holds new writers back —
//     read-only units (tenancypgx.DB.ReadTx, tenancypgx.ReadOnly) are served. The last changes are
//     copied and those rows compared on both sides (every other row is as verified, or its change
//     would have been recorded; a difference, here or at verify, undoes the move and leaves the
//     tenant where it was); identity and serial sequences are moved past the copied rows; the old
//     placement's fence says moved and one catalog transaction switches the tenant, which every
//     instance hears (as it hears a suspension). A unit that still reaches the old placement — an
//     old pool, a stale lookup — is refused before it runs (the fence, read by every scoping
//     statement), and tenancypgx looks the tenant up again and runs it in the new placement; a
//     write SQL makes there past its scoping statement is refused by the capture triggers, which
//     stay until the move is finalized. A write held back waits at most tenancypgx.Config.MoveWait
//     (tenancy.ErrTenantMoving, 503 with Retry-After, after that: nothing written, nothing lost).
//     A switch that would pause writes longer than Config.MaxPause is given up and tried again
//     after another verify; a mover that dies lets go of the barrier with its session.
//   - finalize: the old placement's data (its schema, its database, its rows in the shared
//     tables) is removed by Finalize, or by FinalizeDue once Config.Grace has passed; until then
//     the tenant can be moved back.
//
// Every step is recorded in the catalog (tenancycatalog.Move): a move that stopped — an error, a
// server down, the process killed — leaves the tenant served from exactly one placement, and
// Resume finishes it or Abort undoes it (removing the new placement's copy). One mover works on a
// tenant at a time, whichever process it runs in.
//
// What a move needs: tenant tables made by tenancy.isolate, each with a primary key and the same
// columns in both placements (the tenant line at the same version: run tenancy migrate first);
// the catalog's pool logging in as the migration role (a superuser, or a role that may SET
// session_replication_role, keeps user triggers quiet while rows are copied). Cache entries and
// rate-limit state are keyed by tenant, not placement, and stay valid.
package tenancymove
