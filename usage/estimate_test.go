package usage

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
)

// TestEstimateError measures Estimate against the provider's own count on
// every real stream in testdata/streams that carries both its text and its
// usage (output), and on the four requests recorded beside Gemini answers
// in testdata/streams/requests (input). The ratios, estimate over
// reported, are the ones documented on Result.Estimate; the test holds
// them to two decimals so that a change to the counting shows here.
func TestEstimateError(t *testing.T) {
	for _, c := range []struct {
		file    string
		out, in float64 // estimate/reported; 0: not measured
	}{
		// All of the output is streamed text.
		{file: "openai-chat-stream-usage.sse", out: 1.33},
		// Part of it is reasoning the stream carries (Groq's reasoning,
		// Gemini's thought summaries) or hides.
		{file: "groq-chat-stream-usage-in-finish-chunk.sse", out: 0.61},
		{file: "gemini-stream-thoughts.sse", out: 0.71, in: 2.56},
		{file: "gemini-stream-array-thoughts.json", out: 0.25, in: 10.18},
		{file: "anthropic-stream-advisor-thinking.sse", out: 0.34},
		// Reasoning hidden from the stream: gpt-5 reasoned 448 of 469
		// tokens; gpt-5.2-codex reports 54 output tokens for 33 bytes of
		// text.
		{file: "openai-responses-stream-reasoning.sse", out: 0.01},
		{file: "openai-responses-stream-cached.sse", out: 0.17},
		// The documentation's example, whose text it shortened.
		{file: "anthropic-stream-docs-basic.sse", out: 0.13},
		// Input only: a prompt cached on the server (3512 of 3520
		// tokens), and tool-use prompts the request does not carry.
		{file: "gemini-generate-cached-thoughts.json", in: 0.01},
		{file: "gemini-generate-tool-use.json", in: 0.43},
	} {
		t.Run(c.file, func(t *testing.T) {
			body, h := corpus.ReadStream(t, c.file)
			r := Read(h, body)
			if !r.Known {
				t.Fatal("no usage")
			}
			r.Known, r.Metering = false, CutShort
			var req []byte
			if c.in != 0 {
				var err error
				if req, err = os.ReadFile(filepath.Join(corpus.StreamsDir(t), "requests", c.file+".request.json")); err != nil {
					t.Fatal(err)
				}
			}
			est := r.Estimate(int64(len(req)))
			if !est.Estimated {
				t.Error("not marked as an estimate")
			}
			line := ""
			if c.out != 0 {
				got := float64(est.Tokens.OutputTokens) / float64(r.Tokens.OutputTokens)
				line = fmt.Sprintf("output: %d text bytes, %d tokens estimated, %d reported (%d reasoning): x%.2f",
					r.TextBytes, est.Tokens.OutputTokens, r.Tokens.OutputTokens, r.Tokens.ReasoningTokens, got)
				if math.Abs(got-c.out) > 0.005 {
					t.Errorf("output estimate x%.2f, documented x%.2f", got, c.out)
				}
			}
			if c.in != 0 {
				got := float64(est.Tokens.InputTokens) / float64(r.Tokens.InputTokens)
				line += fmt.Sprintf(" input: %d request bytes, %d tokens estimated, %d reported: x%.2f",
					len(req), est.Tokens.InputTokens, r.Tokens.InputTokens, got)
				if math.Abs(got-c.in) > 0.005 {
					t.Errorf("input estimate x%.2f, documented x%.2f", got, c.in)
				}
			}
			t.Log(line)
		})
	}
}

// TestTextKeyBefore checks textKeyBefore against what it replaces: the
// key from the last quote before the colon's quote, named by textKey.
func TestTextKeyBefore(t *testing.T) {
	keys := []string{"content", "text", "delta", "thinking", "partial_json", "arguments", "reasoning_content", "reasoning", "refusal",
		"", "t", "ext", "xcontent", "contents", "reasoning_contents", "model", "index", "a\"text", "role"}
	for _, k := range keys {
		for _, pre := range []string{"", `"`, `{"`, `x"`, `"a":"`, `\"`} {
			l := []byte(pre + k + `":"v"`)
			q := len(pre) + len(k) // the key's closing quote
			if q < 1 {
				continue
			}
			want := false
			if o := bytes.LastIndexByte(l[:q], '"'); o >= 0 {
				want = textKey(l[o+1 : q])
			}
			if got := textKeyBefore(l, q); got != want {
				t.Errorf("%q: textKeyBefore %v, want %v", l, got, want)
			}
		}
	}
}
