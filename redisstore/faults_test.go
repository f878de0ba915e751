package redisstore_test

// The fleet against the faults of issue 17, each on a real redis-server and
// a real fault: a Redis turned read-only by a failover, a corrupt spend
// field, a trip right before Close, a slow or re-entrant pager, a Redis
// still loading its data, hostile change messages, resets of scopes nobody
// opened, and a Redis that refuses connections.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// countingHandler is a slog.Handler that counts what is logged.
type countingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, b.String())
	return nil
}

func (h *countingHandler) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// commandsProcessed reads Redis's count of the commands it has processed.
func commandsProcessed(t testing.TB, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO stats")
	return 0
}

// commandRate measures the commands per second srv processes over window,
// less the two INFO calls that measure it.
func commandRate(t testing.TB, c *redis.Client, window time.Duration) float64 {
	t.Helper()
	before := commandsProcessed(t, c)
	time.Sleep(window)
	after := commandsProcessed(t, c)
	return float64(after-before-1) / window.Seconds()
}

// storeState reads the store's state from the Handler: up, read-only or down.
func storeState(t testing.TB, r *replica) string {
	t.Helper()
	code, body := handle(r.Handler(), http.MethodGet, "")
	if code != http.StatusOK {
		t.Fatalf("GET: %d %s", code, body)
	}
	_, rest, _ := strings.Cut(body, `"store": "`)
	state, _, _ := strings.Cut(rest, `"`)
	return state
}

