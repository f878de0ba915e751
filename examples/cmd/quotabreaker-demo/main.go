// Command quotabreaker-demo shows quotabreaker in front of a real openai-go
// client, in a few seconds and without network. It starts an embedded
// stand-in for OpenAI's API and tells a story, top to bottom: normal calls,
// a rate limit the SDK retries, the account's balance falling and its
// forecast paging a warning, the quota running out (the latch opens and
// on-call is paged once), calls refused without reaching the server, and a
// reset once billing is fixed, after which calls flow again. Under each call
// it prints, in plain words, the trace span the Transport recorded for each
// attempt.
//
//	go run ./examples/cmd/quotabreaker-demo
//	OPENAI_API_KEY=sk-... go run ./examples/cmd/quotabreaker-demo -real
//
// With -real it sends a few calls to the real API instead (they cost
// tokens), with the same client and Transport.
//
// Its last line starts with "In short: " and appears only when every step
// went as told; otherwise the demo says what went wrong and exits with
// status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/balance"
	"github.com/quotabreaker/quotabreaker/examples/internal/fakeopenai"
)

type config struct {
	Real   bool   // call the real API instead of the embedded fake
	Model  string // chat model
	APIKey string // for -real
}

func main() {
	cfg := config{APIKey: os.Getenv("OPENAI_API_KEY")}
	flag.BoolVar(&cfg.Real, "real", false, "call the real OpenAI API (needs OPENAI_API_KEY; costs tokens) instead of the embedded fake")
	flag.StringVar(&cfg.Model, "model", "gpt-4o-mini", "chat model to call")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "quotabreaker-demo:", err)
		os.Exit(1)
	}
}

// demoKey is the embedded server's API key.
const demoKey = "sk-proj-demo"

// rateLimitWait is what the embedded server's rate limit asks the SDK to wait.
const rateLimitWait = 250 * time.Millisecond

// refusedCalls is how many calls the story makes while the latch is open.
const refusedCalls = 5

// whenLayout prints a time with its date and zone.
const whenLayout = "2006-01-02 15:04:05 MST"

// facts are what happened in the embedded story, for its test.
type facts struct {
	HitsBefore    int64 // server hits when the latch had just opened
	HitsAfter     int64 // server hits after the calls the latch refused
	Refused       int   // calls answered by the open latch
	Pages         int   // OnTrip calls
	ShortCircuits int64 // the quotabreaker.short_circuits metric
	Resets        int   // latches closed by the reset
	FinalOK       bool  // the call after the reset succeeded
	Warnings      int   // OnRunOut calls before the quota answer
	TotalHits     int64 // server hits at the end
}

// demo is one run: the Transport, the telemetry it records into, and the
// client that goes through it.
type demo struct {
	w       io.Writer
	qb      *quotabreaker.Transport
	client  openai.Client
	model   string
	spans   *tracetest.SpanRecorder
	printed int // spans already printed
	metrics *sdkmetric.ManualReader
	calls   int

	mu    sync.Mutex
	pages []string // pages not yet printed
	paged int

	// The balance chapter: a Watcher of a DeepSeek balance that falls
	// with every request the stand-in receives, on a clock of the story's
	// that moves an hour per call.
	watcher *balance.Watcher
	clock   time.Time
	warned  int // OnRunOut calls
}

// run tells the story into w; with cfg.Real it calls the real API instead
// and returns zero facts.
func run(ctx context.Context, w io.Writer, cfg config) (facts, error) {
	if cfg.Model == "" {
		cfg.Model = "gpt-4o-mini"
	}
	if cfg.Real && cfg.APIKey == "" {
		return facts{}, errors.New("-real needs OPENAI_API_KEY")
	}

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	metrics := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()

	d := &demo{w: w, model: cfg.Model, spans: spans, metrics: metrics}
	var srv *fakeopenai.Server // the stand-in, set before the balance is read
	if !cfg.Real {
		bal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// DeepSeek's documented answer
			// (https://api-docs.deepseek.com/api/get-user-balance), in
			// dollars: $12 at first, $2 less for every request the
			// stand-in has received.
			left := balance.Amount(12_000000 - 2_000000*srv.Hits())
			fmt.Fprintf(w, `{"is_available":%t,"balance_infos":[{"currency":"USD","total_balance":%q,"granted_balance":"0.00","topped_up_balance":%q}]}`,
				left > 0, left, left)
		}))
		defer bal.Close()
		d.clock = time.Now()
		d.watcher = balance.NewWatcher(balance.Config{
			Probes: []balance.Probe{balance.DeepSeek{Key: func() (string, error) { return demoKey, nil }, BaseURL: bal.URL}},
			Client: bal.Client(), // not the Transport: reading a balance is not spend
			OnRunOut: func(_ context.Context, a balance.Alert) {
				d.mu.Lock()
				defer d.mu.Unlock()
				d.pages = append(d.pages, "   WARNING to on-call: "+a.Message+".\n")
				d.warned++
			},
			Now: func() time.Time { return d.clock },
		})
		defer d.watcher.Close()
	}
	d.qb = quotabreaker.New(base,
		quotabreaker.WithBalances(d.watcher),
		quotabreaker.WithTracerProvider(tp),
		quotabreaker.WithMeterProvider(mp),
		quotabreaker.OnTrip(d.page),
		quotabreaker.OnReset(func(_ context.Context, tr quotabreaker.Trip) {
			fmt.Fprintf(w, "   The latch for %s is closed (it was open since %s).\n", tr.Scope, tr.At.Format(whenLayout))
		}),
	)

	// openai-go with its default retry policy: up to 2 retries, with
	// backoff, honouring Retry-After. Only the HTTP client's transport
	// changes.
	opts := []option.RequestOption{option.WithHTTPClient(&http.Client{Transport: d.qb})}
	if cfg.Real {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
		d.client = openai.NewClient(opts...)
		return facts{}, d.real(ctx)
	}

	srv = fakeopenai.New()
	defer srv.Close()
	srv.SetRetryAfter(rateLimitWait)
	d.client = openai.NewClient(append(opts, option.WithBaseURL(srv.BaseURL()), option.WithAPIKey(demoKey))...)
	return d.story(ctx, srv)
}

