package quotabreaker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotabreaker/quotabreaker/classify"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func TestSpanPerClass(t *testing.T) {
	t.Parallel() // local state only; no global provider, handler or heap measure
	tests := []struct {
		sample, url, provider string
		class                 classify.Class
	}{
		{"openai-insufficient-quota-429-status-shown", "https://api.openai.com/v1/chat/completions", "openai", classify.QuotaExhausted},
		{"openai-rate-limit-tokens-tpm", "https://api.openai.com/v1/chat/completions", "openai", classify.RateLimited},
		{"openai-model-overloaded-503", "https://api.openai.com/v1/chat/completions", "openai", classify.Overloaded},
		{"openai-server-error-500", "https://api.openai.com/v1/chat/completions", "openai", classify.ServerError},
		{"openai-context-length-exceeded", "https://api.openai.com/v1/chat/completions", "openai", classify.ContextLengthExceeded},
		{"openai-model-not-found-404-learn-more", "https://api.openai.com/v1/chat/completions", "openai", classify.ModelNotFound},
		{"openai-invalid-api-key-401", "https://api.openai.com/v1/chat/completions", "openai", classify.Authentication},
		{"openai-unsupported-country-403", "https://api.openai.com/v1/chat/completions", "openai", classify.Permission},
		{"openai-unsupported-parameter-400", "https://api.openai.com/v1/chat/completions", "openai", classify.InvalidRequest},
		{"azure-content-filter-400", "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-02-01", "azure.ai.openai", classify.ContentFilter},
		{"anthropic-overloaded-529-headers", "https://api.anthropic.com/v1/messages", "anthropic", classify.Overloaded},
		{"deepseek-insufficient-balance-402", "https://api.deepseek.com/chat/completions", "deepseek", classify.QuotaExhausted},
		{"gemini-429-free-tier-quotafailure", "https://localhost:8443/v1beta/models/m:generateContent", "gcp.gemini", classify.RateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.sample, func(t *testing.T) {
			rec := newRecording(t)
			a := answerFrom(t, tt.sample)
			tr := New(fakeBase(a), rec.options()...)
			send(t, tr, tt.url, "sk-a")
			spans := rec.spans.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			s := spans[0]
			m := attrs(s)
			want := classify.Answer(a.status, a.header, []byte(a.body))
			state := "closed"
			if tt.class == classify.QuotaExhausted {
				state = "open"
			}
			checks := map[attribute.Key]any{
				"error.type":                 string(tt.class),
				"gen_ai.provider.name":       tt.provider,
				"http.request.method":        "POST",
				"http.response.status_code":  int64(a.status),
				"quotabreaker.breaker.state": state,
				"quotabreaker.mode":          "enforce",
				"quotabreaker.error.code":    want.Code,
				"quotabreaker.error.type":    want.Type,
			}
			for k, v := range checks {
				if v == "" {
					if _, ok := m[k]; ok {
						t.Errorf("%s set for an empty value", k)
					}
					continue
				}
				if got := m[k].AsInterface(); got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
			if s.Name() != "POST" || s.SpanKind() != trace.SpanKindClient || s.Status().Code != codes.Error {
				t.Errorf("span %q kind %v status %v", s.Name(), s.SpanKind(), s.Status())
			}
			if !strings.Contains(m["quotabreaker.scope"].AsString(), "/key:") || m["server.address"].AsString() == "" || m["url.full"].AsString() == "" {
				t.Errorf("scope, server.address or url.full missing: %v", m)
			}
		})
	}
}

func TestQuotaAndRateLimitReadApart(t *testing.T) {
	rec := newRecording(t)
	url := "https://api.openai.com/v1/chat/completions"
	send(t, New(fakeBase(answerFrom(t, "openai-rate-limit-tokens-tpm")), rec.options()...), url, "sk-a")
	send(t, New(fakeBase(quotaAnswer(t)), rec.options()...), url, "sk-a")
	spans := rec.spans.Ended()
	rate, quota := attrs(spans[0]), attrs(spans[1])
	if rate["http.response.status_code"] != quota["http.response.status_code"] {
		t.Fatal("samples should share status 429")
	}
	if rate["error.type"].AsString() != "rate_limited" || quota["error.type"].AsString() != "quota_exhausted" {
		t.Errorf("error.type: rate %q, quota %q", rate["error.type"].AsString(), quota["error.type"].AsString())
	}
}

