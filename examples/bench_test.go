package examples_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// BenchmarkTelemetryAnswer is BenchmarkTelemetry with a 646-byte Chat
// Completions answer carrying usage, read to its end and closed: what
// quotabreaker records of an answer (its usage, price and operation
// duration) against what otelhttp records of it, both into a real SDK.
//
//	go test -run '^$' -bench TelemetryAnswer -benchmem -count 10 ./examples | tee answer.txt
//	benchstat -col /transport answer.txt
func BenchmarkTelemetryAnswer(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("..", "testdata", "streams", "openai-chat-reasoning.json"))
	if err != nil {
		b.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	stub := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
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
			buf := make([]byte, 4<<10)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tt.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				// Through buf, as an SDK reads: no WriterTo shortcut.
				if _, err := io.CopyBuffer(discard{}, struct{ io.Reader }{resp.Body}, buf); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

// discard is io.Discard without ReadFrom, so io.CopyBuffer uses the buffer
// it is given.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