// page is the OnTrip hook. It runs inside the call that tripped, before
// that call returns, so the demo queues the page and prints it after the
// call's line. A real hook hands it to a paging service on another
// goroutine in the same way.
func (d *demo) page(_ context.Context, tr quotabreaker.Trip) {
	msg := fmt.Sprintf("   PAGE to on-call: %s for %s (code %s, HTTP %d, request %s, at %s).\n"+
		"   Every call with these credentials now fails at once, until someone fixes billing and resets the latch.\n",
		strings.ReplaceAll(string(tr.Class), "_", " "), tr.Scope, tr.Code, tr.StatusCode, tr.RequestID, tr.At.Format(whenLayout))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pages = append(d.pages, msg)
	d.paged++
}

func (d *demo) story(ctx context.Context, srv *fakeopenai.Server) (facts, error) {
	w := d.w
	var f facts
	fmt.Fprintln(w, "quotabreaker demo")
	fmt.Fprintln(w, "openai-go, with its default retry policy (up to 2 retries), calls a stand-in for OpenAI's API")
	fmt.Fprintf(w, "at %s through quotabreaker.Transport. Under each call, one line per attempt\n", srv.BaseURL())
	fmt.Fprintln(w, "shows the trace span the Transport recorded for it.")

	fmt.Fprintln(w, "\n1. Normal traffic. The key's provider states its balance, as DeepSeek does: a balance.Watcher")
	fmt.Fprintln(w, "   reads it after each call (the story's clock moves an hour per call) and forecasts when it runs out.")
	if err := d.readBalance(ctx, false); err != nil {
		return f, err
	}
	for range 2 {
		if r := d.call(ctx, srv); !r.ok || r.hits != 1 {
			return f, fmt.Errorf("a normal call: ok=%v after %d requests, want ok after 1", r.ok, r.hits)
		}
		if err := d.readBalance(ctx, true); err != nil {
			return f, err
		}
	}

	fmt.Fprintf(w, "\n2. A rate limit. The server answers 429 rate_limit_exceeded and asks for a %d ms wait.\n", rateLimitWait.Milliseconds())
	fmt.Fprintln(w, "   quotabreaker passes it through untouched; the SDK waits and tries again.")
	srv.Script(demoKey, []fakeopenai.Answer{fakeopenai.RateLimited}, fakeopenai.OK)
	if r := d.call(ctx, srv); !r.ok || r.hits != 2 {
		return f, fmt.Errorf("the rate-limited call: ok=%v after %d requests, want ok after 2", r.ok, r.hits)
	}
	if err := d.readBalance(ctx, true); err != nil {
		return f, err
	}
	if d.warned != 1 {
		return f, fmt.Errorf("the forecast warned %d times before the quota answer, want once", d.warned)
	}
	f.Warnings = d.warned

	fmt.Fprintln(w, "\n3. The quota runs out. The server now answers 429 insufficient_quota: no wait will help.")
	fmt.Fprintln(w, "   quotabreaker marks that answer \"do not retry\" (X-Should-Retry: false), so the SDK gives up")
	fmt.Fprintln(w, "   at once, and opens the latch for these credentials.")
	srv.Script(demoKey, nil, fakeopenai.QuotaExhausted)
	if r := d.call(ctx, srv); r.ok || r.hits != 1 {
		return f, fmt.Errorf("the quota call: ok=%v after %d requests, want a failure after 1", r.ok, r.hits)
	}
	if d.paged != 1 {
		return f, fmt.Errorf("on-call was paged %d times, want once", d.paged)
	}

	fmt.Fprintln(w, "\n4. The latch is open: calls fail at once, without reaching the server.")
	f.HitsBefore = srv.Hits()
	fmt.Fprintf(w, "   The server has received %d requests so far.\n", f.HitsBefore)
	for range refusedCalls {
		if r := d.call(ctx, srv); r.ok || r.hits != 0 {
			return f, fmt.Errorf("a call while the latch was open: ok=%v after %d requests, want a failure after 0", r.ok, r.hits)
		}
		f.Refused++
	}
	f.HitsAfter = srv.Hits()
	fmt.Fprintf(w, "   The server has still received %d requests: none of these %d calls left the process.\n", f.HitsAfter, refusedCalls)
	fmt.Fprintln(w, "   (To watch before enforcing, start with quotabreaker.WithMode(quotabreaker.ModeObserve): it pages")
	fmt.Fprintln(w, "   and records the same way but refuses nothing; SetMode switches to enforcing at run time.)")

	fmt.Fprintln(w, "\n5. Billing is fixed. The operator lists the open latches and resets them.")
	srv.Script(demoKey, nil, fakeopenai.OK)
	open, err := d.qb.OpenLatches(ctx)
	if err != nil {
		return f, err
	}
	for _, tr := range open {
		fmt.Fprintf(w, "   Open: %s, %s (code %s) since %s.\n", tr.Scope, strings.ReplaceAll(string(tr.Class), "_", " "), tr.Code, tr.At.Format(whenLayout))
		ok, err := d.qb.Reset(ctx, tr.Scope)
		if err != nil {
			return f, err
		}
		if ok {
			f.Resets++
		}
	}
	d.printSpans()
	if f.Resets != 1 {
		return f, fmt.Errorf("%d latches reset, want 1", f.Resets)
	}

	fmt.Fprintln(w, "\n6. Calls flow again.")
	r := d.call(ctx, srv)
	f.FinalOK = r.ok
	if !r.ok || r.hits != 1 {
		return f, fmt.Errorf("the call after the reset: ok=%v after %d requests, want ok after 1", r.ok, r.hits)
	}

	f.Pages = d.paged
	f.TotalHits = srv.Hits()
	if f.ShortCircuits, err = d.counter(ctx, "quotabreaker.short_circuits"); err != nil {
		return f, err
	}
	if f.ShortCircuits != int64(f.Refused) {
		return f, fmt.Errorf("the quotabreaker.short_circuits metric says %d, want %d", f.ShortCircuits, f.Refused)
	}
	fmt.Fprintf(w, "\nIn short: the quota answer reached the server once and was not retried, on-call was paged once, "+
		"%d calls were refused without reaching the server, and after the reset calls went through again; "+
		"the balance's forecast had warned on-call %s before the quota answer came.\n", f.Refused, times(f.Warnings))
	return f, nil
}

