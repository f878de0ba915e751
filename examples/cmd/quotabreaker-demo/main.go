// Command quotabreaker-demo shows quotabreaker in front of a real openai-go
// client, in a few seconds and without network: it starts an embedded fake
// of OpenAI's API and plays normal calls, a rate limit the SDK retries, the
// quota running out (the latch opens and pages once), calls refused without
// reaching the server, and a Reset once billing is fixed. It then prints the
// OpenTelemetry spans the Transport recorded and a machine-readable summary.
//
//	go run ./examples/cmd/quotabreaker-demo
//	OPENAI_API_KEY=sk-... go run ./examples/cmd/quotabreaker-demo -real
//
// With -real it sends a few calls to the real API instead (they cost
// tokens), with the same client, Transport and span output.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/quotabreaker/quotabreaker"
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
	if err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "quotabreaker-demo:", err)
		os.Exit(1)
	}
}

// demoKey is the embedded server's API key.
const demoKey = "sk-proj-demo"

// rateLimitWait is what the embedded server's rate limit asks the SDK to wait.
const rateLimitWait = 250 * time.Millisecond

// demo is one run: the Transport, the telemetry it records into, and the
// client that goes through it.
type demo struct {
	w       io.Writer
	qb      *quotabreaker.Transport
	client  openai.Client
	model   string
	spans   *tracetest.SpanRecorder
	metrics *sdkmetric.ManualReader
	trips   int
	calls   int
}

// run tells the story into w; with cfg.Real it calls the real API instead.
func run(ctx context.Context, w io.Writer, cfg config) error {
	if cfg.Model == "" {
		cfg.Model = "gpt-4o-mini"
	}
	if cfg.Real && cfg.APIKey == "" {
		return errors.New("-real needs OPENAI_API_KEY")
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
	d.qb = quotabreaker.New(base,
		quotabreaker.WithTracerProvider(tp),
		quotabreaker.WithMeterProvider(mp),
		quotabreaker.OnTrip(func(tr quotabreaker.Trip) {
			// A real hook hands this to a paging service on another goroutine.
			d.trips++
			fmt.Fprintf(w, "   PAGE on-call: %s (code %s, HTTP %d, request %s) for %s; every call with these credentials fails until billing is fixed\n",
				tr.Class, tr.Code, tr.Status, tr.RequestID, tr.Scope)
		}),
		quotabreaker.OnReset(func(tr quotabreaker.Trip) {
			fmt.Fprintf(w, "   latch closed for %s (open since %s)\n", tr.Scope, tr.At.Format(time.TimeOnly))
		}),
	)

	// openai-go with its default retry policy: MaxRetries 2, backoff,
	// Retry-After honoured. Only the HTTP client's transport changes.
	opts := []option.RequestOption{option.WithHTTPClient(&http.Client{Transport: d.qb})}
	if cfg.Real {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
		d.client = openai.NewClient(opts...)
		return d.real(ctx)
	}

	srv := fakeopenai.New()
	defer srv.Close()
	srv.SetRetryAfter(rateLimitWait)
	d.client = openai.NewClient(append(opts, option.WithBaseURL(srv.BaseURL()), option.WithAPIKey(demoKey))...)
	return d.story(ctx, srv)
}

func (d *demo) story(ctx context.Context, srv *fakeopenai.Server) error {
	w := d.w
	fmt.Fprintf(w, "quotabreaker demo: openai-go (default retries) -> quotabreaker.Transport -> embedded fake OpenAI at %s\n", srv.BaseURL())

	fmt.Fprintln(w, "\n1. Normal traffic")
	for range 2 {
		if !d.call(ctx, srv).ok {
			return errors.New("a normal call failed")
		}
	}

	fmt.Fprintf(w, "\n2. A rate limit (429 rate_limit_exceeded, retry-after-ms: %d): passed through, the SDK waits and retries\n", rateLimitWait.Milliseconds())
	srv.Script(demoKey, []fakeopenai.Answer{fakeopenai.RateLimited}, fakeopenai.OK)
	if r := d.call(ctx, srv); !r.ok || r.hits != 2 {
		return fmt.Errorf("the rate-limited call: ok=%v after %d requests, want ok after 2", r.ok, r.hits)
	}

	fmt.Fprintln(w, "\n3. The quota runs out (429 insufficient_quota): marked X-Should-Retry: false, so the SDK does not retry it")
	srv.Script(demoKey, nil, fakeopenai.QuotaExhausted)
	if r := d.call(ctx, srv); r.ok || r.hits != 1 {
		return fmt.Errorf("the quota call: ok=%v after %d requests, want a failure after 1", r.ok, r.hits)
	}

	fmt.Fprintln(w, "\n4. The latch is open: calls fail at once, without reaching the server")
	hitsBefore := srv.Hits()
	fmt.Fprintf(w, "   server hits before: %d\n", hitsBefore)
	for range 5 {
		d.call(ctx, srv)
	}
	hitsAfter := srv.Hits()
	fmt.Fprintf(w, "   server hits after:  %d\n", hitsAfter)

	fmt.Fprintln(w, "\n5. Billing fixed: Reset closes the latch")
	srv.Script(demoKey, nil, fakeopenai.OK)
	reset := 0
	for _, tr := range d.qb.OpenLatches() {
		if d.qb.Reset(tr.Scope) {
			reset++
		}
	}
	finalOK := d.call(ctx, srv).ok

	d.printSpans()
	shortCircuits, err := d.counter(ctx, "quotabreaker.short_circuits")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsummary: hits_before=%d hits_after=%d ontrip=%d short_circuits=%d reset=%d final_ok=%t total_hits=%d\n",
		hitsBefore, hitsAfter, d.trips, shortCircuits, reset, finalOK, srv.Hits())
	return nil
}

