package redisstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/redis/go-redis/v9"
)

// go-redis's lines go to the slog.Logger given, at the level given.
func TestRedisLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var _ interface {
		Printf(context.Context, string, ...any)
	} = redisstore.RedisLogger{}
	redis.SetLogger(redisstore.RedisLogger{Logger: l, Level: slog.LevelDebug})
	defer redis.SetLogger(redisstore.RedisLogger{Logger: slog.New(slog.DiscardHandler)})
	redisstore.RedisLogger{Logger: l, Level: slog.LevelDebug}.Printf(context.Background(), "dial %s: %v", "127.0.0.1:1", "refused")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, `msg="dial 127.0.0.1:1: refused"`) || !strings.Contains(got, "source=go-redis") {
		t.Errorf("logged %q", got)
	}
}
