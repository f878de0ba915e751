package quotabreaker

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

// This file holds what the root package's tests share: the corpus answers
// a fake provider serves, the fake provider itself (in memory or behind a
// loopback server), one helper that sends a request the way an SDK does,
// and an OpenTelemetry SDK pipeline that keeps what it records.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// loadCorpus reads the classifier's corpus of real answers.
func loadCorpus(tb testing.TB) []corpus.Sample {
	tb.Helper()
	out, err := corpus.Load(filepath.Join("classify", "testdata", "corpus"))
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// corpusAnswer is one real answer from classify/testdata/corpus, served as sent.
type corpusAnswer struct {
	status int
	header http.Header
	body   string
}

// answerFrom loads the corpus sample called name.
func answerFrom(tb testing.TB, name string) corpusAnswer {
	tb.Helper()
	for _, s := range loadCorpus(tb) {
		if s.Name == name {
			return corpusAnswer{s.Status, s.Header(), s.Body}
		}
	}
	tb.Fatalf("no corpus sample %q", name)
	return corpusAnswer{}
}

// quotaAnswer is OpenAI's insufficient_quota answer, the one that trips.
func quotaAnswer(tb testing.TB) corpusAnswer {
	return answerFrom(tb, "openai-insufficient-quota-429-status-shown")
}

const okBody = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`

func ok() corpusAnswer {
	return corpusAnswer{200, http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_ok"}}, okBody}
}

// response is a as the base transport returns it for r.
func (a corpusAnswer) response(r *http.Request) *http.Response {
	return &http.Response{
		Status:     strconv.Itoa(a.status) + " " + http.StatusText(a.status),
		StatusCode: a.status, Header: a.header.Clone(), Request: r,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: io.NopCloser(strings.NewReader(a.body)), ContentLength: int64(len(a.body)),
	}
}

func (a corpusAnswer) write(w http.ResponseWriter) {
	for k, v := range a.header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

// fakeBase answers every request with a, as a provider at the request's
// host would; it never touches the network.
func fakeBase(a corpusAnswer) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) { return a.response(r), nil })
}

// provider is a fake provider: it answers each request with what answer
// returns for it, and counts the requests that reached it, in all and by
// tenant. It never touches the network.
type provider struct {
	answer func(r *http.Request) corpusAnswer
	tenant func(r *http.Request) string // bearerKey unless set

	hits     atomic.Int64
	mu       sync.Mutex
	byTenant map[string]int // guarded by mu
}

// newProvider returns a fake provider whose tenants are the bearer keys.
func newProvider(answer func(r *http.Request) corpusAnswer) *provider {
	return &provider{answer: answer, tenant: bearerKey, byTenant: map[string]int{}}
}

func (p *provider) RoundTrip(r *http.Request) (*http.Response, error) {
	p.hits.Add(1)
	p.mu.Lock()
	p.byTenant[p.tenant(r)]++
	p.mu.Unlock()
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return p.answer(r).response(r), nil
}

func (p *provider) hitsFor(tenant string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byTenant[tenant]
}

func bearerKey(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// server is a loopback HTTP server that answers each request with what
// script returns for its bearer key and the number of requests that key has
// made, and counts what reached it. Closing it (at the end of the test) also
// closes http.DefaultTransport's idle connections.
type server struct {
	*httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	byKey map[string]int // guarded by mu
}

func newServer(t testing.TB, script func(key string, n int) corpusAnswer) *server {
	t.Helper()
	s := &server{byKey: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		key := bearerKey(r)
		s.mu.Lock()
		s.byKey[key]++
		n := s.byKey[key]
		s.mu.Unlock()
		script(key, n).write(w)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) hitsFor(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[key]
}

// prompt is the body of every chat request the tests send; telemetry must
// never show it.
const prompt = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"PROMPT-CANARY"}]}`

// chatRequest is a chat completion request to url, authorized by key when
// key is not empty, ready for a client transport.
func chatRequest(tb testing.TB, url, key string) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(prompt))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return req
}

// send sends a chat request with key to url through rt, reads the answer
// to the end and closes it, as an SDK does, and returns the answer as the
// caller sees it with its body.
func send(tb testing.TB, rt http.RoundTripper, url, key string) (*http.Response, []byte) {
	tb.Helper()
	return sendReq(tb, rt, chatRequest(tb, url, key))
}

// sendReq is send for a request the test built itself.
func sendReq(tb testing.TB, rt http.RoundTripper, req *http.Request) (*http.Response, []byte) {
	tb.Helper()
	resp, body, err := trySend(rt, req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, body
}

// trySend is sendReq for goroutines other than the test's: it returns the
// error instead of failing the test.
func trySend(rt http.RoundTripper, req *http.Request) (*http.Response, []byte, error) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp, body, err
}

