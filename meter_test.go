package quotabreaker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// The tests of this file drive the Transport with httptest servers that
// speak the real answers of testdata/streams, and read what the real
// OpenTelemetry SDK recorded.

// fixtureServer serves the fixture file to every request, with the header
// it was sent with, and counts the requests.
func fixtureServer(t *testing.T, file string) *httptest.Server {
	t.Helper()
	body, h := corpus.ReadStream(t, file)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for k, v := range h {
			w.Header()[k] = v
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// hostTransport is a real *http.Transport that dials srv whatever host a
// request names, so that requests keep a provider's host (and are
// classified and priced as that provider's) while a test server answers.
func hostTransport(t *testing.T, srv *httptest.Server) *http.Transport {
	addr := srv.Listener.Addr().String()
	base := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(base.CloseIdleConnections)
	return base
}

// series flattens collected metrics into "name{k=v,...}" -> a value that
// does not depend on timing: a sum's value, a histogram's count (and, for
// the token histogram, its sum), a gauge's value.
func series(rm metricdata.ResourceMetrics) map[string]string {
	out := map[string]string{}
	key := func(name string, set attribute.Set) string {
		var kv []string
		for _, a := range set.ToSlice() {
			kv = append(kv, string(a.Key)+"="+a.Value.String())
		}
		return name + "{" + strings.Join(kv, ",") + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = fmt.Sprint(p.Value)
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = fmt.Sprintf("%.9f", p.Value)
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = fmt.Sprintf("n=%d sum=%d", p.Count, p.Sum)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = fmt.Sprintf("n=%d", p.Count)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = fmt.Sprintf("%.9f", p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = fmt.Sprint(p.Value)
				}
			default:
				out[m.Name] = fmt.Sprintf("%T", d)
			}
		}
	}
	return out
}

func collectSeries(t *testing.T, r *sdkmetric.ManualReader) map[string]string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return series(rm)
}

// bigPrompt is a streamed Chat Completions request whose prompt is about
// 100k tokens of text (400 KB), as in issue 18's report.
func bigPrompt(model string) string {
	return `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum dolor sit amet ", 400_000/27) + `"}]}`
}

