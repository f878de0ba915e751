package quotabreaker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"github.com/quotabreaker/quotabreaker/usage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
)

// This file feeds the Transport bad and outsized answers: truncated
// streams, usage of the wrong type, bodies far larger than memory should
// hold, streams that never end. Whatever arrives, nothing panics, memory
// stays bounded, the caller reads every byte as sent, the span ends, and
// usage is recorded only when the answer carried it whole.

// usageKeys are the span attributes of an answer's usage and cost.
var usageKeys = []attribute.Key{
	"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
	"gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.reasoning.output_tokens", "quotabreaker.cost.usd",
}

// spanUsage returns the usage the Transport's one span recorded, and
// whether it recorded any.
func spanUsage(tb testing.TB, rec *recording) (usage.Tokens, bool) {
	tb.Helper()
	spans := rec.ours()
	if len(spans) != 1 {
		tb.Fatalf("%d spans ended, want 1", len(spans))
	}
	a := attrs(spans[0])
	_, known := a["gen_ai.usage.input_tokens"]
	if !known {
		estimated := a["quotabreaker.estimated"].AsBool()
		for _, k := range usageKeys {
			if v, ok := a[k]; ok && !(k == "quotabreaker.cost.usd" && estimated) {
				tb.Errorf("usage unknown, yet the span has %s = %s", k, v.String())
			}
		}
		if m := a["quotabreaker.metering"].AsString(); m != "unmetered" {
			tb.Errorf("usage unknown, yet quotabreaker.metering = %q", m)
		}
	}
	return usage.Tokens{
		InputTokens:      a["gen_ai.usage.input_tokens"].AsInt64(),
		CacheReadTokens:  a["gen_ai.usage.cache_read.input_tokens"].AsInt64(),
		CacheWriteTokens: a["gen_ai.usage.cache_creation.input_tokens"].AsInt64(),
		OutputTokens:     a["gen_ai.usage.output_tokens"].AsInt64(),
		ReasoningTokens:  a["gen_ai.usage.reasoning.output_tokens"].AsInt64(),
	}, known
}

// cutBody yields body, then err (io.EOF for a clean end).
type cutBody struct {
	r      *bytes.Reader
	err    error
	closed atomic.Bool
}

func (b *cutBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		err = b.err
	}
	return n, err
}

func (b *cutBody) Close() error { b.closed.Store(true); return nil }

// A stream cut anywhere, cleanly or by a broken connection, reaches the
// caller as it came, error included; the span ends; and the usage recorded
// is one the stream carried whole in the part that arrived, or none.
func TestTruncatedStreams(t *testing.T) {
	for _, file := range []string{"openai-chat-stream-usage.sse", "anthropic-stream-advisor-thinking.sse", "openai-responses-stream-cached.sse", "openai-chat-reasoning.json"} {
		body, h := corpus.ReadStream(t, file)
		// The usages whole prefixes carry, event by event.
		possible := map[usage.Tokens]bool{usage.Read(h, body).Tokens: true}
		for k := 0; k < len(body); {
			e := bytes.Index(body[k:], []byte("\n\n"))
			if e < 0 {
				break
			}
			k += e + 2
			if r := usage.Read(h, body[:k]); r.Known {
				possible[r.Tokens] = true
			}
		}
		for _, end := range []error{io.EOF, io.ErrUnexpectedEOF} {
			step := max(1, len(body)/23)
			for cut := 0; cut <= len(body); cut += step {
				rec := newRecording(t)
				var sent *cutBody
				base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
					sent = &cutBody{r: bytes.NewReader(body[:cut]), err: end}
					return &http.Response{StatusCode: 200, Header: h.Clone(), Body: sent, Request: r}, nil
				})
				tr := New(base, rec.options()...)
				resp, err := tr.RoundTrip(chatRequest(t, budgetURL, "sk-cut"))
				if err != nil {
					t.Fatal(err)
				}
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !bytes.Equal(got, body[:cut]) {
					t.Fatalf("%s cut at %d: the caller read %d different bytes", file, cut, len(got))
				}
				if wantErr := map[bool]error{true: nil, false: end}[end == io.EOF]; !errors.Is(rerr, wantErr) && rerr != wantErr {
					t.Errorf("%s cut at %d: read error %v, want %v", file, cut, rerr, wantErr)
				}
				if !sent.closed.Load() {
					t.Errorf("%s cut at %d: the base's body was not closed", file, cut)
				}
				if u, known := spanUsage(t, rec); known && !possible[u] {
					t.Errorf("%s cut at %d: recorded usage %+v, which no whole part of the stream carried", file, cut, u)
				}
			}
		}
	}
}

