package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
)

// The fleet's mode: none until set; each switch gets a newer epoch, is in
// the Snapshot and reaches every Watch.
func TestSetMode(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	other := newStore(t, srv, redisstore.Options{}) // another process
	ctx := ctxT(t)
	c := watch(t, s)
	c.next(t, redisstore.ChangeResync)

	if m, epoch, err := s.Mode(ctx); err != nil || m != redisstore.ModeEnforce || epoch != 0 {
		t.Errorf("Mode before any switch = %v, %d, %v; want enforce, 0 (never set)", m, epoch, err)
	}
	if snap, err := s.Snapshot(ctx); err != nil || snap.ModeEpoch != 0 {
		t.Errorf("Snapshot before any switch: %+v, %v; want ModeEpoch 0", snap, err)
	}

	before := time.Now()
	ch, err := other.SetMode(ctx, redisstore.ModeObserve)
	if err != nil {
		t.Fatal(err)
	}
	// The epoch is Redis's clock in milliseconds (the same machine here).
	if ch.Kind != redisstore.ChangeMode || ch.Mode != redisstore.ModeObserve || ch.Scope != "" ||
		ch.Epoch < uint64(before.Add(-time.Second).UnixMilli()) || ch.Epoch > uint64(time.Now().Add(time.Second).UnixMilli()) {
		t.Errorf("SetMode(observe) = %+v, want a ChangeMode at about %d", ch, before.UnixMilli())
	}
	if got := c.next(t, redisstore.ChangeMode); got != ch {
		t.Errorf("Watch got %+v, want %+v", got, ch)
	}
	if m, epoch, err := s.Mode(ctx); err != nil || m != redisstore.ModeObserve || epoch != ch.Epoch {
		t.Errorf("Mode = %v, %d, %v; want observe, %d", m, epoch, err, ch.Epoch)
	}
	if snap, err := s.Snapshot(ctx); err != nil || snap.Mode != redisstore.ModeObserve || snap.ModeEpoch != ch.Epoch {
		t.Errorf("Snapshot: %+v, %v; want observe at %d", snap, err, ch.Epoch)
	}

	// Switches in quick succession (within one millisecond) still advance.
	last := ch.Epoch
	for i := range 20 {
		m := []redisstore.Mode{redisstore.ModeEnforce, redisstore.ModeObserve}[i%2]
		ch, err := s.SetMode(ctx, m)
		if err != nil || ch.Epoch <= last || ch.Mode != m {
			t.Fatalf("switch %d: %+v, %v; want %v at an epoch above %d", i, ch, err, m, last)
		}
		if got := c.next(t, redisstore.ChangeMode); got != ch {
			t.Fatalf("Watch got %+v, want %+v", got, ch)
		}
		last = ch.Epoch
	}

	if _, err := s.SetMode(ctx, redisstore.Mode(7)); err == nil {
		t.Error("SetMode(7) succeeded")
	}
	if m, epoch, _ := s.Mode(ctx); epoch != last || m != redisstore.ModeObserve {
		t.Errorf("after a refused SetMode: %v at %d, want observe at %d", m, epoch, last)
	}
}

// A switch after Redis lost its data (restarted without persistence,
// FLUSHALL) is still newer than every switch before: the Transports that
// remember an older one take it.
func TestSetModeAfterDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	var last uint64
	for range 3 {
		ch, err := s.SetMode(ctx, redisstore.ModeObserve)
		if err != nil {
			t.Fatal(err)
		}
		last = ch.Epoch
	}
	if err := srv.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, epoch, _ := s.Mode(ctx); epoch != 0 {
		t.Fatalf("epoch %d after FLUSHALL", epoch)
	}
	ch, err := s.SetMode(ctx, redisstore.ModeEnforce)
	if err != nil || ch.Epoch <= last {
		t.Errorf("SetMode after the loss: %+v, %v; want an epoch above %d", ch, err, last)
	}
}

// A mode hash that SetMode did not write (by hand, or corrupt) is left out
// of the Snapshot, whose latches still sync; Mode reports it; SetMode
// refuses to build on a corrupt epoch, and one at 2^53-1.
func TestModeCorrupt(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	c := watch(t, s)
	c.next(t, redisstore.ChangeResync)
	if _, _, err := s.Claim(ctx, trip("a", 0, "r")); err != nil {
		t.Fatal(err)
	}
	c.next(t, redisstore.ChangeOpened)
	key := redisstore.DefaultPrefix + "mode"
	for _, fields := range [][]string{
		{"mode", "panic", "epoch", "5"},
		{"mode", "observe", "epoch", "0"},
		{"mode", "observe", "epoch", "-3"},
		{"mode", "observe", "epoch", "x"},
		{"mode", "observe", "epoch", "9007199254740992"},
		{"mode", "observe"},
	} {
		srv.Client().Del(ctx, key)
		if err := srv.Client().HSet(ctx, key, fields).Err(); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Snapshot(ctx)
		if err != nil || snap.ModeEpoch != 0 || len(snap.Open) != 1 {
			t.Errorf("%q: Snapshot %+v, %v; want the latch and no mode", fields, snap, err)
		}
		if m, epoch, err := s.Mode(ctx); err == nil {
			t.Errorf("%q: Mode = %v, %d, nil; want an error", fields, m, epoch)
		}
	}
	for _, epoch := range []string{"x", "-3", strconv.FormatUint(quotabreaker.MaxEpoch, 10)} {
		if err := srv.Client().HSet(ctx, key, "mode", "observe", "epoch", epoch).Err(); err != nil {
			t.Fatal(err)
		}
		if ch, err := s.SetMode(ctx, redisstore.ModeEnforce); err == nil {
			t.Errorf("SetMode on epoch %s = %+v, want an error", epoch, ch)
		}
		if got, _ := srv.Client().HGet(ctx, key, "epoch").Result(); got != epoch {
			t.Errorf("epoch %s became %s", epoch, got)
		}
	}
	// Nothing was published: the next change is a claim's.
	if _, _, err := s.Claim(ctx, trip("b", 0, "r")); err != nil {
		t.Fatal(err)
	}
	c.next(t, redisstore.ChangeOpened)
}

// SetMode within a context that is done returns at once, as every call.
func TestSetModeDown(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{Timeout: 200 * time.Millisecond})
	srv.Kill()
	start := time.Now()
	if _, err := s.SetMode(context.Background(), redisstore.ModeObserve); err == nil {
		t.Error("SetMode succeeded with Redis down")
	}
	if took := time.Since(start); took > hang {
		t.Errorf("SetMode took %v with Redis down", took)
	}
}
