package tenancytest_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotenancy/tenancy"
	"github.com/gotenancy/tenancy/tenancytest"
)

var (
	propertySeed = flag.Uint64("tenancy.seed", 0, "seed of the property test (0: from the clock; the seed is printed)")
	propertyLong = flag.Bool("tenancy.long", false, "run the property test long: more tenants, more operations")
)

// Many tenants, spread over the three models, do random operations at once; every read is
// checked against a model of what that tenant wrote: no row of another tenant, no acknowledged
// write lost. Each tenant's sequence of operations comes from the seed, so a failure can be
// replayed with -tenancy.seed.
func TestPropertyIsolation(t *testing.T) {
	t.Parallel()
	seed := *propertySeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	perModel, ops := 3, 60
	if *propertyLong {
		perModel, ops = 10, 1000
	}
	t.Logf("seed %d (replay with -tenancy.seed=%d), %d tenants per model, %d operations each", seed, seed, perModel, ops)
	env := tenancytest.NewEnv(t, &tenancytest.EnvOpts{Tenant: projectsLine})
	var tenants []*tenancy.Tenant
	for _, m := range tenancytest.Models {
		for range perModel {
			tenants = append(tenants, env.NewTenant(t, m))
		}
	}
	// Every id ever made, by owner: a tenant also asks for others' ids.
	var mu sync.Mutex
	owner := map[string]string{}
	var wg sync.WaitGroup
	for i, tn := range tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			ctx := tenancytest.Context(tn)
			mine := map[string]string{} // id -> name: what this tenant wrote and was acknowledged
			fail := func(format string, args ...any) {
				t.Errorf("seed %d, tenant %s (%s), %s", seed, tn.Slug, tn.Isolation, fmt.Sprintf(format, args...))
			}
			for op := range ops {
				switch k := rng.IntN(10); {
				case k < 4 || len(mine) == 0: // create
					name := fmt.Sprintf("p%d-%d", i, op)
					var id string
					if err := env.DB.QueryRow(ctx, `INSERT INTO projects (name) VALUES ($1) RETURNING id::text`, name).Scan(&id); err != nil {
						fail("create: %v", err)
						return
					}
					mine[id] = name
					mu.Lock()
					owner[id] = tn.ID
					mu.Unlock()
				case k < 6: // rename one of mine
					id := pick(rng, mine)
					name := fmt.Sprintf("r%d-%d", i, op)
					tag, err := env.DB.Exec(ctx, `UPDATE projects SET name = $2 WHERE id = $1`, id, name)
					if err != nil || tag.RowsAffected() != 1 {
						fail("rename %s: %v rows, %v", id, tag.RowsAffected(), err)
						return
					}
					mine[id] = name
				case k < 7: // delete one of mine
					id := pick(rng, mine)
					if tag, err := env.DB.Exec(ctx, `DELETE FROM projects WHERE id = $1`, id); err != nil || tag.RowsAffected() != 1 {
						fail("delete %s: %v rows, %v", id, tag.RowsAffected(), err)
						return
					}
					delete(mine, id)
				case k < 9: // list: exactly mine
					seen := map[string]string{}
					err := env.DB.Tx(ctx, func(tx pgx.Tx) error {
						rows, _ := tx.Query(ctx, `SELECT id::text, name FROM projects`)
						for rows.Next() {
							var id, name string
							if err := rows.Scan(&id, &name); err != nil {
								return err
							}
							seen[id] = name
						}
						return rows.Err()
					})
					if err != nil {
						fail("list: %v", err)
						return
					}
					for id, name := range seen {
						if _, ok := mine[id]; !ok {
							mu.Lock()
							o := owner[id]
							mu.Unlock()
							fail("ISOLATION BREACH: lists %s (%q) of tenant %s", id, name, o)
						} else if mine[id] != name {
							fail("lists %s as %q, wrote %q", id, name, mine[id])
						}
					}
					for id := range mine {
						if _, ok := seen[id]; !ok {
							fail("LOST WRITE: its project %s is missing", id)
						}
					}
				default: // get an id: one of mine, or anyone's (picked by map order: the one thing not seeded)
					mu.Lock()
					var id string
					for id = range owner {
						break
					}
					mu.Unlock()
					if rng.IntN(2) == 0 && len(mine) > 0 {
						id = pick(rng, mine)
					}
					var n int
					if err := env.DB.QueryRow(ctx, `SELECT count(*) FROM projects WHERE id = $1`, id).Scan(&n); err != nil {
						fail("get: %v", err)
						return
					}
					_, own := mine[id]
					if (n == 1) != own {
						fail("get %s: found %v, owns %v", id, n == 1, own)
					}
				}
			}
		}()
	}
	wg.Wait()
}

func pick(rng *rand.Rand, m map[string]string) string {
	n := rng.IntN(len(m))
	for id := range m {
		if n == 0 {
			return id
		}
		n--
	}
	return ""
}
