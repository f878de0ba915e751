package quotabreaker

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// The benchmarks of this file measure what reading usage from successful
// answers costs, each against the bare base in the same run:
//
//	go test -run '^$' -bench 'Spend' -benchmem -count 6 . | tee spend.txt
//	benchstat -col /transport spend.txt
//
// The base never touches the network: it answers from memory, so the rows
// show the Transport's own cost.

// memoryBase answers every request with body, as a provider would, from a
// fresh reader each time.
func memoryBase(body []byte, contentType string) http.RoundTripper {
	h := http.Header{"Content-Type": {contentType}}
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: r, ContentLength: int64(len(body))}, nil
	})
}

// eventStream1MiB is a Chat Completions stream of about 1 MiB: a real
// content chunk of openai-chat-stream-usage.sse repeated, then its usage
// chunk and its end.
func eventStream1MiB(tb testing.TB) []byte {
	chunk := corpus.ChunkOf(tb, "openai-chat-stream-usage.sse", `"content":"`)
	usage := corpus.ChunkOf(tb, "openai-chat-stream-usage.sse", `"usage":{`)
	var b bytes.Buffer
	for b.Len() < 1<<20 {
		b.Write(chunk)
	}
	b.Write(usage)
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}

// transports are the rows every benchmark compares: the bare base, and the
// base behind a Transport with usage off and on. Tracing is off (the no-op
// provider) and the meter is the global no-op, so the rows measure the
// body observer and the pricing, not an OpenTelemetry SDK.
func transports(base http.RoundTripper, extra ...Option) []struct {
	name string
	rt   http.RoundTripper
} {
	noop := WithTracerProvider(tracenoop.NewTracerProvider())
	return []struct {
		name string
		rt   http.RoundTripper
	}{
		{"transport=bare", base},
		{"transport=usage-off", New(base, append([]Option{noop, WithUsage(false)}, extra...)...)},
		{"transport=usage-on", New(base, append([]Option{noop}, extra...)...)},
	}
}

// readAll reads a body the way an SDK does, through a small buffer, and
// never through a WriterTo shortcut that the bare base would have and the
// Transport's body would not.
func readAll(b *testing.B, rc io.ReadCloser, buf []byte) int64 {
	n, err := io.CopyBuffer(corpus.Discard{}, struct{ io.Reader }{rc}, buf)
	if err != nil {
		b.Fatal(err)
	}
	rc.Close()
	return n
}

// BenchmarkSpendAnswer is the success path of one plain JSON answer (a real
// o3-mini answer with usage), read to its end: a bare base, the Transport
// with usage off, and with usage on (read, priced and recorded).
func BenchmarkSpendAnswer(b *testing.B) {
	body, h := corpus.ReadStream(b, "openai-chat-reasoning.json")
	readAnswers(b, memoryBase(body, h.Get("Content-Type")), body)
}

// BenchmarkSpendAnswerStdBase is BenchmarkSpendAnswer through a base that
// is an *http.Transport, as http.DefaultTransport and most bases are: the
// Transport then sends each request as it is, without the copy that marks
// it for a Transport further down (see New). The *http.Transport answers
// from memory too, through a RoundTripper registered for the scheme.
func BenchmarkSpendAnswerStdBase(b *testing.B) {
	body, h := corpus.ReadStream(b, "openai-chat-reasoning.json")
	// An empty TLSNextProto keeps HTTP/2, which would register https
	// itself, out of the way.
	base := &http.Transport{TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	base.RegisterProtocol("https", memoryBase(body, h.Get("Content-Type")))
	readAnswers(b, base, body)
}

// readAnswers runs a row for each of transports(base): body, which base
// answers, read whole through a 4 KiB buffer and closed.
func readAnswers(b *testing.B, base http.RoundTripper, body []byte) {
	for _, tt := range transports(base) {
		b.Run(tt.name, func(b *testing.B) {
			req := benchRequest()
			buf := make([]byte, 4<<10)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tt.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if n := readAll(b, resp.Body, buf); n != int64(len(body)) {
					b.Fatalf("read %d bytes of %d", n, len(body))
				}
			}
		})
	}
}

// BenchmarkSpendStream reads a 1 MiB event stream through a 4 KiB buffer
// (bufio's default, which the SDKs' stream readers use), from memory and
// from a loopback HTTP server. The goal is under 1.3× the bare read.
func BenchmarkSpendStream(b *testing.B) {
	body := eventStream1MiB(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(body)
	}))
	defer srv.Close()
	loopback := &http.Transport{}
	defer loopback.CloseIdleConnections()
	for _, base := range []struct {
		name string
		rt   http.RoundTripper
		url  string
	}{
		{"base=memory", memoryBase(body, "text/event-stream"), "https://api.openai.com/v1/chat/completions"},
		{"base=loopback", loopback, srv.URL + "/v1/chat/completions"},
	} {
		for _, tt := range transports(base.rt) {
			b.Run(base.name+"/"+tt.name, func(b *testing.B) {
				req := httptest.NewRequest(http.MethodPost, base.url, nil)
				req.RequestURI = ""
				buf := make([]byte, 4<<10)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					resp, err := tt.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					if n := readAll(b, resp.Body, buf); n != int64(len(body)) {
						b.Fatalf("read %d bytes of %d", n, len(body))
					}
				}
			})
		}
	}
}

// BenchmarkSpendFirstByte measures the time until the first Read of a
// stream returns, when its first event is already there: what the
// Transport adds before the caller sees a byte. The streamed request is a
// Chat Completions request, so that the last row, with WithStreamUsage,
// also rewrites the request and filters the answer.
func BenchmarkSpendFirstByte(b *testing.B) {
	body := eventStream1MiB(b)
	const sent = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello."}]}`
	rows := transports(memoryBase(body, "text/event-stream"))
	rows = append(rows, struct {
		name string
		rt   http.RoundTripper
	}{"transport=usage-on+stream-usage", New(memoryBase(body, "text/event-stream"),
		WithTracerProvider(tracenoop.NewTracerProvider()), WithStreamUsage(true))})
	for _, tt := range rows {
		b.Run(tt.name, func(b *testing.B) {
			buf := make([]byte, 4<<10)
			// The bodies are closed, untimed, a batch at a time: stopping
			// the timer stops the world (ReadMemStats), which at every
			// iteration took half the run's CPU and disturbed the part
			// timed.
			open := make([]io.Closer, 0, 128)
			closeAll := func() {
				for _, c := range open {
					c.Close()
				}
				open = open[:0]
			}
			b.ReportAllocs()
			for b.Loop() {
				req := benchRequest()
				req.Body = io.NopCloser(strings.NewReader(sent))
				req.ContentLength = int64(len(sent))
				resp, err := tt.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := resp.Body.Read(buf); n == 0 || err != nil {
					b.Fatal(n, err)
				}
				if open = append(open, resp.Body); len(open) == cap(open) {
					b.StopTimer()
					closeAll()
					b.StartTimer()
				}
			}
			closeAll()
		})
	}
}

// BenchmarkSpendEmpty is a 200 JSON answer with an empty body, closed
// unread: the least an answer costs once usage is read.
func BenchmarkSpendEmpty(b *testing.B) {
	for _, tt := range transports(memoryBase(nil, "application/json")) {
		b.Run(tt.name, func(b *testing.B) {
			req := benchRequest()
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
