package redisstore

import (
	"context"
	"fmt"
	"log/slog"
)

// RedisLogger passes go-redis's own log lines (a failed dial, a pool
// closing) to a slog.Logger, such as the one a Transport logs to
// (quotabreaker.WithLogger). go-redis logs through one logger for the whole
// process, by default to stderr, a line per failed dial; a Store never
// changes it, since a library must not set a process's globals. A program
// sets it once, at start:
//
//	redis.SetLogger(redisstore.RedisLogger{Logger: logger, Level: slog.LevelDebug})
//
// At slog.LevelDebug, a logger at the default level drops them: the
// Transport already logs each change of the store's state once. Or silence
// go-redis altogether with redis.SetLogger(&logging.VoidLogger{}), as the
// quotabreaker command does.
type RedisLogger struct {
	Logger *slog.Logger // nil means slog.Default()
	Level  slog.Level
}

// Printf implements go-redis's logger interface.
func (l RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	lg := l.Logger
	if lg == nil {
		lg = slog.Default()
	}
	if lg.Enabled(ctx, l.Level) {
		lg.Log(ctx, l.Level, fmt.Sprintf(format, v...), "source", "go-redis")
	}
}
