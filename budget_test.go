package quotabreaker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
)

// The budget tests answer every request with a real Chat Completions answer
// (testdata/streams/openai-chat-reasoning.json): o3-mini, 31 input tokens
// and 467 output tokens, 448 of them reasoning. At $1.10 in and $4.40 out
// per million (prices/snapshot.go) one answer costs
//
//	31 × 1.10 + 467 × 4.40 = 2088.9 µ$, rounded up to 2089 µ$.
const answerMicros = 2089

const budgetURL = "https://api.openai.com/v1/chat/completions"

// clock is an injected clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// budgetHooks records what OnBudget received.
type budgetHooks struct {
	mu    sync.Mutex
	calls []BudgetStatus
}

func (h *budgetHooks) hook(_ context.Context, st BudgetStatus) {
	h.mu.Lock()
	h.calls = append(h.calls, st)
	h.mu.Unlock()
}

func (h *budgetHooks) all() []BudgetStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// pricedProvider answers every request with the real o3-mini answer.
func pricedProvider(tb testing.TB) *provider {
	body, h := corpus.ReadStream(tb, "openai-chat-reasoning.json")
	a := corpusAnswer{200, h, string(body)}
	return newProvider(func(*http.Request) corpusAnswer { return a })
}

// budgetLimit is 20 answers less one micro-dollar, so that no threshold
// falls on an exact multiple of an answer's cost, where rounding would
// decide: 50% is crossed by the 10th answer (10 × 2089 = 20890 ≥ 20889.5),
// 80% by the 16th (33424 ≥ 33423.2), 95% by the 19th (39691 ≥ 39690.05)
// and the limit by the 20th (41780 ≥ 41779).
const budgetLimit = (20*answerMicros - 1) / 1e6

func budgetStatuses(tb testing.TB, tr *Transport) []BudgetStatus {
	tb.Helper()
	st, err := tr.Budgets(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// A scripted sequence crosses 50%, 80% and 95% and then the hard limit,
// each hook firing once at the answer that crossed it; the next request is
// refused without reaching the provider, answered 402 in a shape the SDKs
// raise and do not retry.
func TestBudgetThresholdsThenHardLimit(t *testing.T) {
	clk, hooks, p := newClock(), &budgetHooks{}, pricedProvider(t)
	rec := newRecording(t)
	tr := New(p, append(rec.options(), WithClock(clk.Now), OnBudget(hooks.hook),
		WithBudget(Budget{Name: "monthly", Limit: budgetLimit, HardLimit: true}))...)

	wantFired := map[int]float64{10: 0.5, 16: 0.8, 19: 0.95, 20: 1}
	for n := 1; n <= 20; n++ {
		before := len(hooks.all())
		resp, _ := send(t, tr, budgetURL, "sk-budget")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %s, want 200 below the limit", n, resp.Status)
		}
		calls := hooks.all()[before:]
		th, fires := wantFired[n]
		if len(calls) != map[bool]int{true: 1, false: 0}[fires] {
			t.Fatalf("request %d: OnBudget fired %d times (%+v), want %v", n, len(calls), calls, fires)
		}
		if fires {
			c := calls[0]
			if c.Threshold != th || c.Budget != "monthly" || c.Spent != float64(n*answerMicros)/1e6 || c.Limit != budgetLimit ||
				c.Exhausted != (th == 1) || !c.HardLimit || c.Unpriced != 0 {
				t.Errorf("request %d: OnBudget(%+v), want threshold %v, spent %v of %v", n, c, th, float64(n*answerMicros)/1e6, budgetLimit)
			}
			if c.PeriodStart != time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) || c.PeriodEnd != time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC) {
				t.Errorf("period %v to %v, want March 2026 in UTC", c.PeriodStart, c.PeriodEnd)
			}
		}
	}

	for i := range 3 {
		resp, body := send(t, tr, budgetURL, "sk-budget")
		if resp.StatusCode != http.StatusPaymentRequired || resp.Status != "402 Budget Exhausted" ||
			resp.Header.Get(HeaderShouldRetry) != "false" || resp.Header.Get(HeaderShortCircuit) != "true" ||
			resp.Header.Get(HeaderBudget) != "monthly" {
			t.Errorf("refused request %d: %s %v, want 402 Budget Exhausted, not to retry, marked", i, resp.Status, resp.Header)
		}
		var e struct {
			Error struct{ Code, Type string }
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != "budget_exhausted" {
			t.Errorf("refused body %s, want an OpenAI-shaped budget_exhausted error", body)
		}
	}
	if got := p.hits.Load(); got != 20 {
		t.Errorf("provider hits = %d, want 20: a refused request was sent", got)
	}
	if got := len(hooks.all()); got != 4 {
		t.Errorf("OnBudget fired %d times in all, want 4", got)
	}

	st := budgetStatuses(t, tr)
	if len(st) != 1 || st[0].Spent != 20*answerMicros/1e6 || !st[0].Exhausted || st[0].Threshold != 1 {
		t.Fatalf("Budgets() = %+v, want one exhausted key that spent %v", st, 20*answerMicros/1e6)
	}
	// The key is the latch scope by default.
	if scope := DefaultScope(chatRequest(t, budgetURL, "sk-budget")); st[0].Key != scope {
		t.Errorf("budget key %q, want the scope %q", st[0].Key, scope)
	}
	// Refusals are spans of their own, marked as the budget's.
	spans := rec.ours()
	last := attrs(spans[len(spans)-1])
	if last["quotabreaker.cause"].AsString() != "budget" || last["quotabreaker.budget"].AsString() != "monthly" ||
		!last["quotabreaker.short_circuit"].AsBool() || last["http.response.status_code"].AsInt64() != 402 {
		t.Errorf("refused span attributes %v", last)
	}
	// Latches are for the provider's answers: none opened.
	if got := openLatches(t, tr); len(got) != 0 {
		t.Errorf("OpenLatches() = %+v, want none: a budget is not a latch", got)
	}
}

