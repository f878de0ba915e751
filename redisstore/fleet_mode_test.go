package redisstore_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// handlerMode returns the mode a Handler's GET shows.
func handlerMode(t testing.TB, h http.Handler) string {
	t.Helper()
	code, body := handle(h, http.MethodGet, "")
	var st struct {
		Mode string `json:"mode"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("GET: %d %q", code, body)
	}
	return st.Mode
}

// shortCircuits sums quotabreaker.short_circuits by its quotabreaker.mode
// attribute.
func shortCircuits(t testing.TB, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "quotabreaker.short_circuits" {
				for _, dp := range sum.DataPoints {
					v, _ := dp.Attributes.Value(attribute.Key("quotabreaker.mode"))
					out[v.AsString()] += dp.Value
				}
			}
		}
	}
	return out
}

func countLines(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// A mode switch through one replica's Handler switches the fleet: the other
// replica stops refusing the requests of an open latch, says so in its
// Handler, its metrics and its log (once), and enforces again when the
// other Handler switches back.
func TestFleetModeHandler(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	reader, mp := newMeterReader(t)
	log := &countingHandler{}
	a := newReplica(t, srv)
	b := newReplica(t, srv, quotabreaker.WithMeterProvider(mp), quotabreaker.WithLogger(slog.New(log)))
	const key = "sk-mode-handler"
	p.quota.Store(true)
	a.call(t, p, key)
	scope := a.scope(t, p, key)
	waitFor(t, "b sees a's trip", func() bool { return contains(openScopes(t, b), scope) })
	p.quota.Store(false)

	refused := func(r *replica) bool {
		resp, _ := r.call(t, p, key)
		return resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true"
	}
	if !refused(b) {
		t.Fatal("b sent a request of an open latch in enforce mode")
	}

	start := time.Now()
	code, body := handle(a.Handler(), http.MethodPost, "mode=observe")
	if code != http.StatusOK || !strings.Contains(body, `"mode": "observe"`) {
		t.Fatalf("POST mode=observe: %d %s", code, body)
	}
	waitFor(t, "b follows the fleet's mode", func() bool { return b.Mode() == quotabreaker.ModeObserve })
	t.Logf("a Handler's switch reached the other replica in %v", time.Since(start).Round(time.Millisecond))
	if got := handlerMode(t, b.Handler()); got != "observe" {
		t.Errorf("b's Handler shows mode %q, want observe", got)
	}
	hits := p.hits.Load()
	if refused(b) || p.hits.Load() != hits+1 {
		t.Error("b refused a request in observe mode")
	}
	if !contains(openScopes(t, b), scope) {
		t.Error("the latch closed when the mode switched")
	}
	if sc := shortCircuits(t, reader); sc["enforce"] != 1 || sc["observe"] != 1 {
		t.Errorf("short_circuits by mode: %v, want 1 enforce (before the switch), 1 observe (after)", sc)
	}
	if n := countLines(log.lines(), "mode changed"); n != 1 {
		t.Errorf("b logged the switch %d times, want once: %q", n, log.lines())
	}

	code, body = handle(b.Handler(), http.MethodPost, "mode=enforce")
	if code != http.StatusOK || !strings.Contains(body, `"mode": "enforce"`) {
		t.Fatalf("POST mode=enforce: %d %s", code, body)
	}
	waitFor(t, "a follows the fleet's mode", func() bool { return a.Mode() == quotabreaker.ModeEnforce })
	if !refused(a) {
		t.Error("a sent a request of an open latch after the fleet went back to enforce")
	}
	if m, _, err := newStore(t, srv, redisstore.Options{}).Mode(ctxT(t)); err != nil || m != redisstore.ModeEnforce {
		t.Errorf("Redis holds %v, %v; want enforce", m, err)
	}
}

// WithMode is the mode a Transport starts in until the store holds one;
// then the store's wins, from New on.
func TestFleetModePrecedence(t *testing.T) {
	srv := redistest.Start(t)
	if r := newReplica(t, srv, quotabreaker.WithMode(quotabreaker.ModeObserve)); r.Mode() != quotabreaker.ModeObserve {
		t.Errorf("no mode in the store, WithMode(observe): %v", r.Mode())
	}
	if r := newReplica(t, srv); r.Mode() != quotabreaker.ModeEnforce {
		t.Errorf("no mode in the store, no WithMode: %v", r.Mode())
	}
	admin := newStore(t, srv, redisstore.Options{})
	if _, err := admin.SetMode(ctxT(t), redisstore.ModeObserve); err != nil {
		t.Fatal(err)
	}
	if r := newReplica(t, srv, quotabreaker.WithMode(quotabreaker.ModeEnforce)); r.Mode() != quotabreaker.ModeObserve {
		t.Errorf("store says observe, WithMode(enforce): New returned in %v, want observe", r.Mode())
	}
	// A latch-only store does not share the mode: WithMode holds.
	base := &http.Transport{}
	lo := quotabreaker.New(base, quotabreaker.WithStore(latchOnly{newStore(t, srv, redisstore.Options{})}))
	t.Cleanup(func() { _ = lo.Close(); base.CloseIdleConnections() })
	if lo.Mode() != quotabreaker.ModeEnforce {
		t.Errorf("latch-only store: %v, want enforce (WithMode's default)", lo.Mode())
	}
}

// A mode message that arrives after a newer switch does not undo it; mode
// messages SetMode never writes are dropped and counted. Watch delivers in
// order, so a claim published after them marks when they were handled.
func TestFleetModeLateAndInvalidMessages(t *testing.T) {
	srv := redistest.Start(t)
	reader, mp := newMeterReader(t)
	r := newReplica(t, srv, quotabreaker.WithMeterProvider(mp))
	admin := newStore(t, srv, redisstore.Options{})
	ctx := ctxT(t)
	ch, err := admin.SetMode(ctx, redisstore.ModeObserve)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the switch", func() bool { return r.Mode() == quotabreaker.ModeObserve })
	publish := func(msg string) {
		t.Helper()
		if err := srv.Client().Publish(ctx, redisstore.DefaultPrefix+"changes", msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	mark := 0
	handled := func() {
		t.Helper()
		mark++
		scope := "mark-" + strconv.Itoa(mark)
		if _, _, err := admin.Claim(ctx, trip(scope, 0, "r")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the marker", func() bool { return contains(openScopes(t, r), scope) })
	}

	// Late: an older epoch, and the same epoch with another mode.
	publish("mode " + strconv.FormatUint(ch.Epoch-1, 10) + " enforce")
	publish("mode " + strconv.FormatUint(ch.Epoch, 10) + " enforce")
	handled()
	if r.Mode() != quotabreaker.ModeObserve {
		t.Errorf("a late message undid the switch: %v", r.Mode())
	}
	// A resync reads the same switch again: nothing changes.
	forceResync(t, srv)
	handled()
	if r.Mode() != quotabreaker.ModeObserve {
		t.Errorf("after a resync: %v", r.Mode())
	}

	invalid := []string{
		"mode " + strconv.FormatUint(ch.Epoch+1, 10) + " panic",
		"mode " + strconv.FormatUint(ch.Epoch+1, 10) + " Enforce",
		"mode 9007199254740992 enforce",
		"mode 0 enforce",
		"mode 0" + strconv.FormatUint(ch.Epoch+1, 10) + " enforce",
		"mode " + strconv.FormatUint(ch.Epoch+1, 10) + " enforce{}",
		"mode enforce",
	}
	for _, msg := range invalid {
		publish(msg)
	}
	handled()
	if got := counter(t, reader, "quotabreaker.store.invalid_changes"); got != int64(len(invalid)) {
		t.Errorf("invalid_changes = %d, want %d", got, len(invalid))
	}
	if r.Mode() != quotabreaker.ModeObserve {
		t.Errorf("an invalid message switched the mode: %v", r.Mode())
	}
	// A newer one is taken.
	publish("mode " + strconv.FormatUint(ch.Epoch+1, 10) + " enforce")
	waitFor(t, "the newer switch", func() bool { return r.Mode() == quotabreaker.ModeEnforce })
}

// With Redis down, the Handler's switch answers 503 and changes nothing;
// SetMode applies here at once and reaches the fleet when Redis is back;
// Shutdown says so when it cannot write one.
func TestFleetModeStoreDown(t *testing.T) {
	t.Parallel() // its own Redis, down for seconds
	srv := redistest.Start(t)
	a, b := newReplica(t, srv), newReplica(t, srv)
	srv.Kill()
	waitFor(t, "a sees the store down", func() bool { return storeState(t, a) == "down" })

	start := time.Now()
	code, body := handle(a.Handler(), http.MethodPost, "mode=observe")
	if code != http.StatusServiceUnavailable || a.Mode() != quotabreaker.ModeEnforce {
		t.Errorf("POST mode=observe with Redis down: %d %q, mode %v; want 503 and enforce", code, body, a.Mode())
	}
	t.Logf("the Handler answered %d after %v", code, time.Since(start).Round(time.Millisecond))
	if err := a.SetModeContext(ctxT(t), quotabreaker.ModeObserve); err == nil || a.Mode() != quotabreaker.ModeEnforce {
		t.Errorf("SetModeContext with Redis down: %v, mode %v; want an error and enforce", err, a.Mode())
	}

	a.SetMode(quotabreaker.ModeObserve)
	if a.Mode() != quotabreaker.ModeObserve {
		t.Fatalf("SetMode with Redis down: %v, want observe here at once", a.Mode())
	}
	if b.Mode() != quotabreaker.ModeEnforce {
		t.Fatalf("b: %v", b.Mode())
	}
	time.Sleep(300 * time.Millisecond) // a's loop tries, and fails
	if _, body := handle(a.Handler(), http.MethodGet, ""); !strings.Contains(body, `"mode": "observe"`) || !strings.Contains(body, `"mode_pending": true`) {
		t.Errorf("a's GET while its switch waits: %s, want observe, pending", body)
	}
	srv.Restart()
	back := time.Now()
	waitFor(t, "b follows a's switch once Redis is back", func() bool { return b.Mode() == quotabreaker.ModeObserve })
	t.Logf("a's switch reached b %v after Redis came back", time.Since(back).Round(time.Millisecond))
	if m, _, err := newStore(t, srv, redisstore.Options{}).Mode(ctxT(t)); err != nil || m != redisstore.ModeObserve {
		t.Errorf("Redis holds %v, %v; want observe", m, err)
	}
	waitFor(t, "a's GET no longer says pending", func() bool {
		_, body := handle(a.Handler(), http.MethodGet, "")
		return !strings.Contains(body, "mode_pending")
	})

	// A switch that cannot be written before Shutdown is reported.
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	c := quotabreaker.New(base, quotabreaker.WithStore(newStore(t, srv, redisstore.Options{})))
	if c.Mode() != quotabreaker.ModeObserve {
		t.Errorf("a replica started now: %v, want the fleet's observe", c.Mode())
	}
	srv.Kill()
	c.SetMode(quotabreaker.ModeEnforce)
	err := c.Close()
	t.Logf("Close: %v", err)
	if err == nil || !strings.Contains(err.Error(), "the mode switch (kept in this process) not written") {
		t.Errorf("Close with a switch not written: %v, want an error that says so", err)
	}
	if c.Mode() != quotabreaker.ModeEnforce {
		t.Errorf("after Close: %v, want the mode kept here", c.Mode())
	}
	srv.Restart()
}

// modeRefusing refuses SetMode while refuse is set, as a store that this
// process alone cannot write to would (a network partition, an ACL).
type modeRefusing struct {
	*redisstore.Store
	refuse atomic.Bool
	tries  atomic.Int64
}

func (s *modeRefusing) SetMode(ctx context.Context, m quotabreaker.Mode) (quotabreaker.Change, error) {
	s.tries.Add(1)
	if s.refuse.Load() {
		return quotabreaker.Change{}, context.DeadlineExceeded
	}
	return s.Store.SetMode(ctx, m)
}

// A SetMode waiting to be written does not undo a switch made elsewhere
// meanwhile: before it retries, the Transport reads the store, finds the
// newer switch, drops its own and follows the fleet.
func TestFleetModeWaitingWriteYields(t *testing.T) {
	srv := redistest.Start(t)
	rs := &modeRefusing{Store: newStore(t, srv, redisstore.Options{})}
	rs.refuse.Store(true)
	base := &http.Transport{}
	log := &countingHandler{}
	a := quotabreaker.New(base, quotabreaker.WithStore(rs), quotabreaker.WithLogger(slog.New(log)))
	t.Cleanup(func() { _ = a.Close(); base.CloseIdleConnections() })
	b := newReplica(t, srv)

	a.SetMode(quotabreaker.ModeObserve)
	waitFor(t, "a tries to write", func() bool { return rs.tries.Load() >= 1 })
	if a.Mode() != quotabreaker.ModeObserve || b.Mode() != quotabreaker.ModeEnforce {
		t.Fatalf("a %v, b %v; want observe here, enforce there", a.Mode(), b.Mode())
	}
	// The operator switches the fleet elsewhere, to enforce, after a's.
	admin := newStore(t, srv, redisstore.Options{})
	ch, err := admin.SetMode(ctxT(t), redisstore.ModeEnforce)
	if err != nil {
		t.Fatal(err)
	}
	rs.refuse.Store(false)
	tries := rs.tries.Load()
	waitFor(t, "a follows the newer switch", func() bool { return a.Mode() == quotabreaker.ModeEnforce })
	time.Sleep(300 * time.Millisecond)
	if m, epoch, err := admin.Mode(ctxT(t)); err != nil || m != redisstore.ModeEnforce || epoch != ch.Epoch {
		t.Errorf("Redis holds %v at %d (%v), want the newer switch, enforce at %d", m, epoch, err, ch.Epoch)
	}
	if n := rs.tries.Load(); n != tries {
		t.Errorf("a wrote its superseded switch (%d tries after the newer switch)", n-tries)
	}
	if b.Mode() != quotabreaker.ModeEnforce {
		t.Errorf("b: %v", b.Mode())
	}
	if n := countLines(log.lines(), "was dropped"); n != 1 {
		t.Errorf("a logged the dropped switch %d times, want once: %q", n, log.lines())
	}
}

// A Redis that restarts without its data loses the fleet's mode too: the
// replicas write the mode they follow back, as they write lost latches
// back, so that a replica started afterwards takes the fleet's mode and not
// its WithMode; a switch made afterwards still wins.
func TestFleetModeStoreLosesItsData(t *testing.T) {
	t.Parallel() // its own Redis, restarted
	srv := redistest.Start(t)
	a, b := newReplica(t, srv), newReplica(t, srv)
	admin := newStore(t, srv, redisstore.Options{})
	if err := a.SetModeContext(ctxT(t), quotabreaker.ModeObserve); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b follows the switch", func() bool { return b.Mode() == quotabreaker.ModeObserve })
	_, before, err := admin.Mode(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}

	restartWithoutData(t, srv)
	waitFor(t, "the mode is written back", func() bool {
		m, epoch, err := admin.Mode(ctxT(t))
		return err == nil && m == redisstore.ModeObserve && epoch > before
	})
	if c := newReplica(t, srv); c.Mode() != quotabreaker.ModeObserve {
		t.Errorf("a replica started after Redis lost its data: %v, want the fleet's observe", c.Mode())
	}
	for name, r := range map[string]*replica{"a": a, "b": b} {
		if r.Mode() != quotabreaker.ModeObserve {
			t.Errorf("%s: %v after Redis lost its data, want observe", name, r.Mode())
		}
	}

	if _, err := admin.SetMode(ctxT(t), redisstore.ModeEnforce); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fleet follows a switch made after", func() bool {
		return a.Mode() == quotabreaker.ModeEnforce && b.Mode() == quotabreaker.ModeEnforce
	})
	forceResync(t, srv)
	time.Sleep(200 * time.Millisecond) // the resyncs that follow write nothing back
	if m, _, err := admin.Mode(ctxT(t)); err != nil || m != redisstore.ModeEnforce {
		t.Errorf("after a resync: Redis holds %v, %v; want enforce", m, err)
	}
}
