package examples_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	goopenai "github.com/sashabaranov/go-openai"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/quotabreaker/quotabreaker"
	"github.com/quotabreaker/quotabreaker/examples/internal/fakeopenai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// noSleep bounds a sequence of calls that must involve no retry backoff.
// openai-go's shortest backoff without Retry-After is 0.5s minus up to 25%
// jitter, so 375ms; anything under that proves no backoff sleep happened.
// Each call to the in-process server takes about a millisecond.
const noSleep = 350 * time.Millisecond

// env is one fake server and one quotabreaker Transport in front of it.
type env struct {
	srv  *fakeopenai.Server
	base *http.Transport
	qb   *quotabreaker.Transport
}

func newEnv(t *testing.T, opts ...quotabreaker.Option) *env {
	t.Helper()
	srv := fakeopenai.New()
	base := http.DefaultTransport.(*http.Transport).Clone()
	e := &env{srv: srv, base: base, qb: quotabreaker.New(base, opts...)}
	t.Cleanup(func() {
		srv.Close()
		e.qb.CloseIdleConnections() // reaches base

	})
	return e
}

// openaiGo returns an openai-go client with its default retry policy
// (MaxRetries 2) whose HTTP client goes through the Transport.
func (e *env) openaiGo(apiKey string) openai.Client {
	return openaiGo(e.srv, apiKey, e.qb)
}

func openaiGo(srv *fakeopenai.Server, apiKey string, rt http.RoundTripper) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(srv.BaseURL()),
		option.WithAPIKey(apiKey),
		option.WithHTTPClient(&http.Client{Transport: rt}),
	)
}

func (e *env) goOpenAI(apiKey string) *goopenai.Client {
	cfg := goopenai.DefaultConfig(apiKey)
	cfg.BaseURL = e.srv.BaseURL()
	cfg.HTTPClient = &http.Client{Transport: e.qb}
	return goopenai.NewClientWithConfig(cfg)
}

var chatParams = openai.ChatCompletionNewParams{
	Model:    "gpt-4o-mini",
	Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
}

var goOpenAIRequest = goopenai.ChatCompletionRequest{
	Model:    goopenai.GPT4oMini,
	Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello."}},
}

// quotaError asserts that err is openai-go's error for a 429
// insufficient_quota answer and returns it.
func quotaError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v (%T), want *openai.Error", err, err)
	}
	if apiErr.Code != "insufficient_quota" || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("error code %q status %d, want insufficient_quota 429", apiErr.Code, apiErr.StatusCode)
	}
	return apiErr
}

// With openai-go's default retries, a quota outage costs one request to the
// server in total: the tripping answer is not retried, later calls are
// answered by the latch without the network and without a backoff sleep,
// and Reset lets the next call through.
func TestOpenAIGoQuotaStopsRetries(t *testing.T) {
	var trips atomic.Int32
	e := newEnv(t, quotabreaker.OnTrip(func(quotabreaker.Trip) { trips.Add(1) }))
	const key = "sk-proj-quota"
	e.srv.Script(key, []fakeopenai.Answer{fakeopenai.OK}, fakeopenai.QuotaExhausted)
	client := e.openaiGo(key)
	ctx := context.Background()

	if _, err := client.Chat.Completions.New(ctx, chatParams); err != nil {
		t.Fatalf("first call, before the quota ran out: %v", err)
	}

	const calls = 10
	start := time.Now()
	for i := range calls {
		_, err := client.Chat.Completions.New(ctx, chatParams)
		apiErr := quotaError(t, err)
		sc := apiErr.Response.Header.Get(quotabreaker.HeaderShortCircuit)
		if want := map[bool]string{true: "", false: "true"}[i == 0]; sc != want {
			t.Errorf("call %d: %s header = %q, want %q", i, quotabreaker.HeaderShortCircuit, sc, want)
		}
	}
	elapsed := time.Since(start)

	if got := e.srv.Hits(); got != 2 {
		t.Errorf("server hits = %d, want 2 (1 success + 1 quota answer, no retries, %d short circuits)", got, calls-1)
	}
	if elapsed >= noSleep {
		t.Errorf("%d calls took %v, want < %v: a backoff sleep happened", calls, elapsed, noSleep)
	}
	if n := trips.Load(); n != 1 {
		t.Errorf("OnTrip fired %d times, want 1", n)
	}
	tripped := e.qb.OpenLatches()
	if len(tripped) != 1 {
		t.Fatalf("OpenLatches() = %v, want one open latch", tripped)
	}
	tr := tripped[0]
	if tr.Code != "insufficient_quota" || tr.Class != quotabreaker.ClassQuotaExhausted || tr.Status != 429 || !strings.HasPrefix(tr.RequestID, "req_") {
		t.Errorf("trip = %+v, want insufficient_quota, quota_exhausted, 429, a req_ request id", tr)
	}

	// Reset while billing is still broken: the next call reaches the server
	// again, gets the real answer, and the latch reopens.
	if !e.qb.Reset(tr.Scope) {
		t.Fatalf("Reset(%q) = false", tr.Scope)
	}
	_, err := client.Chat.Completions.New(ctx, chatParams)
	if sc := quotaError(t, err).Response.Header.Get(quotabreaker.HeaderShortCircuit); sc != "" {
		t.Errorf("first call after Reset was short-circuited")
	}
	if got := e.srv.Hits(); got != 3 {
		t.Errorf("server hits after Reset = %d, want 3", got)
	}
	if n := trips.Load(); n != 2 {
		t.Errorf("OnTrip fired %d times after the latch reopened, want 2", n)
	}

	// Billing fixed, then Reset: calls succeed again.
	e.srv.Script(key, nil, fakeopenai.OK)
	if !e.qb.Reset(tr.Scope) {
		t.Fatalf("second Reset(%q) = false", tr.Scope)
	}
	resp, err := client.Chat.Completions.New(ctx, chatParams)
	if err != nil {
		t.Fatalf("call after billing fixed and Reset: %v", err)
	}
	if got := resp.Choices[0].Message.Content; got != fakeopenai.Reply {
		t.Errorf("reply = %q, want %q", got, fakeopenai.Reply)
	}
	if got := e.srv.Hits(); got != 4 {
		t.Errorf("server hits = %d, want 4", got)
	}
	if got := e.qb.OpenLatches(); len(got) != 0 {
		t.Errorf("OpenLatches() = %v, want none", got)
	}
}

