package examples_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/examples/internal/fakeopenai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one fake server and one quotabreaker Transport in front of it. The
// SDK clients it makes count their attempts on the way into the Transport,
// refused ones included, and record each answer's status line and headers.
type env struct {
	srv *fakeopenai.Server
	qb  *quotabreaker.Transport
	rec *recorder
}

func newEnv(t *testing.T, opts ...quotabreaker.Option) *env {
	t.Helper()
	srv := fakeopenai.New()
	base := http.DefaultTransport.(*http.Transport).Clone()
	e := &env{srv: srv, qb: quotabreaker.New(base, opts...)}
	e.rec = &recorder{next: e.qb}
	t.Cleanup(func() {
		srv.Close()
		e.qb.CloseIdleConnections() // reaches base
	})
	return e
}

// recorder is a RoundTripper that counts the attempts through it and
// records the status line and headers of each answer.
type recorder struct {
	next http.RoundTripper

	mu      sync.Mutex
	answers []answer
}

type answer struct {
	status string
	header http.Header
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	a := answer{status: "transport error"}
	if err == nil {
		a = answer{status: resp.Status, header: resp.Header.Clone()}
	}
	r.mu.Lock()
	r.answers = append(r.answers, a)
	r.mu.Unlock()
	return resp, err
}

// attempts returns how many requests the SDK handed to the Transport.
func (r *recorder) attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.answers)
}

// answer returns the i-th answer the SDK received.
func (r *recorder) answer(i int) answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers[i]
}

// openLatches returns e.qb.OpenLatches, failing the test on an error.
func (e *env) openLatches(t *testing.T) []quotabreaker.Trip {
	t.Helper()
	trips, err := e.qb.OpenLatches(context.Background())
	if err != nil {
		t.Fatalf("OpenLatches: %v", err)
	}
	return trips
}

// reset closes the latch named scope, failing the test unless it was open.
func (e *env) reset(t *testing.T, scope string) {
	t.Helper()
	ok, err := e.qb.Reset(context.Background(), scope)
	if err != nil || !ok {
		t.Fatalf("Reset(%q) = %v, %v; want true, nil", scope, ok, err)
	}
}

// openaiGo returns an openai-go client with its default retry policy
// (MaxRetries 2) whose HTTP client goes through the Transport.
func (e *env) openaiGo(apiKey string) openai.Client {
	return openaiGo(e.srv, apiKey, e.rec)
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
	cfg.HTTPClient = &http.Client{Transport: e.rec}
	return goopenai.NewClientWithConfig(cfg)
}

// openaiGoMaxRetries is openai-go's default MaxRetries: a 429 it retries
// reaches the server 1 + openaiGoMaxRetries times.
const openaiGoMaxRetries = 2

var chatParams = openai.ChatCompletionNewParams{
	Model:    "gpt-4o-mini",
	Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
}

var goOpenAIRequest = goopenai.ChatCompletionRequest{
	Model:    goopenai.GPT4oMini,
	Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello."}},
}

// apiError asserts that err is openai-go's error for a 429 answer and
// returns it.
func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v (%T), want *openai.Error", err, err)
	}
	if apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("error status %d, want 429", apiErr.StatusCode)
	}
	return apiErr
}

// quotaError asserts that err is openai-go's error for a 429
// insufficient_quota answer and returns it.
func quotaError(t *testing.T, err error) *openai.Error {
	t.Helper()
	apiErr := apiError(t, err)
	if apiErr.Code != "insufficient_quota" {
		t.Fatalf("error code %q, want insufficient_quota", apiErr.Code)
	}
	return apiErr
}

// quotaStatus is the status line of an answer the Transport marks as quota.
const quotaStatus = "429 Insufficient Quota"

