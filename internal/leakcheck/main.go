// Command leakcheck makes sure the suite leaves nothing behind: `leakcheck snapshot FILE` records
// the databases, roles and Redis keys that exist before it runs, `leakcheck compare FILE` lists
// what exists after it and did not before, and exits 1 if anything does. make test runs both
// around the suite (TEST_DATABASE_URL and TEST_REDIS_URL, as the tests read them).
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
	Databases []string `json:"databases"`
	Roles     []string `json:"roles"`
	RedisKeys []string `json:"redis_keys"`
}

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
	}{{"database", before.Databases, now.Databases}, {"role", before.Roles, now.Roles}, {"Redis key", before.RedisKeys, now.RedisKeys}} {
		for _, x := range c.now {
			if !slices.Contains(c.before, x) {
				fmt.Fprintf(os.Stderr, "leakcheck: the suite left a %s behind: %s\n", c.what, x)
				left++
			}
		}
	}
	if left > 0 {
		os.Exit(1)
	}
	fmt.Println("leakcheck: the suite left no database, role or Redis key behind")
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
	}{{"SELECT datname FROM pg_database ORDER BY 1", &s.Databases}, {"SELECT rolname FROM pg_roles ORDER BY 1", &s.Roles}} {
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