// usage.Tokens fields of the wrong type, out of range or malformed are not usage:
// the answer passes unchanged, its usage is unknown (never zero), its
// model is still recorded, and nothing is priced or counted. Counts sent
// as strings or whole floats are read (TestUsageAsStringsAndFloats).
func TestUsageOfWrongType(t *testing.T) {
	real, _ := corpus.ReadStream(t, "openai-chat-reasoning.json")
	realUsage := `"usage": {"completion_tokens": 467, "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0, "reasoning_tokens": 448, "rejected_prediction_tokens": 0}, "prompt_tokens": 31, "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0}, "total_tokens": 498}`
	if !bytes.Contains(real, []byte(realUsage)) {
		t.Fatal("fixture changed")
	}
	stream, _ := corpus.ReadStream(t, "openai-chat-stream-usage.sse")
	streamUsage := `"usage":{"prompt_tokens":14,"completion_tokens":30,"total_tokens":44`
	if !bytes.Contains(stream, []byte(streamUsage)) {
		t.Fatal("stream fixture changed")
	}
	for _, tt := range []struct {
		name, ct, body string
	}{
		{"usage a string", "application/json", strings.Replace(string(real), realUsage, `"usage": "498 tokens"`, 1)},
		{"usage an array", "application/json", strings.Replace(string(real), realUsage, `"usage": [31, 467]`, 1)},
		{"usage null", "application/json", strings.Replace(string(real), realUsage, `"usage": null`, 1)},
		{"floats", "application/json", strings.NewReplacer(`"completion_tokens": 467`, `"completion_tokens": 467.5`, `"prompt_tokens": 31`, `"prompt_tokens": 3.1e1`).Replace(string(real))},
		{"huge", "application/json", strings.NewReplacer(`"completion_tokens": 467`, `"completion_tokens": 1e400`, `"prompt_tokens": 31`, `"prompt_tokens": 999999999999999999999999999999`).Replace(string(real))},
		{"negative", "application/json", strings.NewReplacer(`"completion_tokens": 467`, `"completion_tokens": -467`, `"prompt_tokens": 31`, `"prompt_tokens": -31`).Replace(string(real))},
		{"booleans", "application/json", strings.NewReplacer(`"completion_tokens": 467`, `"completion_tokens": true`, `"prompt_tokens": 31`, `"prompt_tokens": false`).Replace(string(real))},
		{"objects", "application/json", strings.NewReplacer(`"completion_tokens": 467`, `"completion_tokens": {"n": 467}`, `"prompt_tokens": 31`, `"prompt_tokens": {}`).Replace(string(real))},
		{"malformed", "application/json", strings.Replace(string(real), `"prompt_tokens": 31`, `"prompt_tokens": 3 1`, 1)},
		{"stream, fractions in strings", "text/event-stream", strings.Replace(string(stream), streamUsage, `"usage":{"prompt_tokens":"14.5","completion_tokens":"30","total_tokens":"44"`, 1)},
		{"stream, usage a number", "text/event-stream", strings.Replace(string(stream), streamUsage+`,"completion_tokens_details":{"reasoning_tokens":0}}`, `"usage":44`, 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecording(t)
			p := newProvider(func(*http.Request) corpusAnswer {
				return corpusAnswer{200, http.Header{"Content-Type": {tt.ct}}, tt.body}
			})
			tr := New(p, append(rec.options(), WithBudget(Budget{Name: "b", Limit: 1}))...)
			resp, got := send(t, tr, budgetURL, "sk-wrong")
			if resp.StatusCode != 200 || string(got) != tt.body {
				t.Fatalf("the caller read %d different bytes", len(got))
			}
			if u, known := spanUsage(t, rec); known {
				t.Errorf("usage %+v recorded from a body whose usage is not usage", u)
			}
			if m := attrs(rec.ours()[0])["gen_ai.response.model"].AsString(); !strings.HasPrefix(m, "o3-mini") && !strings.HasPrefix(m, "gpt-4o") && tt.name != "malformed" {
				t.Errorf("gen_ai.response.model = %q, want the answer's", m)
			}
			// Unknown usage is charged its estimate (Budget.Unmetered's
			// default), marked as such, never recorded as tokens.
			for _, sm := range rec.metrics(t).ScopeMetrics {
				for _, m := range sm.Metrics {
					if m.Name == "gen_ai.client.token.usage" {
						t.Errorf("%s recorded for unknown usage", m.Name)
					}
					if m.Name == "quotabreaker.cost" {
						for _, p := range m.Data.(metricdata.Sum[float64]).DataPoints {
							if v, _ := p.Attributes.Value("quotabreaker.estimated"); !v.AsBool() {
								t.Errorf("%s recorded for unknown usage, not as an estimate", m.Name)
							}
						}
					}
				}
			}
			if st := budgetStatuses(t, tr); len(st) != 1 || st[0].Unmetered != 1 || st[0].Priced != 0 || st[0].Spent != st[0].EstimatedSpent {
				t.Errorf("Budgets() = %+v from unknown usage, want one unmetered answer charged its estimate alone", st)
			}
		})
	}

	// One counter unreadable, the other readable: the usage is unknown,
	// never the readable part alone, as usage/usage.go documents.
	rec := newRecording(t)
	body := strings.Replace(string(real), `"completion_tokens": 467`, `"completion_tokens": 467.5`, 1)
	p := newProvider(func(*http.Request) corpusAnswer {
		return corpusAnswer{200, http.Header{"Content-Type": {"application/json"}}, body}
	})
	if _, got := send(t, New(p, rec.options()...), budgetURL, "sk-wrong"); string(got) != body {
		t.Fatal("the body changed")
	}
	if u, known := spanUsage(t, rec); known {
		t.Errorf("usage %+v known, want unknown", u)
	}
}