// checkQuotaStatus checks that the status line of the answer behind apiErr
// says what the answer means. openai-go's Error() prints only the status
// code's standard text, so the status line shows in Response.Status and in
// DumpResponse.
func checkQuotaStatus(t *testing.T, what string, apiErr *openai.Error) {
	t.Helper()
	if got := apiErr.Response.Status; got != quotaStatus {
		t.Errorf("%s: Response.Status = %q, want %q", what, got, quotaStatus)
	}
	if dump := string(apiErr.DumpResponse(true)); !strings.HasPrefix(dump, "HTTP/1.1 "+quotaStatus+"\r\n") {
		t.Errorf("%s: DumpResponse starts %q, want the status line %q", what, firstLine(dump), "HTTP/1.1 "+quotaStatus)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// With openai-go's default retries, a quota outage costs one request to the
// server in total: the tripping answer is not retried, later calls are
// answered by the latch without the network and without a retry, and Reset
// lets the next call through. The tripping answer and the refused ones say
// "429 Insufficient Quota" in their status line.
func TestOpenAIGoQuotaStopsRetries(t *testing.T) {
	var trips atomic.Int32
	e := newEnv(t, quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { trips.Add(1) }))
	const key = "sk-proj-quota"
	e.srv.Script(key, []fakeopenai.Answer{fakeopenai.OK}, fakeopenai.QuotaExhausted)
	client := e.openaiGo(key)
	ctx := context.Background()

	if _, err := client.Chat.Completions.New(ctx, chatParams); err != nil {
		t.Fatalf("first call, before the quota ran out: %v", err)
	}

	const calls = 10
	for i := range calls {
		_, err := client.Chat.Completions.New(ctx, chatParams)
		apiErr := quotaError(t, err)
		what := "the tripping answer"
		if i > 0 {
			what = fmt.Sprintf("refused call %d", i)
		}
		sc := apiErr.Response.Header.Get(quotabreaker.HeaderShortCircuit)
		if want := map[bool]string{true: "", false: "true"}[i == 0]; sc != want {
			t.Errorf("%s: %s header = %q, want %q", what, quotabreaker.HeaderShortCircuit, sc, want)
		}
		checkQuotaStatus(t, what, apiErr)
	}

	// Each call was one attempt: no retry, so no backoff sleep either.
	if got := e.rec.attempts(); got != 1+calls {
		t.Errorf("SDK attempts = %d, want %d (one per call, no retries)", got, 1+calls)
	}
	if got := e.srv.Hits(); got != 2 {
		t.Errorf("server hits = %d, want 2 (1 success + 1 quota answer, %d short circuits)", got, calls-1)
	}
	if n := trips.Load(); n != 1 {
		t.Errorf("OnTrip fired %d times, want 1", n)
	}
	tripped := e.openLatches(t)
	if len(tripped) != 1 {
		t.Fatalf("OpenLatches() = %v, want one open latch", tripped)
	}
	tr := tripped[0]
	if tr.Code != "insufficient_quota" || tr.Class != classify.QuotaExhausted || tr.StatusCode != 429 ||
		tr.Cause != quotabreaker.CauseAnswer || tr.Mode != quotabreaker.ModeEnforce || !strings.HasPrefix(tr.RequestID, "req_") {
		t.Errorf("trip = %+v, want insufficient_quota, quota_exhausted, 429, cause answer, mode enforce, a req_ request id", tr)
	}

	// Reset while billing is still broken: the next call reaches the server
	// again, gets the real answer, and the latch reopens.
	e.reset(t, tr.Scope)
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
	e.reset(t, tr.Scope)
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
	if got := e.openLatches(t); len(got) != 0 {
		t.Errorf("OpenLatches() = %v, want none", got)
	}
}

// A rate limit passes through untouched, retry headers included: openai-go
// retries it, succeeds, and no latch opens.
func TestOpenAIGoRetriesRateLimit(t *testing.T) {
	var trips atomic.Int32
	e := newEnv(t, quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { trips.Add(1) }))
	const key = "sk-proj-busy"
	e.srv.SetRetryAfter(10 * time.Millisecond)
	e.srv.Script(key, []fakeopenai.Answer{fakeopenai.RateLimited}, fakeopenai.OK)

	client := e.openaiGo(key)
	resp, err := client.Chat.Completions.New(context.Background(), chatParams)
	if err != nil {
		t.Fatalf("call: %v, want success after one retry", err)
	}
	if got := resp.Choices[0].Message.Content; got != fakeopenai.Reply {
		t.Errorf("reply = %q, want %q", got, fakeopenai.Reply)
	}
	if got, hits := e.rec.attempts(), e.srv.Hits(); got != 2 || hits != 2 {
		t.Errorf("SDK attempts = %d, server hits = %d; want 2 and 2 (the 429, then the retry)", got, hits)
	}
	first := e.rec.answer(0)
	if first.status != "429 Too Many Requests" || first.header.Get("Retry-After-Ms") != "10" ||
		first.header.Get(quotabreaker.HeaderShouldRetry) != "" {
		t.Errorf("the rate limit reached the SDK as %q, retry-after-ms %q, %s %q; want it untouched",
			first.status, first.header.Get("Retry-After-Ms"), quotabreaker.HeaderShouldRetry, first.header.Get(quotabreaker.HeaderShouldRetry))
	}
	if got := e.openLatches(t); len(got) != 0 {
		t.Errorf("OpenLatches() = %v, want none after a rate limit", got)
	}
	if n := trips.Load(); n != 0 {
		t.Errorf("OnTrip fired %d times, want 0", n)
	}
}