// WithShortCircuitError makes a budget's refusal an *OpenError whose Trip
// says the budget refused it.
func TestBudgetRefusalAsError(t *testing.T) {
	p := pricedProvider(t)
	tr := New(p, WithShortCircuitError(true), WithBudget(Budget{Name: "tiny", Limit: 0.000001, HardLimit: true}))
	send(t, tr, budgetURL, "sk-tiny")
	_, err := tr.RoundTrip(chatRequest(t, budgetURL, "sk-tiny"))
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) || oe.Trip.Cause != CauseBudget || oe.Trip.Code != "budget_exhausted" {
		t.Fatalf("err = %v, want an *OpenError with cause budget", err)
	}
	if got := p.hits.Load(); got != 1 {
		t.Errorf("provider hits = %d, want 1", got)
	}
}

// The refusal lifts at the next period (the injected clock moves to
// April), on ResetBudget, and when SetBudgetLimit raises the limit; each
// request that is let through again reaches the provider.
func TestBudgetRefusalLifts(t *testing.T) {
	exhaust := func(t *testing.T) (*Transport, *provider, *clock, *budgetHooks) {
		clk, hooks, p := newClock(), &budgetHooks{}, pricedProvider(t)
		tr := New(p, WithClock(clk.Now), OnBudget(hooks.hook),
			WithBudget(Budget{Name: "monthly", Limit: budgetLimit, HardLimit: true}))
		for range 20 {
			send(t, tr, budgetURL, "sk-lift")
		}
		if resp, _ := send(t, tr, budgetURL, "sk-lift"); resp.StatusCode != http.StatusPaymentRequired {
			t.Fatalf("after 20 answers: %s, want 402", resp.Status)
		}
		return tr, p, clk, hooks
	}
	sentAgain := func(t *testing.T, tr *Transport, p *provider) {
		t.Helper()
		before := p.hits.Load()
		if resp, _ := send(t, tr, budgetURL, "sk-lift"); resp.StatusCode != 200 {
			t.Errorf("%s, want 200 once the refusal lifted", resp.Status)
		}
		if got := p.hits.Load(); got != before+1 {
			t.Errorf("provider hits %d -> %d, want one more", before, got)
		}
	}

	t.Run("next period", func(t *testing.T) {
		tr, p, clk, hooks := exhaust(t)
		clk.set(time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC))
		if resp, _ := send(t, tr, budgetURL, "sk-lift"); resp.StatusCode != http.StatusPaymentRequired {
			t.Errorf("the last second of March: %s, want 402", resp.Status)
		}
		clk.set(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
		sentAgain(t, tr, p)
		st := budgetStatuses(t, tr)
		if len(st) != 1 || st[0].Spent != answerMicros/1e6 || st[0].Exhausted || st[0].PeriodStart.Month() != time.April {
			t.Errorf("Budgets() = %+v, want April's spend of one answer", st)
		}
		// Thresholds fire again in the new period.
		for range 9 {
			send(t, tr, budgetURL, "sk-lift")
		}
		calls := hooks.all()
		if last := calls[len(calls)-1]; len(calls) != 5 || last.Threshold != 0.5 || last.PeriodStart.Month() != time.April {
			t.Errorf("OnBudget calls %+v, want April's 50%% as the fifth", calls)
		}
	})
	t.Run("ResetBudget", func(t *testing.T) {
		tr, p, _, _ := exhaust(t)
		key := budgetStatuses(t, tr)[0].Key
		if ok, err := tr.ResetBudget(context.Background(), "nope", key); ok || !errors.Is(err, ErrUnknownBudget) {
			t.Errorf("ResetBudget of an unknown budget = %v, %v; want ErrUnknownBudget", ok, err)
		}
		if ok, err := tr.ResetBudget(context.Background(), "monthly", "someone-else"); ok || err != nil {
			t.Errorf("ResetBudget of a key with no spend = %v, %v; want false, nil", ok, err)
		}
		if resp, _ := send(t, tr, budgetURL, "sk-lift"); resp.StatusCode != http.StatusPaymentRequired {
			t.Errorf("after resetting another key: %s, want 402", resp.Status)
		}
		if ok, err := tr.ResetBudget(context.Background(), "monthly", key); !ok || err != nil {
			t.Fatalf("ResetBudget = %v, %v; want true, nil", ok, err)
		}
		sentAgain(t, tr, p)
	})
	t.Run("SetBudgetLimit", func(t *testing.T) {
		tr, p, _, hooks := exhaust(t)
		if err := tr.SetBudgetLimit("nope", 1); !errors.Is(err, ErrUnknownBudget) {
			t.Errorf("SetBudgetLimit of an unknown budget: %v, want ErrUnknownBudget", err)
		}
		for _, bad := range []float64{0, -1, 1e13} {
			if err := tr.SetBudgetLimit("monthly", bad); err == nil {
				t.Errorf("SetBudgetLimit(%v) accepted", bad)
			}
		}
		if resp, _ := send(t, tr, budgetURL, "sk-lift"); resp.StatusCode != http.StatusPaymentRequired {
			t.Errorf("after refused changes: %s, want 402", resp.Status)
		}
		if err := tr.SetBudgetLimit("monthly", 2*budgetLimit); err != nil {
			t.Fatal(err)
		}
		sentAgain(t, tr, p)
		if got := len(hooks.all()); got != 4 {
			t.Errorf("OnBudget fired %d times, want still 4: thresholds already fired stay fired", got)
		}
		if st := budgetStatuses(t, tr); st[0].Limit != 2*budgetLimit || st[0].Exhausted {
			t.Errorf("Budgets() = %+v, want the raised limit, not exhausted", st)
		}
	})
}