// instrumentedBase starts a span of its own for each request that reaches
// it, standing for the network span of an instrumented transport.
func instrumentedBase(tp trace.TracerProvider, next http.RoundTripper) http.RoundTripper {
	tracer := tp.Tracer("network")
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		_, span := tracer.Start(r.Context(), "network", trace.WithSpanKind(trace.SpanKindClient))
		defer span.End()
		return next.RoundTrip(r)
	})
}

func TestShortCircuitSpan(t *testing.T) {
	rec := newRecording(t)
	tr := New(instrumentedBase(rec.tp, fakeBase(quotaAnswer(t))), rec.options()...)
	url := "https://api.openai.com/v1/chat/completions"
	send(t, tr, url, "sk-a")
	for i := 0; i < 3; i++ {
		send(t, tr, url, "sk-a")
	}
	spans := rec.spans.Ended()
	var ours, network []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "network" {
			network = append(network, s)
		} else {
			ours = append(ours, s)
		}
	}
	if len(network) != 1 || len(ours) != 4 {
		t.Fatalf("%d network spans and %d of ours, want 1 and 4", len(network), len(ours))
	}
	if network[0].Parent().SpanID() != ours[0].SpanContext().SpanID() {
		t.Error("the network span is not a child of the attempt's span")
	}
	first := attrs(ours[0])
	if _, ok := first["quotabreaker.short_circuit"]; ok {
		t.Error("the tripping attempt reached the network but says short_circuit")
	}
	if ev := ours[0].Events(); len(ev) != 1 || ev[0].Name != "quotabreaker.trip" {
		t.Errorf("tripping span events = %v, want one quotabreaker.trip", ev)
	}
	for _, s := range ours[1:] {
		m := attrs(s)
		if !m["quotabreaker.short_circuit"].AsBool() || m["quotabreaker.breaker.state"].AsString() != "open" ||
			m["error.type"].AsString() != "quota_exhausted" || m["quotabreaker.error.code"].AsString() != "insufficient_quota" ||
			m["quotabreaker.scope"] != first["quotabreaker.scope"] || s.Status().Code != codes.Error {
			t.Errorf("short-circuited span attributes: %v", m)
		}
		for _, n := range network {
			if n.Parent().SpanID() == s.SpanContext().SpanID() {
				t.Error("a short-circuited attempt has a network child span")
			}
		}
	}
}

func TestRateLimitAttributes(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header http.Header
		want   int64
	}{
		{"retry-after-ms", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"9"}}, 1500},
		{"retry-after seconds", http.Header{"Retry-After": {"2"}}, 2000},
		{"retry-after date", http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, 30000},
		{"exhausted token limit", http.Header{
			"X-Ratelimit-Remaining-Requests": {"499"}, "X-Ratelimit-Reset-Requests": {"120ms"},
			"X-Ratelimit-Remaining-Tokens": {"0"}, "X-Ratelimit-Reset-Tokens": {"6m0s"},
		}, 360000},
	}
	rate := answerFrom(t, "openai-rate-limit-tokens-tpm")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecording(t)
			a := rate
			a.header = rate.header.Clone()
			for k, v := range tt.header {
				a.header[k] = v
			}
			a.header.Set("X-Request-Id", "req_abc")
			send(t, New(fakeBase(a), append(rec.options(), WithClock(func() time.Time { return now }))...), "https://api.openai.com/v1/chat/completions", "sk-a")
			m := attrs(rec.spans.Ended()[0])
			if got := m["quotabreaker.retry_after_ms"].AsInt64(); got != tt.want {
				t.Errorf("retry_after_ms = %d, want %d", got, tt.want)
			}
			if m["quotabreaker.request_id"].AsString() != "req_abc" {
				t.Errorf("request_id = %v", m["quotabreaker.request_id"])
			}
		})
	}
}