// openai-go retries every 429 whatever its body says. An answer that cannot
// succeed later (a request larger than the whole per-minute token budget,
// an organization banned for a policy violation) reaches the server once
// and opens no latch; an ordinary rate limit is still retried MaxRetries
// times.
func TestOpenAIGoNoRetryThatCannotSucceed(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answer  fakeopenai.Answer
		code    string // the *openai.Error's code
		hits    int64
		noRetry bool // marked X-Should-Retry: false
	}{
		// Issue 9. Needs the classifier to call it invalid_request.
		{"request too large for the TPM limit", fakeopenai.RequestTooLarge, "rate_limit_exceeded", 1, true},
		{"access terminated", fakeopenai.AccessTerminated, "", 1, true},
		{"ordinary rate limit", fakeopenai.RateLimited, "rate_limit_exceeded", 1 + openaiGoMaxRetries, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var trips atomic.Int32
			e := newEnv(t, quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { trips.Add(1) }))
			const key = "sk-proj-no-retry"
			e.srv.Script(key, nil, tt.answer)

			client := e.openaiGo(key)
			_, err := client.Chat.Completions.New(context.Background(), chatParams)
			apiErr := apiError(t, err)
			if apiErr.Code != tt.code {
				t.Errorf("error code %q, want %q", apiErr.Code, tt.code)
			}
			if got := e.srv.Hits(); got != tt.hits {
				t.Errorf("server hits = %d, want %d", got, tt.hits)
			}
			if got := apiErr.Response.Header.Get(quotabreaker.HeaderShouldRetry); (got == "false") != tt.noRetry {
				t.Errorf("%s = %q on the answer, want \"false\" only if it cannot succeed later", quotabreaker.HeaderShouldRetry, got)
			}
			if got := apiErr.Response.Status; got != "429 Too Many Requests" {
				t.Errorf("Response.Status = %q, want the server's own", got)
			}
			if got := e.openLatches(t); len(got) != 0 {
				t.Errorf("OpenLatches() = %v, want none", got)
			}
			if n := trips.Load(); n != 0 {
				t.Errorf("OnTrip fired %d times, want 0", n)
			}
		})
	}
}