// real sends a few calls to the real API. If the account is out of quota,
// the first call trips the latch and the others are refused locally.
func (d *demo) real(ctx context.Context) error {
	fmt.Fprintf(d.w, "quotabreaker demo: openai-go (default retries) -> quotabreaker.Transport -> the real OpenAI API, model %s\n\n", d.model)
	ok := 0
	for range 3 {
		if d.call(ctx, nil).ok {
			ok++
		}
	}
	d.printSpans()
	shortCircuits, err := d.counter(ctx, "quotabreaker.short_circuits")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "\nsummary: mode=real calls=3 ok=%d ontrip=%d short_circuits=%d open_latches=%d\n",
		ok, d.trips, shortCircuits, len(d.qb.OpenLatches()))
	return nil
}

type result struct {
	ok   bool
	hits int64 // requests that reached the server; -1 for the real API
}

// call makes one chat completion and prints one line about it.
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
		reached = fmt.Sprintf(", %d request(s) reached the server", r.hits)
	}

	var apiErr *openai.Error
	switch {
	case err == nil:
		text := ""
		if len(resp.Choices) > 0 {
			text = resp.Choices[0].Message.Content
		}
		fmt.Fprintf(d.w, "   call %d: ok %q (%s%s)\n", d.calls, text, round(elapsed), reached)
	case errors.As(err, &apiErr):
		how := "from the API"
		if apiErr.Response != nil && apiErr.Response.Header.Get(quotabreaker.HeaderShortCircuit) == "true" {
			how = "short-circuited by the open latch"
		}
		fmt.Fprintf(d.w, "   call %d: error %d %s, %s (%s%s)\n", d.calls, apiErr.StatusCode, apiErr.Code, how, round(elapsed), reached)
	default:
		fmt.Fprintf(d.w, "   call %d: error %v (%s%s)\n", d.calls, err, round(elapsed), reached)
	}
	return r
}

func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Microsecond)
}

// spanKeys are the span attributes the demo prints, in this order.
var spanKeys = []attribute.Key{
	"http.response.status_code",
	"error.type",
	"gen_ai.provider.name",
	"quotabreaker.error.code",
	"quotabreaker.breaker.state",
	"quotabreaker.short_circuit",
	"quotabreaker.retry_after_ms",
	"quotabreaker.request_id",
	attrScope,
}

const attrScope = attribute.Key("quotabreaker.scope")

// printSpans prints one line per ended span: name, status and the
// attributes in spanKeys, plus its events. A scope shared by all spans is
// printed once, above them.
func (d *demo) printSpans() {
	ended := d.spans.Ended()
	scopes := map[string]bool{}
	for _, s := range ended {
		for _, kv := range s.Attributes() {
			if kv.Key == attrScope {
				scopes[kv.Value.String()] = true
			}
		}
	}
	fmt.Fprintf(d.w, "\nSpans recorded by the Transport (%d):\n", len(ended))
	if len(scopes) == 1 {
		for sc := range scopes {
			fmt.Fprintf(d.w, "   (all with %s=%s)\n", attrScope, sc)
		}
	}
	for _, s := range ended {
		attrs := map[attribute.Key]string{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value.String()
		}
		var b strings.Builder
		fmt.Fprintf(&b, "   %-18s %-5s", s.Name(), s.Status().Code)
		for _, k := range spanKeys {
			if v, ok := attrs[k]; ok && !(k == attrScope && len(scopes) == 1) {
				fmt.Fprintf(&b, " %s=%s", k, v)
			}
		}
		for _, e := range s.Events() {
			fmt.Fprintf(&b, " [event %s]", e.Name)
		}
		fmt.Fprintln(d.w, b.String())
	}
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
