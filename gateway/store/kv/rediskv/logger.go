package rediskv

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// go-redis prints its own notes (a failed dial, a pool's state) with the
// standard library's logger, as plain text on stderr: they would break the
// gateway's JSON log lines. They go to slog at debug level instead; every
// failure that matters reaches the caller as an error and is logged there.
func init() { redis.SetLogger(slogLogger{}) }

type slogLogger struct{}

func (slogLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "go-redis", "component", "redis", "note", fmt.Sprintf(format, v...))
}