func TestSuccessSpan(t *testing.T) {
	rec := newRecording(t)
	a := ok()
	a.header.Set("X-Ratelimit-Remaining-Requests", "9999")
	a.header.Set("X-Ratelimit-Remaining-Tokens", "29000")
	tr := New(fakeBase(a), rec.options()...)
	req := httptest.NewRequest(http.MethodPost, "https://api.openai.com:443/v1/chat/completions", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.spans.Ended()); n != 0 {
		t.Fatalf("span ended before the body was read (%d ended)", n)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	spans := rec.spans.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans after close, want 1", len(spans))
	}
	m := attrs(spans[0])
	want := map[attribute.Key]any{
		"http.request.method":                       "POST",
		"server.address":                            "api.openai.com",
		"server.port":                               int64(443),
		"url.full":                                  "https://api.openai.com:443/v1/chat/completions",
		"http.response.status_code":                 int64(200),
		"gen_ai.provider.name":                      "openai",
		"quotabreaker.breaker.state":                "closed",
		"quotabreaker.mode":                         "enforce",
		"quotabreaker.request_id":                   "req_ok",
		"quotabreaker.ratelimit.remaining_requests": int64(9999),
		"quotabreaker.ratelimit.remaining_tokens":   int64(29000),
	}
	for k, v := range want {
		if got := m[k].AsInterface(); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	for _, k := range []attribute.Key{"error.type", "quotabreaker.short_circuit", "quotabreaker.error.code"} {
		if _, ok := m[k]; ok {
			t.Errorf("success span has %s", k)
		}
	}
	if spans[0].Status().Code == codes.Error {
		t.Error("success span has status Error")
	}
}

func TestTransportErrorSpan(t *testing.T) {
	rec := newRecording(t)
	tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return nil, fmt.Errorf("dial %s: %w", r.URL, context.DeadlineExceeded)
	}), rec.options()...)
	req := httptest.NewRequest("GET", "https://generativelanguage.googleapis.com/v1beta/models?key=AIzaSECRET", nil)
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("want an error")
	}
	s := rec.spans.Ended()[0]
	m := attrs(s)
	if m["error.type"].AsString() == "" || s.Status().Code != codes.Error {
		t.Errorf("error span: %v %v", m, s.Status())
	}
	if strings.Contains(fmt.Sprint(m, s.Status()), "AIzaSECRET") {
		t.Errorf("the key in the URL reached the span: %v %v", m, s.Status())
	}
	if got := m["url.full"].AsString(); got != "https://generativelanguage.googleapis.com/v1beta/models?key=REDACTED" {
		t.Errorf("url.full = %q", got)
	}
}

// TestResetSpan: a reset is not a failure, so its span carries no
// error.type (OpenTelemetry reads that as "this operation failed") and names
// the class that had tripped the latch as quotabreaker.trip.class.
func TestResetSpan(t *testing.T) {
	rec := newRecording(t)
	tr := New(fakeBase(quotaAnswer(t)), rec.options()...)
	send(t, tr, "https://api.openai.com/v1/chat/completions", "sk-a")
	scope := openLatches(t, tr)[0].Scope
	parentCtx, parent := rec.tp.Tracer("operator").Start(context.Background(), "operator")
	if ok, err := tr.Reset(parentCtx, scope); !ok || err != nil {
		t.Fatalf("Reset = %v, %v", ok, err)
	}
	parent.End()
	var resets []sdktrace.ReadOnlySpan
	for _, s := range rec.ours() {
		if s.Name() == "quotabreaker.reset" {
			resets = append(resets, s)
		}
	}
	if len(resets) != 1 {
		t.Fatalf("%d reset spans, want 1", len(resets))
	}
	s := resets[0]
	m := attrs(s)
	if m["quotabreaker.scope"].AsString() != scope || m["quotabreaker.trip.class"].AsString() != "quota_exhausted" ||
		m["quotabreaker.breaker.state"].AsString() != "closed" || m["quotabreaker.error.code"].AsString() != "insufficient_quota" {
		t.Errorf("reset span %q %v", s.Name(), m)
	}
	if _, ok := m["error.type"]; ok || s.Status().Code == codes.Error {
		t.Errorf("the reset span says it failed: error.type %v, status %v", m["error.type"], s.Status())
	}
	if s.SpanKind() != trace.SpanKindInternal || s.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("reset span kind %v, parent %v; want INTERNAL, a child of Reset's context", s.SpanKind(), s.Parent().SpanID())
	}
}

