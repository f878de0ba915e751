package examples_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/examples/internal/fakeopenai"
)

const (
	qbScope       = "github.com/quotabreaker/quotabreaker"
	otelhttpScope = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

func spanAttr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// composedCalls drives openai-go through a transport built by compose from
// a base and a tracer provider: one call that trips the latch and one that
// the open latch refuses. It returns the spans of each call in end order.
func composedCalls(t *testing.T, compose func(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper) (tripping, refused []sdktrace.ReadOnlySpan) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := fakeopenai.New()
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(func() { srv.Close(); base.CloseIdleConnections() })

	const key = "sk-proj-otelhttp"
	srv.Script(key, nil, fakeopenai.QuotaExhausted)
	client := openaiGo(srv, key, compose(base, tp))
	_, err := client.Chat.Completions.New(context.Background(), chatParams)
	quotaError(t, err)
	tripping = rec.Ended()
	_, err = client.Chat.Completions.New(context.Background(), chatParams)
	quotaError(t, err)
	refused = rec.Ended()[len(tripping):]
	if srv.Hits() != 1 {
		t.Errorf("server saw %d requests, want 1", srv.Hits())
	}
	return tripping, refused
}

func byScope(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		m[s.InstrumentationScope().Name] = s
	}
	return m
}

// classified counts the spans that carry the class: each attempt's
// classification must land on exactly one span.
func classified(spans []sdktrace.ReadOnlySpan) int {
	n := 0
	for _, s := range spans {
		if spanAttr(s, "error.type") == "quota_exhausted" {
			n++
		}
	}
	return n
}

// The recommended order: quotabreaker outside otelhttp. Each attempt is
// quotabreaker's span; the network request is otelhttp's child span, which
// a refused attempt does not have.
func TestOtelhttpInside(t *testing.T) {
	tripping, refused := composedCalls(t, func(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
		return quotabreaker.New(otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp)), quotabreaker.WithTracerProvider(tp))
	})
	spans := byScope(tripping)
	qs, hs := spans[qbScope], spans[otelhttpScope]
	if len(tripping) != 2 || qs == nil || hs == nil {
		t.Fatalf("tripping attempt: %d spans %v, want quotabreaker's and otelhttp's", len(tripping), spans)
	}
	if hs.Parent().SpanID() != qs.SpanContext().SpanID() {
		t.Error("otelhttp's span is not a child of quotabreaker's")
	}
	if classified(tripping) != 1 || spanAttr(qs, "error.type") != "quota_exhausted" {
		t.Errorf("class on %d spans; quotabreaker's error.type = %q", classified(tripping), spanAttr(qs, "error.type"))
	}
	if got := spanAttr(hs, "error.type"); got != "429" {
		t.Errorf("otelhttp's error.type = %q, want its own 429", got)
	}

	if len(refused) != 1 || refused[0].InstrumentationScope().Name != qbScope {
		t.Fatalf("refused attempt: %d spans, want quotabreaker's alone (no network span)", len(refused))
	}
	if spanAttr(refused[0], "quotabreaker.short_circuit") != "true" || classified(refused) != 1 {
		t.Errorf("refused span attributes: %v", refused[0].Attributes())
	}
}

// The other order works too: otelhttp's span is the parent and the class
// is still on exactly one span, quotabreaker's child.
func TestOtelhttpOutside(t *testing.T) {
	tripping, refused := composedCalls(t, func(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
		return otelhttp.NewTransport(quotabreaker.New(base, quotabreaker.WithTracerProvider(tp)), otelhttp.WithTracerProvider(tp))
	})
	for name, spans := range map[string][]sdktrace.ReadOnlySpan{"tripping": tripping, "refused": refused} {
		m := byScope(spans)
		qs, hs := m[qbScope], m[otelhttpScope]
		if len(spans) != 2 || qs == nil || hs == nil {
			t.Fatalf("%s attempt: %d spans, want otelhttp's and quotabreaker's", name, len(spans))
		}
		if qs.Parent().SpanID() != hs.SpanContext().SpanID() {
			t.Errorf("%s: quotabreaker's span is not a child of otelhttp's", name)
		}
		if classified(spans) != 1 || spanAttr(qs, "error.type") != "quota_exhausted" {
			t.Errorf("%s: class on %d spans", name, classified(spans))
		}
	}
	if spanAttr(byScope(refused)[qbScope], "quotabreaker.short_circuit") != "true" {
		t.Error("refused attempt not marked short_circuit")
	}
}