// Ten streams of a real gpt-4o answer, each closed by the caller after
// 2 KB, with 100k tokens of prompt each (about $0.25 of input at $2.50 per
// million): no usage chunk ever arrives, yet each is charged its estimate,
// marked as such, and a $1 hard limit refuses the key after four.
func TestStreamsClosedEarlyChargedAnEstimate(t *testing.T) {
	srv := fixtureServer(t, "openai-chat-stream-usage.sse")
	rec := newRecording(t)
	tr := New(hostTransport(t, srv), append(rec.options(),
		WithBudget(Budget{Name: "b", Limit: 1, HardLimit: true}))...)
	body := bigPrompt("gpt-4o")
	sent, refused := 0, 0
	for range 10 {
		req, _ := http.NewRequest(http.MethodPost, "http://api.openai.com/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-closes-early")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusPaymentRequired {
			refused++
			resp.Body.Close()
			continue
		}
		sent++
		buf := make([]byte, 2048)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	st := budgetStatuses(t, tr)
	if len(st) != 1 {
		t.Fatalf("Budgets() = %+v, want one key", st)
	}
	s := st[0]
	// ceil(len(body)/4) input tokens at $2.50 per million, and the text
	// of 2 KB of stream at $10: at least $0.25 each.
	if s.Unmetered != int64(sent) || s.Estimated != int64(sent) || s.Priced != 0 || !(s.Spent >= 0.25*float64(sent)) || s.Spent != s.EstimatedSpent {
		t.Errorf("Budgets() = %+v after %d streams closed early, want each charged an estimate of at least $0.25", s, sent)
	}
	if sent != 4 || refused != 6 || !s.Exhausted {
		t.Errorf("%d streams sent, %d refused; want 4 sent ($1.00 reached by the fourth) and 6 refused", sent, refused)
	}
	spans := rec.ours()
	a := attrs(spans[0])
	if a["quotabreaker.metering"].AsString() != "unmetered" || a["quotabreaker.usage.missing"].AsString() != "cut_short" ||
		!a["quotabreaker.estimated"].AsBool() || !(a["quotabreaker.cost.usd"].AsFloat64() >= 0.25) || a["quotabreaker.estimate.input_tokens"].AsInt64() != int64(len(body)+len(`,"stream_options":{"include_usage":true}`)+3)/4 {
		t.Errorf("span attributes %v, want an unmetered answer cut short, charged its estimate", a)
	}
	if _, ok := a["gen_ai.usage.input_tokens"]; ok {
		t.Error("an estimate was recorded as the provider's usage")
	}
	got := collectSeries(t, rec.reader)
	if v := got["quotabreaker.answers{gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o,gen_ai.response.model=gpt-4o-2024-08-06,quotabreaker.metering=unmetered,quotabreaker.usage.missing=cut_short}"]; v != "4" {
		t.Errorf("answers series %v, want 4 unmetered, cut short", got)
	}
}

// An answer whose body the caller closes without reading it is counted as
// unmetered (closed unread), in Budgets, the metric and on the span, and
// charged nothing: there is nothing to estimate from.
func TestUnreadBodyUnmetered(t *testing.T) {
	srv := fixtureServer(t, "openai-chat-reasoning.json")
	rec := newRecording(t)
	tr := New(hostTransport(t, srv), append(rec.options(), WithBudget(Budget{Name: "b", Limit: 1}))...)
	resp, err := tr.RoundTrip(chatRequest(t, "http://api.openai.com/v1/chat/completions", "sk-unread"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st := budgetStatuses(t, tr)
	if len(st) != 1 || st[0].Unmetered != 1 || st[0].Priced != 0 || st[0].Unpriced != 0 || st[0].Spent != 0 {
		t.Errorf("Budgets() = %+v, want one unmetered answer", st)
	}
	a := attrs(rec.ours()[0])
	if a["quotabreaker.metering"].AsString() != "unmetered" || a["quotabreaker.usage.missing"].AsString() != "closed_unread" {
		t.Errorf("span attributes %v, want unmetered, closed unread", a)
	}
	if v := collectSeries(t, rec.reader)["quotabreaker.answers{gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o-mini,quotabreaker.metering=unmetered,quotabreaker.usage.missing=closed_unread}"]; v != "1" {
		t.Errorf("answers{unmetered, closed_unread} = %q, want 1", v)
	}
}

// Gemini's native answers, plain and streamed (alt=sse, and the default
// JSON array sent gzip-encoded to a caller that asked for gzip), from
// real recordings, are read and priced through the Transport.
func TestGeminiUsagePriced(t *testing.T) {
	for _, c := range []struct {
		file, model, path string
		gzip              bool
		micros            float64 // by hand from prices/snapshot.go
	}{
		// gemini-2.5-flash, $0.30 in, $0.03 cached, $2.50 out: 8 × 0.30 +
		// 3512 × 0.03 + (2 + 42) × 2.50 = 217.76 µ$.
		{"gemini-generate-cached-thoughts.json", "gemini-2.5-flash", ":generateContent", false, 218},
		// gemini-2.5-pro, $1.25 in, $10 out: 34 × 1.25 + (469 + 787) × 10
		// = 12602.5 µ$.
		{"gemini-stream-thoughts.sse", "gemini-2.5-pro", ":streamGenerateContent?alt=sse", false, 12603},
		// gemini-3.6-flash, $1.50 in, $7.50 out: 11 × 1.5 + (2 + 291) ×
		// 7.5 = 2214 µ$.
		{"gemini-stream-array-thoughts.json.gz", "gemini-3.6-flash", ":streamGenerateContent", true, 2214},
	} {
		t.Run(c.file, func(t *testing.T) {
			srv := fixtureServer(t, c.file)
			rec := newRecording(t)
			tr := New(hostTransport(t, srv), append(rec.options(), WithBudget(Budget{Name: "b", Limit: 1}))...)
			url := "http://generativelanguage.googleapis.com/v1beta/models/" + c.model + c.path
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"contents":[{"parts":[{"text":"hi"}]}]}`))
			req.Header.Set("X-Goog-Api-Key", "gemini-key")
			if c.gzip {
				req.Header.Set("Accept-Encoding", "gzip") // the caller decodes, not Go's transport
			}
			resp, body := sendReq(t, tr, req)
			want, _ := corpus.ReadStream(t, c.file)
			if resp.StatusCode != 200 || string(body) != string(want) {
				t.Fatalf("the caller read %s, %d bytes, want the %d sent", resp.Status, len(body), len(want))
			}
			st := budgetStatuses(t, tr)
			if len(st) != 1 || st[0].Priced != 1 || st[0].Spent != c.micros/1e6 {
				t.Errorf("Budgets() = %+v, want one answer priced at %v µ$", st, c.micros)
			}
			if a := attrs(rec.ours()[0]); a["quotabreaker.metering"].AsString() != "priced" || a["gen_ai.response.model"].AsString() == "" {
				t.Errorf("span attributes %v, want priced with the answer's model", a)
			}
		})
	}
}

// The metric series (names, attributes and values) are the same whether
// every span is sampled, none is, or half are: the request's model is read
// for the metrics whatever the sampler decided.
func TestMetricsIndependentOfSampling(t *testing.T) {
	srv := fixtureServer(t, "openai-chat-stream-usage.sse")
	run := func(sampler sdktrace.Sampler) map[string]string {
		reader := sdkmetric.NewManualReader()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
		tr := New(hostTransport(t, srv), WithTracerProvider(tp), WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
			WithBudget(Budget{Name: "b", Limit: 100}))
		for i := range 20 {
			req, _ := http.NewRequest(http.MethodPost, "http://api.openai.com/v1/chat/completions",
				strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}`))
			req.Header.Set("Authorization", fmt.Sprintf("Bearer sk-%d", i%2))
			sendReq(t, tr, req)
		}
		return collectSeries(t, reader)
	}
	on := run(sdktrace.AlwaysSample())
	for name, s := range map[string]sdktrace.Sampler{"off": sdktrace.NeverSample(), "50%": sdktrace.TraceIDRatioBased(0.5)} {
		got := run(s)
		for k, v := range on {
			if got[k] != v {
				t.Errorf("sampling %s: %s = %q, sampling on: %q", name, k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := on[k]; !ok {
				t.Errorf("sampling %s: series %s not recorded with sampling on", name, k)
			}
		}
	}
	if !slices.ContainsFunc(mapsKeys(on), func(k string) bool {
		return strings.HasPrefix(k, "gen_ai.client.token.usage{") && strings.Contains(k, "gen_ai.request.model=gpt-4o,")
	}) {
		t.Errorf("no token series carries gen_ai.request.model: %v", on)
	}
}

// sumSeries sums the integer series of name whose attributes include all
// of attrs ("key=value").
func sumSeries(got map[string]string, name string, attrs ...string) int64 {
	var sum int64
	for k, v := range got {
		n, kv, _ := strings.Cut(strings.TrimSuffix(k, "}"), "{")
		if n != name {
			continue
		}
		have := strings.Split(kv, ",")
		if !slices.ContainsFunc(attrs, func(a string) bool { return !slices.Contains(have, a) }) {
			var x int64
			fmt.Sscan(v, &x)
			sum += x
		}
	}
	return sum
}

func mapsKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// In observe mode a budget's hard limit refuses nothing, but each request
// it would have refused is counted in short_circuits{cause=budget} as many
// times as enforce mode refuses, and marked on its span.
func TestBudgetWouldRefuseInObserveMode(t *testing.T) {
	count := func(mode Mode) (int64, *recording) {
		rec := newRecording(t)
		tr := New(pricedProvider(t), append(rec.options(), WithMode(mode),
			WithBudget(Budget{Name: "tiny", Limit: 2 * answerMicros / 1e6, HardLimit: true}))...)
		for range 5 {
			send(t, tr, budgetURL, "sk-watch")
		}
		return sumSeries(collectSeries(t, rec.reader), "quotabreaker.short_circuits", "quotabreaker.cause=budget"), rec
	}
	enforce, _ := count(ModeEnforce)
	observe, rec := count(ModeObserve)
	if enforce != 3 || observe != enforce {
		t.Errorf("short_circuits{cause=budget}: enforce %d, observe %d; want 3 and 3", enforce, observe)
	}
	if got := sumSeries(collectSeries(t, rec.reader), "quotabreaker.short_circuits", "quotabreaker.cause=budget", "quotabreaker.mode=observe"); got != 3 {
		t.Errorf("short_circuits{cause=budget, mode=observe} = %d, want 3", got)
	}
	marked := 0
	for _, s := range rec.ours() {
		a := attrs(s)
		if a["quotabreaker.would_short_circuit"].AsBool() && a["quotabreaker.cause"].AsString() == "budget" && a["quotabreaker.budget"].AsString() == "tiny" {
			marked++
			if a["http.response.status_code"].AsInt64() != 200 {
				t.Errorf("a would-be refusal did not pass: %v", a)
			}
		}
	}
	if marked != 3 {
		t.Errorf("%d spans marked as would-be budget refusals, want 3", marked)
	}
}

// Every refusal span says what refused it, an open latch's as well as a
// budget's.
func TestRefusalSpansCarryCause(t *testing.T) {
	rec := newRecording(t)
	tr := New(fakeBase(quotaAnswer(t)), rec.options()...)
	send(t, tr, budgetURL, "sk-latch") // trips
	if resp, _ := send(t, tr, budgetURL, "sk-latch"); !shortCircuited(resp) {
		t.Fatal("not refused")
	}
	spans := rec.ours()
	if a := attrs(spans[len(spans)-1]); a["quotabreaker.cause"].AsString() != "answer" || !a["quotabreaker.short_circuit"].AsBool() {
		t.Errorf("refusal span attributes %v, want quotabreaker.cause=answer", a)
	}
}

// Anthropic's one-hour cache writes are priced at their rate, not the
// five-minute one: the real claude-sonnet-4-5 answer with its cache writes
// made 400 one-hour and 200 five-minute tokens (issue 18's example). At $3
// in, $0.30 cached, $3.75 and $6 per million cache writes and $15 out:
// 3 × 3 + 1111 × 0.30 + 200 × 3.75 + 400 × 6 + 33 × 15 = 3987.3 µ$, where
// the five-minute rate for all 600 would say 3087.3.
func TestOneHourCacheWritesPriced(t *testing.T) {
	real, h := corpus.ReadStream(t, "anthropic-message-cache.json")
	body := strings.NewReplacer(
		`"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 418`, `"ephemeral_1h_input_tokens": 400, "ephemeral_5m_input_tokens": 200`,
		`"cache_creation_input_tokens": 418`, `"cache_creation_input_tokens": 600`).Replace(string(real))
	if strings.Count(body, "600")+strings.Count(body, "400") < 2 {
		t.Fatal("the fixture changed")
	}
	var got []Usage
	p := newProvider(func(*http.Request) corpusAnswer { return corpusAnswer{200, h, body} })
	tr := New(p, OnUsage(func(_ context.Context, u Usage) { got = append(got, u) }),
		WithBudget(Budget{Name: "b", Limit: 1}))
	req, _ := http.NewRequest(http.MethodPost, "https://api.anthropic.com/v1/messages", strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[]}`))
	req.Header.Set("X-Api-Key", "sk-ant-1h")
	sendReq(t, tr, req)
	if len(got) != 1 || got[0].Tokens.CacheWriteTokens != 600 || got[0].Tokens.CacheWrite1hTokens != 400 || got[0].Cost != 3988e-6 {
		t.Errorf("OnUsage got %+v, want 600 cache writes, 400 of them one-hour, costing 3988 µ$", got)
	}
	if st := budgetStatuses(t, tr); len(st) != 1 || st[0].Spent != 3988e-6 {
		t.Errorf("Budgets() = %+v, want 3988 µ$ spent", st)
	}
}

// Budget.Unmetered chooses what a budget charges for answers whose usage
// is unknown: an estimate for one cut short by default, nothing at all,
// or the key itself.
func TestBudgetUnmeteredPolicy(t *testing.T) {
	srv := fixtureServer(t, "openai-chat-stream-no-usage.sse")
	for _, c := range []struct {
		name      string
		policy    Unmetered
		cut       bool // close after 2 KB; else read to the end (no usage chunk)
		estimated bool
		refused   bool
	}{
		{"estimate, cut short", UnmeteredEstimate, true, true, false},
		{"estimate, no usage chunk", UnmeteredEstimate, false, false, false},
		{"free, cut short", UnmeteredFree, true, false, false},
		{"refuses, no usage chunk", UnmeteredRefuses, false, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			// WithStreamUsage(false): the server is not asked for the
			// usage chunk, and sends none.
			tr := New(hostTransport(t, srv), WithStreamUsage(false),
				WithBudget(Budget{Name: "b", Limit: 100, HardLimit: true, Unmetered: c.policy}))
			req, _ := http.NewRequest(http.MethodPost, "http://api.openai.com/v1/chat/completions", strings.NewReader(bigPrompt("gpt-4o")))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if c.cut {
				io.ReadFull(resp.Body, make([]byte, 2048))
			} else {
				io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
			st := budgetStatuses(t, tr)
			if len(st) != 1 || st[0].Unmetered != 1 || (st[0].Estimated == 1) != c.estimated || (st[0].Spent > 0) != c.estimated || st[0].Exhausted != c.refused {
				t.Errorf("Budgets() = %+v, want estimated %v, exhausted %v", st, c.estimated, c.refused)
			}
			next, _ := http.NewRequest(http.MethodPost, "http://api.openai.com/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","stream":true}`))
			resp, err = tr.RoundTrip(next)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if (resp.StatusCode == http.StatusPaymentRequired) != c.refused {
				t.Errorf("the next request: %s, want refused %v", resp.Status, c.refused)
			}
		})
	}
}