// Counts sent as strings or as floats with no fractional part are read and
// priced like numbers, in a JSON answer and in a stream, through the
// Transport.
func TestUsageAsStringsAndFloats(t *testing.T) {
	real, _ := corpus.ReadStream(t, "openai-chat-reasoning.json")
	stream, _ := corpus.ReadStream(t, "openai-chat-stream-usage.sse")
	streamUsage := `"usage":{"prompt_tokens":14,"completion_tokens":30,"total_tokens":44`
	for _, tt := range []struct {
		name, ct, body string
		want           usage.Tokens
		micros         float64
	}{
		{"strings", "application/json", strings.NewReplacer(`"completion_tokens": 467`, `"completion_tokens": "467"`, `"prompt_tokens": 31`, `"prompt_tokens": "31"`).Replace(string(real)),
			usage.Tokens{InputTokens: 31, OutputTokens: 467, ReasoningTokens: 448}, answerMicros},
		{"floats", "application/json", strings.NewReplacer(`"completion_tokens": 467`, `"completion_tokens": 467.0`, `"prompt_tokens": 31`, `"prompt_tokens": 31.00`).Replace(string(real)),
			usage.Tokens{InputTokens: 31, OutputTokens: 467, ReasoningTokens: 448}, answerMicros},
		{"stream, strings", "text/event-stream", strings.Replace(string(stream), streamUsage, `"usage":{"prompt_tokens":"14","completion_tokens":"30","total_tokens":"44"`, 1),
			usage.Tokens{InputTokens: 14, OutputTokens: 30}, 0},
		{"stream, floats", "text/event-stream", strings.Replace(string(stream), streamUsage, `"usage":{"prompt_tokens":14.0,"completion_tokens":30.0,"total_tokens":44.0`, 1),
			usage.Tokens{InputTokens: 14, OutputTokens: 30}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.body == string(real) || tt.body == string(stream) {
				t.Fatal("fixture changed")
			}
			rec := newRecording(t)
			p := newProvider(func(*http.Request) corpusAnswer {
				return corpusAnswer{200, http.Header{"Content-Type": {tt.ct}}, tt.body}
			})
			tr := New(p, append(rec.options(), WithBudget(Budget{Name: "b", Limit: 1}))...)
			if _, got := send(t, tr, budgetURL, "sk-strings"); string(got) != tt.body {
				t.Fatal("the body changed")
			}
			if u, known := spanUsage(t, rec); !known || u != tt.want {
				t.Errorf("usage %+v known %v, want %+v", u, known, tt.want)
			}
			st := budgetStatuses(t, tr)
			if len(st) != 1 || !(st[0].Spent > 0) || (tt.micros != 0 && st[0].Spent != tt.micros/1e6) {
				t.Errorf("Budgets() = %+v, want the answer priced", st)
			}
		})
	}
}

