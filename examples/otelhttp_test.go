package examples_test

import (
	"context"
	"net/http"
	"os"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/examples/internal/fakeopenai"
)

func spanAttr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// quotabreaker outside otelhttp: each attempt gets quotabreaker's client
// span, with error.type set to the class, and otelhttp's HTTP span as its
// child, with error.type set to the status.
func TestOtelhttpInside(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := fakeopenai.New()
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(func() { srv.Close(); base.CloseIdleConnections() })
	qb := quotabreaker.New(otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp)), quotabreaker.WithTracerProvider(tp))

	const key = "sk-proj-otelhttp"
	srv.Script(key, nil, fakeopenai.QuotaExhausted)
	client := openaiGo(srv, key, qb)
	_, err := client.Chat.Completions.New(context.Background(), chatParams)
	quotaError(t, err)

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (quotabreaker's and otelhttp's)", len(spans))
	}
	byScope := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byScope[s.InstrumentationScope().Name] = s
	}
	qs, hs := byScope["github.com/quotabreaker/quotabreaker"], byScope["go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"]
	if qs == nil || hs == nil {
		t.Fatalf("spans by instrumentation scope: %v", byScope)
	}
	if got := spanAttr(qs, "error.type"); got != "quota_exhausted" {
		t.Errorf("quotabreaker span error.type = %q, want quota_exhausted", got)
	}
	if got := spanAttr(hs, "error.type"); got != "429" {
		t.Errorf("otelhttp span error.type = %q, want 429", got)
	}
	if hs.Parent().SpanID() != qs.SpanContext().SpanID() {
		t.Errorf("otelhttp span is not a child of quotabreaker's span")
	}
}

// KNOWN BUG (reported, not fixed here): WithContextSpan's documentation
// (config.go, WithContextSpan) recommends
// otelhttp.NewTransport(quotabreaker.New(base, quotabreaker.WithContextSpan()))
// so that one span carries both the HTTP and the quotabreaker attributes. But
// otelhttp sets error.type to the status code ("429") after the inner
// RoundTrip returns, overwriting quotabreaker's "quota_exhausted", so quota
// and rate-limit answers read the same again. Run with
// QUOTABREAKER_KNOWN_BUGS=1 to see it fail.
func TestKnownBugContextSpanErrorTypeOverwrittenByOtelhttp(t *testing.T) {
	if os.Getenv("QUOTABREAKER_KNOWN_BUGS") == "" {
		t.Skip("known library bug; set QUOTABREAKER_KNOWN_BUGS=1 to run")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := fakeopenai.New()
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(func() { srv.Close(); base.CloseIdleConnections() })
	qb := quotabreaker.New(base, quotabreaker.WithContextSpan())

	const key = "sk-proj-contextspan"
	srv.Script(key, nil, fakeopenai.QuotaExhausted)
	client := openaiGo(srv, key, otelhttp.NewTransport(qb, otelhttp.WithTracerProvider(tp)))
	for range 2 { // the tripping answer, then the short-circuited one
		_, err := client.Chat.Completions.New(context.Background(), chatParams)
		quotaError(t, err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, s := range spans {
		if got := spanAttr(s, "quotabreaker.error.code"); got != "insufficient_quota" {
			t.Errorf("span %d: quotabreaker.error.code = %q, want insufficient_quota", i, got)
		}
		if got := spanAttr(s, "error.type"); got != "quota_exhausted" {
			t.Errorf("span %d: error.type = %q, want quota_exhausted", i, got)
		}
	}
}