// Budgets lists [] (never null) when no budget has spent, or none exists.
func TestBudgetsEmpty(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []Option
	}{
		{"no budget", nil},
		{"a budget with no spend yet", []Option{WithBudget(Budget{Name: "b", Limit: 1})}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := budgetStatuses(t, New(pricedProvider(t), tt.opts...))
			b, _ := json.Marshal(st)
			if st == nil || string(b) != "[]" {
				t.Errorf("Budgets() = %#v, JSON %s; want []", st, b)
			}
		})
	}
	var zero Transport
	if st, err := zero.Budgets(context.Background()); err == nil || st == nil {
		t.Errorf("zero Transport: Budgets() = %#v, %v; want [] and an error", st, err)
	}
}

// In observe mode a hard limit refuses nothing, but the hooks fire as in
// enforce mode, the limit included, and Budgets reports the key exhausted.
func TestBudgetObserveMode(t *testing.T) {
	hooks, p := &budgetHooks{}, pricedProvider(t)
	tr := New(p, WithMode(ModeObserve), OnBudget(hooks.hook),
		WithBudget(Budget{Name: "monthly", Limit: budgetLimit, HardLimit: true}))
	for n := 1; n <= 25; n++ {
		if resp, _ := send(t, tr, budgetURL, "sk-observe"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %s, want 200 in observe mode", n, resp.Status)
		}
	}
	if got := p.hits.Load(); got != 25 {
		t.Errorf("provider hits = %d, want 25", got)
	}
	var ths []float64
	for _, c := range hooks.all() {
		ths = append(ths, c.Threshold)
	}
	if !slices.Equal(ths, []float64{0.5, 0.8, 0.95, 1}) {
		t.Errorf("OnBudget thresholds %v, want 0.5 0.8 0.95 1", ths)
	}
	if st := budgetStatuses(t, tr); len(st) != 1 || !st[0].Exhausted || st[0].Spent != 25*answerMicros/1e6 {
		t.Errorf("Budgets() = %+v, want one exhausted key that spent 25 answers", st)
	}
	// Switched to enforce, the spent key is refused.
	tr.SetMode(ModeEnforce)
	if resp, _ := send(t, tr, budgetURL, "sk-observe"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("after SetMode(ModeEnforce): %s, want 402", resp.Status)
	}
}

