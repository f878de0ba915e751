package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
)

// Every call fails, and returns, when Redis is down (connections refused)
// or hung (connections accepted, nothing answered): none waits for Redis
// beyond its timeout. The hang limit is far above the timeout: it catches a
// call that would block, without asserting a speed.
func TestCallsWhenRedisIsDown(t *testing.T) {
	p := period(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	calls := []struct {
		name string
		call func(context.Context, *redisstore.Store) error
	}{
		{"Claim", func(ctx context.Context, s *redisstore.Store) error {
			_, _, err := s.Claim(ctx, trip("a", 0, "r"))
			return err
		}},
		{"Clear", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.Clear(ctx, "a")
			return err
		}},
		{"ClearAll", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.ClearAll(ctx)
			return err
		}},
		{"Snapshot", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.Snapshot(ctx)
			return err
		}},
		{"AddSpend", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.AddSpend(ctx, redisstore.SpendWrite{Key: "k", Period: p, Micros: 1})
			return err
		}},
		{"ClaimThreshold", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.ClaimThreshold(ctx, "k", p, 50)
			return err
		}},
		{"Spend", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.Spend(ctx)
			return err
		}},
		{"ResetSpend", func(ctx context.Context, s *redisstore.Store) error {
			return s.ResetSpend(ctx, "k", p)
		}},
	}
	for _, down := range []struct {
		name string
		make func(*redistest.Server)
	}{
		{"killed", (*redistest.Server).Kill},
		{"hung", (*redistest.Server).Pause},
	} {
		t.Run(down.name, func(t *testing.T) {
			srv := redistest.Start(t)
			s := newStore(t, srv, redisstore.Options{Timeout: 100 * time.Millisecond})
			// Warm the pool, so that hung Redis holds open connections
			// as well as new ones.
			if _, err := s.Snapshot(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			down.make(srv)
			for _, c := range calls {
				t.Run(c.name, func(t *testing.T) {
					done := make(chan error, 1)
					go func() { done <- c.call(context.Background(), s) }()
					select {
					case err := <-done:
						if err == nil {
							t.Errorf("%s succeeded with Redis %s", c.name, down.name)
						}
					case <-time.After(hang):
						t.Fatalf("%s did not return within %v with Redis %s", c.name, hang, down.name)
					}
				})
			}
		})
	}
}
