package examples_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
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

// byScope maps each instrumentation scope to its one span, failing the
// test if a scope has more than one.
func byScope(t *testing.T, what string, spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		name := s.InstrumentationScope().Name
		if m[name] != nil {
			t.Errorf("%s: two spans from %s", what, name)
		}
		m[name] = s
	}
	return m
}

// count counts the spans for which f is true.
func count(spans []sdktrace.ReadOnlySpan, f func(sdktrace.ReadOnlySpan) bool) int {
	n := 0
	for _, s := range spans {
		if f(s) {
			n++
		}
	}
	return n
}

func isClient(s sdktrace.ReadOnlySpan) bool { return s.SpanKind() == trace.SpanKindClient }

// classified reports whether a span carries the class: each attempt's
// classification must land on exactly one span.
func classified(s sdktrace.ReadOnlySpan) bool { return spanAttr(s, "error.type") == "quota_exhausted" }

// With otelhttp in either order around quotabreaker, each attempt has
// exactly one CLIENT span, otelhttp's, and quotabreaker's span is INTERNAL;
// the class is on exactly one span, quotabreaker's. An attempt the open
// latch refuses has no otelhttp span when otelhttp is inside (nothing is
// sent), and quotabreaker's span, marked as a short circuit, is then its
// only one.
func TestOtelhttpComposition(t *testing.T) {
	for _, tt := range []struct {
		name string
		// compose builds the transport; parentScope is the scope of the
		// outer span of an attempt.
		compose     func(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper
		parentScope string
	}{
		{
			// The README's order: the network request is otelhttp's span,
			// a child of quotabreaker's.
			name: "otelhttp inside",
			compose: func(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
				return quotabreaker.New(otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp)), quotabreaker.WithTracerProvider(tp))
			},
			parentScope: qbScope,
		},
		{
			// otelhttp's span is the parent. quotabreaker knows it from
			// the traceparent header otelhttp injects, which needs the W3C
			// propagator (most applications install it globally).
			name: "otelhttp outside",
			compose: func(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
				return otelhttp.NewTransport(quotabreaker.New(base, quotabreaker.WithTracerProvider(tp)),
					otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{}))
			},
			parentScope: otelhttpScope,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tripping, refused := composedCalls(t, tt.compose)
			for _, a := range []struct {
				what  string
				spans []sdktrace.ReadOnlySpan
			}{{"tripping attempt", tripping}, {"refused attempt", refused}} {
				m := byScope(t, a.what, a.spans)
				qs, hs := m[qbScope], m[otelhttpScope]
				if qs == nil {
					t.Fatalf("%s: no quotabreaker span among %d", a.what, len(a.spans))
				}
				if v := qs.InstrumentationScope().Version; v == "" {
					t.Errorf("%s: quotabreaker's tracer has no instrumentation version", a.what)
				}
				if got := count(a.spans, classified); got != 1 || !classified(qs) {
					t.Errorf("%s: class on %d spans, quotabreaker's error.type = %q; want it on quotabreaker's alone",
						a.what, got, spanAttr(qs, "error.type"))
				}
				noNetwork := a.what == "refused attempt" && tt.parentScope == qbScope
				if noNetwork {
					if len(a.spans) != 1 {
						t.Errorf("%s: %d spans, want quotabreaker's alone (nothing was sent)", a.what, len(a.spans))
					}
					if got := spanAttr(qs, "quotabreaker.short_circuit"); got != "true" {
						t.Errorf("%s: quotabreaker.short_circuit = %q, want true", a.what, got)
					}
					continue
				}
				if hs == nil || len(a.spans) != 2 {
					t.Fatalf("%s: %d spans %v, want quotabreaker's and otelhttp's", a.what, len(a.spans), m)
				}
				if got := count(a.spans, isClient); got != 1 || !isClient(hs) {
					t.Errorf("%s: %d CLIENT spans, otelhttp's is %v; want otelhttp's alone", a.what, got, hs.SpanKind())
				}
				if qs.SpanKind() != trace.SpanKindInternal {
					t.Errorf("%s: quotabreaker's span is %v, want internal", a.what, qs.SpanKind())
				}
				parent, child := qs, hs
				if tt.parentScope == otelhttpScope {
					parent, child = hs, qs
				}
				if child.Parent().SpanID() != parent.SpanContext().SpanID() {
					t.Errorf("%s: %s's span is not a child of %s's", a.what, child.InstrumentationScope().Name, parent.InstrumentationScope().Name)
				}
				if a.what == "refused attempt" && spanAttr(qs, "quotabreaker.short_circuit") != "true" {
					t.Errorf("%s: quotabreaker's span not marked short_circuit", a.what)
				}
			}
		})
	}
}