// generator is a body of any size that is made as it is read, never held:
// head, then fill repeated for size bytes (forever if size < 0), then tail.
// It hashes what it yields.
type generator struct {
	head, fill, tail []byte
	size             int64
	done             int64 // bytes of fill yielded
	off              int   // position in the current piece
	stage            int
	sum              hash.Hash
	closed           atomic.Bool
}

func newGenerator(head, fill, tail []byte, size int64) *generator {
	return &generator{head: head, fill: fill, tail: tail, size: size, sum: sha256.New()}
}

func (g *generator) Read(p []byte) (int, error) {
	if g.closed.Load() {
		return 0, errors.New("read on closed body")
	}
	n := 0
	for n < len(p) {
		switch g.stage {
		case 0:
			k := copy(p[n:], g.head[g.off:])
			n, g.off = n+k, g.off+k
			if g.off == len(g.head) {
				g.stage, g.off = 1, 0
			}
		case 1:
			want := len(p) - n
			if g.size >= 0 {
				want = int(min(int64(want), g.size-g.done))
			}
			if want == 0 {
				g.stage, g.off = 2, 0
				continue
			}
			k := copy(p[n:n+want], g.fill[g.off:])
			n, g.off, g.done = n+k, (g.off+k)%len(g.fill), g.done+int64(k)
		case 2:
			k := copy(p[n:], g.tail[g.off:])
			n, g.off = n+k, g.off+k
			if g.off == len(g.tail) {
				g.stage = 3
			}
		default:
			g.sum.Write(p[:n])
			return n, io.EOF
		}
	}
	g.sum.Write(p[:n])
	return n, nil
}

func (g *generator) Close() error { g.closed.Store(true); return nil }

