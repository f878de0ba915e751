package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
)

// hang is how long a test waits for something that should come at once
// before it declares a hang. It is not a speed assertion.
const hang = 30 * time.Second

// changes collects what a Watch delivers.
type changes chan redisstore.Change

// watch runs s.Watch until the test ends, then checks that it returned nil.
func watch(t *testing.T, s *redisstore.Store) changes {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := make(changes, 1024)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, func(ch redisstore.Change) { c <- ch }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v, want nil", err)
			}
		case <-time.After(hang):
			t.Errorf("Watch did not return within %v of its context's end", hang)
		}
	})
	return c
}

// next returns the next change, which must be of kind.
func (c changes) next(t *testing.T, kind redisstore.ChangeKind) redisstore.Change {
	t.Helper()
	select {
	case ch := <-c:
		if ch.Kind != kind {
			t.Fatalf("next change is %+v, want kind %d", ch, kind)
		}
		return ch
	case <-time.After(hang):
		t.Fatalf("no change of kind %d within %v", kind, hang)
	}
	return redisstore.Change{}
}

func TestWatch(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	other := newStore(t, srv, redisstore.Options{}) // another process
	c := watch(t, s)
	c.next(t, redisstore.ChangeResync)
	ctx := ctxT(t)

	tr := trip("a", 0, "ra")
	if _, _, err := other.Claim(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if ch := c.next(t, redisstore.ChangeOpened); !equalChange(ch, redisstore.Change{Kind: redisstore.ChangeOpened, Scope: "a", Epoch: 0, Trip: tr}) {
		t.Errorf("opened: %+v", ch)
	}
	// A claim that loses changes nothing, so nothing is announced: the
	// next change is the clear.
	if claimed, _, err := s.Claim(ctx, trip("a", 0, "late")); err != nil || claimed {
		t.Fatalf("second Claim = %v, %v", claimed, err)
	}
	if _, err := other.Clear(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if ch := c.next(t, redisstore.ChangeCleared); !equalChange(ch, redisstore.Change{Kind: redisstore.ChangeCleared, Scope: "a", Epoch: 1, Trip: tr}) {
		t.Errorf("cleared: %+v", ch)
	}
	// Clearing a scope that is not open writes and announces nothing.
	if _, err := other.Clear(ctx, "never-open"); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []string{"x", "y"} {
		if _, _, err := other.Claim(ctx, trip(sc, 0, "r")); err != nil {
			t.Fatal(err)
		}
		c.next(t, redisstore.ChangeOpened)
	}
	if _, err := other.ClearAll(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for range 2 {
		ch := c.next(t, redisstore.ChangeCleared)
		got[ch.Scope] = ch.Epoch
	}
	if got["x"] != 1 || got["y"] != 1 || len(got) != 2 {
		t.Errorf("ClearAll announced %v", got)
	}
}

// Redis crashes and comes back: Watch reports the loss once, then a resync
// once it is subscribed again, and later changes arrive.
func TestWatchRestart(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{Timeout: 200 * time.Millisecond})
	c := watch(t, s)
	c.next(t, redisstore.ChangeResync)
	ctx := ctxT(t)

	srv.Kill()
	c.next(t, redisstore.ChangeDisconnected)
	if _, _, err := s.Claim(ctx, trip("a", 0, "while down")); err == nil {
		t.Error("Claim succeeded with Redis down")
	}
	srv.Restart()
	c.next(t, redisstore.ChangeResync)
	if _, _, err := s.Claim(ctx, trip("a", 0, "after")); err != nil {
		t.Fatal(err)
	}
	if ch := c.next(t, redisstore.ChangeOpened); ch.Trip.RequestID != "after" {
		t.Errorf("opened after the restart: %+v", ch)
	}
}

// Redis hangs (SIGSTOP): TCP still connects, nothing answers. Watch
// notices through its ping, and resyncs once Redis answers again.
func TestWatchHungRedis(t *testing.T) {
	srv := redistest.Start(t)
	opts := redisstore.Options{Timeout: 200 * time.Millisecond, PingInterval: 100 * time.Millisecond}
	s := newStore(t, srv, opts)
	c := watch(t, s)
	c.next(t, redisstore.ChangeResync)

	srv.Pause()
	c.next(t, redisstore.ChangeDisconnected)
	srv.Resume()
	c.next(t, redisstore.ChangeResync)
	if _, _, err := newStore(t, srv, opts).Claim(ctxT(t), trip("a", 0, "r")); err != nil {
		t.Fatal(err)
	}
	c.next(t, redisstore.ChangeOpened)
}

// Watch started while Redis is down reports it, then resyncs when Redis
// comes.
func TestWatchStartsDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	s := newStore(t, srv, redisstore.Options{Timeout: 200 * time.Millisecond})
	c := watch(t, s)
	c.next(t, redisstore.ChangeDisconnected)
	srv.Restart()
	c.next(t, redisstore.ChangeResync)
}

// Whatever else is published on the channel, including what Claim would
// refuse, Watch drops it, reports it with a ChangeInvalid, and goes on.
func TestWatchGarbage(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	c := watch(t, s)
	c.next(t, redisstore.ChangeResync)
	for _, msg := range []string{"", "open", "open 1 5:abc", "open x 1:a{}", "clear 1 1:a{not json", "shut 1 1:a", "open 1 1:a",
		// What Claim refuses: an empty scope, an epoch above 2^53-1;
		// and what no script writes: a clear to epoch 0.
		"open 0 0:{}", "open 9007199254740992 1:a{}", "clear 9007199254740992 1:a", "clear 0 1:a",
		// What SetMode refuses or never writes: an unknown mode, a mode
		// epoch of 0 or above 2^53-1, anything else.
		"mode 5 panic", "mode 5 Observe", "mode 0 observe", "mode 9007199254740992 enforce",
		"mode 5 observe ", "mode 05 observe", "mode observe", "mode 5",
	} {
		if err := srv.Client().Publish(ctxT(t), "quotabreaker:changes", msg).Err(); err != nil {
			t.Fatal(err)
		}
		c.next(t, redisstore.ChangeInvalid)
	}
	if _, _, err := s.Claim(ctxT(t), trip("a", 0, "r")); err != nil {
		t.Fatal(err)
	}
	c.next(t, redisstore.ChangeOpened)
}

func TestWatchNilFunc(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	if err := s.Watch(ctxT(t), nil); err == nil {
		t.Error("Watch(nil) did not fail")
	}
}

// Watch returns once its context ends, even while Redis hangs; the
// goroutine check in TestMain finds nothing left behind.
func TestWatchStopsWhileHung(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{Timeout: 200 * time.Millisecond, PingInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	resync := make(chan struct{}, 1)
	go func() {
		done <- s.Watch(ctx, func(ch redisstore.Change) {
			if ch.Kind == redisstore.ChangeResync {
				select {
				case resync <- struct{}{}:
				default:
				}
			}
		})
	}()
	select {
	case <-resync:
	case <-time.After(hang):
		t.Fatalf("no resync within %v", hang)
	}
	srv.Pause()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch = %v, want nil", err)
		}
	case <-time.After(hang):
		t.Fatalf("Watch did not return within %v of its context's end", hang)
	}
}

// A closed client cannot watch: Watch says so instead of retrying forever.
func TestWatchClosedClient(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	s, err := redisstore.New(client, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	resync := make(chan struct{}, 1)
	go func() {
		done <- s.Watch(context.Background(), func(ch redisstore.Change) {
			if ch.Kind == redisstore.ChangeResync {
				select {
				case resync <- struct{}{}:
				default:
				}
			}
		})
	}()
	select {
	case <-resync:
	case <-time.After(hang):
		t.Fatalf("no resync within %v", hang)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Watch on a closed client returned nil")
		}
	case <-time.After(hang):
		t.Fatalf("Watch did not return within %v of its client's Close", hang)
	}
}
