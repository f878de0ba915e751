package usage

import (
	"io"
	"net/http"
	"strings"

	"github.com/quotabreaker/quotabreaker/internal/bodyio"
	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// This file reads what a request asks for: its model, and whether a stream
// reports its usage.

// AskStreamUsage returns req, or a copy of it whose body asks a Chat
// Completions stream for its usage (see RequestStreamUsage), and whether
// the answer's usage chunk must be hidden again (see HideUsageChunk)
// because the caller had not asked for it. Only a POST to a path that ends
// in /chat/completions is read; a body larger than MaxRewriteBody is sent
// as it is, its first bytes put back. The error is the body's read error:
// req's body is closed then, and req must not be sent.
//
// Ask only providers known to accept stream_options (OpenAI's API and
// DeepSeek's): a compatible server may reject a member it does not know.
func AskStreamUsage(req *http.Request) (*http.Request, bool, error) {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody ||
		req.URL == nil || !strings.HasSuffix(req.URL.Path, "/chat/completions") ||
		req.ContentLength > MaxRewriteBody {
		return req, false, nil
	}
	body, complete, err := bodyio.ReadPrefix(req.Body, MaxRewriteBody+1, req.ContentLength)
	if err != nil {
		req.Body.Close()
		return nil, false, err
	}
	if !complete {
		r := req.Clone(req.Context())
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(strings.NewReader(string(body)), req.Body), req.Body}
		return r, false, nil
	}
	req.Body.Close()
	out, changed, asked := RequestStreamUsage(body)
	r := req.Clone(req.Context())
	r.ContentLength = int64(len(out))
	r.Body = io.NopCloser(strings.NewReader(string(out)))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(out))), nil }
	return r, changed && !asked, nil
}

// maxModelRead is how much of a request body is read for its model.
const maxModelRead = 64 << 10

// ReadRequestModel returns the "model" member of a JSON request body, read
// from the first 64 KiB of a fresh copy of it (req.GetBody, which
// http.NewRequest sets for the bodies SDKs send), so that req's own body is
// left to the transport; "" when the copy cannot be had or names no model
// there.
func ReadRequestModel(req *http.Request) string {
	if req.GetBody == nil || req.Method != http.MethodPost {
		return ""
	}
	rc, err := req.GetBody()
	if err != nil || rc == nil {
		return ""
	}
	defer rc.Close()
	b, _, _ := bodyio.ReadPrefix(rc, maxModelRead, req.ContentLength)
	return RequestModel(b)
}

// RequestModel returns the "model" member of a JSON request body; body may
// be a prefix of the whole text. It is "" when the model is not there.
func RequestModel(body []byte) string {
	return topLevelString(body, "model")
}

// topLevelString returns the string member name of the JSON object in b,
// which may be a prefix of the whole text; "" when it is not there.
func topLevelString(b []byte, name string) string {
	s := jsonscan.Scanner{B: b}
	s.SkipSpace()
	if s.Peek() != '{' {
		return ""
	}
	var v []byte
	var escaped bool
	s.Object(func(key []byte) bool {
		if v == nil && string(key) == name {
			v, escaped = s.StringValue()
			return !s.Bad
		}
		return s.Skip()
	})
	return jsonscan.Text(v, escaped)
}
