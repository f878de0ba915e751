package quotabreaker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// stubBase answers every request with a fresh 200 and never touches the
// network, so the benchmarks measure the Transport alone.
var stubBase = roundTripperFunc(func(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
})

func benchRequest() *http.Request {
	req := httptest.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyz")
	req.Header.Set("OpenAI-Project", "proj_abc")
	return req
}

func roundTrip(b *testing.B, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
}

// BenchmarkTransport compares a bare base with the same base behind a
// Transport, in one run: "bare" is the baseline for the other rows.
//
//	go test -run '^$' -bench Transport -benchmem -count 10 . | tee new.txt
//	benchstat new.txt
func BenchmarkTransport(b *testing.B) {
	recording := sdktrace.NewTracerProvider() // samples and records, exports nowhere
	b.Cleanup(func() { recording.Shutdown(b.Context()) })

	b.Run("stub/bare", func(b *testing.B) {
		req := benchRequest()
		b.ReportAllocs()
		for b.Loop() {
			roundTrip(b, stubBase, req)
		}
	})
	b.Run("stub/quotabreaker-noop", func(b *testing.B) {
		tr, req := New(stubBase, WithTracerProvider(tracenoop.NewTracerProvider())), benchRequest()
		b.ReportAllocs()
		for b.Loop() {
			roundTrip(b, tr, req)
		}
	})
	b.Run("stub/quotabreaker-global", func(b *testing.B) {
		tr, req := New(stubBase), benchRequest() // no SDK installed: OpenTelemetry's global no-op
		b.ReportAllocs()
		for b.Loop() {
			roundTrip(b, tr, req)
		}
	})
	b.Run("stub/quotabreaker-tracing", func(b *testing.B) {
		tr, req := New(stubBase, WithTracerProvider(recording)), benchRequest()
		b.ReportAllocs()
		for b.Loop() {
			roundTrip(b, tr, req)
		}
	})
	b.Run("stub/quotabreaker-parallel", func(b *testing.B) {
		tr := New(stubBase, WithTracerProvider(tracenoop.NewTracerProvider()))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := benchRequest()
			for pb.Next() {
				roundTrip(b, tr, req)
			}
		})
	})
	b.Run("short-circuit", func(b *testing.B) {
		quota := answerFrom(b, "openai-insufficient-quota-429-status-shown")
		tr, req := New(fakeBase(quota), WithTracerProvider(tracenoop.NewTracerProvider())), benchRequest()
		roundTrip(b, tr, req) // trips
		b.ReportAllocs()
		for b.Loop() {
			resp, err := tr.RoundTrip(req)
			if err != nil || resp.Header.Get(HeaderShortCircuit) != "true" {
				b.Fatal(resp, err)
			}
			resp.Body.Close()
		}
	})

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, okBody)
	}))
	defer srv.Close()
	loopback := func(b *testing.B, rt http.RoundTripper, base *http.Transport) {
		defer base.CloseIdleConnections()
		req := benchRequest()
		req.URL.Scheme, req.URL.Host, req.Host = "http", strings.TrimPrefix(srv.URL, "http://"), ""
		b.ReportAllocs()
		for b.Loop() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("loopback/bare", func(b *testing.B) {
		base := &http.Transport{}
		loopback(b, base, base)
	})
	b.Run("loopback/quotabreaker", func(b *testing.B) {
		base := &http.Transport{}
		loopback(b, New(base, WithTracerProvider(tracenoop.NewTracerProvider())), base)
	})
}

// BenchmarkNewScope measures a new scope's first request (a new tenant's
// key) with no latch open and with 20,000 open, as a proxy forwarding its
// callers' keys could be made to hold. The second row should stay within a
// few times the first.
//
//	go test -run '^$' -bench NewScope -benchmem -count 10 . | tee scope.txt
//	benchstat -col /open scope.txt
func BenchmarkNewScope(b *testing.B) {
	quota := quotaAnswer(b)
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer sk-exhausted-") {
			return quota.response(r), nil
		}
		return stubBase(r)
	})
	for _, open := range []int{0, 20000} {
		b.Run("open="+strconv.Itoa(open), func(b *testing.B) {
			tr, req := New(base, WithTracerProvider(tracenoop.NewTracerProvider())), benchRequest()
			for i := range open {
				req.Header.Set("Authorization", "Bearer sk-exhausted-"+strconv.Itoa(i))
				roundTrip(b, tr, req)
			}
			if trips, _ := tr.OpenLatches(b.Context()); len(trips) != open {
				b.Fatalf("%d latches open, want %d", len(trips), open)
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				req.Header.Set("Authorization", "Bearer sk-new-"+strconv.Itoa(i))
				i++
				roundTrip(b, tr, req)
			}
		})
	}
}