// TestMetricsScript drives ok, rate limit, quota, five short circuits, a
// reset and ok, and reads the counters a real SDK collected.
func TestMetricsScript(t *testing.T) {
	rec := newRecording(t)
	script := []string{"ok", "openai-rate-limit-tokens-tpm", "openai-insufficient-quota-429-status-shown", "ok"}
	n := 0
	tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		a := ok()
		if name := script[n]; name != "ok" {
			a = answerFrom(t, name)
		}
		n++
		return a.response(r), nil
	}), rec.options()...)
	url := "https://api.openai.com/v1/chat/completions"
	send(t, tr, url, "sk-a")
	send(t, tr, url, "sk-a")
	send(t, tr, url, "sk-a")
	for i := 0; i < 5; i++ {
		if resp, _ := send(t, tr, url, "sk-a"); !shortCircuited(resp) {
			t.Fatal("not short-circuited")
		}
	}
	if got := collect(t, rec)["quotabreaker.open_latches"]; got != 1 {
		t.Errorf("open_latches before reset = %d, want 1", got)
	}
	// A second Transport on the same meter provider adds its own latches
	// to the count rather than replacing it.
	other := New(fakeBase(quotaAnswer(t)), rec.options()...)
	send(t, other, url, "sk-b")
	if got := collect(t, rec)["quotabreaker.open_latches"]; got != 2 {
		t.Errorf("open_latches with two Transports = %d, want 2", got)
	}
	resetAll(t, other)
	resetAll(t, tr)
	send(t, tr, url, "sk-a")

	want := map[string]int64{
		"quotabreaker.errors{error.type=quota_exhausted,gen_ai.provider.name=openai,quotabreaker.error.code=insufficient_quota}":                          2,
		"quotabreaker.errors{error.type=rate_limited,gen_ai.provider.name=openai,quotabreaker.error.code=rate_limit_exceeded}":                            1,
		"quotabreaker.short_circuits{error.type=quota_exhausted,gen_ai.provider.name=openai,quotabreaker.cause=answer,quotabreaker.mode=enforce}":         5,
		"quotabreaker.trips{error.type=quota_exhausted,gen_ai.provider.name=openai,quotabreaker.error.code=insufficient_quota,quotabreaker.mode=enforce}": 2,
		"quotabreaker.open_latches": 0,
		// The two ok answers carry no usage: unmetered, and said so.
		"quotabreaker.answers{gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o-mini,gen_ai.response.model=gpt-4o-mini,quotabreaker.metering=unmetered,quotabreaker.usage.missing=no_usage}": 2,
		// Every attempt that reached the network, by its error.type.
		"gen_ai.client.operation.duration{gen_ai.operation.name=chat,gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o-mini,server.address=api.openai.com}":                            2,
		"gen_ai.client.operation.duration{error.type=rate_limited,gen_ai.operation.name=chat,gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o-mini,server.address=api.openai.com}":    1,
		"gen_ai.client.operation.duration{error.type=quota_exhausted,gen_ai.operation.name=chat,gen_ai.provider.name=openai,gen_ai.request.model=gpt-4o-mini,server.address=api.openai.com}": 2,
	}
	got := collect(t, rec)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("collected %v, want exactly %v", got, want)
	}
}

