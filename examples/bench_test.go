package examples_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/quotabreaker/quotabreaker"
)

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BenchmarkTelemetry compares, in one run and against the same stub base
// (no network), the bare base, otelhttp's transport alone and quotabreaker
// with tracing and metrics, each recording into a real OTel SDK that
// samples every span and exports nowhere.
//
//	go test -run '^$' -bench Telemetry -benchmem -count 10 ./examples | tee telemetry.txt
//	benchstat -col /transport telemetry.txt
func BenchmarkTelemetry(b *testing.B) {
	stub := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tp := sdktrace.NewTracerProvider()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { tp.Shutdown(b.Context()); mp.Shutdown(b.Context()) })

	for _, tt := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"transport=bare", stub},
		{"transport=otelhttp", otelhttp.NewTransport(stub, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))},
		{"transport=quotabreaker", quotabreaker.New(stub, quotabreaker.WithTracerProvider(tp), quotabreaker.WithMeterProvider(mp))},
	} {
		b.Run(tt.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
			req.Header.Set("Authorization", "Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyz")
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tt.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}
