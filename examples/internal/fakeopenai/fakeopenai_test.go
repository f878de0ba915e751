package fakeopenai

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func post(t *testing.T, s *Server, key, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.BaseURL()+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// corpusBody returns the body of a sample in the module's corpus.
func corpusBody(t *testing.T, name string) string {
	t.Helper()
	return sampleBody(t, filepath.Join("..", "..", "..", "classify", "testdata", "corpus", name))
}

// sampleBody returns the body of the sample file at path.
func sampleBody(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sample struct{ Body string }
	if err := json.Unmarshal(raw, &sample); err != nil {
		t.Fatal(err)
	}
	return sample.Body
}

// The script plays per key, then holds its steady answer; the error bodies
// are the corpus's, byte for byte.
func TestScript(t *testing.T) {
	s := New()
	defer s.Close()
	s.Script("sk-a", []Answer{RateLimited, OK}, QuotaExhausted)
	const req = `{"model":"gpt-4o-mini","messages":[]}`

	resp, body := post(t, s, "sk-a", req)
	if resp.StatusCode != 429 || body != corpusBody(t, "openai-rate-limit-tokens-tpm.json") {
		t.Errorf("1st: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Retry-After-Ms"); got != "10" {
		t.Errorf("retry-after-ms = %q, want 10", got)
	}
	if resp, body = post(t, s, "sk-a", req); resp.StatusCode != 200 || !strings.Contains(body, `"object": "chat.completion"`) {
		t.Errorf("2nd: %d %s", resp.StatusCode, body)
	}
	for range 2 {
		if resp, body = post(t, s, "sk-a", req); resp.StatusCode != 429 || body != corpusBody(t, "openai-insufficient-quota-docs-link-429.json") {
			t.Errorf("steady: %d %s", resp.StatusCode, body)
		}
	}
	if resp, _ = post(t, s, "sk-b", req); resp.StatusCode != 200 {
		t.Errorf("unscripted key: %d", resp.StatusCode)
	}
	if s.Hits() != 5 || s.HitsFor("sk-a") != 4 || s.HitsFor("sk-b") != 1 {
		t.Errorf("hits %d, sk-a %d, sk-b %d; want 5, 4, 1", s.Hits(), s.HitsFor("sk-a"), s.HitsFor("sk-b"))
	}
}

// The answers that cannot succeed later are 429s without a retry hint,
// with the real bodies.
func TestNonRetryable429(t *testing.T) {
	for _, tt := range []struct {
		answer Answer
		body   func(t *testing.T) string
	}{
		{RequestTooLarge, func(t *testing.T) string {
			return sampleBody(t, filepath.Join("..", "..", "testdata", "openai-request-too-large-tpm-429.json"))
		}},
		{AccessTerminated, func(t *testing.T) string { return corpusBody(t, "openai-access-terminated-429.json") }},
	} {
		t.Run(tt.answer.String(), func(t *testing.T) {
			s := New()
			defer s.Close()
			s.Script("sk-a", nil, tt.answer)
			resp, body := post(t, s, "sk-a", `{"model":"gpt-4o-mini","messages":[]}`)
			if resp.StatusCode != 429 || body != tt.body(t) {
				t.Errorf("got %d %s", resp.StatusCode, body)
			}
			for _, h := range []string{"Retry-After", "Retry-After-Ms"} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("%s = %q, want none", h, v)
				}
			}
		})
	}
}

func TestStream(t *testing.T) {
	s := New()
	defer s.Close()
	resp, body := post(t, s, "sk-a", `{"model":"gpt-4o-mini","stream":true}`)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("content-type %q", ct)
	}
	events := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
	if want := len(StreamDeltas) + 3; len(events) != want || events[len(events)-1] != "data: [DONE]" {
		t.Fatalf("%d events, want %d ending in [DONE]:\n%s", len(events), want, body)
	}
	var text strings.Builder
	for _, e := range events[:len(events)-1] {
		var chunk struct {
			Object  string
			Choices []struct{ Delta struct{ Content string } }
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(e, "data: ")), &chunk); err != nil || chunk.Object != "chat.completion.chunk" {
			t.Fatalf("event %q: %v", e, err)
		}
		text.WriteString(chunk.Choices[0].Delta.Content)
	}
	if text.String() != Reply {
		t.Errorf("streamed %q, want %q", text.String(), Reply)
	}
}
