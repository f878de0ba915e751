// Package fakeopenai is a small in-process stand-in for OpenAI's chat
// completions endpoint, for tests, examples and the demo.
//
// It answers POST /v1/chat/completions with the bodies and headers OpenAI
// sends, plain or streamed ("stream": true). Each API key (the bearer token)
// can be scripted: a queue of answers, then a steady answer for every later
// request. Unscripted keys always succeed. Hits are counted in total and per
// key.
package fakeopenai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Answer is what the server answers one request with.
type Answer int

const (
	// OK is a chat.completion (or, for "stream": true, its SSE chunks).
	OK Answer = iota
	// RateLimited is OpenAI's 429 rate_limit_exceeded, with Retry-After,
	// retry-after-ms and x-ratelimit-* headers (see SetRetryAfter).
	RateLimited
	// QuotaExhausted is OpenAI's 429 insufficient_quota.
	QuotaExhausted
	// RequestTooLarge is OpenAI's 429 for a single request larger than the
	// whole tokens-per-minute limit: code rate_limit_exceeded, but waiting
	// cannot help. It carries no Retry-After.
	RequestTooLarge
	// AccessTerminated is OpenAI's 429 access_terminated: the organization
	// was banned for a policy violation, which no retry can undo.
	AccessTerminated
)

func (a Answer) String() string {
	switch a {
	case OK:
		return "ok"
	case RateLimited:
		return "rate_limit_exceeded"
	case QuotaExhausted:
		return "insufficient_quota"
	case RequestTooLarge:
		return "request_too_large"
	case AccessTerminated:
		return "access_terminated"
	}
	return "Answer(" + strconv.Itoa(int(a)) + ")"
}

// Error bodies, byte for byte as OpenAI sent them.
const (
	// From classify/testdata/corpus/openai-rate-limit-tokens-tpm.json.
	rateLimitBody = `{"error": {"message": "Rate limit reached for gpt-4 in organization org-********** on tokens per min (TPM): Limit 10000, Used 9348, Requested 5086. Please try again in 26.604s. Visit https://platform.openai.com/account/rate-limits to learn more.", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}`

	// From classify/testdata/corpus/openai-insufficient-quota-docs-link-429.json.
	quotaBody = "{\n    \"error\": {\n        \"message\": \"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.\",\n        \"type\": \"insufficient_quota\",\n        \"param\": null,\n        \"code\": \"insufficient_quota\"\n    }\n}\n"

	// From examples/testdata/openai-request-too-large-tpm-429.json.
	tooLargeBody = `{"error": {"message": "Request too large for gpt-4o in organization org-********** on tokens per min (TPM): Limit 30000, Requested 30601. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}`

	// From classify/testdata/corpus/openai-access-terminated-429.json.
	terminatedBody = "{\n  \"error\": {\n    \"message\": \"Your access was terminated due to violation of our policies, please check your email for more information. If you believe this is in error and would like to appeal, please contact us through our help center at help.openai.com.\",\n    \"type\": \"access_terminated\",\n    \"param\": null,\n    \"code\": null\n  }\n}"
)

// Reply is the assistant's answer in every successful completion, as in the
// example response of OpenAI's API reference for POST /v1/chat/completions.
const Reply = "Hello! How can I assist you today?"

// Server is a fake OpenAI API. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server

	hits   atomic.Int64
	reqIDs atomic.Int64
	chunks atomic.Int64

	mu         sync.Mutex
	scripts    map[string]*script // by API key
	perKey     map[string]int64
	hold       *barrier
	gate       <-chan struct{}
	retryAfter time.Duration
}

type script struct {
	queue  []Answer
	steady Answer
}

// barrier holds requests until n of them have arrived.
type barrier struct {
	n       int
	arrived int
	all     chan struct{}
}

