package quotabreaker

import (
	"bytes"
	"encoding/json"
)

// This file reads the few fields Classify needs from an error body. It is a
// small, allocation-free JSON reader rather than encoding/json because it runs
// on every error answer and must take any bytes at all (HTML, truncated or
// hostile JSON) in bounded time and memory: it never recurses on input
// depth, skips everything it does not need, and stops at the first malformed
// byte, keeping what it had read before it.

// errorFields holds what Classify reads from an error body. The byte slices
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
//	{"error":{"message":..,"code":402,"metadata":{"raw":"{...}"}}}     OpenRouter, wrapping an upstream answer
func (f *errorFields) parse(body []byte) {
	s := scanner{b: body}
	s.ws()
	if bytes.HasPrefix(s.b[s.i:], []byte("\xef\xbb\xbf")) {
		s.i += 3
		s.ws()
	}
	if s.peek() == '[' { // Google's array-wrapped errors: read the first element
		s.i++
		s.ws()
	}
	if s.peek() != '{' {
		return
	}
	var top struct {
		typ, message, code, object, raw []byte
		typEscaped, codeEscaped         bool
		codePresent, typPresent, detail bool
		rawEscaped                      bool
	}
	errorCount := 0
	s.object(func(key []byte) bool {
		switch string(key) {
		case "error":
			// A later duplicate replaces an earlier one, as in encoding/json;
			// SDKs that read the first one see something else.
			if errorCount++; errorCount > 1 {
				f.conflict = true
			}
			switch s.peek() {
			case '{':
				f.resetError()
				f.errorObject = true
				return s.object(func(key []byte) bool { return f.errorMember(&s, key) })
			case '"':
				f.resetError()
				f.errorObject, f.errorString = true, true
				f.message, _ = s.str()
				return !s.bad
			}
			f.resetError()
			return s.skip()
		case "type":
			v, esc := s.stringValue()
			f.conflict = f.conflict || (top.typPresent && !bytes.Equal(v, top.typ))
			top.typ, top.typEscaped, top.typPresent = v, esc, true
		case "message":
			top.message, _ = s.stringValue()
		case "detail": // FastAPI-style gateways
			top.detail = true
			top.message, _ = s.stringValue()
		case "code":
			v, esc := s.scalarValue()
			f.conflict = f.conflict || (top.codePresent && !bytes.Equal(v, top.code))
			top.code, top.codeEscaped, top.codePresent = v, esc, true
		case "object":
			top.object, _ = s.stringValue()
		case "metadata": // a gateway's error flattened by an SDK
			top.raw, top.rawEscaped = metadataRaw(&s)
		default:
			return s.skip()
		}
		return !s.bad
	})
	switch {
	case f.errorObject && f.errorString:
		// {"error":"message","code":...}: xAI, Ollama
		f.code, f.codeEscaped, f.codePresent = top.code, top.codeEscaped, top.codePresent
		f.typ, f.typEscaped, f.typPresent = top.typ, top.typEscaped, top.typPresent
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
func (f *errorFields) errorMember(s *scanner, key []byte) bool {
	switch string(key) {
	case "code":
		v, esc := s.scalarValue()
		f.conflict = f.conflict || (f.codePresent && !bytes.Equal(v, f.code))
		f.code, f.codeEscaped, f.codePresent = v, esc, true
	case "type":
		v, esc := s.stringValue()
		f.conflict = f.conflict || (f.typPresent && !bytes.Equal(v, f.typ))
		f.typ, f.typEscaped, f.typPresent = v, esc, true
	case "metadata": // OpenRouter and gateways like it
		f.raw, f.rawEscaped = metadataRaw(s)
		return !s.bad
	case "message":
		f.message, _ = s.stringValue()
	case "status":
		f.status, _ = s.stringValue()
		f.google = isUpperSnake(f.status)
	case "innererror":
		f.innerCode = nil
		if s.peek() != '{' {
			return s.skip()
		}
		return s.object(func(key []byte) bool {
			if string(key) == "code" {
				f.innerCode, _ = s.stringValue()
				return !s.bad
			}
			return s.skip()
		})
	case "details":
		f.reason, f.detailCode = nil, nil
		switch s.peek() {
		case '{': // Anthropic: {"error_code": ...}
			return s.object(func(key []byte) bool {
				if string(key) == "error_code" {
					f.detailCode, _ = s.stringValue()
					return !s.bad
				}
				return s.skip()
			})
		case '[': // Google: [{"@type": ..., "reason": ...}, ...]
			return s.array(func() bool {
				if s.peek() != '{' {
					return s.skip()
				}
				return s.object(func(key []byte) bool {
					if string(key) == "reason" {
						if r, _ := s.stringValue(); f.reason == nil {
							f.reason = r
						}
						return !s.bad
					}
					return s.skip()
				})
			})
		}
		return s.skip()
	default:
		return s.skip()
	}
	return !s.bad
}

// metadataRaw reads a gateway's metadata object and returns its "raw"
// member: the upstream provider's answer, itself usually JSON, as a string,
// or (OpenRouter in early 2025) as {"__kind":"OK","data":"<answer>"}.
func metadataRaw(s *scanner) (raw []byte, escaped bool) {
	if s.peek() != '{' {
		s.skip()
		return nil, false
	}
	s.object(func(key []byte) bool {
		if string(key) != "raw" {
			return s.skip()
		}
		if s.peek() != '{' {
			raw, escaped = s.stringValue()
			return !s.bad
		}
		return s.object(func(key []byte) bool {
			if string(key) == "data" {
				raw, escaped = s.stringValue()
				return !s.bad
			}
			return s.skip()
		})
	})
	return raw, escaped
}

// parseNested fills f from a gateway's metadata.raw: the raw contents of a
// JSON string holding the upstream answer. It reads one level only; a raw
// member inside the upstream answer is left alone by Classify.
func (f *errorFields) parseNested(raw []byte, escaped bool) {
	if escaped {
		raw = unescape(raw)
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

// scanner walks JSON text without building values. Once bad is set every
// method returns at once; the caller keeps what it read before.
type scanner struct {
	b   []byte
	i   int
	bad bool
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// fail marks the input malformed and returns false, for use in returns.
func (s *scanner) fail() bool {
	s.bad = true
	s.i = len(s.b)
	return false
}

// str reads the string at s.i and returns its raw contents (between the
// quotes, escapes left in place) and whether it holds any escape.
func (s *scanner) str() (raw []byte, escaped bool) {
	if s.peek() != '"' {
		s.fail()
		return nil, false
	}
	start := s.i + 1
	for j := start; ; {
		k := bytes.IndexByte(s.b[j:], '"')
		if k < 0 {
			s.fail()
			return nil, false
		}
		end := j + k
		// The quote ends the string unless an odd run of backslashes escapes it.
		n := 0
		for p := end - 1; p >= start && s.b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			s.i = end + 1
			raw = s.b[start:end]
			return raw, bytes.IndexByte(raw, '\\') >= 0
		}
		j = end + 1
	}
}

// stringValue reads a value that should be a string; any other value is
// skipped and reads as absent.
func (s *scanner) stringValue() (raw []byte, escaped bool) {
	if s.peek() == '"' {
		return s.str()
	}
	s.skip()
	return nil, false
}

// scalarValue reads a string or a number, which providers use alike for
// codes ("429", 429); null and anything else read as absent.
func (s *scanner) scalarValue() (raw []byte, escaped bool) {
	switch c := s.peek(); {
	case c == '"':
		return s.str()
	case c == '-' || ('0' <= c && c <= '9'):
		start := s.i
		s.skip()
		return s.b[start:s.i], false
	}
	s.skip()
	return nil, false
}

// skip passes over one value of any kind. Containers are skipped by counting
// brackets outside strings, so depth costs no stack.
func (s *scanner) skip() bool {
	if s.bad {
		return false
	}
	switch s.peek() {
	case '"':
		s.str()
		return !s.bad
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if s.str(); s.bad {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return s.fail()
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.i > start || s.fail()
		}
		s.i++
	}
	return s.i > start || s.fail()
}

// object reads the object at s.i, calling member with each key and s placed
// at the value, which member must consume.
func (s *scanner) object(member func(key []byte) bool) bool {
	if s.peek() != '{' {
		return s.fail()
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		key, escaped := s.str()
		if s.bad {
			return false
		}
		if escaped {
			key = unescape(key)
		}
		s.ws()
		if s.peek() != ':' {
			return s.fail()
		}
		s.i++
		s.ws()
		if !member(key) || s.bad {
			return s.fail()
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return s.fail()
		}
	}
}

// array reads the array at s.i, calling elem with s placed at each element.
func (s *scanner) array(elem func() bool) bool {
	if s.peek() != '[' {
		return s.fail()
	}
	s.i++
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		s.ws()
		if !elem() || s.bad {
			return s.fail()
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return s.fail()
		}
	}
}

// unescape applies JSON escapes to the raw contents of a string. Escaped keys
// and codes are rare enough that encoding/json may do it.
func unescape(raw []byte) []byte {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return raw
	}
	return []byte(s)
}