// gen_ai.client.operation.duration is recorded once per attempt that
// reached the network, in seconds, with the GenAI conventions' bucket
// boundaries and, on a failure, error.type: the class of an error answer,
// the error's type of a transport failure.
func TestOperationDuration(t *testing.T) {
	rec := newRecording(t)
	var fail bool
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if fail {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: io.ErrUnexpectedEOF}
		}
		return quotaAnswer(t).response(r), nil
	})
	tr := New(base, rec.options()...)
	send(t, tr, budgetURL, "sk-dur") // a quota answer
	send(t, tr, budgetURL, "sk-dur") // refused: not an attempt on the network
	fail = true
	if _, err := tr.RoundTrip(chatRequest(t, budgetURL, "sk-other")); err == nil {
		t.Fatal("no error")
	}
	var rm metricdata.ResourceMetrics
	if err := rec.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	found := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "gen_ai.client.operation.duration" {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("unit %q, want s", m.Unit)
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if !slices.Equal(p.Bounds, want) {
					t.Errorf("bounds %v, want %v", p.Bounds, want)
				}
				et, _ := p.Attributes.Value("error.type")
				op, _ := p.Attributes.Value("gen_ai.operation.name")
				host, _ := p.Attributes.Value("server.address")
				model, _ := p.Attributes.Value("gen_ai.request.model")
				if op.AsString() != "chat" || host.AsString() != "api.openai.com" || model.AsString() != "gpt-4o-mini" {
					t.Errorf("attributes %v", p.Attributes.ToSlice())
				}
				found[et.AsString()] += p.Count
			}
		}
	}
	if found["quota_exhausted"] != 1 || found["*net.OpError"] != 1 || len(found) != 2 {
		t.Errorf("durations by error.type %v, want one quota_exhausted and one *net.OpError", found)
	}
}