// A rate limit passes through untouched: openai-go retries it after the
// retry-after-ms the server asked for (not its own 0.5s backoff), succeeds,
// and no latch opens.
func TestOpenAIGoRetriesRateLimit(t *testing.T) {
	var trips atomic.Int32
	e := newEnv(t, quotabreaker.OnTrip(func(quotabreaker.Trip) { trips.Add(1) }))
	const key = "sk-proj-busy"
	e.srv.SetRetryAfter(10 * time.Millisecond)
	e.srv.Script(key, []fakeopenai.Answer{fakeopenai.RateLimited}, fakeopenai.OK)

	client := e.openaiGo(key)
	start := time.Now()
	resp, err := client.Chat.Completions.New(context.Background(), chatParams)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("call: %v, want success after one retry", err)
	}
	if got := resp.Choices[0].Message.Content; got != fakeopenai.Reply {
		t.Errorf("reply = %q, want %q", got, fakeopenai.Reply)
	}
	if got := e.srv.Hits(); got != 2 {
		t.Errorf("server hits = %d, want 2 (the 429, then the retry)", got)
	}
	if elapsed >= noSleep {
		t.Errorf("call took %v: the SDK did not see retry-after-ms: 10", elapsed)
	}
	if got := e.qb.OpenLatches(); len(got) != 0 {
		t.Errorf("OpenLatches() = %v, want none after a rate limit", got)
	}
	if n := trips.Load(); n != 0 {
		t.Errorf("OnTrip fired %d times, want 0", n)
	}
}

// go-openai parses the tripping answer and the short-circuited copy into the
// same *APIError.
func TestGoOpenAIQuota(t *testing.T) {
	e := newEnv(t)
	const key = "sk-proj-goopenai"
	e.srv.Script(key, nil, fakeopenai.QuotaExhausted)
	client := e.goOpenAI(key)

	for i, what := range []string{"the tripping answer", "the short-circuited answer"} {
		_, err := client.CreateChatCompletion(context.Background(), goOpenAIRequest)
		var apiErr *goopenai.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("call %d (%s): err = %v (%T), want *openai.APIError", i, what, err, err)
		}
		if apiErr.Code != "insufficient_quota" || apiErr.HTTPStatusCode != http.StatusTooManyRequests || apiErr.Type != "insufficient_quota" {
			t.Errorf("call %d (%s): Code %#v Type %q HTTPStatusCode %d, want insufficient_quota 429",
				i, what, apiErr.Code, apiErr.Type, apiErr.HTTPStatusCode)
		}
	}
	if got := e.srv.Hits(); got != 1 {
		t.Errorf("server hits = %d, want 1", got)
	}
	if got := len(e.qb.OpenLatches()); got != 1 {
		t.Errorf("%d open latches, want 1", got)
	}
}

