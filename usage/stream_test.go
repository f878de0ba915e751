package usage

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
)

func TestRequestStreamUsage(t *testing.T) {
	for _, c := range []struct {
		name           string
		body           string
		want           string // "" when unchanged
		changed, asked bool
	}{
		{name: "adds stream_options",
			body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`,
			want: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`, changed: true},
		{name: "pretty-printed",
			body: "{\n  \"stream\": true,\n  \"model\": \"m\"\n}\n",
			want: "{\n  \"stream\": true,\n  \"model\": \"m\"\n,\"stream_options\":{\"include_usage\":true}}\n", changed: true},
		{name: "merges into stream_options",
			body: `{"stream":true,"stream_options":{"include_obfuscation":false}}`,
			want: `{"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}`, changed: true},
		{name: "empty stream_options",
			body: `{"stream":true,"stream_options":{ }}`,
			want: `{"stream":true,"stream_options":{"include_usage":true }}`, changed: true},
		{name: "null stream_options",
			body: `{"stream":true,"stream_options":null}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`, changed: true},
		{name: "include_usage false",
			body: `{"stream":true,"stream_options":{"include_usage":false}}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`, changed: true},
		{name: "the caller asked", body: `{"stream":true,"stream_options":{"include_usage":true}}`, asked: true},
		{name: "not streamed", body: `{"model":"m","stream":false}`},
		{name: "no stream key", body: `{"model":"m"}`},
		{name: "stream as a string", body: `{"stream":"true"}`},
		{name: "stream nested, not top-level", body: `{"metadata":{"stream":true}}`},
		{name: "duplicate stream", body: `{"stream":true,"stream":false}`},
		{name: "duplicate stream_options", body: `{"stream":true,"stream_options":{},"stream_options":{}}`},
		{name: "another case", body: `{"stream":true,"Stream_Options":{"include_usage":false}}`},
		{name: "duplicate include_usage", body: `{"stream":true,"stream_options":{"include_usage":false,"include_usage":false}}`},
		{name: "include_usage of another type", body: `{"stream":true,"stream_options":{"include_usage":"yes"}}`},
		{name: "stream_options of another type", body: `{"stream":true,"stream_options":[]}`},
		{name: "not JSON", body: `stream=true`},
		{name: "truncated", body: `{"stream":true,"model":"m"`},
		{name: "an array", body: `[{"stream":true}]`},
		{name: "trailing garbage", body: `{"stream":true} x`},
		{name: "empty", body: ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, changed, asked := RequestStreamUsage([]byte(c.body))
			if changed != c.changed || asked != c.asked {
				t.Errorf("changed, asked = %v, %v, want %v, %v", changed, asked, c.changed, c.asked)
			}
			want := c.want
			if want == "" {
				want = c.body
			}
			if string(out) != want {
				t.Errorf("body = %s\nwant   %s", out, want)
			}
			if changed {
				sameExceptUsage(t, []byte(c.body), out)
			}
		})
	}
	big := []byte(`{"stream":true,"x":"` + strings.Repeat("a", MaxRewriteBody) + `"}`)
	if out, changed, _ := RequestStreamUsage(big); changed || &out[0] != &big[0] {
		t.Error("a body over the limit was rewritten")
	}
}

// sameExceptUsage checks that out means what in means, plus
// stream_options.include_usage: true.
func sameExceptUsage(t *testing.T, in, out []byte) {
	t.Helper()
	var a, b map[string]any
	if err := json.Unmarshal(in, &a); err != nil {
		t.Fatalf("input: %v", err)
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	opts, _ := b["stream_options"].(map[string]any)
	if opts["include_usage"] != true {
		t.Fatalf("output has no include_usage: %s", out)
	}
	delete(opts, "include_usage")
	if ao, ok := a["stream_options"].(map[string]any); ok {
		delete(ao, "include_usage")
	} else {
		delete(a, "stream_options")
		if len(opts) == 0 {
			delete(b, "stream_options")
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("meaning changed:\n in  %v\n out %v", a, b)
	}
}

func FuzzRequestStreamUsage(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","stream":true}`,
		`{"stream":true,"stream_options":{"include_usage":false}}`,
		`{"stream":true,"stream_options":null}`,
		`{"stream":true,"stream_options":{}}`,
		`{"str\u0065am":true}`,
		"{\"stream\":true,\"messages\":[{\"content\":\"}\\\"\"}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		out, changed, asked := RequestStreamUsage(body)
		if !bytes.Equal(body, orig) {
			t.Fatal("the input was modified")
		}
		if !changed {
			if !bytes.Equal(out, body) {
				t.Fatal("unchanged, yet the body differs")
			}
			return
		}
		if asked {
			t.Fatal("changed and asked")
		}
		sameExceptUsage(t, body, out)
	})
}

