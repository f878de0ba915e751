package quotabreaker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/balance"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
)

// balanceKey is the key the balance tests send; finding it anywhere in
// what the Transport records is a leak.
const balanceKey = "sk-BALANCE-7d1f0c3a9e52-never-recorded"

// testClock is a settable clock for the Transport and the Watcher.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// deepseekServer answers POST /chat/completions with a priced answer that
// states its cost as OpenRouter's usage.cost does, and GET /user/balance in
// DeepSeek's documented shape
// (https://api-docs.deepseek.com/api/get-user-balance), in USD, with the
// balance the test sets.
func deepseekServer(t *testing.T, balanceUSD *string, mu *sync.Mutex) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+balanceKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/user/balance":
			mu.Lock()
			b := *balanceUSD
			mu.Unlock()
			fmt.Fprintf(w, `{"is_available":true,"balance_infos":[{"currency":"USD","total_balance":%q,"granted_balance":"0.00","topped_up_balance":%q}]}`, b, b)
		case "/chat/completions":
			io.WriteString(w, `{"id":"c1","object":"chat.completion","model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"cost":0.5}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestBalancesThroughTransport: the Transport tells the Watcher what each
// answer cost (the provider's own figure), the Watcher forecasts from it
// and pages, and the gauges and the Handler show the balance and the
// forecast, with no key anywhere.
func TestBalancesThroughTransport(t *testing.T) {
	// Last of the cleanups: after the server and its client's connections
	// are closed.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	var mu sync.Mutex
	bal := "10.00"
	srv := deepseekServer(t, &bal, &mu)
	clk := &testClock{t: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	var pages []balance.Alert
	w := balance.NewWatcher(balance.Config{
		Probes: []balance.Probe{balance.DeepSeek{Key: func() (string, error) { return balanceKey, nil }, BaseURL: srv.URL}},
		Client: srv.Client(), // a plain client: a probe is not spend
		Levels: map[string][]balance.Amount{"USD": {20_000000}},
		OnRunOut: func(_ context.Context, a balance.Alert) {
			mu.Lock()
			pages = append(pages, a)
			mu.Unlock()
		},
		Now: clk.Now,
	})
	rec := newRecording(t)
	var usages []Usage
	tr := New(srv.Client().Transport, append(rec.options(), WithBalances(w), WithClock(clk.Now),
		OnUsage(func(_ context.Context, u Usage) { usages = append(usages, u) }))...)
	client := &http.Client{Transport: tr}

	// $0.50 every 6 minutes for an hour: $5 an hour.
	for range 10 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/chat/completions", strings.NewReader(`{"model":"deepseek-chat","messages":[]}`))
		req.Header.Set("Authorization", "Bearer "+balanceKey)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		clk.Add(6 * time.Minute)
	}
	if u := usages[0]; !u.Priced || u.Cost != 0.5 || u.CostSource != "provider" {
		t.Errorf("usage = %+v, want the provider's $0.50", u)
	}
	for _, s := range rec.ours() {
		if a := attrs(s); a["quotabreaker.cost.source"].AsString() != "provider" || a["quotabreaker.cost.usd"].AsFloat64() != 0.5 {
			t.Errorf("span cost attributes: %v %v", a["quotabreaker.cost.source"], a["quotabreaker.cost.usd"])
		}
	}

	w.Start(context.Background())
	defer w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.Statuses()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := w.Statuses()
	if len(st) != 1 || !st[0].HasForecast || st[0].Source != "spend" || math.Abs(st[0].Forecast.HoursLeft-2) > 1e-9 {
		t.Fatalf("Statuses = %+v, want $10 at $5 an hour: 2 hours", st)
	}
	mu.Lock()
	if len(pages) != 1 || !strings.Contains(pages[0].Message, "runs out in about 2 hours") {
		t.Errorf("pages = %+v", pages)
	}
	mu.Unlock()

	// The gauges.
	got := map[string]float64{}
	var attrsSeen []string
	for _, sm := range rec.metrics(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if !strings.HasPrefix(m.Name, "quotabreaker.balance") {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					got[m.Name] = p.Value
					for _, kv := range p.Attributes.ToSlice() {
						attrsSeen = append(attrsSeen, string(kv.Key)+"="+kv.Value.String())
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] = float64(p.Value)
				}
			default:
				t.Errorf("%s: %T, want a gauge", m.Name, m.Data)
			}
		}
	}
	want := map[string]float64{"quotabreaker.balance": 10, "quotabreaker.balance.hours_left": 2, "quotabreaker.balance.below_threshold": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gauges = %v, want %v", got, want)
	}
	for _, a := range []string{"gen_ai.provider.name=deepseek", "quotabreaker.currency=USD", "quotabreaker.scope=" + st[0].Scope} {
		if !strings.Contains(strings.Join(attrsSeen, " "), a) {
			t.Errorf("gauge attributes %v lack %s", attrsSeen, a)
		}
	}

	// The Handler.
	hw := httptest.NewRecorder()
	tr.Handler().ServeHTTP(hw, httptest.NewRequest(http.MethodGet, "/", nil))
	var view struct {
		Balances []struct {
			Provider  string   `json:"provider"`
			Available string   `json:"available"`
			HoursLeft *float64 `json:"hours_left"`
			Below     []string `json:"below"`
		} `json:"balances"`
	}
	if err := json.Unmarshal(hw.Body.Bytes(), &view); err != nil {
		t.Fatal(err)
	}
	if len(view.Balances) != 1 || view.Balances[0].Available != "10.00" || view.Balances[0].HoursLeft == nil ||
		*view.Balances[0].HoursLeft != 2 || fmt.Sprint(view.Balances[0].Below) != "[20.00]" {
		t.Errorf("handler: %s", hw.Body.String())
	}

	// No key in a span, a metric, the handler or a page.
	everything := hw.Body.String() + fmt.Sprintf("%+v %+v", rec.metrics(t), pages)
	for _, s := range rec.spans.Ended() {
		everything += fmt.Sprintf("%v %v", s.Attributes(), s.Events())
	}
	if strings.Contains(everything, balanceKey) || strings.Contains(everything, "BALANCE-7d1f") {
		t.Error("the key was recorded")
	}
}

// TestCostSourceTable: an answer that states no cost is priced by the
// table, and its span says so.
func TestCostSourceTable(t *testing.T) {
	rec := newRecording(t)
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Request: r,
			Body: io.NopCloser(strings.NewReader(`{"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":100}}`))}, nil
	})
	var got Usage
	tr := New(base, append(rec.options(), OnUsage(func(_ context.Context, u Usage) { got = u }))...)
	req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini"}`))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !got.Priced || got.CostSource != "table" {
		t.Errorf("usage = %+v, want priced by the table", got)
	}
	if a := attrs(rec.ours()[0]); a["quotabreaker.cost.source"].AsString() != "table" {
		t.Errorf("quotabreaker.cost.source = %v", a["quotabreaker.cost.source"])
	}
}

