package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/gotenancy/tenancy/tenancycatalog"
)

func firstEnv(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

func uniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// benchDatabase creates a database with the catalog migrated and returns a pool on it and a
// function that drops it.
func benchDatabase(ctx context.Context) (*pgxpool.Pool, func(), error) {
	admin := firstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "TEST_DATABASE_URL")
	name := uniqueName("tenancy_bench")
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, nil, fmt.Errorf("PostgreSQL at %s: %w", admin, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, nil, err
	}
	drop := func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			c.Close(context.Background())
		}
	}
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err == nil {
		_, err = tenancycatalog.MigrateCatalog(ctx, pool)
	}
	if err != nil {
		drop()
		return nil, nil, err
	}
	return pool, func() { pool.Close(); drop() }, nil
}

// benchRedis connects to the local Redis (or TEST_REDIS_URL / TENANCY_REDIS_URL).
func benchRedis(ctx context.Context) (*redis.Client, error) {
	raw := firstEnv("redis://127.0.0.1:6379/0", "TEST_REDIS_URL", "TENANCY_REDIS_URL")
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("Redis at %s: %w", opts.Addr, err)
	}
	return rdb, nil
}