// New starts a Server. Close it when done.
func New() *Server {
	s := &Server{
		retryAfter: 10 * time.Millisecond,
		scripts:    map[string]*script{},
		perKey:     map[string]int64{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// BaseURL is the URL to give an SDK as its base URL: the server's URL + /v1.
func (s *Server) BaseURL() string { return s.URL + "/v1" }

// Script makes requests with the API key answer queue, in order, then
// steady from then on. It replaces the key's earlier script.
func (s *Server) Script(apiKey string, queue []Answer, steady Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[apiKey] = &script{queue: append([]Answer(nil), queue...), steady: steady}
}

// SetRetryAfter sets the wait a RateLimited answer asks for (10ms unless
// set), in its Retry-After, retry-after-ms and x-ratelimit-reset-tokens
// headers.
func (s *Server) SetRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = d
}

// Hits returns how many requests reached the server.
func (s *Server) Hits() int64 { return s.hits.Load() }

// HitsFor returns how many requests with the API key reached the server.
func (s *Server) HitsFor(apiKey string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perKey[apiKey]
}

// HoldUntil makes the next n requests wait, before they are answered, until
// all n have arrived, so that their answers leave together.
func (s *Server) HoldUntil(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = &barrier{n: n, all: make(chan struct{})}
}

// PauseStreams makes every stream wait after its first chunk is flushed
// until gate is closed. nil removes the pause.
func (s *Server) PauseStreams(gate <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = gate
}

// ChunksWritten returns how many SSE data chunks (not counting [DONE]) the
// server has begun to write so far. Each is flushed once written.
func (s *Server) ChunksWritten() int64 { return s.chunks.Load() }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")

	s.hits.Add(1)
	s.mu.Lock()
	s.perKey[key]++
	a := OK
	if sc := s.scripts[key]; sc != nil {
		a = sc.steady
		if len(sc.queue) > 0 {
			a, sc.queue = sc.queue[0], sc.queue[1:]
		}
	}
	var wait chan struct{}
	if b := s.hold; b != nil {
		b.arrived++
		wait = b.all
		if b.arrived == b.n {
			close(b.all)
			s.hold = nil
		}
	}
	gate, retryAfter := s.gate, s.retryAfter
	s.mu.Unlock()

	if wait != nil {
		select {
		case <-wait:
		case <-r.Context().Done():
			return
		}
	}

	h := w.Header()
	h.Set("X-Request-Id", fmt.Sprintf("req_%032x", s.reqIDs.Add(1)))
	h.Set("Openai-Version", "2020-10-01")
	h.Set("Openai-Processing-Ms", "212")
	switch a {
	case RateLimited:
		rateLimited(w, retryAfter)
	case QuotaExhausted:
		errorAnswer(w, quotaBody)
	case RequestTooLarge:
		errorAnswer(w, tooLargeBody)
	case AccessTerminated:
		errorAnswer(w, terminatedBody)
	default:
		h.Set("X-Ratelimit-Limit-Requests", "10000")
		h.Set("X-Ratelimit-Limit-Tokens", "200000")
		h.Set("X-Ratelimit-Remaining-Requests", "9999")
		h.Set("X-Ratelimit-Remaining-Tokens", "199975")
		h.Set("X-Ratelimit-Reset-Requests", "8.64s")
		h.Set("X-Ratelimit-Reset-Tokens", "7ms")
		model := req.Model
		if model == "" {
			model = "gpt-4o-mini"
		}
		if req.Stream {
			s.stream(w, r, model, gate)
		} else {
			h.Set("Content-Type", "application/json")
			_, _ = w.Write(completion(model))
		}
	}
}

// errorAnswer writes a 429 with body and no retry hint.
func errorAnswer(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(body))
}

func rateLimited(w http.ResponseWriter, retryAfter time.Duration) {
	h := w.Header()
	ms := max(retryAfter.Milliseconds(), 0)
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Retry-After", strconv.FormatInt((ms+999)/1000, 10)) // whole seconds, rounded up
	h.Set("Retry-After-Ms", strconv.FormatInt(ms, 10))
	h.Set("X-Ratelimit-Limit-Requests", "10000")
	h.Set("X-Ratelimit-Limit-Tokens", "10000")
	h.Set("X-Ratelimit-Remaining-Requests", "9999")
	h.Set("X-Ratelimit-Remaining-Tokens", "0")
	h.Set("X-Ratelimit-Reset-Requests", "8.64s")
	h.Set("X-Ratelimit-Reset-Tokens", time.Duration(ms*int64(time.Millisecond)).String())
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(rateLimitBody))
}

// completion is a chat.completion in the shape of the example response in
// OpenAI's API reference (POST /v1/chat/completions).
func completion(model string) []byte {
	return fmt.Appendf(nil, `{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": %q,
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": %q,
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default"
}
`, model, Reply)
}

// StreamDeltas are the content deltas of a streamed reply, in order; they
// join to Reply. A stream sends, like OpenAI's, a first chunk with the role
// and empty content, one chunk per delta, a last chunk with finish_reason
// "stop", then [DONE].
var StreamDeltas = []string{"Hello", "!", " How", " can", " I", " assist", " you", " today", "?"}

// stream writes Reply as chat.completion.chunk events, in the shape of the
// streaming example of OpenAI's API reference, flushing each one.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, model string, gate <-chan struct{}) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	w.WriteHeader(http.StatusOK)

	chunk := func(delta, finish string) {
		s.chunks.Add(1)
		fmt.Fprintf(w, `data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":%q,"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}`+"\n\n", model, delta, finish)
		if flusher != nil {
			flusher.Flush()
		}
	}

	chunk(`{"role":"assistant","content":"","refusal":null}`, "null")
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	for _, d := range StreamDeltas {
		chunk(fmt.Sprintf(`{"content":%q}`, d), "null")
	}
	chunk(`{}`, `"stop"`)
	_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}
