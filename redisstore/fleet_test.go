package redisstore_test

// Transports sharing a real Redis through WithStore, in one process, each on
// a client of its own as separate replicas would be. The tests with
// replicas as separate processes are in internal/replica.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/prices"
	"github.com/quotabreaker/quotabreaker/redisstore"
	"github.com/quotabreaker/quotabreaker/redisstore/internal/redistest"
)

// The provider's answers: real bodies, as OpenAI sent them.
var (
	// ../classify/testdata/corpus/openai-insufficient-quota-docs-link-429.json,
	// from https://github.com/autohandai/code-cli/issues/88.
	quotaBody = func() []byte {
		var c struct {
			Body string `json:"body"`
		}
		if err := json.Unmarshal(readFile("../classify/testdata/corpus/openai-insufficient-quota-docs-link-429.json"), &c); err != nil {
			panic(err)
		}
		return []byte(c.Body)
	}()
	// ../testdata/streams/openai-chat-cached.json, recorded by
	// pydantic-ai (see ../testdata/streams/SOURCES.md): 4,020 prompt
	// tokens, 4,012 of them cached, and 4 completion tokens.
	okBody = readFile("../testdata/streams/openai-chat-cached.json")
)

func readFile(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// dollarAnswer prices okBody's answer at exactly one dollar: its 4 output
// tokens at $250,000 per million (rates are in pico-dollars per token),
// its input free.
func dollarAnswer(provider, model, tier string) (prices.Price, bool) {
	return prices.Price{Output: 250_000_000_000}, true
}

// fakeProvider stands for OpenAI's API.
type fakeProvider struct {
	*httptest.Server
	hits  atomic.Int64
	quota atomic.Bool
}

func newFakeProvider(t testing.TB) *fakeProvider {
	p := &fakeProvider{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req_"+strconv.FormatInt(n, 10))
		if p.quota.Load() {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write(quotaBody)
			return
		}
		_, _ = w.Write(okBody)
	}))
	t.Cleanup(p.Close)
	return p
}

// replica is one Transport with a client of its own.
type replica struct {
	*quotabreaker.Transport
	hc *http.Client
}

// newReplica makes a Transport on a Store of its own, closed when the test
// ends.
func newReplica(t testing.TB, srv *redistest.Server, opts ...quotabreaker.Option) *replica {
	t.Helper()
	s, err := redisstore.New(srv.Client(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{}
	tr := quotabreaker.New(base, append([]quotabreaker.Option{quotabreaker.WithStore(s)}, opts...)...)
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
		base.CloseIdleConnections()
	})
	return &replica{Transport: tr, hc: &http.Client{Transport: tr}}
}

