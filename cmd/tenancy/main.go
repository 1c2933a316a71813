// Command tenancy runs the reference service and manages tenants. See internal/cli, or run
// `tenancy help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gotenancy/tenancy/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
