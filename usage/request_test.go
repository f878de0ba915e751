package usage

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

// closeCounter is a request body that counts its closes.
type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

func TestAskStreamUsage(t *testing.T) {
	const stream = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	send := func(t *testing.T, method, url, body string) (*http.Request, *http.Request, bool, error) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, hide, err := AskStreamUsage(req)
		return req, out, hide, err
	}
	read := func(t *testing.T, r *http.Request) string {
		t.Helper()
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	req, out, hide, err := send(t, "POST", "https://api.openai.com/v1/chat/completions", stream)
	want, _, _ := RequestStreamUsage([]byte(stream))
	if err != nil || out == req || !hide {
		t.Fatalf("a stream that did not ask: same request %v, hide %v, err %v; want a copy that hides the chunk", out == req, hide, err)
	}
	if got := read(t, out); got != string(want) || out.ContentLength != int64(len(want)) {
		t.Errorf("sent %q (Content-Length %d), want %q", got, out.ContentLength, want)
	}
	if again, _ := out.GetBody(); again == nil || read(t, &http.Request{Body: again}) != string(want) {
		t.Error("GetBody does not give the rewritten body again, for a redirect or a retry")
	}

	asked := `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}`
	_, out, hide, err = send(t, "POST", "https://api.openai.com/v1/chat/completions", asked)
	if err != nil || hide || read(t, out) != asked {
		t.Errorf("a stream that asked itself: hide %v, err %v; want its body as it was, the chunk kept", hide, err)
	}

	for _, c := range []struct{ method, url string }{
		{"GET", "https://api.openai.com/v1/chat/completions"},
		{"POST", "https://api.openai.com/v1/responses"},
	} {
		req, out, hide, err := send(t, c.method, c.url, stream)
		if out != req || hide || err != nil || read(t, out) != stream {
			t.Errorf("%s %s: changed %v, hide %v, err %v; want the request untouched", c.method, c.url, out != req, hide, err)
		}
	}

	// Larger than MaxRewriteBody with no Content-Length: sent as it is,
	// the bytes read put back in front of the rest.
	big := `{"stream":true,"x":"` + strings.Repeat("a", MaxRewriteBody) + `"}`
	body := &closeCounter{Reader: strings.NewReader(big)}
	req, _ = http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", body)
	req.ContentLength = -1
	out, hide, err = AskStreamUsage(req)
	if err != nil || hide || read(t, out) != big {
		t.Errorf("a body over the bound: hide %v, err %v, or bytes changed", hide, err)
	}
	if out.Body.Close(); body.closed != 1 {
		t.Errorf("closing the body sent closed the caller's %d times, want 1", body.closed)
	}

	// A body that fails to read: the error, the body closed, no request.
	boom := errors.New("disk gone")
	body = &closeCounter{Reader: io.MultiReader(strings.NewReader(`{"stream":`), iotest.ErrReader(boom))}
	req, _ = http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", body)
	req.ContentLength = -1
	if out, _, err = AskStreamUsage(req); !errors.Is(err, boom) || out != nil || body.closed != 1 {
		t.Errorf("a failing body: request %v, err %v, closed %d; want nil, the error, closed once", out != nil, err, body.closed)
	}
}

func TestReadRequestModel(t *testing.T) {
	const body = `{"messages":[{"role":"user","content":"hi"}],"model":"deepseek-chat"}`
	req, _ := http.NewRequest("POST", "https://api.deepseek.com/chat/completions", strings.NewReader(body))
	if got := ReadRequestModel(req); got != "deepseek-chat" {
		t.Errorf("model %q, want deepseek-chat", got)
	}
	if b, _ := io.ReadAll(req.Body); string(b) != body {
		t.Errorf("the request's own body was read: %q left", b)
	}
	// Past the first 64 KiB the model is not looked for.
	late := `{"messages":"` + strings.Repeat("x", maxModelRead) + `","model":"gpt-4o"}`
	req, _ = http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", strings.NewReader(late))
	if got := ReadRequestModel(req); got != "" {
		t.Errorf("model %q read past the bound", got)
	}
	req, _ = http.NewRequest("POST", "https://api.openai.com/v1/chat/completions", io.NopCloser(bytes.NewReader([]byte(body))))
	if req.GetBody != nil {
		t.Fatal("NewRequest set GetBody for a body it cannot copy")
	}
	if got := ReadRequestModel(req); got != "" {
		t.Errorf("model %q read from a body that cannot be read again", got)
	}
	req, _ = http.NewRequest("GET", "https://api.openai.com/v1/models/gpt-4o", nil)
	if got := ReadRequestModel(req); got != "" {
		t.Errorf("GET: model %q", got)
	}
}