// call sends one chat completion with key, reads the answer and returns it
// with its body.
func (r *replica) call(t testing.TB, p *fakeProvider, key string) (*http.Response, string) {
	t.Helper()
	resp, body, err := r.do(p, key)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func (r *replica) do(p *fakeProvider, key string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodPost, p.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say OK"}]}`))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// waitFor polls cond until it holds; the limit catches what never happens,
// it is not a speed requirement.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forceResync makes every Transport watching srv resync now, as each does
// every few seconds and after every reconnection: Redis drops their
// subscriptions, and each resyncs once subscribed again.
func forceResync(t testing.TB, srv *redistest.Server) {
	t.Helper()
	if err := srv.Client().ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
}

func budgetStatus(t testing.TB, r *replica, name string) (quotabreaker.BudgetStatus, bool) {
	t.Helper()
	bs, err := r.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Budget == name {
			return b, true
		}
	}
	return quotabreaker.BudgetStatus{}, false
}

// One budget for the whole fleet: its thresholds fire once across the
// fleet, its hard limit holds against the fleet's total (in a replica that
// spent nothing, too), and a reset in one replica lifts it in all.
func TestFleetBudget(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	store := newStore(t, srv, redisstore.Options{})
	const key = "sk-proj-budget"

	var mu sync.Mutex
	var fired []quotabreaker.BudgetStatus
	onBudget := quotabreaker.OnBudget(func(_ context.Context, st quotabreaker.BudgetStatus) {
		mu.Lock()
		defer mu.Unlock()
		fired = append(fired, st)
	})
	budget := quotabreaker.Budget{Name: "fleet", Limit: 10, Thresholds: []float64{0.5, 0.8}, HardLimit: true}
	opts := []quotabreaker.Option{quotabreaker.WithPrices(dollarAnswer), quotabreaker.WithBudget(budget), onBudget}
	rs := []*replica{newReplica(t, srv, opts...), newReplica(t, srv, opts...), newReplica(t, srv, opts...)}

	fleetTotal := func() int64 {
		spends, err := store.Spend(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, s := range spends {
			n += s.Micros
		}
		return n
	}

	// Ten one-dollar answers, taken in turn by the three replicas: the
	// fleet spends the limit, though none spends more than $4.
	for i := range 10 {
		resp, _ := rs[i%3].call(t, p, key)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %s", i, resp.Status)
		}
		waitFor(t, "the spend reaches Redis", func() bool { return fleetTotal() == int64(i+1)*1e6 })
	}

	t.Run("each threshold fires once across the fleet", func(t *testing.T) {
		waitFor(t, "three thresholds", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(fired) >= 3
		})
		mu.Lock()
		got := append([]quotabreaker.BudgetStatus(nil), fired...)
		mu.Unlock()
		want := []float64{0.5, 0.8, 1}
		if len(got) != len(want) {
			t.Fatalf("OnBudget fired %d times, want %d: %+v", len(got), len(want), got)
		}
		for i, st := range got {
			if st.Threshold != want[i] || st.Budget != "fleet" || st.Spent < want[i]*10 {
				t.Errorf("OnBudget #%d: %+v, want threshold %v with at least $%v spent by the fleet", i, st, want[i], want[i]*10)
			}
		}
	})

	refused := func(t *testing.T, name string, r *replica) {
		t.Helper()
		before := p.hits.Load()
		resp, body := r.call(t, p, key)
		if resp.StatusCode != http.StatusPaymentRequired || resp.Header.Get(quotabreaker.HeaderBudget) != "fleet" || !strings.Contains(body, "budget_exhausted") {
			t.Errorf("%s: %s %q, want 402 budget_exhausted", name, resp.Status, body)
		}
		if p.hits.Load() != before {
			t.Errorf("%s sent a request past the fleet's hard limit", name)
		}
	}

	t.Run("the hard limit holds against the fleet's total", func(t *testing.T) {
		// The replica whose answer reached the limit knows at once.
		waitFor(t, "the last spender sees the limit", func() bool {
			st, _ := budgetStatus(t, rs[0], "fleet")
			return st.Exhausted
		})
		refused(t, "the replica that reached the limit", rs[0])
		// A replica that starts now takes the fleet's spend as it starts.
		refused(t, "a new replica", newReplica(t, srv, opts...))
		// The others take it at their next resync.
		forceResync(t, srv)
		for i, r := range rs[1:] {
			waitFor(t, "a resync", func() bool {
				st, _ := budgetStatus(t, r, "fleet")
				return st.Exhausted
			})
			refused(t, "replica "+strconv.Itoa(i+1), r)
		}
	})

	t.Run("a reset in one replica lifts the limit in all", func(t *testing.T) {
		if _, err := rs[1].ResetBudget(context.Background(), "fleet", rs[1].scope(t, p, key)); err != nil {
			t.Fatal(err)
		}
		if n := fleetTotal(); n != 0 {
			t.Fatalf("fleet total after the reset: %d micro-dollars", n)
		}
		forceResync(t, srv)
		for i, r := range rs {
			waitFor(t, "a resync", func() bool {
				st, ok := budgetStatus(t, r, "fleet")
				return !ok || !st.Exhausted
			})
			if resp, _ := r.call(t, p, key); resp.StatusCode != http.StatusOK {
				t.Errorf("replica %d after the reset: %s", i, resp.Status)
			}
		}
		// The reset forgot the thresholds: the fleet crossing half the
		// limit again fires it again, once, though the replica that
		// crosses it had claimed it before the reset.
		for range 2 {
			rs[2].call(t, p, key)
		}
		waitFor(t, "the spend reaches Redis", func() bool { return fleetTotal() == 5e6 })
		waitFor(t, "the threshold fires again", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(fired) >= 4
		})
		mu.Lock()
		defer mu.Unlock()
		if len(fired) != 4 || fired[3].Threshold != 0.5 {
			t.Errorf("OnBudget after the reset: %+v, want threshold 0.5 once", fired[3:])
		}
	})
}

