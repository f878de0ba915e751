package quotabreaker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// The tests of issue 11: the API before it freezes, observe mode, and the
// telemetry details.

// headerDiff reports how got differs from want, but for Date, which the
// server sets per second.
func headerDiff(got, want http.Header) string {
	var diff []string
	for k := range mergeKeys(got, want) {
		if k == "Date" {
			continue
		}
		if g, w := strings.Join(got.Values(k), ","), strings.Join(want.Values(k), ","); g != w {
			diff = append(diff, fmt.Sprintf("%s: %q, want %q", k, g, w))
		}
	}
	return strings.Join(diff, "; ")
}

func hasAttr(kvs []attribute.KeyValue, key attribute.Key, value string) bool {
	for _, kv := range kvs {
		if kv.Key == key && kv.Value.String() == value {
			return true
		}
	}
	return false
}

func mergeKeys(hs ...http.Header) map[string]bool {
	m := map[string]bool{}
	for _, h := range hs {
		for k := range h {
			m[k] = true
		}
	}
	return m
}

// TestObserveMode: observe mode classifies, records and pages as enforce
// mode does, but sends every request and changes no answer; switching to
// enforce at run time refuses the next request, and back again sends it.
func TestObserveMode(t *testing.T) {
	quota := quotaAnswer(t)
	srv := newServer(t, func(string, int) corpusAnswer { return quota })
	bare, _ := send(t, http.DefaultTransport, srv.URL, "sk-a") // the answer as sent
	rec := newRecording(t)
	var pages []Trip
	tr := New(nil, append(rec.options(), WithMode(ModeObserve),
		OnTrip(func(_ context.Context, tp Trip) { pages = append(pages, tp) }))...)
	if tr.Mode() != ModeObserve {
		t.Fatalf("Mode() = %v", tr.Mode())
	}

	const n = 5
	for i := 0; i < n; i++ {
		resp, body := send(t, tr, srv.URL, "sk-a")
		if resp.Status != bare.Status || string(body) != quota.body || shortCircuited(resp) {
			t.Errorf("answer %d changed: %q, %q", i, resp.Status, body)
		}
		if d := headerDiff(resp.Header, bare.Header); d != "" {
			t.Errorf("answer %d headers changed: %s", i, d)
		}
	}
	if got := srv.hits.Load(); got != 1+n {
		t.Errorf("the server saw %d of %d requests", got-1, n)
	}
	if len(pages) != 1 || pages[0].Mode != ModeObserve || pages[0].Class != classify.QuotaExhausted {
		t.Errorf("OnTrip got %+v, want one observe trip", pages)
	}
	trips := openLatches(t, tr)
	if len(trips) != 1 || trips[0] != pages[0] {
		t.Fatalf("OpenLatches() = %+v, want the trip", trips)
	}
	if b, _ := json.Marshal(trips[0]); !strings.Contains(string(b), `"mode":"observe"`) {
		t.Errorf("trip JSON %s does not say observe", b)
	}
	m := collect(t, rec)
	for _, c := range []struct {
		name  string
		attrs []string
		want  int64
	}{
		{"quotabreaker.trips", []string{"error.type=quota_exhausted", "quotabreaker.error.code=insufficient_quota", "quotabreaker.mode=observe"}, 1},
		{"quotabreaker.short_circuits", []string{"error.type=quota_exhausted", "quotabreaker.mode=observe"}, n - 1},
		{"quotabreaker.errors", []string{"error.type=quota_exhausted", "quotabreaker.error.code=insufficient_quota"}, n},
		{"quotabreaker.open_latches", nil, 1},
	} {
		if got := metricValue(m, c.name, c.attrs...); got != c.want {
			t.Errorf("%s%v = %d, want %d (collected %v)", c.name, c.attrs, got, c.want, m)
		}
	}
	if got := metricValue(m, "quotabreaker.trips", "quotabreaker.mode=enforce") + metricValue(m, "quotabreaker.short_circuits", "quotabreaker.mode=enforce"); got != 0 {
		t.Errorf("%d trips or short circuits counted as enforced", got)
	}
	spans := rec.ours()
	if len(spans) != n {
		t.Fatalf("%d spans, want %d", len(spans), n)
	}
	for i, s := range spans {
		a := attrs(s)
		if a["quotabreaker.mode"].AsString() != "observe" || a["quotabreaker.short_circuit"].AsBool() ||
			a["quotabreaker.breaker.state"].AsString() != "open" || a["error.type"].AsString() != "quota_exhausted" {
			t.Errorf("span %d: %v", i, a)
		}
	}
	if ev := spans[0].Events(); len(ev) != 1 || ev[0].Name != "quotabreaker.trip" {
		t.Errorf("tripping span events = %v", ev)
	} else if !hasAttr(ev[0].Attributes, "quotabreaker.mode", "observe") {
		t.Errorf("trip event %v does not say observe", ev[0].Attributes)
	}

	tr.SetMode(ModeEnforce)
	resp, body := send(t, tr, srv.URL, "sk-a")
	if !shortCircuited(resp) || resp.Status != "429 Insufficient Quota" || resp.Header.Get(HeaderShouldRetry) != "false" || string(body) != quota.body {
		t.Errorf("after SetMode(ModeEnforce): %q %v %q, want the request refused", resp.Status, resp.Header, body)
	}
	if got := srv.hits.Load(); got != 1+n {
		t.Error("after SetMode(ModeEnforce) the request reached the server")
	}
	if got := metricValue(collect(t, rec), "quotabreaker.short_circuits", "error.type=quota_exhausted", "quotabreaker.mode=enforce"); got != 1 {
		t.Errorf("enforced short circuits = %d, want 1", got)
	}
	if trips := openLatches(t, tr); len(trips) != 1 || trips[0].Mode != ModeObserve {
		t.Errorf("OpenLatches() = %+v: the trip's mode is the one that opened it", trips)
	}

	tr.SetMode(ModeObserve)
	if resp, _ := send(t, tr, srv.URL, "sk-a"); shortCircuited(resp) || srv.hits.Load() != 2+n {
		t.Error("after SetMode(ModeObserve) the request was refused")
	}
}

