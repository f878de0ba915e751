package classify

import (
	"bytes"

	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// This file reads the few fields Answer needs from an error body. It is a
// small, allocation-free JSON reader rather than encoding/json because it runs
// on every error answer and must take any bytes at all (HTML, truncated or
// hostile JSON) in bounded time and memory: it never recurses on input
// depth, skips everything it does not need, and stops at the first malformed
// byte, keeping what it had read before it.

// errorFields holds what Answer reads from an error body. The byte slices
// point into the body; nothing is copied until a field is returned.
type errorFields struct {
	code, typ, message []byte
	status             []byte // Google's error.status
	innerCode          []byte // Azure's error.innererror.code
	reason             []byte // Google's error.details[].reason
	detailCode         []byte // Anthropic's error.details.error_code
	raw                []byte // a gateway's error.metadata.raw: the upstream body as a JSON string
	codePresent        bool   // a "code" member exists, even as null
	codeEscaped        bool   // code holds JSON escapes
	typEscaped         bool
	typPresent         bool
	rawEscaped         bool
	anthropic          bool // {"type":"error","error":{...}}
	google             bool // error.status present, as in Google's APIs
	errorObject        bool // an "error" member that is an object or a string
	errorString        bool // ... a string
	flat               bool // error fields at the top level ({"object":"error",...})
	// conflict: the body repeats "error", or repeats "code" or "type" in
	// one object with different values. SDKs disagree on which one counts
	// (openai-go reads the first, go-openai the last), so such a body never
	// trips a latch.
	conflict bool
}

// parse fills f from body. Provider shapes it knows:
//
//	{"error":{"message":..,"type":..,"param":..,"code":..}}           OpenAI, Azure, DeepSeek, Groq, ...
//	{"type":"error","error":{"type":..,"message":..}}                Anthropic
//	{"error":{"code":429,"message":..,"status":"RESOURCE_EXHAUSTED"}} Google, also wrapped in [ ]
//	{"object":"error","message":..,"type":..,"code":..}               Mistral, vLLM
//	{"error":"message"}, {"message":..}, {"detail":..}                  assorted gateways
//	{"error":"message","error_type":"validation"}                        Text Generation Inference
//	{"error":{"message":..,"code":402,"metadata":{"raw":"{...}"}}}     OpenRouter, wrapping an upstream answer
func (f *errorFields) parse(body []byte) {
	s := jsonscan.Scanner{B: body}
	s.SkipSpace()
	if bytes.HasPrefix(s.B[s.I:], []byte("\xef\xbb\xbf")) {
		s.I += 3
		s.SkipSpace()
	}
	if s.Peek() == '[' { // Google's array-wrapped errors: read the first element
		s.I++
		s.SkipSpace()
	}
	if s.Peek() != '{' {
		return
	}
	var top struct {
		typ, message, code, object, raw []byte
		errType                         []byte // Text Generation Inference's error_type
		typEscaped, codeEscaped         bool
		codePresent, typPresent, detail bool
		rawEscaped                      bool
	}
	errorCount := 0
	s.Object(func(key []byte) bool {
		switch string(key) {
		case "error":
			// A later duplicate replaces an earlier one, as in encoding/json;
			// SDKs that read the first one see something else.
			if errorCount++; errorCount > 1 {
				f.conflict = true
			}
			switch s.Peek() {
			case '{':
				f.resetError()
				f.errorObject = true
				return s.Object(func(key []byte) bool { return f.errorMember(&s, key) })
			case '"':
				f.resetError()
				f.errorObject, f.errorString = true, true
				f.message, _ = s.Str()
				return !s.Bad
			}
			f.resetError()
			return s.Skip()
		case "type":
			v, esc := s.StringValue()
			f.conflict = f.conflict || (top.typPresent && !bytes.Equal(v, top.typ))
			top.typ, top.typEscaped, top.typPresent = v, esc, true
		case "message":
			top.message, _ = s.StringValue()
		case "detail": // FastAPI-style gateways
			top.detail = true
			top.message, _ = s.StringValue()
		case "code":
			v, esc := s.ScalarValue()
			f.conflict = f.conflict || (top.codePresent && !bytes.Equal(v, top.code))
			top.code, top.codeEscaped, top.codePresent = v, esc, true
		case "object":
			top.object, _ = s.StringValue()
		case "error_type":
			top.errType, _ = s.StringValue()
		case "metadata": // a gateway's error flattened by an SDK
			top.raw, top.rawEscaped = metadataRaw(&s)
		default:
			return s.Skip()
		}
		return !s.Bad
	})
	switch {
	case f.errorObject && f.errorString:
		// {"error":"message","code":...}: xAI, Ollama; and Text Generation
		// Inference's {"error":"message","error_type":"validation"}, whose
		// error_type is its type.
		f.code, f.codeEscaped, f.codePresent = top.code, top.codeEscaped, top.codePresent
		f.typ, f.typEscaped, f.typPresent = top.typ, top.typEscaped, top.typPresent
		if !top.typPresent && len(top.errType) > 0 {
			f.typ, f.typPresent = top.errType, true
		}
	case f.errorObject:
		f.anthropic = string(top.typ) == "error" && !top.typEscaped && !f.google
	case len(top.message) > 0 || top.detail || string(top.object) == "error":
		f.flat = true
		f.code, f.codeEscaped, f.codePresent = top.code, top.codeEscaped, top.codePresent
		f.typ, f.typEscaped, f.typPresent = top.typ, top.typEscaped, top.typPresent
		f.message = top.message
		f.raw, f.rawEscaped = top.raw, top.rawEscaped
	}
}

func (f *errorFields) resetError() {
	f.code, f.typ, f.message, f.status, f.innerCode, f.reason, f.detailCode = nil, nil, nil, nil, nil, nil, nil
	f.raw, f.rawEscaped = nil, false
	f.codePresent, f.codeEscaped, f.typEscaped, f.typPresent = false, false, false, false
	f.google, f.errorObject, f.errorString = false, false, false
}

// errorMember reads one member of the "error" object.
func (f *errorFields) errorMember(s *jsonscan.Scanner, key []byte) bool {
	switch string(key) {
	case "code":
		v, esc := s.ScalarValue()
		f.conflict = f.conflict || (f.codePresent && !bytes.Equal(v, f.code))
		f.code, f.codeEscaped, f.codePresent = v, esc, true
	case "type":
		v, esc := s.StringValue()
		f.conflict = f.conflict || (f.typPresent && !bytes.Equal(v, f.typ))
		f.typ, f.typEscaped, f.typPresent = v, esc, true
	case "metadata": // OpenRouter and gateways like it
		f.raw, f.rawEscaped = metadataRaw(s)
		return !s.Bad
	case "message":
		f.message, _ = s.StringValue()
	case "status":
		f.status, _ = s.StringValue()
		f.google = isUpperSnake(f.status)
	case "innererror":
		f.innerCode = nil
		if s.Peek() != '{' {
			return s.Skip()
		}
		return s.Object(func(key []byte) bool {
			if string(key) == "code" {
				f.innerCode, _ = s.StringValue()
				return !s.Bad
			}
			return s.Skip()
		})
	case "details":
		f.reason, f.detailCode = nil, nil
		switch s.Peek() {
		case '{': // Anthropic: {"error_code": ...}
			return s.Object(func(key []byte) bool {
				if string(key) == "error_code" {
					f.detailCode, _ = s.StringValue()
					return !s.Bad
				}
				return s.Skip()
			})
		case '[': // Google: [{"@type": ..., "reason": ...}, ...]
			return s.Array(func() bool {
				if s.Peek() != '{' {
					return s.Skip()
				}
				return s.Object(func(key []byte) bool {
					if string(key) == "reason" {
						if r, _ := s.StringValue(); f.reason == nil {
							f.reason = r
						}
						return !s.Bad
					}
					return s.Skip()
				})
			})
		}
		return s.Skip()
	default:
		return s.Skip()
	}
	return !s.Bad
}

// metadataRaw reads a gateway's metadata object and returns its "raw"
// member: the upstream provider's answer, itself usually JSON, as a string,
// or (OpenRouter in early 2025) as {"__kind":"OK","data":"<answer>"}.
func metadataRaw(s *jsonscan.Scanner) (raw []byte, escaped bool) {
	if s.Peek() != '{' {
		s.Skip()
		return nil, false
	}
	s.Object(func(key []byte) bool {
		if string(key) != "raw" {
			return s.Skip()
		}
		if s.Peek() != '{' {
			raw, escaped = s.StringValue()
			return !s.Bad
		}
		return s.Object(func(key []byte) bool {
			if string(key) == "data" {
				raw, escaped = s.StringValue()
				return !s.Bad
			}
			return s.Skip()
		})
	})
	return raw, escaped
}

// parseNested fills f from a gateway's metadata.raw: the raw contents of a
// JSON string holding the upstream answer. It reads one level only; a raw
// member inside the upstream answer is left alone by Answer.
func (f *errorFields) parseNested(raw []byte, escaped bool) {
	if escaped {
		raw = jsonscan.Unescape(raw)
	}
	f.parse(raw)
}

func isUpperSnake(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && c != '_' {
			return false
		}
	}
	return len(b) > 0
}