// TestCostDrift: what the Transport counted for OpenAI on a day, against
// what OpenAI's cost report (its documented example answer: $0.06 on
// 2024-11-01) billed, as the quotabreaker.cost.drift gauge.
func TestCostDrift(t *testing.T) {
	costs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/organization/costs" || r.Header.Get("Authorization") != "Bearer "+balanceKey {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"object":"page","data":[{"object":"bucket","start_time":1730419200,"end_time":1730505600,`+
			`"results":[{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},"line_item":null,"project_id":null}]}],`+
			`"has_more":false,"next_page":null}`)
	}))
	defer costs.Close()
	clk := &testClock{t: time.Date(2024, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := balance.NewReconciler(balance.ReconcileConfig{
		Readers: []balance.CostReader{balance.OpenAICosts{Key: func() (string, error) { return balanceKey, nil }, BaseURL: costs.URL}},
		Client:  costs.Client(),
		Now:     clk.Now,
	})
	rec := newRecording(t)
	base := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Request: req,
			Body: io.NopCloser(strings.NewReader(`{"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":100}}`))}, nil
	})
	var got Usage
	tr := New(base, append(rec.options(), WithReconciler(r), WithClock(clk.Now), OnUsage(func(_ context.Context, u Usage) { got = u }))...)
	req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini"}`))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := r.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := got.Cost - 0.06
	found := false
	for _, sm := range rec.metrics(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "quotabreaker.cost.drift" {
				continue
			}
			for _, p := range m.Data.(metricdata.Gauge[float64]).DataPoints {
				day, _ := p.Attributes.Value("quotabreaker.day")
				prov, _ := p.Attributes.Value("gen_ai.provider.name")
				if day.AsString() != "2024-11-01" || prov.AsString() != "openai" || math.Abs(p.Value-want) > 1e-6 {
					t.Errorf("drift %v on %s for %s, want %v on 2024-11-01 for openai", p.Value, day.AsString(), prov.AsString(), want)
				}
				found = true
			}
		}
	}
	if !found || !got.Priced {
		t.Errorf("no drift recorded (priced %v)", got.Priced)
	}
}