// readBalance moves the story's clock an hour on when a call was made, has
// the Watcher read the balance, and prints it with its forecast.
func (d *demo) readBalance(ctx context.Context, called bool) error {
	if called {
		d.clock = d.clock.Add(time.Hour)
	}
	if err := d.watcher.Poll(ctx); err != nil {
		return err
	}
	st := d.watcher.Statuses()
	if len(st) != 1 {
		return fmt.Errorf("the Watcher holds %d balances, want 1", len(st))
	}
	line := fmt.Sprintf("   balance: $%s left", st[0].Available)
	if s := st[0]; s.HasForecast {
		line += fmt.Sprintf(", falling $%.2f an hour: runs out in %s", s.Forecast.Rate.PerHour/1e6, balance.About(time.Duration(s.Forecast.HoursLeft*float64(time.Hour))))
	} else {
		line += "; no forecast before it has fallen"
	}
	fmt.Fprintln(d.w, line)
	d.mu.Lock()
	pages := d.pages
	d.pages = nil
	d.mu.Unlock()
	for _, p := range pages {
		fmt.Fprint(d.w, p)
	}
	return nil
}

// real sends a few calls to the real API. If the account is out of quota,
// the first call trips the latch and the others are refused locally.
func (d *demo) real(ctx context.Context) error {
	fmt.Fprintln(d.w, "quotabreaker demo")
	fmt.Fprintf(d.w, "openai-go, with its default retry policy, calls the real OpenAI API (model %s) through\n", d.model)
	fmt.Fprintln(d.w, "quotabreaker.Transport. Under each call, one line per attempt shows the trace span it recorded.")
	fmt.Fprintln(d.w)
	ok := 0
	for range 3 {
		if d.call(ctx, nil).ok {
			ok++
		}
	}
	open, err := d.qb.OpenLatches(ctx)
	if err != nil {
		return err
	}
	shortCircuits, err := d.counter(ctx, "quotabreaker.short_circuits")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "\nIn short: %d of 3 calls succeeded; on-call was paged %d times, %d calls were refused without reaching the API, and %d latches are open.\n",
		ok, d.paged, shortCircuits, len(open))
	return nil
}