// scope returns the latch scope (the default budget key) of key's requests
// to p.
func (r *replica) scope(t testing.TB, p *fakeProvider, key string) string {
	req, err := http.NewRequest(http.MethodPost, p.URL+"/v1/chat/completions", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	return quotabreaker.DefaultScope(req)
}

// handle runs one request through h and returns the status and body.
func handle(h http.Handler, method, form string) (int, string) {
	req := httptest.NewRequest(method, "/quotabreaker", strings.NewReader(form))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func openScopes(t testing.TB, r *replica) []string {
	t.Helper()
	trips, err := r.OpenLatches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tr := range trips {
		out = append(out, tr.Scope)
	}
	return out
}

// The operator's handler with a store: what it lists and resets is the
// fleet's.
func TestFleetHandler(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	a, b := newReplica(t, srv), newReplica(t, srv)
	h := b.Handler()

	t.Run("no latch: an empty list", func(t *testing.T) {
		code, body := handle(h, http.MethodGet, "")
		var st struct {
			Store   string            `json:"store"`
			Latches []json.RawMessage `json:"latches"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
			t.Fatalf("GET: %d %q", code, body)
		}
		if st.Latches == nil || len(st.Latches) != 0 || st.Store != "up" {
			t.Errorf("GET: %s, want store up and latches []", body)
		}
	})

	t.Run("unknown scope: 404", func(t *testing.T) {
		if code, body := handle(h, http.MethodPost, "scope="+url.QueryEscape("api.openai.com/key:000000000000")); code != http.StatusNotFound {
			t.Errorf("POST an unknown scope: %d %q, want 404", code, body)
		}
	})

	// Trips in a, for two keys; b lists both.
	p.quota.Store(true)
	a.call(t, p, "sk-one")
	a.call(t, p, "sk-two")
	one, two := a.scope(t, p, "sk-one"), a.scope(t, p, "sk-two")
	waitFor(t, "b sees a's trips", func() bool { return len(openScopes(t, b)) == 2 })

	t.Run("reset of one scope closes it in every replica", func(t *testing.T) {
		code, body := handle(h, http.MethodPost, "scope="+url.QueryEscape(one))
		if code != http.StatusOK || strings.Contains(body, one) || !strings.Contains(body, two) {
			t.Fatalf("POST scope=%s: %d %s, want 200 listing only %s", one, code, body, two)
		}
		waitFor(t, "a closes it", func() bool { s := openScopes(t, a); return len(s) == 1 && s[0] == two })
		if s := openScopes(t, b); len(s) != 1 || s[0] != two {
			t.Errorf("b lists %v after the reset, want [%s]", s, two)
		}
	})

	a.call(t, p, "sk-one") // opens it again
	waitFor(t, "b sees a's trip", func() bool { return len(openScopes(t, b)) == 2 })

	t.Run("reset of all only when explicit", func(t *testing.T) {
		for _, form := range []string{"", "al=true", "scpoe=" + url.QueryEscape(one), "all=", "all=false", "all=yes", "all=true&scope=" + url.QueryEscape(one)} {
			if code, body := handle(h, http.MethodPost, form); code != http.StatusBadRequest {
				t.Errorf("POST %q: %d %q, want 400", form, code, body)
			}
		}
		if s := openScopes(t, b); len(s) != 2 {
			t.Fatalf("b lists %v after refused POSTs, want both latches", s)
		}
		code, body := handle(h, http.MethodPost, "all=true")
		if code != http.StatusOK || !strings.Contains(body, `"latches": []`) {
			t.Fatalf("POST all=true: %d %s", code, body)
		}
		waitFor(t, "a closes them", func() bool { return len(openScopes(t, a)) == 0 })
		p.quota.Store(false)
		for _, k := range []string{"sk-one", "sk-two"} {
			if resp, _ := a.call(t, p, k); resp.StatusCode != http.StatusOK {
				t.Errorf("a, %s, after the reset: %s", k, resp.Status)
			}
		}
	})
}

// A Redis that hangs (SIGSTOP: connections accepted, nothing answered)
// never holds a request: requests are decided from memory. The store's
// timeout is a minute, so a request that waited on Redis even once would
// take a minute; the limit below is far under that, and far over what the
// requests take.
func TestFleetRequestsDoNotWaitOnRedis(t *testing.T) {
	t.Parallel() // its own Redis, paused for seconds
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	s, err := redisstore.New(srv.Client(), redisstore.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr := quotabreaker.New(base,
		quotabreaker.WithStore(s),
		quotabreaker.WithStoreTimeout(time.Minute),
		quotabreaker.WithPrices(dollarAnswer),
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 1000}),
	)
	r := &replica{Transport: tr, hc: &http.Client{Transport: tr}}
	r.call(t, p, "sk-warm")

	srv.Pause()
	defer srv.Resume()
	done := make(chan [3]int, 1)
	go func() {
		var n [3]int // answered, tripped, refused
		count := func(i int, want func(*http.Response) bool) {
			if resp, _, err := r.do(p, "sk-hung"); err == nil && want(resp) {
				n[i]++
			}
		}
		for range 20 {
			count(0, func(resp *http.Response) bool { return resp.StatusCode == http.StatusOK })
		}
		p.quota.Store(true)
		count(1, func(resp *http.Response) bool {
			return resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get(quotabreaker.HeaderShortCircuit) == ""
		})
		for range 20 {
			count(2, func(resp *http.Response) bool { return resp.Header.Get(quotabreaker.HeaderShortCircuit) == "true" })
		}
		done <- n
	}()
	select {
	case n := <-done:
		if n != [3]int{20, 1, 20} {
			t.Errorf("answered, tripped, refused = %v, want [20 1 20]", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("requests waited on a hung Redis")
	}

	// Close interrupts the store calls in flight, and stops its goroutines
	// (TestMain checks that none is left).
	closed := make(chan struct{})
	go func() {
		_ = tr.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited on a hung Redis")
	}
}

// restartWithoutData restarts srv with none of its data, as a Redis without
// persistence comes back.
func restartWithoutData(t testing.TB, srv *redistest.Server) {
	t.Helper()
	srv.Kill()
	for _, f := range []string{"appendonlydir", "dump.rdb"} {
		if err := os.RemoveAll(filepath.Join(srv.Dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	srv.Restart()
}

// A Redis that restarts without its data (no persistence) does not close
// the fleet's latches: a latch closes only by a reset. The replicas write
// their open latches back, with no second page and no OnReset.
func TestFleetStoreLosesItsData(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	var pages, resets atomic.Int64
	hooks := []quotabreaker.Option{
		quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { pages.Add(1) }),
		quotabreaker.OnReset(func(context.Context, quotabreaker.Trip) { resets.Add(1) }),
	}
	a, b := newReplica(t, srv, hooks...), newReplica(t, srv, hooks...)
	store := newStore(t, srv, redisstore.Options{})
	const key = "sk-lost"
	scope := a.scope(t, p, key)

	p.quota.Store(true)
	a.call(t, p, key)
	waitFor(t, "b opens", func() bool { return len(openScopes(t, b)) == 1 })
	waitFor(t, "a pages", func() bool { return pages.Load() == 1 })

	restartWithoutData(t, srv)
	waitFor(t, "the latch is written back", func() bool {
		snap, err := store.Snapshot(context.Background())
		return err == nil && len(snap.Open) == 1 && snap.Open[0].Scope == scope
	})
	for name, r := range map[string]*replica{"a": a, "b": b} {
		if s := openScopes(t, r); len(s) != 1 || s[0] != scope {
			t.Errorf("%s lists %v after Redis lost its data, want [%s]", name, s, scope)
		}
	}
	if pages.Load() != 1 || resets.Load() != 0 {
		t.Errorf("pages, resets = %d, %d; want 1, 0", pages.Load(), resets.Load())
	}

	// A reset still closes it everywhere.
	if ok, err := b.Reset(context.Background(), scope); !ok || err != nil {
		t.Fatalf("Reset = %v, %v", ok, err)
	}
	waitFor(t, "a closes", func() bool { return len(openScopes(t, a)) == 0 })
	waitFor(t, "OnReset where it paged", func() bool { return resets.Load() == 1 })
}

// Many goroutines charge one shared budget key through one replica while
// its loop writes the spend to Redis; once Shutdown has written what was
// queued, Redis holds every answer once.
func TestFleetSpendConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	p := newFakeProvider(t)
	r := newReplica(t, srv, quotabreaker.WithPrices(dollarAnswer),
		quotabreaker.WithBudget(quotabreaker.Budget{Name: "b", Limit: 1e6}))
	const goroutines, each = 8, 40
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if resp, _, err := r.do(p, "sk-many"); err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("%v %v", resp, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spends, err := newStore(t, srv, redisstore.Options{}).Spend(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(spends) != 1 || spends[0].Micros != goroutines*each*1e6 {
		t.Errorf("spend in Redis %+v, want $%d once", spends, goroutines*each)
	}
}