// TestNoSecretsRecorded sends requests with a recognisable fake key, prompt
// and completion through every path, and searches everything recorded.
func TestNoSecretsRecorded(t *testing.T) {
	const key = "sk-proj-KEYCANARY0123456789abcdef"
	rec := newRecording(t)
	var all strings.Builder
	script := []corpusAnswer{
		{200, http.Header{"Content-Type": {"application/json"}}, `{"choices":[{"message":{"content":"COMPLETION-CANARY"}}]}`},
		answerFrom(t, "openai-rate-limit-tokens-tpm"),
		quotaAnswer(t),
	}
	n := 0
	tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		a := script[min(n, len(script)-1)]
		n++
		return a.response(r), nil
	}), append(rec.options(), OnTrip(func(_ context.Context, tp Trip) {
		if strings.Contains(fmt.Sprintf("%+v", tp), "CANARY") {
			t.Errorf("trip shows a secret: %+v", tp)
		}
	}))...)
	for _, url := range []string{
		"https://api.openai.com/v1/chat/completions",
		"https://user:PASSCANARY@api.openai.com/v1/chat/completions?api-key=QUERYCANARY&api-version=2024-02-01",
		"https://api.openai.com/v1/chat/completions",
		"https://api.openai.com/v1/chat/completions",
	} {
		req := httptest.NewRequest(http.MethodPost, url, strings.NewReader(`{"messages":[{"content":"PROMPT-CANARY"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Api-Key", "AZURECANARY")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	errTr := New(fakeBase(quotaAnswer(t)), WithShortCircuitError(true))
	for i := 0; i < 2; i++ {
		req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		if resp, err := errTr.RoundTrip(req); err != nil {
			fmt.Fprintf(&all, "%v %+v\n", err, err)
		} else {
			resp.Body.Close()
		}
	}
	trips, _ := json.Marshal(openLatches(t, tr))
	all.Write(trips)
	resetAll(t, tr)

	for _, s := range rec.spans.Ended() {
		fmt.Fprintf(&all, "%s %v %v %v\n", s.Name(), s.Attributes(), s.Status(), s.Events())
	}
	var rm metricdata.ResourceMetrics
	rec.reader.Collect(context.Background(), &rm)
	fmt.Fprintf(&all, "%+v", rm)
	recorded := all.String()
	if !strings.Contains(recorded, "quota_exhausted") {
		t.Fatal("nothing recorded: the search below proves nothing")
	}
	for _, secret := range []string{"KEYCANARY", key[:10], "AZURECANARY", "PASSCANARY", "QUERYCANARY", "PROMPT-CANARY", "COMPLETION-CANARY", "Bearer"} {
		if strings.Contains(recorded, secret) {
			t.Errorf("telemetry contains %q", secret)
		}
	}
}

// TestBreakerStateIsTheLatchs: an answer that arrives after its latch
// opened reports the latch open, even though the answer itself is a 200.
func TestBreakerStateIsTheLatchs(t *testing.T) {
	rec := newRecording(t)
	quota := answerFrom(t, "openai-insufficient-quota-429-status-shown")
	arrived, release := make(chan struct{}), make(chan struct{})
	tr := New(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("X-Slow") != "" {
			close(arrived)
			<-release
			return fakeBase(ok()).RoundTrip(r)
		}
		return fakeBase(quota).RoundTrip(r)
	}), rec.options()...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
		req.Header.Set("Authorization", "Bearer sk-a")
		req.Header.Set("X-Slow", "1")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	}()
	<-arrived
	send(t, tr, "https://api.openai.com/v1/chat/completions", "sk-a") // trips
	close(release)
	<-done
	spans := rec.spans.Ended()
	slow := attrs(spans[len(spans)-1])
	if slow["http.response.status_code"].AsInt64() != 200 || slow["quotabreaker.breaker.state"].AsString() != "open" {
		t.Errorf("late 200: %v, want breaker.state open", slow)
	}
}

// TestPooledSpanAttributes: the slices span attributes are built in are
// reused for the SDK's spans (see attrPool), which copy what they are
// given; a recorded span's attributes never change as later answers,
// successes and errors on several goroutines, reuse them.
func TestPooledSpanAttributes(t *testing.T) {
	rec := newRecording(t)
	_, probe := rec.tp.Tracer("probe").Start(context.Background(), "probe")
	pooled := copiesAttrs(probe)
	probe.End()
	if !pooled {
		t.Fatal("the SDK's span is not taken for one that copies its attributes: the pool is not in use, and this test proves nothing")
	}
	tr := New(numberedAnswers(), rec.options()...)
	sendNumbered(t, tr, 0)
	first := rec.ours()
	if len(first) != 1 {
		t.Fatalf("%d spans, want 1", len(first))
	}
	want := append([]attribute.KeyValue(nil), first[0].Attributes()...)
	if m := attrs(first[0]); m["gen_ai.response.model"].AsString() != "model-0" || m["quotabreaker.request_id"].AsString() != "req-0" {
		t.Fatalf("first span's attributes: %v", m)
	}
	runNumbered(t, tr, 1)
	if got := first[0].Attributes(); !reflect.DeepEqual(got, want) {
		t.Errorf("the first span's attributes changed after later answers:\n got %v\nwant %v", got, want)
	}
	if n := len(rec.ours()); n != 1+4*50 {
		t.Errorf("%d spans, want %d", n, 1+4*50)
	}
}

// TestKeptSpanAttributes: a tracer other than the SDK's may keep the slice
// SetAttributes is given; no slice given to it is reused.
func TestKeptSpanAttributes(t *testing.T) {
	kp := &keepingProvider{}
	tr := New(numberedAnswers(), WithTracerProvider(kp))
	sendNumbered(t, tr, 0)
	kp.mu.Lock()
	kept := kp.kept
	kp.mu.Unlock()
	if len(kept) == 0 {
		t.Fatal("no attributes were set")
	}
	want := make([][]attribute.KeyValue, len(kept))
	m := map[attribute.Key]attribute.Value{}
	for i, kv := range kept {
		want[i] = append([]attribute.KeyValue(nil), kv...)
		for _, a := range kv {
			if !a.Valid() {
				t.Fatalf("a kept slice was cleared as its span ended: %v", kept)
			}
			m[a.Key] = a.Value
		}
	}
	if m["gen_ai.response.model"].AsString() != "model-0" || m["quotabreaker.request_id"].AsString() != "req-0" || m["url.full"].AsString() == "" {
		t.Fatalf("first span's attributes: %v", m)
	}
	runNumbered(t, tr, 1)
	if !reflect.DeepEqual(kept, want) {
		t.Errorf("the slices the first span kept changed after later answers:\n got %v\nwant %v", kept, want)
	}
}

// numberedAnswers answers request n (its X-N header) with a chat answer
// whose model, usage, request ID and rate limits are n's, or, for every
// third, a server error.
func numberedAnswers() http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		n, _ := strconv.Atoi(r.Header.Get("X-N"))
		a := corpusAnswer{200, http.Header{"Content-Type": {"application/json"}}, fmt.Sprintf(
			`{"id":"c-%d","object":"chat.completion","model":"model-%d","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
			n, n, n+1, n+2, 2*n+3)}
		if n%3 == 2 {
			a.status, a.body = 500, `{"error":{"message":"boom","type":"server_error","code":"e`+strconv.Itoa(n)+`"}}`
		}
		a.header.Set("X-Request-Id", "req-"+strconv.Itoa(n))
		a.header.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(1000-n))
		return a.response(r), nil
	})
}