type result struct {
	ok   bool
	hits int64 // requests that reached the server; -1 for the real API
}

// call makes one chat completion and prints one line about it, then the
// pages it caused and the spans it recorded.
func (d *demo) call(ctx context.Context, srv *fakeopenai.Server) result {
	d.calls++
	var before int64
	if srv != nil {
		before = srv.Hits()
	}
	start := time.Now()
	resp, err := d.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     d.model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello in five words.")},
		MaxTokens: openai.Int(20),
	})
	elapsed := time.Since(start)
	r := result{ok: err == nil, hits: -1}
	reached := ""
	if srv != nil {
		r.hits = srv.Hits() - before
		reached = requests(r.hits) + ", "
	}

	var apiErr *openai.Error
	switch {
	case err == nil:
		text := ""
		if len(resp.Choices) > 0 {
			text = resp.Choices[0].Message.Content
		}
		fmt.Fprintf(d.w, "   call %d: ok, %q (%s%s)\n", d.calls, text, reached, round(elapsed))
	case errors.As(err, &apiErr) && apiErr.Response != nil:
		by := "the server"
		if apiErr.Response.Header.Get(quotabreaker.HeaderShortCircuit) == "true" {
			by = "the open latch"
		}
		fmt.Fprintf(d.w, "   call %d: failed with %s (code %s), answered by %s (%s%s)\n", d.calls, apiErr.Response.Status, apiErr.Code, by, reached, round(elapsed))
	default:
		fmt.Fprintf(d.w, "   call %d: failed, %v (%s%s)\n", d.calls, err, reached, round(elapsed))
	}

	d.mu.Lock()
	pages := d.pages
	d.pages = nil
	d.mu.Unlock()
	for _, p := range pages {
		fmt.Fprint(d.w, p)
	}
	d.printSpans()
	return r
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

func requests(n int64) string {
	switch n {
	case 0:
		return "no request reached the server"
	case 1:
		return "1 request reached the server"
	}
	return fmt.Sprintf("%d requests reached the server", n)
}

func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Microsecond)
}

// printSpans prints, in plain words, the spans that ended since the last
// time, one line each, followed by the telemetry attributes a dashboard
// would select them by.
func (d *demo) printSpans() {
	ended := d.spans.Ended()
	for _, s := range ended[d.printed:] {
		fmt.Fprintf(d.w, "      span: %s\n", describe(s))
	}
	d.printed = len(ended)
}

// shownAttrs are the attributes printed after a span's description.
var shownAttrs = []attribute.Key{
	"error.type",
	"quotabreaker.short_circuit",
	"quotabreaker.trip.class",
}

// describe says what one span records, in plain words.
func describe(s sdktrace.ReadOnlySpan) string {
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	str := func(k attribute.Key) string { return attrs[k].String() }

	var words []string
	if s.Name() == "quotabreaker.reset" {
		words = append(words, "the latch was reset")
	} else {
		words = append(words, s.Name())
		if v, ok := attrs["http.response.status_code"]; ok {
			words = append(words, "HTTP "+v.String())
		}
		switch {
		case attrs["quotabreaker.short_circuit"].AsBool():
			words = append(words, "refused by the open latch, not sent")
		case s.Status().Code == codes.Error:
			words = append(words, "failed")
		default:
			words = append(words, "succeeded")
		}
		if c := str("error.type"); c != "" {
			words = append(words, strings.ReplaceAll(c, "_", " "))
		}
		if ms := str("quotabreaker.retry_after_ms"); ms != "" {
			words = append(words, "the server asked to wait "+ms+" ms")
		}
		for _, e := range s.Events() {
			if e.Name == "quotabreaker.trip" {
				words = append(words, "this answer opened the latch")
			}
		}
	}
	line := strings.Join(words, ", ")
	var shown []string
	for _, k := range shownAttrs {
		if _, ok := attrs[k]; ok {
			shown = append(shown, string(k)+"="+str(k))
		}
	}
	if len(shown) > 0 {
		line += "  [" + strings.Join(shown, " ") + "]"
	}
	return line
}

// counter returns the total of an int64 counter the Transport reports.
func (d *demo) counter(ctx context.Context, name string) (int64, error) {
	var rm metricdata.ResourceMetrics
	if err := d.metrics.Collect(ctx, &rm); err != nil {
		return 0, err
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range sum.DataPoints {
					total += dp.Value
				}
			}
		}
	}
	return total, nil
}