func shortCircuited(resp *http.Response) bool {
	return resp.Header.Get(HeaderShortCircuit) == "true"
}

// openLatches is OpenLatches for a Transport made with New.
func openLatches(tb testing.TB, tr *Transport) []Trip {
	tb.Helper()
	trips, err := tr.OpenLatches(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return trips
}

// reset is Reset for a Transport made with New.
func reset(tb testing.TB, tr *Transport, scope string) bool {
	tb.Helper()
	ok, err := tr.Reset(context.Background(), scope)
	if err != nil {
		tb.Fatal(err)
	}
	return ok
}

// resetAll is ResetAll for a Transport made with New.
func resetAll(tb testing.TB, tr *Transport) int {
	tb.Helper()
	n, err := tr.ResetAll(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// recording is a real OTel SDK pipeline that keeps what it records.
type recording struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newRecording(tb testing.TB) *recording {
	r := &recording{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	tb.Cleanup(func() {
		r.tp.Shutdown(context.Background())
		r.mp.Shutdown(context.Background())
	})
	return r
}

func (r *recording) options() []Option {
	return []Option{WithTracerProvider(r.tp), WithMeterProvider(r.mp)}
}

// metrics returns what the SDK collected.
func (r *recording) metrics(tb testing.TB) metricdata.ResourceMetrics {
	tb.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		tb.Fatal(err)
	}
	return rm
}

// scopeName is the instrumentation scope of the Transport's spans and
// metrics.
const scopeName = "github.com/quotabreaker/quotabreaker"

// ours returns the ended spans that the Transport made (not those of a
// test's own tracer).
func (r *recording) ours() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.InstrumentationScope().Name == scopeName {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// collect flattens the collected metrics into "name{k=v,...}" -> value,
// checking that each is a sum of the right monotonicity.
func collect(tb testing.TB, rec *recording) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	for _, sm := range rec.metrics(tb).ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "gen_ai.client.operation.duration" {
				// Its count of attempts, by attributes.
				for _, p := range h.DataPoints {
					out[seriesKey(m.Name, p.Attributes)] = int64(p.Count)
				}
				continue
			}
			d, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				tb.Fatalf("%s: unexpected %T", m.Name, m.Data)
			}
			if d.IsMonotonic == (m.Name == "quotabreaker.open_latches") {
				tb.Errorf("%s: monotonic = %v", m.Name, d.IsMonotonic)
			}
			for _, p := range d.DataPoints {
				var kv []string
				for _, a := range p.Attributes.ToSlice() {
					kv = append(kv, string(a.Key)+"="+a.Value.String())
				}
				key := m.Name
				if len(kv) > 0 {
					key += "{" + strings.Join(kv, ",") + "}"
				}
				out[key] = p.Value
			}
		}
	}
	return out
}

// seriesKey is a metric series' key in what collect returns.
func seriesKey(name string, set attribute.Set) string {
	var kv []string
	for _, a := range set.ToSlice() {
		kv = append(kv, string(a.Key)+"="+a.Value.String())
	}
	if len(kv) > 0 {
		name += "{" + strings.Join(kv, ",") + "}"
	}
	return name
}

// metricValue sums the series of the metric name, in what collect
// returned, whose attributes include every one of attrs ("key=value").
func metricValue(collected map[string]int64, name string, attrs ...string) int64 {
	var sum int64
	for k, v := range collected {
		n, kv, _ := strings.Cut(strings.TrimSuffix(k, "}"), "{")
		if n != name {
			continue
		}
		have := map[string]bool{}
		for _, a := range strings.Split(kv, ",") {
			have[a] = true
		}
		all := true
		for _, a := range attrs {
			all = all && have[a]
		}
		if all {
			sum += v
		}
	}
	return sum
}

// otelErrors collects what otel.Handle reports during a test.
type otelErrors struct {
	mu   sync.Mutex
	errs []error // guarded by mu
}

// captureOtelErrors installs an OpenTelemetry error handler that collects
// errors until the test ends. It sets process-wide state: the tests that
// call it must not run in parallel.
func captureOtelErrors(tb testing.TB) *otelErrors {
	e := &otelErrors{}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		e.mu.Lock()
		e.errs = append(e.errs, err)
		e.mu.Unlock()
	}))
	// As the default handler does.
	tb.Cleanup(func() { otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Print(err) })) })
	return e
}

func (e *otelErrors) all() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