// sendNumbered sends request n through rt, read to its end and closed.
func sendNumbered(tb testing.TB, rt http.RoundTripper, n int) {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions",
		strings.NewReader(`{"model":"asked-`+strconv.Itoa(n)+`","messages":[]}`))
	req.Header.Set("Authorization", "Bearer sk-"+strconv.Itoa(n))
	req.Header.Set("X-N", strconv.Itoa(n))
	sendReq(tb, rt, req)
}

// runNumbered sends requests from..from+199 through rt on 4 goroutines.
func runNumbered(t *testing.T, rt http.RoundTripper, from int) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				n := from + g*50 + i
				req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions",
					strings.NewReader(`{"model":"asked-`+strconv.Itoa(n)+`","messages":[]}`))
				req.Header.Set("Authorization", "Bearer sk-"+strconv.Itoa(n))
				req.Header.Set("X-N", strconv.Itoa(n))
				if _, _, err := trySend(rt, req); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// keepingProvider's spans record and keep the slices SetAttributes is
// given, without copying them, as a tracer may.
type keepingProvider struct {
	tracenoop.TracerProvider
	mu   sync.Mutex
	kept [][]attribute.KeyValue // guarded by mu
}

func (p *keepingProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return keepingTracer{p: p}
}

type keepingTracer struct {
	tracenoop.Tracer
	p *keepingProvider
}

func (t keepingTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	return ctx, keepingSpan{p: t.p}
}

type keepingSpan struct {
	tracenoop.Span
	p *keepingProvider
}

func (keepingSpan) IsRecording() bool { return true }

func (s keepingSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.kept = append(s.p.kept, kv)
}