// filterAll runs a fresh filter over body in pieces of the given sizes.
func filterAll(body []byte, sizes ...int) []byte {
	var f usageChunkFilter
	var out []byte
	for i, k := 0, 0; i < len(body); k++ {
		n := len(body) - i
		if len(sizes) > 0 {
			n = min(n, sizes[k%len(sizes)])
		}
		out = f.filter(out, body[i:i+n])
		i += n
	}
	return f.flush(out)
}

func TestUsageChunkFilter(t *testing.T) {
	withUsage, _ := corpus.ReadStream(t, "openai-chat-stream-usage.sse")
	without, _ := corpus.ReadStream(t, "openai-chat-stream-no-usage.sse")
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }
	for _, c := range []struct {
		name     string
		in, want []byte
	}{
		// The recorded stream minus its usage chunk is exactly the
		// stream the caller would have had without include_usage.
		{"drops the usage chunk", withUsage, without},
		{"CRLF", crlf(withUsage), crlf(without)},
		{"no usage chunk", without, without},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, sizes := range [][]int{nil, {1}, {2}, {7, 1, 300}, {4096}} {
				if got := filterAll(c.in, sizes...); !bytes.Equal(got, c.want) {
					t.Fatalf("pieces %v:\n%s\nwant\n%s", sizes, got, c.want)
				}
			}
		})
	}
	// Streams with no usage-only chunk pass byte for byte: Groq's usage
	// rides on a chunk whose choices are not empty, and other APIs have
	// no such chunk.
	for _, file := range []string{
		"groq-chat-stream-usage-in-finish-chunk.sse",
		"groq-chat-stream-error-tool-use-failed.sse",
		"anthropic-stream-advisor-thinking.sse",
		"openai-responses-stream-reasoning.sse",
		"gemini-stream-trailing-error.sse",
		"openai-chat-reasoning.json",
	} {
		t.Run(file, func(t *testing.T) {
			body, _ := corpus.ReadStream(t, file)
			for _, sizes := range [][]int{nil, {1}, {3, 50}} {
				if got := filterAll(body, sizes...); !bytes.Equal(got, body) {
					t.Fatalf("pieces %v: the stream changed", sizes)
				}
			}
		})
	}
}

// TestUsageChunkFilterLatency checks that the filter holds back no byte
// beyond the end of its line: whatever has been fed, every complete line of
// it has come out (less the dropped chunk).
func TestUsageChunkFilterLatency(t *testing.T) {
	in, _ := corpus.ReadStream(t, "openai-chat-stream-usage.sse")
	want, _ := corpus.ReadStream(t, "openai-chat-stream-no-usage.sse")
	chunk := corpus.ChunkOf(t, "openai-chat-stream-usage.sse", `"usage":{`)
	dropAt := bytes.Index(in, chunk)
	var f usageChunkFilter
	var out []byte
	for k := 1; k <= len(in); k++ {
		out = f.filter(out, in[k-1:k])
		fed := in[:k]
		done := bytes.LastIndexByte(fed, '\n') + 1 // complete lines fed
		expect := done
		if done > dropAt {
			expect -= min(done-dropAt, len(chunk))
		}
		if len(out) < expect || !bytes.Equal(out, want[:len(out)]) {
			t.Fatalf("after %d bytes: %d out, want at least %d, a prefix of the filtered stream", k, len(out), expect)
		}
	}
}

// chunkReader reads a filtered stream the way go-openai's stream reader and
// its callers do: each data: line is a chunk, and the caller reads
// Choices[0] of every chunk.
func chunkReader(t *testing.T, r io.Reader) (chunks int) {
	t.Helper()
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		line = bytes.TrimSpace(line)
		if data, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(data)
			if string(data) == "[DONE]" {
				return chunks
			}
			var chunk struct {
				Choices []json.RawMessage `json:"choices"`
			}
			if err := json.Unmarshal(data, &chunk); err != nil {
				t.Fatalf("chunk %d: %v", chunks, err)
			}
			if len(chunk.Choices) == 0 {
				t.Fatalf("chunk %d has no choices: Choices[0] would panic", chunks)
			}
			chunks++
		}
		if err != nil {
			return chunks
		}
	}
}

func TestFilterBody(t *testing.T) {
	in, h := corpus.ReadStream(t, "openai-chat-stream-usage.sse")
	obs := NewObserver(h)
	body := HideUsageChunk(io.NopCloser(&oneByteReader{r: bytes.NewReader(in)}), obs)
	if n := chunkReader(t, body); n != 32 {
		t.Errorf("read %d chunks, want 32", n)
	}
	if _, err := io.ReadAll(body); err != nil {
		t.Fatal(err)
	}
	// The observer saw the chunk the caller did not.
	if r := obs.Result(); !r.Known || r.Tokens != (Tokens{InputTokens: 14, OutputTokens: 30}) {
		t.Errorf("observer: %+v", r)
	}
}

type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}
