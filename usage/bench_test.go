package usage

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// observedReader shows an observer every byte read through it, as the
// Transport's body wrapper will.
type observedReader struct {
	r   io.Reader
	obs *Observer
}

func (o *observedReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.obs.Write(p[:n])
	return n, err
}

// BenchmarkStream1MiB reads a 1 MiB event stream bare, through an observer,
// and through an observer and the usage-chunk filter, with the 32 KiB
// buffer io.Copy uses. The ratio of observed to bare is what the observer
// adds to reading a stream; compare with benchstat.
func BenchmarkStream1MiB(b *testing.B) {
	for _, s := range []struct {
		name       string
		file       string
		head, tail int
	}{
		{"chat", "openai-chat-stream-usage.sse", 1, 3},
		{"anthropic", "anthropic-stream-advisor-thinking.sse", 3, 3},
		{"responses", "openai-responses-stream-reasoning.sse", 2, 1},
	} {
		stream := corpus.BigStream(b, s.file, s.head, s.tail, 1<<20)
		h := http.Header{"Content-Type": {"text/event-stream"}}
		buf := make([]byte, 32<<10)
		b.Run("api="+s.name+"/read=bare", func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				// No WriterTo: the bytes are copied through buf, as
				// from a network body.
				io.CopyBuffer(corpus.Discard{}, struct{ io.Reader }{bytes.NewReader(stream)}, buf)
			}
		})
		b.Run("api="+s.name+"/read=observed", func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				obs := NewObserver(h)
				io.CopyBuffer(corpus.Discard{}, &observedReader{r: bytes.NewReader(stream), obs: obs}, buf)
				if r := obs.Result(); !r.Known {
					b.Fatal("no usage")
				}
			}
		})
		b.Run("api="+s.name+"/read=observed+filtered", func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				obs := NewObserver(h)
				io.CopyBuffer(corpus.Discard{}, HideUsageChunk(io.NopCloser(bytes.NewReader(stream)), obs), buf)
				if r := obs.Result(); !r.Known {
					b.Fatal("no usage")
				}
			}
		})
	}
}

// BenchmarkStreamHTTP reads the 1 MiB Chat Completions stream from a
// loopback server, bare and through an observer: the cost the observer adds
// to a real read, which the Transport's own benchmark will show end to end.
func BenchmarkStreamHTTP(b *testing.B) {
	stream := corpus.BigStream(b, "openai-chat-stream-usage.sse", 1, 3, 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(stream)
	}))
	defer srv.Close()
	buf := make([]byte, 32<<10)
	for _, Result := range []bool{false, true} {
		name := "read=bare"
		if Result {
			name = "read=observed"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := srv.Client().Get(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				var r io.Reader = struct{ io.Reader }{resp.Body}
				var obs *Observer
				if Result {
					obs = NewObserver(resp.Header)
					r = &observedReader{r: resp.Body, obs: obs}
				}
				if n, _ := io.CopyBuffer(corpus.Discard{}, r, buf); n != int64(len(stream)) {
					b.Fatalf("read %d", n)
				}
				resp.Body.Close()
				if Result && !obs.Result().Known {
					b.Fatal("no usage")
				}
			}
		})
	}
}

// BenchmarkObserveJSON is the cost of one typical Chat Completions answer:
// a new observer, the body, the result, and the observer released, as the
// Transport does.
func BenchmarkObserveJSON(b *testing.B) {
	body, h := corpus.ReadStream(b, "openai-chat-reasoning.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		o := NewObserver(h)
		o.Write(body)
		if r := o.Result(); !r.Known {
			b.Fatal("no usage")
		}
		o.Release()
	}
}

// BenchmarkObserveJSONFloor reads the same answer two other ways, as
// yardsticks for BenchmarkObserveJSON: encoding/json decoding only what the
// observer keeps (model, id, service tier, usage and its details), and a
// walk over every byte that only finds the end of each string
// (jsonscan.Scanner.Skip of the whole value), the least a reader that must
// tell a key from the text of a completion does.
func BenchmarkObserveJSONFloor(b *testing.B) {
	body, _ := corpus.ReadStream(b, "openai-chat-reasoning.json")
	b.Run("reader=encoding-json", func(b *testing.B) {
		type details struct {
			Cached    int64 `json:"cached_tokens"`
			Reasoning int64 `json:"reasoning_tokens"`
		}
		var v struct {
			Model, ID   string
			ServiceTier string `json:"service_tier"`
			Usage       struct {
				Prompt           int64   `json:"prompt_tokens"`
				Completion       int64   `json:"completion_tokens"`
				PromptDetails    details `json:"prompt_tokens_details"`
				CompletionDetail details `json:"completion_tokens_details"`
			}
		}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if err := json.Unmarshal(body, &v); err != nil || v.Usage.Completion == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("reader=skip", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			s := jsonscan.Scanner{B: body}
			s.Skip()
			if s.SkipSpace(); s.I != len(body) || s.Bad {
				b.Fatal("not skipped whole")
			}
		}
	})
}

// BenchmarkRequestStreamUsage is the cost of asking for usage on a typical
// streamed request.
func BenchmarkRequestStreamUsage(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the weather like in San Francisco today?"}],"stream":true,"temperature":0.2}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, _ := RequestStreamUsage(body); !changed {
			b.Fatal("unchanged")
		}
	}
}