// TestRequestAttributesOnEveryPath: the request's HTTP attributes, which
// wait to be set with the answer's, reach the span however the attempt
// ends: answered, failed or panicking in the base, refused by an open
// latch or a budget, let past either in ModeObserve. Each span keeps the
// attributes of its own path too.
func TestRequestAttributesOnEveryPath(t *testing.T) {
	const url = "https://api.openai.com/v1/chat/completions"
	tests := []struct {
		name string
		opts []Option
		base http.RoundTripper
		// before sends what the attempt under test needs sent first.
		before func(t *testing.T, tr *Transport)
		want   map[attribute.Key]any // besides the request's
	}{
		{name: "answered", base: fakeBase(ok()),
			want: map[attribute.Key]any{"http.response.status_code": int64(200), "quotabreaker.metering": "unmetered"}},
		{name: "base failed", base: roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, io.ErrUnexpectedEOF }),
			want: map[attribute.Key]any{"error.type": "*errors.errorString", "quotabreaker.breaker.state": "closed", "quotabreaker.mode": "enforce"}},
		{name: "base panicked", base: roundTripperFunc(func(*http.Request) (*http.Response, error) { panic("base bug") })},
		{name: "latch open", base: fakeBase(quotaAnswer(t)),
			before: func(t *testing.T, tr *Transport) { send(t, tr, url, "sk-a") },
			want:   map[attribute.Key]any{"quotabreaker.short_circuit": true, "quotabreaker.cause": "answer"}},
		{name: "latch open, observed", opts: []Option{WithMode(ModeObserve)}, base: fakeBase(quotaAnswer(t)),
			before: func(t *testing.T, tr *Transport) { send(t, tr, url, "sk-a") },
			want:   map[attribute.Key]any{"quotabreaker.would_short_circuit": true, "http.response.status_code": int64(429)}},
		{name: "budget spent", opts: []Option{WithBudget(Budget{Name: "tiny", Limit: 0.000001, HardLimit: true})}, base: pricedProvider(t),
			before: func(t *testing.T, tr *Transport) { send(t, tr, url, "sk-a") },
			want:   map[attribute.Key]any{"quotabreaker.short_circuit": true, "quotabreaker.budget": "tiny"}},
		{name: "budget spent, observed", opts: []Option{WithMode(ModeObserve), WithBudget(Budget{Name: "tiny", Limit: 0.000001, HardLimit: true})}, base: pricedProvider(t),
			before: func(t *testing.T, tr *Transport) { send(t, tr, url, "sk-a") },
			want:   map[attribute.Key]any{"quotabreaker.would_short_circuit": true, "quotabreaker.budget": "tiny", "quotabreaker.metering": "priced"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecording(t)
			tr := New(tt.base, append(rec.options(), tt.opts...)...)
			if tt.before != nil {
				tt.before(t, tr)
			}
			func() {
				defer func() { recover() }() // the panicking base's
				resp, err := tr.RoundTrip(chatRequest(t, url, "sk-a"))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			spans := rec.ours()
			m := attrs(spans[len(spans)-1])
			want := map[attribute.Key]any{
				"http.request.method": "POST", "server.address": "api.openai.com",
				"server.port": int64(443), "url.full": url,
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if got := m[k].AsInterface(); got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
		})
	}
}

// TestSpanAttributesSetOnce: an answer's span is given its attributes, the
// request's, the answer's and the spend's, in one call, each key once: a
// span copies what it is given, and a second call or a repeated key costs
// a copy of its own.
func TestSpanAttributesSetOnce(t *testing.T) {
	kp := &keepingProvider{}
	tr := New(numberedAnswers(), WithTracerProvider(kp))
	sendNumbered(t, tr, 0)
	kp.mu.Lock()
	kept := kp.kept
	kp.mu.Unlock()
	if len(kept) != 1 {
		t.Fatalf("attributes set in %d calls, want 1: %v", len(kept), kept)
	}
	seen := map[attribute.Key]bool{}
	for _, a := range kept[0] {
		if seen[a.Key] {
			t.Errorf("%s set twice: %v", a.Key, kept[0])
		}
		seen[a.Key] = true
	}
	for _, k := range []attribute.Key{"http.request.method", "url.full", "http.response.status_code", "gen_ai.provider.name",
		"gen_ai.response.model", "gen_ai.usage.input_tokens", "quotabreaker.metering"} {
		if !seen[k] {
			t.Errorf("%s not set: %v", k, kept[0])
		}
	}
}
