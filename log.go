package tenancy

import (
	"context"
	"log/slog"
)

// NewLogHandler wraps h so that every record logged with a context that carries a tenant gets
// tenant_id and tenant attributes. Use it once when building the logger:
//
//	slog.SetDefault(slog.New(tenancy.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil))))
//	slog.InfoContext(ctx, "project created") // ... tenant_id=... tenant=acme
func NewLogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if t, ok := FromContext(ctx); ok {
		r.AddAttrs(slog.String("tenant_id", t.ID), slog.String("tenant", t.Slug))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
