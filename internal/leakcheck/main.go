// Command leakcheck makes sure the suite leaves nothing behind: `leakcheck snapshot FILE` records
// the databases, roles, role settings and passwords, and Redis keys that exist before it runs,
// `leakcheck compare FILE` lists what exists after it and did not before, and exits 1 if anything
// does. make test runs both around the suite (TEST_DATABASE_URL and TEST_REDIS_URL, as the tests
// read them).
//
// The runtime role (tenancy_app) is the one role the suite may leave: roles belong to the whole
// server, the first catalog migration on a server creates it and every catalog there shares it, so
// no test can drop it while others run — a service leaves it too. What a test may do to it (give
// it session defaults or a password) must still be undone, and is checked.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

type state struct {
	Databases    []string `json:"databases"`
	Roles        []string `json:"roles"`
	RoleSettings []string `json:"role_settings"`
	Passwords    []string `json:"passwords"`
	RedisKeys    []string `json:"redis_keys"`
}

// runtimeRole is the role the suite may leave behind (see the package comment):
// tenancycatalog.DefaultRole, named here since this command imports none of the toolkit.
const runtimeRole = "tenancy_app"

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "snapshot" && os.Args[1] != "compare") {
		fmt.Fprintln(os.Stderr, "usage: leakcheck snapshot|compare FILE")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now, err := read(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leakcheck:", err)
		os.Exit(1)
	}
	if os.Args[1] == "snapshot" {
		b, _ := json.Marshal(now)
		if err := os.WriteFile(os.Args[2], b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "leakcheck:", err)
			os.Exit(1)
		}
		return
	}
	b, err := os.ReadFile(os.Args[2])
	var before state
	if err == nil {
		err = json.Unmarshal(b, &before)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "leakcheck: the snapshot:", err)
		os.Exit(1)
	}
	left := 0
	for _, c := range []struct {
		what        string
		before, now []string
	}{{"database", before.Databases, now.Databases}, {"role", before.Roles, now.Roles},
		{"role setting", before.RoleSettings, now.RoleSettings}, {"role with a password", before.Passwords, now.Passwords},
		{"Redis key", before.RedisKeys, now.RedisKeys}} {
		for _, x := range c.now {
			if !slices.Contains(c.before, x) && (c.what != "role" || x != runtimeRole) {
				fmt.Fprintf(os.Stderr, "leakcheck: the suite left a %s behind: %s\n", c.what, x)
				left++
			}
		}
	}
	if left > 0 {
		os.Exit(1)
	}
	fmt.Println("leakcheck: the suite left no database, role, role setting, password or Redis key behind")
}

func firstEnv(def, name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func read(ctx context.Context) (state, error) {
	var s state
	conn, err := pgx.Connect(ctx, firstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "TEST_DATABASE_URL"))
	if err != nil {
		return s, err
	}
	defer conn.Close(ctx)
	for _, q := range []struct {
		sql string
		out *[]string
	}{{"SELECT datname FROM pg_database ORDER BY 1", &s.Databases}, {"SELECT rolname FROM pg_roles ORDER BY 1", &s.Roles},
		{`SELECT coalesce(r.rolname, '(all roles)') || ' in ' || coalesce(d.datname, '(all databases)') || ': ' || array_to_string(s.setconfig, ', ')
		    FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase ORDER BY 1`, &s.RoleSettings},
		{"SELECT rolname FROM pg_authid WHERE rolpassword IS NOT NULL ORDER BY 1", &s.Passwords}} {
		rows, _ := conn.Query(ctx, q.sql)
		if *q.out, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return s, err
		}
	}
	opts, err := redis.ParseURL(firstEnv("redis://127.0.0.1:6379/0", "TEST_REDIS_URL"))
	if err != nil {
		return s, err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		s.RedisKeys = append(s.RedisKeys, iter.Val())
	}
	return s, iter.Err()
}