// The latch belongs to the credentials: one Transport, two API keys, the
// exhausted one short-circuits while the other keeps reaching the server.
func TestTwoKeysOneTransport(t *testing.T) {
	e := newEnv(t)
	const keyA, keyB = "sk-proj-tenant-a", "sk-proj-tenant-b"
	e.srv.Script(keyA, nil, fakeopenai.QuotaExhausted)
	a, b := e.openaiGo(keyA), e.openaiGo(keyB)
	ctx := context.Background()

	const rounds = 5
	for i := range rounds {
		_, err := a.Chat.Completions.New(ctx, chatParams)
		quotaError(t, err)
		if _, err := b.Chat.Completions.New(ctx, chatParams); err != nil {
			t.Fatalf("round %d: key B: %v", i, err)
		}
		if got := e.srv.HitsFor(keyB); got != int64(i+1) {
			t.Fatalf("round %d: key B hits = %d, want %d", i, got, i+1)
		}
	}
	if got := e.srv.HitsFor(keyA); got != 1 {
		t.Errorf("key A hits = %d, want 1", got)
	}
	tripped := e.qb.OpenLatches()
	if len(tripped) != 1 {
		t.Fatalf("OpenLatches() = %v, want one latch (key A's)", tripped)
	}
	if strings.Contains(tripped[0].Scope, keyA) {
		t.Errorf("scope %q contains the API key", tripped[0].Scope)
	}
}

// A streamed answer goes through the Transport chunk by chunk: the client
// gets the first chunk while the server still holds back the second. The
// Transport's span ends with the stream, not with the headers.
func TestOpenAIGoStreamsChunkByChunk(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := newEnv(t, quotabreaker.WithTracerProvider(tp))
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	defer release()
	e.srv.PauseStreams(gate)
	client := e.openaiGo("sk-proj-stream")

	firstChunk := make(chan *ssestream.Stream[openai.ChatCompletionChunk], 1)
	go func() {
		s := client.Chat.Completions.NewStreaming(context.Background(), chatParams)
		s.Next()
		firstChunk <- s
	}()
	var stream *ssestream.Stream[openai.ChatCompletionChunk]
	select {
	case stream = <-firstChunk:
	case <-time.After(10 * time.Second):
		release()
		(<-firstChunk).Close()
		t.Fatal("no first chunk while the server held the rest of the stream: the answer was buffered")
	}
	defer stream.Close()
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got := stream.Current().Choices; len(got) != 1 || got[0].Delta.Role != "assistant" {
		t.Errorf("first chunk choices = %+v, want the assistant role chunk", got)
	}
	if got := e.srv.ChunksWritten(); got != 1 {
		t.Errorf("server wrote %d chunks before the client got the first, want 1", got)
	}
	if got := len(rec.Ended()); got != 0 {
		t.Errorf("%d spans ended mid-stream, want 0", got)
	}

	release()
	var text strings.Builder
	chunks := 1
	for stream.Next() {
		chunks++
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got := text.String(); got != fakeopenai.Reply {
		t.Errorf("streamed text = %q, want %q", got, fakeopenai.Reply)
	}
	if want := len(fakeopenai.StreamDeltas) + 2; chunks != want {
		t.Errorf("received %d chunks, want %d", chunks, want)
	}
	if err := stream.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := len(rec.Ended()); got != 1 {
		t.Errorf("%d spans ended after the stream, want 1", got)
	}
	if got := e.srv.Hits(); got != 1 {
		t.Errorf("server hits = %d, want 1", got)
	}
}

// OnTrip fires exactly once when 50 concurrent calls all meet the quota
// answer at the same moment; none is retried.
func TestOnTripOnceUnderConcurrency(t *testing.T) {
	var trips atomic.Int32
	e := newEnv(t, quotabreaker.OnTrip(func(quotabreaker.Trip) { trips.Add(1) }))
	const key, n = "sk-proj-crowd", 50
	e.srv.Script(key, nil, fakeopenai.QuotaExhausted)
	// No answer leaves before all n requests have arrived, so all n quota
	// answers reach the Transport together.
	e.srv.HoldUntil(n)
	client := e.openaiGo(key)
	// Fails the calls, rather than hanging, if fewer than n ever arrive.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := client.Chat.Completions.New(ctx, chatParams)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		quotaError(t, err)
	}
	if got := trips.Load(); got != 1 {
		t.Errorf("OnTrip fired %d times, want 1", got)
	}
	if got := e.srv.Hits(); got != n {
		t.Errorf("server hits = %d, want %d (each call once, no retries)", got, n)
	}
	if got := len(e.qb.OpenLatches()); got != 1 {
		t.Errorf("%d open latches, want 1", got)
	}

	for range 10 {
		_, err := client.Chat.Completions.New(ctx, chatParams)
		quotaError(t, err)
	}
	if got := e.srv.Hits(); got != n {
		t.Errorf("server hits after the latch opened = %d, want still %d", got, n)
	}
	if got := trips.Load(); got != 1 {
		t.Errorf("OnTrip fired %d times in total, want 1", got)
	}
}