// Under 64 concurrent callers of one key, each sending until refused, every
// threshold fires exactly once, and the spend passes the limit by at most
// what the requests in flight when it was crossed cost: each caller has at
// most one request in flight, so at most 64 answers (the crossing one
// included) are counted after the spend was last below the limit, and
//
//	spend < limit + 64 × 2089 µ$.
func TestBudgetOvershootBounded(t *testing.T) {
	const callers = 64
	const limitAnswers = 100
	limit := float64(limitAnswers*answerMicros) / 1e6
	hooks, p := &budgetHooks{}, pricedProvider(t)
	tr := New(p, OnBudget(hooks.hook), WithBudget(Budget{Name: "shared", Limit: limit, HardLimit: true}))

	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				resp, _, err := trySend(tr, chatRequest(t, budgetURL, "sk-crowd"))
				if err != nil {
					t.Error(err)
					return
				}
				if resp.StatusCode == http.StatusPaymentRequired {
					refused.Add(1)
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()

	st := budgetStatuses(t, tr)
	if len(st) != 1 {
		t.Fatalf("Budgets() = %+v, want one key", st)
	}
	spentMicros := int64(st[0].Spent*1e6 + 0.5)
	bound := int64(limitAnswers*answerMicros) + callers*answerMicros
	if spentMicros < limitAnswers*answerMicros || spentMicros >= bound {
		t.Errorf("spent %d µ$, want at least the limit %d and below %d (limit + 64 answers in flight)", spentMicros, limitAnswers*answerMicros, bound)
	}
	if got := ok.Load(); spentMicros != got*answerMicros || p.hits.Load() != got {
		t.Errorf("%d answers reached the callers, provider hits %d, spend %d µ$: want them to agree", got, p.hits.Load(), spentMicros)
	}
	if refused.Load() != callers {
		t.Errorf("%d callers refused, want %d", refused.Load(), callers)
	}
	var ths []float64
	for _, c := range hooks.all() {
		ths = append(ths, c.Threshold)
	}
	slices.Sort(ths)
	if !slices.Equal(ths, []float64{0.5, 0.8, 0.95, 1}) {
		t.Errorf("OnBudget thresholds %v, want each of 0.5 0.8 0.95 1 once", ths)
	}
}

// A budget keyed by a function of the request counts each key apart, and an
// answer whose model has no price counts as unpriced, never as zero.
func TestBudgetKeyAndUnpriced(t *testing.T) {
	body, h := corpus.ReadStream(t, "openai-chat-cached.json")
	// gpt-5.6-sol has a price since the genai-prices snapshot: renamed to a model none has
	unpriced := corpusAnswer{200, h, strings.Replace(string(body), `"gpt-5.6-sol"`, `"my-own-model"`, 1)}
	priced, _ := corpus.ReadStream(t, "openai-chat-reasoning.json")
	p := newProvider(func(r *http.Request) corpusAnswer {
		if strings.HasSuffix(r.Header.Get("Authorization"), "unpriced") {
			return unpriced
		}
		return corpusAnswer{200, h, string(priced)}
	})
	tr := New(p, WithBudget(Budget{Name: "team", Limit: 1, Key: func(r *http.Request) string { return r.Header.Get("X-Team") }}))
	for _, c := range []struct{ team, key string }{{"red", "sk-a"}, {"red", "sk-b"}, {"blue", "sk-unpriced"}, {"", "sk-c"}} {
		req := chatRequest(t, budgetURL, c.key)
		if c.team != "" {
			req.Header.Set("X-Team", c.team)
		}
		sendReq(t, tr, req)
	}
	st := budgetStatuses(t, tr)
	got := map[string]BudgetStatus{}
	for _, s := range st {
		got[s.Key] = s
	}
	scope := DefaultScope(chatRequest(t, budgetURL, "sk-c"))
	if len(st) != 3 || got["red"].Spent != 2*answerMicros/1e6 || got["blue"].Spent != 0 || got["blue"].Unpriced != 1 ||
		got[scope].Spent != answerMicros/1e6 {
		t.Errorf("Budgets() = %+v; want red 2 answers, blue unpriced once, and an empty key counted under its scope", st)
	}
}

// TestSplitSpendKey reads back the keys the Transport writes, for budget
// names and keys holding the separators, and refuses keys in other forms.
func TestSplitSpendKey(t *testing.T) {
	for _, c := range []struct{ budget, key string }{
		{"team", "alice"}, {"a", "b/c"}, {"a/b", "c"}, {"", "k"}, {"b", ""}, {"1:x/", "y:2/"}, {"ü", "ключ"},
	} {
		sk := spendKey{budget: &budget{Budget: Budget{Name: c.budget}}, key: c.key}
		b, k, ok := SplitSpendKey(sk.storeKey())
		if !ok || b != c.budget || k != c.key {
			t.Errorf("SplitSpendKey(%q) = %q, %q, %v; want %q, %q", sk.storeKey(), b, k, ok, c.budget, c.key)
		}
	}
	for _, bad := range []string{"", "team/alice", "5:ab/c", "x:a/b", "-1:/a", "01:a/b", "+1:a/b", "1:ab"} {
		if b, k, ok := SplitSpendKey(bad); ok {
			t.Errorf("SplitSpendKey(%q) = %q, %q, true; want not ok", bad, b, k)
		}
	}
}

func FuzzSplitSpendKey(f *testing.F) {
	f.Add("team", "alice")
	f.Add("a/b", "c:d")
	f.Fuzz(func(t *testing.T, name, key string) {
		sk := spendKey{budget: &budget{Budget: Budget{Name: name}}, key: key}
		b, k, ok := SplitSpendKey(sk.storeKey())
		if !ok || b != name || k != key {
			t.Fatalf("SplitSpendKey(%q) = %q, %q, %v", sk.storeKey(), b, k, ok)
		}
		SplitSpendKey(name + key) // any input: no panic
	})
}