// allocatedWhile returns the bytes allocated while f ran.
func allocatedWhile(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Huge answers pass whole and byte for byte, in bounded memory: a real
// answer whose content is 64 MiB long (its usage, after the content, is
// still read and priced), and an event stream whose one data: line is 100
// MiB long, also with WithStreamUsage's filter in the way.
func TestHugeBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 64 and 100 MiB")
	}
	chat, _ := corpus.ReadStream(t, "openai-chat-reasoning.json")
	content := bytes.Index(chat, []byte("The capital"))
	afterContent := bytes.Index(chat, []byte(`", "refusal"`))
	for _, tt := range []struct {
		name             string
		ct               string
		head, fill, tail []byte
		size             int64
		streamUsage      bool
		want             usage.Tokens
		known            bool
	}{
		{"64 MiB JSON answer", "application/json", chat[:content], []byte("The capital of France is Paris. "), chat[afterContent:], 64 << 20,
			false, usage.Tokens{InputTokens: 31, OutputTokens: 467, ReasoningTokens: 448}, true},
		{"100 MiB data line", "text/event-stream", []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"`),
			bytes.Repeat([]byte("x"), 4096), []byte("\"}}]}\n\ndata: [DONE]\n\n"), 100 << 20, false, usage.Tokens{}, false},
		{"100 MiB data line, usage chunk filter", "text/event-stream", []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"`),
			bytes.Repeat([]byte("x"), 4096), []byte("\"}}]}\n\ndata: [DONE]\n\n"), 100 << 20, true, usage.Tokens{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecording(t)
			var gen *generator
			base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				if r.Body != nil {
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
				gen = newGenerator(tt.head, tt.fill, tt.tail, tt.size)
				return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {tt.ct}}, Body: gen, Request: r}, nil
			})
			opts := rec.options()
			if tt.streamUsage {
				opts = append(opts, WithStreamUsage(true))
			}
			tr := New(base, opts...)
			req := httptest.NewRequest(http.MethodPost, budgetURL, strings.NewReader(`{"model":"o3-mini","stream":true,"messages":[]}`))
			req.Header.Set("Authorization", "Bearer sk-huge")
			read := sha256.New()
			var n int64
			grew := allocatedWhile(func() {
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 32<<10)
				n, err = io.CopyBuffer(read, struct{ io.Reader }{resp.Body}, buf)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			})
			if wantN := int64(len(tt.head)) + tt.size + int64(len(tt.tail)); n != wantN || !bytes.Equal(read.Sum(nil), gen.sum.Sum(nil)) {
				t.Errorf("the caller read %d bytes, hash %x; the base sent %d, hash %x", n, read.Sum(nil), wantN, gen.sum.Sum(nil))
			}
			t.Logf("allocated %d KiB while passing %d MiB", grew>>10, n>>20)
			if grew > 4<<20 {
				t.Errorf("allocated %d MiB while passing %d MiB", grew>>20, n>>20)
			}
			u, known := spanUsage(t, rec)
			if known != tt.known || u != tt.want {
				t.Errorf("usage %+v (known %v), want %+v (known %v)", u, known, tt.want, tt.known)
			}
		})
	}
}

// A stream that never ends: the caller reads some of it and closes it. The
// span ends at Close, the base's body is closed, and no goroutine is left
// behind, through an in-memory base or a real connection.
func TestEndlessStream(t *testing.T) {
	chunk := corpus.ChunkOf(t, "openai-chat-stream-usage.sse", `"content":"`)
	t.Run("in memory", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		rec := newRecording(t)
		var gen *generator
		base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			gen = newGenerator(nil, chunk, nil, -1)
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: gen, Request: r}, nil
		})
		tr := New(base, append(rec.options(), WithStreamUsage(true))...)
		readSomeThenClose(t, tr, budgetURL, rec)
		if !gen.closed.Load() {
			t.Error("the base's body was not closed")
		}
	})
	t.Run("loopback", func(t *testing.T) {
		stopped := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(stopped)
			w.Header().Set("Content-Type", "text/event-stream")
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}))
		base := &http.Transport{}
		defer func() {
			base.CloseIdleConnections()
			srv.Close()
		}()
		rec := newRecording(t)
		readSomeThenClose(t, New(base, rec.options()...), srv.URL+"/v1/chat/completions", rec)
		<-stopped // the server saw the client go
	})
}