// The faults that once started a loop of store calls: one replica, with a
// budget and a trip, against a Redis that answers reads and refuses every
// write. Each must cost Redis a few commands a second at most, log the
// change of state once, and page the trip from this process.
func TestFleetRefusedWritesAreBounded(t *testing.T) {
	// Each fault has its own Redis and waits out windows of seconds: the
	// faults, and the other slow tests, wait side by side.
	t.Parallel()
	const window = 6 * time.Second
	faults := []struct {
		name   string
		break_ func(t *testing.T, srv *redistest.Server)
		mend   func(t *testing.T, srv *redistest.Server)
	}{{
		// A failover turns the old primary into a replica of the new one:
		// READONLY for every write.
		name: "read-only after REPLICAOF",
		break_: func(t *testing.T, srv *redistest.Server) {
			primary := redistest.Start(t)
			c := srv.Client()
			if err := c.ReplicaOf(context.Background(), "127.0.0.1", strconv.Itoa(primary.Port())).Err(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				info, err := c.Info(context.Background(), "replication").Result()
				if err == nil && strings.Contains(info, "master_link_status:up") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no replication link within 30s: %s", info)
				}
				time.Sleep(20 * time.Millisecond)
			}
		},
		mend: func(t *testing.T, srv *redistest.Server) {
			if err := srv.Client().ReplicaOf(context.Background(), "NO", "ONE").Err(); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		// One field of a spend hash is not an integer: HINCRBY fails with
		// ERR, and Spend cannot read it back.
		name: "corrupt spend field",
		break_: func(t *testing.T, srv *redistest.Server) {
			c := srv.Client()
			keys, err := c.Keys(context.Background(), redisstore.DefaultPrefix+"spend:*").Result()
			if err != nil || len(keys) == 0 {
				t.Fatalf("spend keys %v, %v", keys, err)
			}
			for _, k := range keys {
				fields, err := c.HKeys(context.Background(), k).Result()
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range fields {
					if err := c.HSet(context.Background(), k, f, "twelve dollars").Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
		mend: func(t *testing.T, srv *redistest.Server) {
			c := srv.Client()
			keys, _ := c.Keys(context.Background(), redisstore.DefaultPrefix+"spend:*").Result()
			for _, k := range keys {
				if err := c.Del(context.Background(), k).Err(); err != nil {
					t.Fatal(err)
				}
			}
		},
	}}
	for _, fault := range faults {
		t.Run(fault.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			p := newFakeProvider(t)
			log := &countingHandler{}
			var pages atomic.Int64
			r := newReplica(t, srv,
				quotabreaker.WithLogger(slog.New(log)),
				quotabreaker.WithPrices(dollarAnswer),
				quotabreaker.WithBudget(quotabreaker.Budget{Name: "fleet", Limit: 1000}),
				quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }))
			admin := newStore(t, srv, redisstore.Options{})
			r.call(t, p, "sk-warm")
			waitFor(t, "the spend reaches Redis", func() bool {
				s, err := admin.Spend(context.Background())
				return err == nil && len(s) == 1
			})

			fault.break_(t, srv)
			start := time.Now()
			for range 5 {
				r.call(t, p, "sk-warm") // the key whose field is corrupt
			}
			p.quota.Store(true)
			r.call(t, p, "sk-trips")
			p.quota.Store(false)
			waitFor(t, "the trip pages from this process", func() bool { return pages.Load() == 1 })
			waitFor(t, "the store shows read-only", func() bool { return storeState(t, r) == "read-only" })

			// The backoff's first steps, then its cap.
			ramp := commandRate(t, srv.Client(), window)
			steady := commandRate(t, srv.Client(), 10*time.Second)
			lines := log.lines()
			perMinute := float64(len(lines)) / time.Since(start).Minutes()
			t.Logf("%s: %.1f Redis commands/s from one replica in the first %v, %.1f/s in the next 10s; %d log lines in %v (%.1f/min): %q",
				fault.name, ramp, window, steady, len(lines), time.Since(start).Round(time.Second), perMinute, lines)
			if ramp > 20 || steady > 10 {
				t.Errorf("%.1f then %.1f commands/s against a store that refuses writes, want at most 20 then 10", ramp, steady)
			}
			if len(lines) != 1 {
				t.Errorf("logged %d lines, want one for the change of state: %q", len(lines), lines)
			}
			if n := pages.Load(); n != 1 {
				t.Errorf("OnTrip ran %d times, want 1", n)
			}

			// Mended, the store takes what was kept, within the backoff's
			// cap, and the log says so once.
			fault.mend(t, srv)
			deadline := time.Now().Add(40 * time.Second)
			for storeState(t, r) != "up" || !hasOpen(t, admin) {
				if time.Now().After(deadline) {
					t.Fatalf("not back up within 40s: %s, log %q", storeState(t, r), log.lines())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if lines := log.lines(); len(lines) != 2 || !strings.Contains(lines[1], "store up again") {
				t.Errorf("log after mending: %q, want one more line saying it is up", lines)
			}
			if n := pages.Load(); n != 1 {
				t.Errorf("OnTrip ran %d times after the store came back, want 1", n)
			}
		})
	}
}

func hasOpen(t testing.TB, s *redisstore.Store) bool {
	snap, err := s.Snapshot(context.Background())
	return err == nil && len(snap.Open) == 1
}

// A batch job that hits quota and closes at once: the page runs before
// Close returns, Redis holds the latch, and the spend of its last answer,
// queued less than 100 ms before, is in Redis too. Twenty runs, each a new
// Transport, as twenty processes would be.
func TestFleetTripThenClose(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	admin := newStore(t, srv, redisstore.Options{})
	const runs = 20
	ok := 0
	for run := range runs {
		s, err := redisstore.New(srv.Client(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var pages atomic.Int64
		base := &http.Transport{}
		tr := quotabreaker.New(base, quotabreaker.WithStore(s),
			quotabreaker.WithPrices(dollarAnswer),
			quotabreaker.WithBudget(quotabreaker.Budget{Name: "batch", Limit: 1000}),
			quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }))
		r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
		key := "sk-batch-" + strconv.Itoa(run)
		p.quota.Store(false)
		r.call(t, p, key)
		p.quota.Store(true)
		r.call(t, p, key)
		if err := tr.Close(); err != nil {
			t.Errorf("run %d: Close: %v", run, err)
		}
		base.CloseIdleConnections()

		scope := r.scope(t, p, key)
		snap, err := admin.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		latch := false
		for _, o := range snap.Open {
			latch = latch || o.Scope == scope
		}
		spends, err := admin.Spend(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var spent int64
		for _, sp := range spends {
			if strings.HasSuffix(sp.Key, "/"+scope) {
				spent += sp.Micros
			}
		}
		if pages.Load() == 1 && latch && spent == 1e6 {
			ok++
		} else {
			t.Errorf("run %d: pages %d, latch in Redis %v, spend in Redis %d µ$ (want 1, true, 1000000)", run, pages.Load(), latch, spent)
		}
	}
	t.Logf("trip then Close: paged, latch and spend in Redis in %d of %d runs", ok, runs)
}

// A pager that blocks for 10 s holds nothing but itself: another tenant's
// trip in the same replica reaches the other replica within a second, spend
// is still written, and Shutdown returns at its deadline.
func TestFleetSlowOnTrip(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	release := make(chan struct{})
	defer close(release)
	var paging atomic.Int64
	slow := quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) {
		paging.Add(1)
		select {
		case <-time.After(10 * time.Second):
		case <-release:
		}
	})
	budget := quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 1000})
	a := newReplica(t, srv, slow, quotabreaker.WithPrices(dollarAnswer), budget)
	b := newReplica(t, srv)
	admin := newStore(t, srv, redisstore.Options{})

	p.quota.Store(true)
	a.call(t, p, "sk-tenant-1")
	waitFor(t, "the first page starts", func() bool { return paging.Load() == 1 })
	a.call(t, p, "sk-tenant-2")
	second := a.scope(t, p, "sk-tenant-2")
	start := time.Now()
	for !contains(openScopes(t, b), second) {
		if time.Since(start) > time.Second {
			t.Fatalf("the second tenant's trip did not reach the other replica within 1s while OnTrip blocks")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the second trip reached the other replica in %v while the first OnTrip blocked", time.Since(start).Round(time.Millisecond))

	p.quota.Store(false)
	a.call(t, p, "sk-tenant-3")
	waitFor(t, "spend is written while OnTrip blocks", func() bool {
		s, err := admin.Spend(context.Background())
		return err == nil && len(s) == 1 && s[0].Micros == 1e6
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start = time.Now()
	err := a.Shutdown(ctx)
	took := time.Since(start)
	t.Logf("Shutdown with a 1s deadline returned after %v: %v", took.Round(time.Millisecond), err)
	if err == nil || took > 1500*time.Millisecond {
		t.Errorf("Shutdown = %v after %v, want the deadline's error within 1.5s", err, took)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// An OnTrip that shuts its Transport down, with Close or with Shutdown and
// its own ctx, does not deadlock: both return, and so does the hook.
func TestFleetOnTripCallsClose(t *testing.T) {
	for _, how := range []string{"Close", "Shutdown"} {
		t.Run(how, func(t *testing.T) {
			srv := redistest.Start(t)
			p := newFakeProvider(t)
			var tr *quotabreaker.Transport
			returned := make(chan error, 1)
			s, err := redisstore.New(srv.Client(), redisstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			tr = quotabreaker.New(base, quotabreaker.WithStore(s), quotabreaker.WithStoreTimeout(300*time.Millisecond),
				quotabreaker.OnTrip(func(ctx context.Context, _ quotabreaker.Trip) {
					if how == "Close" {
						returned <- tr.Close()
					} else {
						returned <- tr.Shutdown(ctx)
					}
				}))
			r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
			p.quota.Store(true)
			start := time.Now()
			r.call(t, p, "sk-stop")
			select {
			case err := <-returned:
				t.Logf("%s from OnTrip returned after %v: %v", how, time.Since(start).Round(time.Millisecond), err)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s from OnTrip did not return within 5s", how)
			}
			if err := tr.Close(); err != nil {
				t.Errorf("Close after: %v", err)
			}
		})
	}
}

// A replica started while Redis loads its data (answering -LOADING for
// about 2 s) waits for it: it starts with the fleet's open latch, refuses
// its requests without sending them, and pages nobody.
func TestFleetStartsWhileRedisLoads(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	admin := newStore(t, srv, redisstore.Options{})
	const key = "sk-loaded"
	scope := (&replica{}).scope(t, p, key)
	if _, _, err := admin.Claim(context.Background(), trip(scope, 0, "req_before_restart")); err != nil {
		t.Fatal(err)
	}
	// 10,000 keys, each loaded 100 µs late (key-load-delay), take about
	// 2 s to load from the append-only file's RDB base (usleep oversleeps).
	c := srv.Client()
	pipe := c.Pipeline()
	for i := range 10000 {
		pipe.Set(context.Background(), "filler:"+strconv.Itoa(i), "x", 0)
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.BgRewriteAOF(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the AOF rewrite", func() bool {
		info, err := c.Info(context.Background(), "persistence").Result()
		return err == nil && strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") &&
			strings.Contains(info, "aof_last_bgrewrite_status:ok")
	})
	srv.RestartLoading("--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024")
	restarted := time.Now()
	loaded := make(chan time.Duration, 1)
	go func() {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
		defer c.Close()
		for time.Since(restarted) < 30*time.Second {
			if c.Ping(context.Background()).Err() == nil {
				loaded <- time.Since(restarted)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		loaded <- -1
	}()
	loading := func() bool {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
		defer c.Close()
		err := c.Ping(context.Background()).Err()
		return err != nil && strings.HasPrefix(err.Error(), "LOADING")
	}
	if !loading() {
		t.Fatal("Redis is not loading; the test needs it to be")
	}

	var pages atomic.Int64
	start := time.Now()
	s, err := redisstore.New(srv.Client(), redisstore.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{}
	tr := quotabreaker.New(base, quotabreaker.WithStore(s), quotabreaker.WithStoreTimeout(5*time.Second),
		quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }))
	t.Cleanup(func() {
		_ = tr.Close()
		base.CloseIdleConnections()
	})
	took := time.Since(start)
	t.Logf("New returned after %v; Redis answered LOADING for %v", took.Round(time.Millisecond), (<-loaded).Round(time.Millisecond))
	r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
	if got := openScopes(t, r); !contains(got, scope) {
		t.Errorf("a replica started during LOADING lists %v, want %s open", got, scope)
	}
	p.quota.Store(true)
	resp, _ := r.call(t, p, key)
	if resp.Header.Get(quotabreaker.HeaderShortCircuit) != "true" || p.hits.Load() != 0 {
		t.Errorf("the request was sent (%d hits, %s), want refused by the open latch", p.hits.Load(), resp.Status)
	}
	time.Sleep(300 * time.Millisecond)
	if n := pages.Load(); n != 0 {
		t.Errorf("OnTrip ran %d times for a trip paged before the restart", n)
	}
}

// Change messages that the store's own writes would never make are dropped
// and counted; none opens or closes a latch.
func TestFleetInvalidChanges(t *testing.T) {
	srv := redistest.Start(t)
	reader, mp := newMeterReader(t)
	r := newReplica(t, srv, quotabreaker.WithMeterProvider(mp))
	admin := newStore(t, srv, redisstore.Options{})
	if _, _, err := admin.Claim(context.Background(), trip("tenant", 0, "r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the latch opens", func() bool { return len(openScopes(t, r)) == 1 })
	hostile := []string{
		`open 0 0:{}`,                          // a latch named ""
		`open 9007199254740992 1:x{}`,          // an epoch above 2^53-1
		`clear 9007199254740992 6:tenant`,      // would pass every later claim of the scope
		`clear 0 6:tenant`,                     // no clear is to epoch 0
		`open 1 99:short{}`,                    // a scope longer than the message
		"open 1 1:y" + `{"scope":"y"` + "\xff", // a trip that is not JSON
	}
	for _, msg := range hostile {
		if err := srv.Client().Publish(context.Background(), redisstore.DefaultPrefix+"changes", msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every message counted", func() bool { return counter(t, reader, "quotabreaker.store.invalid_changes") == int64(len(hostile)) })
	if got := openScopes(t, r); len(got) != 1 || got[0] != "tenant" {
		t.Errorf("open after hostile messages: %q, want [tenant]", got)
	}
	if ok, err := r.Reset(context.Background(), "tenant"); !ok || err != nil {
		t.Errorf("Reset = %v, %v", ok, err)
	}
	waitFor(t, "the reset closes it", func() bool { return len(openScopes(t, r)) == 0 })
}

// Resets of scopes that are not open write nothing to Redis: 20,000 of them
// through the Handler leave it as it was.
func TestFleetResetsOfUnknownScopes(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv)
	admin := newStore(t, srv, redisstore.Options{})
	if _, _, err := admin.Claim(context.Background(), trip("open-one", 0, "r")); err != nil {
		t.Fatal(err)
	}
	c := srv.Client()
	state := func() string {
		keys, err := c.DBSize(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		epochs, err := c.HLen(context.Background(), redisstore.DefaultPrefix+"epochs").Result()
		if err != nil {
			t.Fatal(err)
		}
		open, err := c.HLen(context.Background(), redisstore.DefaultPrefix+"open").Result()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d keys, %d epochs, %d open", keys, epochs, open)
	}
	before := state()
	h := r.Handler()
	notFound := 0
	for i := range 20000 {
		if code, _ := handle(h, http.MethodPost, "scope=nobody-"+strconv.Itoa(i)); code == http.StatusNotFound {
			notFound++
		}
	}
	after := state()
	t.Logf("20,000 resets of unknown scopes: %d answered 404; Redis before: %s; after: %s", notFound, before, after)
	if notFound != 20000 || after != before {
		t.Errorf("%d of 20000 answered 404; Redis went from %s to %s", notFound, before, after)
	}
}

// ResetBudget right after the last answers: the spend they queued does not
// land after the reset, so the key is not refused again.
func TestFleetResetBudgetBeatsQueuedSpend(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	r := newReplica(t, srv, quotabreaker.WithPrices(dollarAnswer),
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 2, HardLimit: true}))
	admin := newStore(t, srv, redisstore.Options{})
	const key = "sk-reset-budget"
	r.call(t, p, key)
	r.call(t, p, key) // the limit: $2, queued for up to 100 ms
	if ok, err := r.ResetBudget(context.Background(), "b", r.scope(t, p, key)); !ok || err != nil {
		t.Fatalf("ResetBudget = %v, %v", ok, err)
	}
	time.Sleep(500 * time.Millisecond) // past any queued write
	spends, err := admin.Spend(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spends {
		if s.Micros != 0 {
			t.Errorf("spend after the reset: %+v", s)
		}
	}
	before := p.hits.Load()
	if resp, _ := r.call(t, p, key); resp.StatusCode != http.StatusOK || p.hits.Load() != before+1 {
		t.Errorf("after ResetBudget: %s, want the request sent", resp.Status)
	}
}

// lossyStore applies the first AddSpend and then reports a timeout, as a
// reply lost on the network would.
type lossyStore struct {
	*redisstore.Store
	lost atomic.Bool
}

func (l *lossyStore) AddSpend(ctx context.Context, w quotabreaker.SpendWrite) (int64, error) {
	total, err := l.Store.AddSpend(ctx, w)
	if err == nil && l.lost.CompareAndSwap(false, true) {
		return 0, context.DeadlineExceeded
	}
	return total, err
}

// A spend write that Redis applied but whose answer was lost is retried and
// counted once.
func TestFleetSpendWriteIsIdempotent(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	ls := &lossyStore{Store: newStore(t, srv, redisstore.Options{})}
	base := &http.Transport{}
	tr := quotabreaker.New(base, quotabreaker.WithStore(ls), quotabreaker.WithPrices(dollarAnswer),
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 1000}))
	t.Cleanup(func() {
		_ = tr.Close()
		base.CloseIdleConnections()
	})
	r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
	r.call(t, p, "sk-once")
	waitFor(t, "the write is acknowledged", func() bool {
		st, ok := budgetStatus(t, r, "b")
		return ok && ls.lost.Load() && st.Spent == 1 && storeState(t, r) == "up"
	})
	spends, err := ls.Spend(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(spends) != 1 || spends[0].Micros != 1e6 {
		t.Errorf("spend in Redis %+v, want $1 once", spends)
	}
}

// A trip pages within 100 ms of its answer when Redis refuses connections,
// not after the client's retries.
func TestFleetPagesAtOnceWhenRedisRefuses(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	paged := make(chan time.Time, 1)
	s, err := redisstore.New(srv.Client(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{}
	tr := quotabreaker.New(base, quotabreaker.WithStore(s),
		quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { paged <- time.Now() }))
	t.Cleanup(func() {
		_ = tr.Close() // reports the claim it could not write
		base.CloseIdleConnections()
	})
	r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
	r.call(t, p, "sk-warm")
	srv.Kill()
	p.quota.Store(true)
	start := time.Now()
	r.call(t, p, "sk-refused")
	select {
	case at := <-paged:
		took := at.Sub(start)
		t.Logf("paged %v after the answer, Redis refusing connections", took.Round(time.Millisecond))
		if took > 100*time.Millisecond {
			t.Errorf("paged after %v, want within 100ms", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no page within 10s")
	}
}

func newMeterReader(t testing.TB) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return reader, mp
}

// counter reads the sum of an Int64 counter.
func counter(t testing.TB, r *sdkmetric.ManualReader, name string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range sum.DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// latchOnly is a store of latches alone, as one on etcd or a SQL table
// might be: it has none of the spend methods.
type latchOnly struct{ quotabreaker.LatchStore }

// A latch-only store shares latches; budgets then count each process's own
// spend, and nothing of it reaches the store.
func TestFleetLatchOnlyStore(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	var pages atomic.Int64
	opts := []quotabreaker.Option{
		quotabreaker.WithPrices(dollarAnswer),
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 1000}),
		quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }),
	}
	var rs []*replica
	for range 2 {
		base := &http.Transport{}
		tr := quotabreaker.New(base, append(opts, quotabreaker.WithStore(latchOnly{newStore(t, srv, redisstore.Options{})}))...)
		t.Cleanup(func() {
			if err := tr.Close(); err != nil {
				t.Error(err)
			}
			base.CloseIdleConnections()
		})
		rs = append(rs, &replica{Transport: tr, hc: &http.Client{Transport: tr}})
	}
	rs[0].call(t, p, "sk-latch-only")
	if st, ok := budgetStatus(t, rs[0], "b"); !ok || st.Spent != 1 {
		t.Errorf("budget with a latch-only store: %+v, want $1 counted here", st)
	}
	p.quota.Store(true)
	rs[0].call(t, p, "sk-latch-only")
	scope := rs[0].scope(t, p, "sk-latch-only")
	waitFor(t, "the trip reaches the other replica", func() bool { return contains(openScopes(t, rs[1]), scope) })
	waitFor(t, "one page", func() bool { return pages.Load() == 1 })
	if keys, err := srv.Client().Keys(context.Background(), redisstore.DefaultPrefix+"spend:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("spend keys in Redis with a latch-only store: %v, %v", keys, err)
	}
}
