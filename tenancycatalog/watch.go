package tenancycatalog

import (
	"context"
	"crypto/hmac"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/gotenancy/tenancy"
)

// catalogChannel is the NOTIFY channel the catalog's triggers signal on; the payload is a tenant ID.
const catalogChannel = "tenancy_catalog"

// WatchOpts tunes Watch. A nil *WatchOpts means the defaults.
type WatchOpts struct {
	// OnConnect is called each time the listener is connected and listening (after Purge).
	OnConnect func()
	// OnDisconnect is called with the error that broke the listener before it reconnects.
	OnDisconnect func(error)
	// Heartbeat is how often an idle listener checks its connection, so that a silently dead one
	// is noticed. Defaults to 5 seconds.
	Heartbeat time.Duration
	// MaxBackoff caps the wait between reconnection attempts. Defaults to 5 seconds.
	MaxBackoff time.Duration
	// OnIgnored is called with each notification on the catalog's channel that the catalog did
	// not sign — someone else's NOTIFY, which Watch ignores. Defaults to nil.
	OnIgnored func(payload string)
	// OnError is called with each error an Invalidator returned (id is "" for Purge): what it
	// keeps may be stale until its own expiry. Defaults to nil.
	OnError func(id string, err error)
}

// Watch pushes catalog changes to inv until ctx ends: it LISTENs on its own connection (not one
// from the pool) and calls inv.Invalidate for every change committed by any process. Only
// notifications the catalog's trigger signed with the binding key count: SQL inside a tenant's
// transaction may NOTIFY on the channel too, and is ignored (WatchOpts.OnIgnored). When the
// connection breaks it reconnects with backoff and calls inv.Purge, because notifications sent in
// between are lost; until then entries expire by their TTL. It returns nil when ctx ends.
func (c *Catalog) Watch(ctx context.Context, inv tenancy.Invalidator, opts *WatchOpts) error {
	if inv == nil {
		return errors.New("tenancycatalog: Watch needs an Invalidator")
	}
	o := WatchOpts{Heartbeat: 5 * time.Second, MaxBackoff: 5 * time.Second}
	if opts != nil {
		o.OnConnect, o.OnDisconnect, o.OnIgnored, o.OnError = opts.OnConnect, opts.OnDisconnect, opts.OnIgnored, opts.OnError
		if opts.Heartbeat > 0 {
			o.Heartbeat = opts.Heartbeat
		}
		if opts.MaxBackoff > 0 {
			o.MaxBackoff = opts.MaxBackoff
		}
	}
	backoff := 50 * time.Millisecond
	for {
		err := c.listen(ctx, inv, &o, func() { backoff = 50 * time.Millisecond })
		if ctx.Err() != nil {
			return nil
		}
		if o.OnDisconnect != nil {
			o.OnDisconnect(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, o.MaxBackoff)
	}
}

func (c *Catalog) listen(ctx context.Context, inv tenancy.Invalidator, o *WatchOpts, connected func()) error {
	cfg := c.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "tenancy-watch"
	// A heartbeat timeout must interrupt the wait without closing the connection.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	key, err := c.BindingKey(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+catalogChannel); err != nil {
		return err
	}
	o.tell(ctx, inv, "")
	connected()
	if o.OnConnect != nil {
		o.OnConnect()
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, o.Heartbeat)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if id, ok := verifyNotification(key, n.Payload); ok {
				o.tell(ctx, inv, id)
			} else if o.OnIgnored != nil {
				o.OnIgnored(n.Payload)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Idle: prove the connection still carries notifications.
			pctx, cancel := context.WithTimeout(ctx, max(o.Heartbeat, 5*time.Second)) // a slow answer is not a dead one
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// invalidateTimeout bounds each call of an Invalidator (each member of an Invalidators on its
// own), so that one stuck on a dead cache server neither holds back the changes behind it nor
// leaves the next member no time.
const invalidateTimeout = 5 * time.Second

// tell tells inv of a change to the tenant id, or (id "") to purge, and reports each error.
func (o *WatchOpts) tell(ctx context.Context, inv tenancy.Invalidator, id string) {
	if is, ok := inv.(tenancy.Invalidators); ok {
		for _, member := range is {
			o.tell(ctx, member, id)
		}
		return
	}
	cctx, cancel := context.WithTimeout(ctx, invalidateTimeout)
	defer cancel()
	var err error
	if id == "" {
		err = inv.Purge(cctx)
	} else {
		err = inv.Invalidate(cctx, id)
	}
	if err != nil && o.OnError != nil {
		o.OnError(id, err)
	}
}

// notifyPurpose separates the signatures of notifications from transactions' proofs, which SQL
// inside a transaction can read.
const notifyPurpose = "tenancy_catalog:"

// verifyNotification returns the tenant id of a payload "id.signature" the catalog signed.
func verifyNotification(key *BindingKey, payload string) (string, bool) {
	id, sig, ok := strings.Cut(payload, ".")
	if !ok || len(id) > 64 {
		return "", false
	}
	return id, hmac.Equal([]byte(sig), []byte(key.Proof(notifyPurpose+id)))
}