// TestTripJSON: Trip's JSON is stable (these golden bytes are API), empty
// optional fields are left out, it decodes back, and no latch is [].
func TestTripJSON(t *testing.T) {
	at := time.Date(2026, 11, 26, 8, 41, 0, 0, time.UTC)
	clock := WithClock(func() time.Time { return at })
	tests := []struct {
		name   string
		answer corpusAnswer
		url    string
		opts   []Option
		golden string
	}{
		{"full", quotaAnswer(t), "https://api.openai.com/v1/chat/completions", nil,
			`[{"scope":"api.openai.com/key:932faab181b5/project:proj_abc","cause":"answer","mode":"enforce","class":"quota_exhausted","provider":"openai","error_code":"insufficient_quota","error_type":"insufficient_quota","status_code":429,"request_id":"req_golden","at":"2026-11-26T08:41:00Z"}]`},
		{"observe", quotaAnswer(t), "https://api.openai.com/v1/chat/completions", []Option{WithMode(ModeObserve)},
			`[{"scope":"api.openai.com/key:932faab181b5/project:proj_abc","cause":"answer","mode":"observe","class":"quota_exhausted","provider":"openai","error_code":"insufficient_quota","error_type":"insufficient_quota","status_code":429,"request_id":"req_golden","at":"2026-11-26T08:41:00Z"}]`},
		{"empty fields left out", answerFrom(t, "openai-insufficient-quota-code-null-2023"), "https://llm-gateway.example/v1/chat/completions",
			[]Option{WithScope(func(*http.Request) string { return "tenant:acme" })},
			`[{"scope":"tenant:acme","cause":"answer","mode":"enforce","class":"quota_exhausted","error_type":"insufficient_quota","status_code":429,"at":"2026-11-26T08:41:00Z"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.answer
			if strings.Contains(tt.url, "api.openai.com") {
				a.header = a.header.Clone()
				a.header.Set("X-Request-Id", "req_golden")
			}
			tr := New(fakeBase(a), append(tt.opts, clock)...)
			if b, err := json.Marshal(openLatches(t, tr)); err != nil || string(b) != "[]" {
				t.Errorf("no latch: %s, %v; want []", b, err)
			}
			req := chatRequest(t, tt.url, "sk-proj-golden")
			req.Header.Set("OpenAI-Project", "proj_abc")
			sendReq(t, tr, req)
			trips := openLatches(t, tr)
			b, err := json.Marshal(trips)
			if err != nil || string(b) != tt.golden {
				t.Errorf("JSON:\n got %s (%v)\nwant %s", b, err, tt.golden)
			}
			var back []Trip
			if err := json.Unmarshal(b, &back); err != nil || len(back) != 1 || back[0] != trips[0] {
				t.Errorf("decoded %+v (%v), want %+v", back, err, trips)
			}
			if resetAll(t, tr) != 1 {
				t.Fatal("ResetAll found no latch")
			}
			if b, _ := json.Marshal(openLatches(t, tr)); string(b) != "[]" {
				t.Errorf("after ResetAll: %s, want []", b)
			}
		})
	}

	t.Run("mode text", func(t *testing.T) {
		if _, err := json.Marshal(Trip{Mode: Mode(7)}); err == nil {
			t.Error("an unknown mode marshalled")
		}
		var m Mode
		if err := m.UnmarshalText([]byte("refuse")); err == nil {
			t.Error("an unknown mode unmarshalled")
		}
		for _, want := range []Mode{ModeEnforce, ModeObserve} {
			b, _ := want.MarshalText()
			if err := m.UnmarshalText(b); err != nil || m != want || want.String() != string(b) {
				t.Errorf("%v: %s, %v", want, b, err)
			}
		}
	})
}

// TestZeroTransport: a Transport not made with New fails every call with
// an error that says to use New, closes the request body and never panics.
func TestZeroTransport(t *testing.T) {
	var zero Transport
	for name, tr := range map[string]*Transport{"&Transport{}": {}, "var Transport": &zero} {
		t.Run(name, func(t *testing.T) {
			body := &closeCounter{Reader: strings.NewReader(prompt)}
			req := chatRequest(t, "https://api.openai.com/v1/chat/completions", "sk-a")
			req.Body = body
			resp, err := tr.RoundTrip(req)
			if resp != nil || err == nil || !strings.Contains(err.Error(), "quotabreaker.New") {
				t.Errorf("RoundTrip = %v, %v; want an error naming quotabreaker.New", resp, err)
			}
			if body.closed.Load() == 0 {
				t.Error("the request body was not closed")
			}
			if _, err := (&http.Client{Transport: tr}).Do(chatRequest(t, "https://api.openai.com/v1/chat/completions", "sk-a")); err == nil || !strings.Contains(err.Error(), "quotabreaker.New") {
				t.Errorf("http.Client.Do: %v", err)
			}
			ctx := context.Background()
			if ok, err := tr.Reset(ctx, "x"); ok || err == nil || !strings.Contains(err.Error(), "quotabreaker.New") {
				t.Errorf("Reset = %v, %v", ok, err)
			}
			if n, err := tr.ResetAll(ctx); n != 0 || err == nil || !strings.Contains(err.Error(), "quotabreaker.New") {
				t.Errorf("ResetAll = %v, %v", n, err)
			}
			trips, err := tr.OpenLatches(ctx)
			if trips == nil || len(trips) != 0 || err == nil || !strings.Contains(err.Error(), "quotabreaker.New") {
				t.Errorf("OpenLatches = %#v, %v", trips, err)
			}
			tr.CloseIdleConnections()
			tr.SetMode(ModeObserve)
			if tr.Mode() != ModeObserve {
				t.Errorf("Mode() = %v after SetMode(ModeObserve)", tr.Mode())
			}
		})
	}
}

// TestHookContexts: OnTrip's context carries the tripping request's values
// and its span, and outlives the request's cancellation; OnReset's is the
// one given to Reset.
func TestHookContexts(t *testing.T) {
	type tenantKey struct{}
	rec := newRecording(t)
	var tripCtx, resetCtx context.Context
	tr := New(fakeBase(quotaAnswer(t)), append(rec.options(),
		OnTrip(func(ctx context.Context, _ Trip) { tripCtx = ctx }),
		OnReset(func(ctx context.Context, _ Trip) { resetCtx = ctx }))...)

	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), tenantKey{}, "acme"))
	ctx, app := rec.tp.Tracer("app").Start(ctx, "handle request")
	req := chatRequest(t, "https://api.openai.com/v1/chat/completions", "sk-a").WithContext(ctx)
	sendReq(t, tr, req)
	cancel()
	app.End()

	if tripCtx == nil {
		t.Fatal("OnTrip did not run")
	}
	if v := tripCtx.Value(tenantKey{}); v != "acme" {
		t.Errorf("OnTrip's context value = %v, want acme", v)
	}
	if tripCtx.Err() != nil {
		t.Errorf("OnTrip's context ended with the request: %v", tripCtx.Err())
	}
	spans := rec.ours()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sc := trace.SpanContextFromContext(tripCtx)
	if sc.SpanID() != spans[0].SpanContext().SpanID() || sc.TraceID() != app.SpanContext().TraceID() {
		t.Errorf("OnTrip's span %v, want the attempt's span %v in the request's trace", sc.SpanID(), spans[0].SpanContext().SpanID())
	}

	opCtx := context.WithValue(context.Background(), tenantKey{}, "operator")
	if n, err := tr.ResetAll(opCtx); n != 1 || err != nil {
		t.Fatalf("ResetAll = %v, %v", n, err)
	}
	if resetCtx == nil || resetCtx.Value(tenantKey{}) != "operator" {
		t.Errorf("OnReset's context is not ResetAll's")
	}
}

// TestStatusLineSaysInsufficientQuota: the tripping answer and each refused
// one read "<code> Insufficient Quota", so that SDK errors and logs that
// print the status say so; the code and the body are unchanged.
func TestStatusLineSaysInsufficientQuota(t *testing.T) {
	for _, s := range loadCorpus(t) {
		a := corpusAnswer{s.Status, s.Header(), s.Body}
		if classify.Answer(a.status, a.header, []byte(a.body)).Class != classify.QuotaExhausted {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			srv := newServer(t, func(string, int) corpusAnswer { return a })
			tr := New(nil)
			want := fmt.Sprintf("%d Insufficient Quota", a.status)
			for i := 0; i < 3; i++ {
				resp, body := send(t, tr, srv.URL, "sk-a")
				if resp.Status != want || resp.StatusCode != a.status || string(body) != a.body {
					t.Errorf("answer %d: %q (code %d), body %q; want %q and the body as sent", i, resp.Status, resp.StatusCode, body, want)
				}
				if shortCircuited(resp) != (i > 0) {
					t.Errorf("answer %d: short-circuited = %v", i, shortCircuited(resp))
				}
			}
		})
	}
}

// TestShouldRetryFalseWithoutTrip: an answer whose class cannot succeed
// later, under a status the SDKs retry, is marked X-Should-Retry: false in
// enforce mode without opening a latch or changing its status line; one
// the SDKs do not retry anyway is left alone, and observe mode changes
// nothing.
func TestShouldRetryFalseWithoutTrip(t *testing.T) {
	tests := []struct {
		sample string
		mode   Mode
		want   string
	}{
		{"openai-access-terminated-429", ModeEnforce, "false"},
		{"openai-access-terminated-429", ModeObserve, ""},
		{"openai-unsupported-parameter-400", ModeEnforce, ""},
		{"openai-rate-limit-tokens-tpm", ModeEnforce, ""},
	}
	for _, tt := range tests {
		t.Run(tt.sample+"/"+tt.mode.String(), func(t *testing.T) {
			a := answerFrom(t, tt.sample)
			srv := newServer(t, func(string, int) corpusAnswer { return a })
			bare, _ := send(t, http.DefaultTransport, srv.URL, "sk-a")
			tr := New(nil, WithMode(tt.mode))
			for i := 0; i < 2; i++ {
				resp, body := send(t, tr, srv.URL, "sk-a")
				if got := resp.Header.Get(HeaderShouldRetry); got != tt.want {
					t.Errorf("X-Should-Retry = %q, want %q", got, tt.want)
				}
				if resp.Status != bare.Status || string(body) != a.body || shortCircuited(resp) {
					t.Errorf("answer changed: %q %q", resp.Status, body)
				}
			}
			if srv.hits.Load() != 3 || len(openLatches(t, tr)) != 0 {
				t.Errorf("a latch opened: %d hits, %v", srv.hits.Load(), openLatches(t, tr))
			}
		})
	}
}

// TestMetricsCarryRequestContext: trips, short circuits, errors and
// open_latches are recorded with the request's context, so that the SDK's
// exemplars link them to the request's trace.
func TestMetricsCarryRequestContext(t *testing.T) {
	rec := newRecording(t)
	tr := New(fakeBase(quotaAnswer(t)), rec.options()...)
	ctx, app := rec.tp.Tracer("app").Start(context.Background(), "handle request")
	for i := 0; i < 2; i++ { // the trip, then a refused request
		sendReq(t, tr, chatRequest(t, "https://api.openai.com/v1/chat/completions", "sk-a").WithContext(ctx))
	}
	app.End()
	want := app.SpanContext().TraceID()
	seen := map[string]bool{}
	for _, sm := range rec.metrics(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			d, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue // the operation duration, recorded once the body is done
			}
			for _, p := range d.DataPoints {
				for _, e := range p.Exemplars {
					if trace.TraceID(e.TraceID) == want {
						seen[m.Name] = true
					}
				}
			}
		}
	}
	for _, name := range []string{"quotabreaker.trips", "quotabreaker.short_circuits", "quotabreaker.errors", "quotabreaker.open_latches"} {
		if !seen[name] {
			t.Errorf("%s has no exemplar in the request's trace", name)
		}
	}
}

// TestSpanKind: alone, the Transport's span is the attempt's CLIENT span.
// Under an HTTP client instrumentation that already started the attempt's
// CLIENT span (its traceparent header names the span in the request's
// context, as otelhttp's Transport injects), it is INTERNAL, so that each
// attempt has one CLIENT span. A traceparent that names another span (one
// forwarded from an incoming request) does not count.
func TestSpanKind(t *testing.T) {
	tests := []struct {
		name  string
		outer bool // an outer span in the request's context
		tp    string
		want  trace.SpanKind
	}{
		{"alone", false, "", trace.SpanKindClient},
		{"outer span, no header", true, "", trace.SpanKindClient},
		{"traceparent names the outer span", true, "inject", trace.SpanKindInternal},
		{"traceparent names another span", true, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", trace.SpanKindClient},
		{"traceparent, no span in context", false, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", trace.SpanKindClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecording(t)
			tr := New(fakeBase(ok()), rec.options()...)
			req := chatRequest(t, "https://api.openai.com/v1/chat/completions", "sk-a")
			ctx := context.Background()
			var outer trace.Span
			if tt.outer {
				ctx, outer = rec.tp.Tracer("otelhttp-like").Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient))
			}
			switch tt.tp {
			case "":
			case "inject":
				propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
			default:
				req.Header.Set("Traceparent", tt.tp)
			}
			sendReq(t, tr, req.WithContext(ctx))
			if outer != nil {
				outer.End()
			}
			spans := rec.ours()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.SpanKind() != tt.want {
				t.Errorf("span kind %v, want %v", s.SpanKind(), tt.want)
			}
			if outer != nil && s.Parent().SpanID() != outer.SpanContext().SpanID() {
				t.Error("the span is not a child of the outer span")
			}
			if s.InstrumentationScope().Version == "" {
				t.Error("the tracer has no instrumentation version")
			}
		})
	}
	rec := newRecording(t)
	send(t, New(fakeBase(quotaAnswer(t)), rec.options()...), "https://api.openai.com/v1/chat/completions", "sk-a")
	for _, sm := range rec.metrics(t).ScopeMetrics {
		if sm.Scope.Name == scopeName && sm.Scope.Version == "" {
			t.Error("the meter has no instrumentation version")
		}
	}
}

// TestUnknownModeIgnored: a Mode other than ModeEnforce and ModeObserve
// (a bad config value, say) leaves the mode as it was, and no request
// panics on it.
func TestUnknownModeIgnored(t *testing.T) {
	const url = "https://api.openai.com/v1/chat/completions"
	base := newProvider(func(*http.Request) corpusAnswer { return quotaAnswer(t) })
	tr := New(base, WithMode(Mode(7)))
	if tr.Mode() != ModeEnforce {
		t.Errorf("WithMode(Mode(7)): Mode() = %v, want the default", tr.Mode())
	}
	send(t, tr, url, "sk-a") // trips
	for _, tt := range []struct {
		set, bad Mode
		refused  bool
	}{
		{ModeEnforce, Mode(-1), true},
		{ModeObserve, Mode(2), false},
	} {
		tr.SetMode(tt.set)
		tr.SetMode(tt.bad)
		if tr.Mode() != tt.set {
			t.Errorf("SetMode(%d) after SetMode(%v): Mode() = %v", int32(tt.bad), tt.set, tr.Mode())
		}
		before := base.hits.Load()
		resp, _ := send(t, tr, url, "sk-a")
		if shortCircuited(resp) != tt.refused || (base.hits.Load() == before) != tt.refused {
			t.Errorf("in %v after SetMode(%d): short-circuited %v, %d hits", tt.set, int32(tt.bad), shortCircuited(resp), base.hits.Load()-before)
		}
	}
}
