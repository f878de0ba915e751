package redisstore_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newStore returns a Store on a client of its own: a separate pool of
// connections, as another process would have.
func newStore(t *testing.T, srv *redistest.Server, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(srv.Client(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// trip returns a quota trip of scope at epoch.
func trip(scope string, epoch uint64, requestID string) redisstore.Trip {
	return redisstore.Trip{
		Scope:      scope,
		Cause:      redisstore.CauseAnswer,
		Class:      classify.QuotaExhausted,
		Provider:   "openai",
		Code:       "insufficient_quota",
		Type:       "insufficient_quota",
		StatusCode: 429,
		RequestID:  requestID,
		At:         time.Date(2026, 11, 29, 9, 57, 3, 0, time.UTC),
		Epoch:      epoch,
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }

func TestNew(t *testing.T) {
	if _, err := redisstore.New(nil, redisstore.Options{}); err == nil {
		t.Error("New(nil) did not fail")
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := redisstore.New(c, redisstore.Options{}); err == nil {
		t.Error("New accepted a client without ContextTimeoutEnabled")
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	if _, err := redisstore.New(cc, redisstore.Options{}); err == nil {
		t.Error("New accepted a cluster client without ContextTimeoutEnabled")
	}
}

// The stored JSON is the Trip's JSON, byte for byte, with the field names
// of the API contract.
func TestTripJSON(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	full := trip("api.openai.com/key:0123456789ab", 7, "req_1")
	full.Mode = redisstore.ModeObserve
	bare := redisstore.Trip{Scope: "bare", Class: classify.QuotaExhausted, Cause: redisstore.CauseBudget,
		At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))}
	tests := []struct {
		name string
		tr   redisstore.Trip
		want string
	}{
		{"full", full, `{"scope":"api.openai.com/key:0123456789ab","cause":"answer","mode":"observe","class":"quota_exhausted","provider":"openai","error_code":"insufficient_quota","error_type":"insufficient_quota","status_code":429,"request_id":"req_1","at":"2026-11-29T09:57:03Z","epoch":7}`},
		{"bare", bare, `{"scope":"bare","cause":"budget","mode":"enforce","class":"quota_exhausted","at":"2026-01-02T03:04:05.000000006+01:00"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claimed, _, err := s.Claim(ctxT(t), tt.tr)
			if err != nil || !claimed {
				t.Fatalf("Claim = %v, %v", claimed, err)
			}
			raw, err := srv.Client().HGet(ctxT(t), "quotabreaker:open", tt.tr.Scope).Result()
			if err != nil {
				t.Fatal(err)
			}
			if raw != tt.want {
				t.Errorf("stored\n%s\nwant\n%s", raw, tt.want)
			}
			snap, err := s.Snapshot(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			var got *redisstore.Trip
			for i := range snap.Open {
				if snap.Open[i].Scope == tt.tr.Scope {
					got = &snap.Open[i]
				}
			}
			if got == nil || !got.At.Equal(tt.tr.At) {
				t.Fatalf("snapshot has %+v, want %+v", got, tt.tr)
			}
			got.At = tt.tr.At // same instant; the zone is not kept
			if *got != tt.tr {
				t.Errorf("snapshot has %+v, want %+v", *got, tt.tr)
			}
		})
	}
}

// Many goroutines on several clients claim one scope at once: exactly one
// claims it, and every one sees the winner's trip.
func TestClaimConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	const clients, perClient = 4, 16
	stores := make([]*redisstore.Store, clients)
	for i := range stores {
		stores[i] = newStore(t, srv, redisstore.Options{})
	}
	type result struct {
		id      string
		claimed bool
		current redisstore.ScopeState
		err     error
	}
	results := make(chan result, clients*perClient)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for c, s := range stores {
		for g := range perClient {
			wg.Go(func() {
				id := fmt.Sprintf("req_%d_%d", c, g)
				<-start
				claimed, cur, err := s.Claim(ctxT(t), trip("shared", 0, id))
				results <- result{id, claimed, cur, err}
			})
		}
	}
	close(start)
	wg.Wait()
	close(results)
	var winners []string
	var all []result
	for r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", r.id, r.err)
		}
		if r.claimed {
			winners = append(winners, r.id)
		}
		all = append(all, r)
	}
	if len(winners) != 1 {
		t.Fatalf("%d claims succeeded (%v), want exactly 1", len(winners), winners)
	}
	for _, r := range all {
		if !r.current.Open || r.current.Trip.RequestID != winners[0] || r.current.Epoch != 0 {
			t.Errorf("%s sees %+v, want the open trip of %s", r.id, r.current, winners[0])
		}
	}
}

func TestClaimEpochs(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	steps := []struct {
		name      string
		do        func() (bool, redisstore.ScopeState, error)
		claimed   bool
		open      bool
		epoch     uint64
		requestID string // of the open trip
	}{
		{"first claim at epoch 0", claimStep(s, "s", 0, "a"), true, true, 0, "a"},
		{"second claim while open", claimStep(s, "s", 0, "b"), false, true, 0, "a"},
		{"clear", clearStep(s, "s"), false, false, 1, ""},
		{"stale claim from before the clear", claimStep(s, "s", 0, "c"), false, false, 1, ""},
		{"claim at the new epoch", claimStep(s, "s", 1, "d"), true, true, 1, "d"},
		{"clear again", clearStep(s, "s"), false, false, 2, ""},
		{"claim from ahead (the store forgot) raises the epoch", claimStep(s, "s", 5, "e"), true, true, 5, "e"},
		{"clear after that", clearStep(s, "s"), false, false, 6, ""},
		{"claim of another scope is independent", claimStep(s, "other", 0, "f"), true, true, 0, "f"},
	}
	for _, st := range steps {
		claimed, cur, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if claimed != st.claimed || cur.Open != st.open || cur.Epoch != st.epoch || cur.Trip.RequestID != st.requestID {
			t.Errorf("%s: claimed %v, state %+v; want claimed %v, open %v, epoch %d, request %q",
				st.name, claimed, cur, st.claimed, st.open, st.epoch, st.requestID)
		}
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{"s": 6}; !reflect.DeepEqual(snap.Epochs, want) {
		t.Errorf("epochs %v, want %v", snap.Epochs, want)
	}
}

func claimStep(s *redisstore.Store, scope string, epoch uint64, id string) func() (bool, redisstore.ScopeState, error) {
	return func() (bool, redisstore.ScopeState, error) {
		return s.Claim(context.Background(), trip(scope, epoch, id))
	}
}

// clearStep adapts Clear to the steps of TestClaimEpochs.
func clearStep(s *redisstore.Store, scope string) func() (bool, redisstore.ScopeState, error) {
	return func() (bool, redisstore.ScopeState, error) {
		ch, err := s.Clear(context.Background(), scope)
		return false, redisstore.ScopeState{Scope: ch.Scope, Epoch: ch.Epoch}, err
	}
}

func TestClaimInvalid(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	for _, tr := range []redisstore.Trip{
		trip("", 0, "empty scope"),
		trip("s", 1<<53, "epoch beyond what Lua compares exactly"),
		{Scope: "s", Mode: redisstore.Mode(9)}, // does not marshal
	} {
		if claimed, _, err := s.Claim(ctxT(t), tr); err == nil || claimed {
			t.Errorf("Claim(%+v) = %v, %v; want an error", tr, claimed, err)
		}
	}
	snap, err := s.Snapshot(ctxT(t))
	if err != nil || len(snap.Open) != 0 {
		t.Errorf("after invalid claims: %+v, %v", snap, err)
	}
}

func TestClear(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	if _, _, err := s.Claim(ctx, trip("a", 0, "ra")); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Clear(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := (redisstore.Change{Kind: redisstore.ChangeCleared, Scope: "a", Epoch: 1, Trip: trip("a", 0, "ra")}); !equalChange(ch, want) {
		t.Errorf("Clear of an open scope = %+v, want %+v", ch, want)
	}
	ch, err = s.Clear(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// A scope that is not open is left as it is: its epoch stays.
	if want := (redisstore.Change{Kind: redisstore.ChangeCleared, Scope: "a", Epoch: 1}); !equalChange(ch, want) {
		t.Errorf("Clear of a closed scope = %+v, want %+v", ch, want)
	}
}

func TestClearAll(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	if chs, err := s.ClearAll(ctx); err != nil || chs == nil || len(chs) != 0 {
		t.Errorf("ClearAll with nothing open = %#v, %v; want an empty, non-nil slice", chs, err)
	}
	for _, sc := range []string{"c", "a", "b"} {
		if _, _, err := s.Claim(ctx, trip(sc, 0, "r"+sc)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Clear(ctx, "b"); err != nil { // b: epoch 1, closed
		t.Fatal(err)
	}
	if _, err := s.Clear(ctx, "never-open"); err != nil { // writes nothing
		t.Fatal(err)
	}
	chs, err := s.ClearAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []redisstore.Change{
		{Kind: redisstore.ChangeCleared, Scope: "a", Epoch: 1, Trip: trip("a", 0, "ra")},
		{Kind: redisstore.ChangeCleared, Scope: "c", Epoch: 1, Trip: trip("c", 0, "rc")},
	}
	if len(chs) != len(want) {
		t.Fatalf("ClearAll = %+v, want %+v", chs, want)
	}
	for i := range want {
		if !equalChange(chs[i], want[i]) {
			t.Errorf("ClearAll[%d] = %+v, want %+v", i, chs[i], want[i])
		}
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Open) != 0 {
		t.Errorf("open after ClearAll: %+v", snap.Open)
	}
	// Only the open scopes advanced.
	if want := map[string]uint64{"a": 1, "b": 1, "c": 1}; !reflect.DeepEqual(snap.Epochs, want) {
		t.Errorf("epochs %v, want %v", snap.Epochs, want)
	}
}

// equalChange compares changes, trip times by instant.
func equalChange(a, b redisstore.Change) bool {
	if !a.Trip.At.Equal(b.Trip.At) {
		return false
	}
	a.Trip.At, b.Trip.At = time.Time{}, time.Time{}
	return a == b
}

func TestSnapshot(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Open == nil || len(snap.Open) != 0 || snap.Epochs == nil || len(snap.Epochs) != 0 {
		t.Errorf("empty snapshot = %#v; want empty, non-nil members", snap)
	}
	for _, sc := range []string{"z", "m", "a"} {
		if _, _, err := s.Claim(ctx, trip(sc, 0, "r")); err != nil {
			t.Fatal(err)
		}
	}
	// A trip that does not decode still counts as open: a latch fails
	// closed.
	if err := srv.Client().HSet(ctx, "quotabreaker:open", "garbled", `{"mode":"sideways"`).Err(); err != nil {
		t.Fatal(err)
	}
	snap, err = s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var scopes []string
	for _, tr := range snap.Open {
		scopes = append(scopes, tr.Scope)
	}
	if want := []string{"a", "garbled", "m", "z"}; !reflect.DeepEqual(scopes, want) {
		t.Errorf("open scopes %v, want %v", scopes, want)
	}
}

// Scopes are bytes, not text: whatever a WithScope function returns comes
// back unchanged from every method and through Watch.
func TestScopeBytes(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	changes := watch(t, s)
	changes.next(t, redisstore.ChangeResync)
	for _, scope := range []string{
		"with space:and colon 12:34",
		"new\nline",
		"\xff\xfe not UTF-8",
		`{"json":"like"}`,
		"é/ü/中",
	} {
		t.Run(fmt.Sprintf("%q", scope), func(t *testing.T) {
			ctx := ctxT(t)
			if claimed, cur, err := s.Claim(ctx, trip(scope, 0, "r")); err != nil || !claimed || cur.Trip.Scope != scope {
				t.Fatalf("Claim = %v, %+v, %v", claimed, cur, err)
			}
			if ch := changes.next(t, redisstore.ChangeOpened); ch.Scope != scope || ch.Trip.Scope != scope {
				t.Errorf("watched open of %q, want %q", ch.Scope, scope)
			}
			snap, err := s.Snapshot(ctx)
			if err != nil || len(snap.Open) != 1 || snap.Open[0].Scope != scope {
				t.Errorf("Snapshot = %+v, %v", snap, err)
			}
			ch, err := s.Clear(ctx, scope)
			if err != nil || ch.Scope != scope || ch.Trip.Scope != scope {
				t.Errorf("Clear = %+v, %v", ch, err)
			}
			if ch := changes.next(t, redisstore.ChangeCleared); ch.Scope != scope {
				t.Errorf("watched clear of %q, want %q", ch.Scope, scope)
			}
		})
	}
}

// Stores with different prefixes share nothing.
func TestPrefix(t *testing.T) {
	srv := redistest.Start(t)
	a := newStore(t, srv, redisstore.Options{})
	b := newStore(t, srv, redisstore.Options{Prefix: "{other}:"})
	ctx := ctxT(t)
	for _, s := range []*redisstore.Store{a, b} {
		if claimed, _, err := s.Claim(ctx, trip("s", 0, "r")); err != nil || !claimed {
			t.Fatalf("Claim = %v, %v", claimed, err)
		}
	}
	if _, err := b.Clear(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if snap, err := a.Snapshot(ctx); err != nil || len(snap.Open) != 1 {
		t.Errorf("the default prefix lost its latch: %+v, %v", snap, err)
	}
	keys, err := srv.Client().Keys(ctx, "{other}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Errorf("no keys under the other prefix: %v, %v", keys, err)
	}
}

// A latch whose write Redis acknowledged survives Redis crashing: the
// server is killed with SIGKILL and restarted on the same data.
func TestPersistence(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	want := trip("durable", 3, "req_durable")
	if claimed, _, err := s.Claim(ctx, want); err != nil || !claimed {
		t.Fatalf("Claim = %v, %v", claimed, err)
	}
	if _, _, err := s.Claim(ctx, trip("closed-before-crash", 0, "r")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Clear(ctx, "closed-before-crash"); err != nil {
		t.Fatal(err)
	}
	srv.Restart() // SIGKILL, then start on the same directory
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Open) != 1 || !equalChange(redisstore.Change{Trip: snap.Open[0]}, redisstore.Change{Trip: want}) {
		t.Errorf("after a crash: open %+v, want %+v", snap.Open, want)
	}
	if wantEpochs := map[string]uint64{"durable": 3, "closed-before-crash": 1}; !reflect.DeepEqual(snap.Epochs, wantEpochs) {
		t.Errorf("after a crash: epochs %v, want %v", snap.Epochs, wantEpochs)
	}
	// The latch stays open: a second claim after the restart is refused.
	if claimed, _, err := s.Claim(ctx, trip("durable", 3, "again")); err != nil || claimed {
		t.Errorf("Claim after restart = %v, %v; want refused", claimed, err)
	}
}