// In observe mode the Transport pages and records the trip but changes
// nothing: every call reaches the server and openai-go retries the quota
// answer as it would without quotabreaker. Switched to enforce at run time,
// it refuses the next call without reaching the server.
func TestOpenAIGoObserveMode(t *testing.T) {
	var trips atomic.Int32
	e := newEnv(t,
		quotabreaker.WithMode(quotabreaker.ModeObserve),
		quotabreaker.OnTrip(func(_ context.Context, tr quotabreaker.Trip) {
			trips.Add(1)
			if tr.Mode != quotabreaker.ModeObserve {
				t.Errorf("OnTrip: trip mode %v, want observe", tr.Mode)
			}
		}))
	const key = "sk-proj-observe"
	e.srv.Script(key, nil, fakeopenai.QuotaExhausted)
	client := e.openaiGo(key)
	ctx := context.Background()

	// Default retries: the quota answer carries no mark, so the SDK
	// retries it, as it would without quotabreaker.
	_, err := client.Chat.Completions.New(ctx, chatParams)
	apiErr := quotaError(t, err)
	if got := e.srv.Hits(); got != 1+openaiGoMaxRetries {
		t.Errorf("server hits = %d, want %d: observe mode changed the SDK's retries", got, 1+openaiGoMaxRetries)
	}
	if got := apiErr.Response.Status; got != "429 Too Many Requests" {
		t.Errorf("Response.Status = %q, want the server's own", got)
	}
	if got := apiErr.Response.Header.Get(quotabreaker.HeaderShouldRetry); got != "" {
		t.Errorf("%s = %q, want none in observe mode", quotabreaker.HeaderShouldRetry, got)
	}

	// More calls, one attempt each: every one reaches the server.
	for i := range 3 {
		before := e.srv.Hits()
		_, err := client.Chat.Completions.New(ctx, chatParams, option.WithMaxRetries(0))
		if sc := quotaError(t, err).Response.Header.Get(quotabreaker.HeaderShortCircuit); sc != "" {
			t.Errorf("call %d: short-circuited in observe mode", i)
		}
		if got := e.srv.Hits(); got != before+1 {
			t.Errorf("call %d: server hits %d -> %d, want one more", i, before, got)
		}
	}
	if n := trips.Load(); n != 1 {
		t.Errorf("OnTrip fired %d times, want 1", n)
	}
	tripped := e.openLatches(t)
	if len(tripped) != 1 || tripped[0].Mode != quotabreaker.ModeObserve || tripped[0].Class != classify.QuotaExhausted {
		t.Fatalf("OpenLatches() = %+v, want one quota_exhausted trip in observe mode", tripped)
	}

	e.qb.SetMode(quotabreaker.ModeEnforce)
	hits, attempts := e.srv.Hits(), e.rec.attempts()
	_, err = client.Chat.Completions.New(ctx, chatParams)
	apiErr = quotaError(t, err)
	if got := apiErr.Response.Header.Get(quotabreaker.HeaderShortCircuit); got != "true" {
		t.Errorf("first call after SetMode(ModeEnforce): %s = %q, want true", quotabreaker.HeaderShortCircuit, got)
	}
	checkQuotaStatus(t, "the refused call", apiErr)
	if got := e.srv.Hits(); got != hits {
		t.Errorf("server hits %d -> %d after SetMode(ModeEnforce), want no change", hits, got)
	}
	if got := e.rec.attempts(); got != attempts+1 {
		t.Errorf("SDK attempts %d -> %d, want one more (the refused answer is not retried)", attempts, got)
	}
	if n := trips.Load(); n != 1 {
		t.Errorf("OnTrip fired %d times in total, want 1", n)
	}
}

// OnTrip gets the context of the call that tripped, values included, so a
// page can say whose traffic stopped; its cancellation is cut off, so the
// hook may outlive the call.
func TestOpenAIGoOnTripSeesCallContext(t *testing.T) {
	type tenantKey struct{}
	var (
		mu      sync.Mutex
		tenants []any
		done    []bool
	)
	e := newEnv(t, quotabreaker.OnTrip(func(ctx context.Context, _ quotabreaker.Trip) {
		mu.Lock()
		defer mu.Unlock()
		tenants = append(tenants, ctx.Value(tenantKey{}))
		done = append(done, ctx.Done() != nil)
	}))
	const key = "sk-proj-tenant"
	e.srv.Script(key, nil, fakeopenai.QuotaExhausted)
	client := e.openaiGo(key)

	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), tenantKey{}, "acme"))
	defer cancel()
	_, err := client.Chat.Completions.New(ctx, chatParams)
	quotaError(t, err)

	mu.Lock()
	defer mu.Unlock()
	if len(tenants) != 1 || tenants[0] != "acme" {
		t.Errorf("OnTrip saw tenants %v, want [acme]", tenants)
	}
	if len(done) == 1 && done[0] {
		t.Error("OnTrip's context can be cancelled, want the call's context without its cancellation")
	}
}

// go-openai parses the tripping answer and the short-circuited copy into the
// same *APIError, whose text includes the status line: "429 Insufficient
// Quota".
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
		if apiErr.HTTPStatus != quotaStatus || !strings.Contains(apiErr.Error(), "Insufficient Quota") {
			t.Errorf("call %d (%s): HTTPStatus %q, Error() %q; want %q in both", i, what, apiErr.HTTPStatus, apiErr.Error(), quotaStatus)
		}
	}
	if got := e.srv.Hits(); got != 1 {
		t.Errorf("server hits = %d, want 1", got)
	}
	if got := e.rec.attempts(); got != 2 {
		t.Errorf("SDK attempts = %d, want 2", got)
	}
	if got := len(e.openLatches(t)); got != 1 {
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
	tripped := e.openLatches(t)
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
	e := newEnv(t, quotabreaker.OnTrip(func(context.Context, quotabreaker.Trip) { trips.Add(1) }))
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
	if got := len(e.openLatches(t)); got != 1 {
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
