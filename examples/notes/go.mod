module github.com/gotenancy/tenancy/examples/notes

go 1.26.0

require (
	github.com/gotenancy/tenancy v0.0.0
	github.com/jackc/pgx/v5 v5.12.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

// The example builds against the toolkit in this repository; an application of your own requires
// a released version instead (go get github.com/gotenancy/tenancy@latest).
replace github.com/gotenancy/tenancy => ../..