func readSomeThenClose(t *testing.T, tr *Transport, url string, rec *recording) {
	t.Helper()
	resp, err := tr.RoundTrip(chatRequest(t, url, "sk-endless"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for range 8 {
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		if len(rec.ours()) != 0 {
			t.Fatal("the span ended mid-stream")
		}
	}
	if err := resp.Body.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, known := spanUsage(t, rec); known {
		t.Error("usage recorded from a stream that never finished")
	}
	if a := attrs(rec.ours()[0]); a["gen_ai.response.model"].AsString() != "gpt-4o-2024-08-06" {
		t.Errorf("span attributes %v, want the stream's model", a)
	}
}

// A stream outlives its RoundTrip. While it is read, so many other scopes
// come and go that idle closed latches are evicted, its own among them;
// the quota error at its end must still open its scope's latch, listed and
// refusing the next request, not an orphan that nothing consults.
func TestStreamQuotaErrorAfterEviction(t *testing.T) {
	t.Parallel() // local state only; no global provider, handler or heap measure
	quota, h := corpus.ReadStream(t, "openai-responses-stream-error-insufficient-quota.sse")
	p := newProvider(func(r *http.Request) corpusAnswer {
		if bearerKey(r) == "sk-streaming" {
			return corpusAnswer{200, h, string(quota)}
		}
		return ok()
	})
	var trips atomic.Int32
	tr := New(p, OnTrip(func(context.Context, Trip) { trips.Add(1) }))
	url := "https://api.openai.com/v1/responses"
	resp, err := tr.RoundTrip(chatRequest(t, url, "sk-streaming"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 * maxIdleLatches {
		send(t, tr, url, "sk-other-"+strconv.Itoa(i))
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if n := trips.Load(); n != 1 {
		t.Errorf("OnTrip fired %d times, want 1", n)
	}
	latches := openLatches(t, tr)
	if len(latches) != 1 || latches[0].Cause != CauseStream || latches[0].Scope != DefaultScope(chatRequest(t, url, "sk-streaming")) {
		t.Fatalf("OpenLatches() = %+v, want the streaming scope's latch", latches)
	}
	before := p.hits.Load()
	if resp, _ := send(t, tr, url, "sk-streaming"); !shortCircuited(resp) || p.hits.Load() != before {
		t.Error("the next request of the tripped scope reached the provider")
	}
	if !reset(t, tr, latches[0].Scope) {
		t.Error("Reset found no latch")
	}
	if resp, _ := send(t, tr, url, "sk-streaming"); shortCircuited(resp) {
		t.Error("refused after Reset")
	}
}

// TestOtherServersStreamErrorsTrip: a quota error inside another server's
// stream shape (Ollama's newline-delimited JSON, FastChat's error chunk, a
// gateway's Python bytes literal) latches the scope like an OpenAI one.
func TestOtherServersStreamErrorsTrip(t *testing.T) {
	tests := []struct{ name, ct, body string }{
		{"NDJSON", "application/x-ndjson", "{\"model\":\"qwen\",\"response\":\"a\",\"done\":false}\n{\"error\":\"\\u4f59\\u989d\\u4e0d\\u8db3\"}\n"},
		{"FastChat", "text/event-stream", "data: {\"id\": \"c\", \"choices\": []}\n\ndata: {\"text\": \"insufficient balance\", \"error_code\": 50001}\n\ndata: [DONE]\n\n"},
		{"bytes literal", "text/event-stream", "data: {\"choices\":[]}\n\ndata: b'{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\"}}'\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProvider(func(*http.Request) corpusAnswer {
				return corpusAnswer{200, http.Header{"Content-Type": {tt.ct}}, tt.body}
			})
			tr := New(p)
			url := "http://llm.internal:8080/v1/chat/completions"
			resp, body := send(t, tr, url, "sk-stream")
			if resp.StatusCode != 200 || string(body) != tt.body {
				t.Fatalf("the stream reached the caller changed: %d %q", resp.StatusCode, body)
			}
			latches := openLatches(t, tr)
			if len(latches) != 1 || latches[0].Cause != CauseStream || latches[0].Class != classify.QuotaExhausted {
				t.Fatalf("OpenLatches() = %+v, want one latch opened by the stream", latches)
			}
			before := p.hits.Load()
			if resp, _ := send(t, tr, url, "sk-stream"); !shortCircuited(resp) || p.hits.Load() != before {
				t.Error("the next request of the tripped scope reached the server")
			}
		})
	}
}