// TestOperationSeriesInTurn: answers for several models, sent in turn from
// several goroutines, each count once in their own model's
// gen_ai.client.operation.duration series, however the series operation
// recorded last changes under them.
func TestOperationSeriesInTurn(t *testing.T) {
	rec := newRecording(t)
	tr := New(fakeBase(ok()), rec.options()...)
	const goroutines, each, models = 4, 60, 3
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				body := fmt.Sprintf(`{"model":"m-%d","messages":[]}`, (g+i)%models)
				req, err := http.NewRequest(http.MethodPost, budgetURL, strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Authorization", "Bearer sk-a")
				if _, _, err := trySend(tr, req); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := collect(t, rec)
	for m := range models {
		k := fmt.Sprintf("gen_ai.client.operation.duration{gen_ai.operation.name=chat,gen_ai.provider.name=openai,gen_ai.request.model=m-%d,server.address=api.openai.com}", m)
		if got[k] != goroutines*each/models {
			t.Errorf("%s = %d, want %d", k, got[k], goroutines*each/models)
		}
	}
}

// TestSpendSetsBounded: answers naming more models than the Transport
// keeps attribute sets for are still recorded, each under its own model,
// with the same series whether its sets were kept or built for it; the
// kept sets stop at maxSpendSets.
func TestSpendSetsBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	models := maxSpendSets + 44
	i := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		body := fmt.Sprintf(`{"id":"c","model":"m-%d","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}`, i%models)
		i++
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})
	tr := New(base, WithTracerProvider(tracenoop.NewTracerProvider()),
		WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	for range 2 * models {
		sendReq(t, tr, chatRequest(t, "https://api.openai.com/v1/chat/completions", "sk-a"))
	}
	tr.tel.setsMu.RLock()
	n := len(tr.tel.sets)
	tr.tel.setsMu.RUnlock()
	if n != maxSpendSets {
		t.Errorf("%d attribute sets kept, want %d", n, maxSpendSets)
	}
	got := collectSeries(t, reader)
	for _, m := range []int{0, maxSpendSets - 1, maxSpendSets, models - 1} {
		model := "gen_ai.response.model=m-" + strconv.Itoa(m)
		if n := sumSeries(got, "quotabreaker.answers", model); n != 2 {
			t.Errorf("%s: %d answers, want 2", model, n)
		}
		var tokens []string
		for k, v := range got {
			if strings.HasPrefix(k, "gen_ai.client.token.usage{") && strings.Contains(k, model+",") && strings.Contains(k, "gen_ai.token.type=input") {
				tokens = append(tokens, v)
			}
		}
		if len(tokens) != 1 || tokens[0] != "n=2 sum=6" {
			t.Errorf("%s: input tokens %q, want one series of n=2 sum=6", model, tokens)
		}
	}
}
