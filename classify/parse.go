package classify

import (
	"bytes"

	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// This file reads the few fields Answer needs from an error body, in one
// pass of a jsonscan.Query rather than with encoding/json: it runs on every
// error answer and must take any bytes at all (HTML, truncated or hostile
// JSON) in bounded time and memory, without allocating. The Query skips
// everything it is not asked for and stops at the first malformed byte,
// keeping what it had read before it.

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

// The members parse reads, as indices into errorQuery's fields: the top
// level's, for flat errors, then the error object's.
const (
	topError = iota // "error": an object, or a string that is the message
	topType
	topMessage
	topDetail // FastAPI-style gateways' message
	topCode
	topObject    // "object": "error" marks Mistral's and vLLM's flat errors
	topErrorType // Text Generation Inference's type
	topRaw       // metadata.raw: a gateway's error flattened by an SDK
	topRawData   // metadata.raw.data
	errCode
	errType
	errMessage
	errStatus     // Google's status
	errRaw        // OpenRouter's and other gateways' metadata.raw
	errRawData    // metadata.raw as {"__kind":"OK","data":"<answer>"}
	errInnerCode  // Azure's innererror.code
	errDetailCode // Anthropic's details.error_code
	errReason     // Google's details[].reason
	numMembers
)

// errorQuery reads every member parse needs in one pass over the body.
var errorQuery = jsonscan.NewQuery([]jsonscan.Field{
	topError:      {Path: []string{"error"}},
	topType:       {Path: []string{"type"}},
	topMessage:    {Path: []string{"message"}},
	topDetail:     {Path: []string{"detail"}},
	topCode:       {Path: []string{"code"}, Number: true},
	topObject:     {Path: []string{"object"}},
	topErrorType:  {Path: []string{"error_type"}},
	topRaw:        {Path: []string{"metadata", "raw"}},
	topRawData:    {Path: []string{"metadata", "raw", "data"}},
	errCode:       {Path: []string{"error", "code"}, Number: true},
	errType:       {Path: []string{"error", "type"}},
	errMessage:    {Path: []string{"error", "message"}},
	errStatus:     {Path: []string{"error", "status"}},
	errRaw:        {Path: []string{"error", "metadata", "raw"}},
	errRawData:    {Path: []string{"error", "metadata", "raw", "data"}},
	errInnerCode:  {Path: []string{"error", "innererror", "code"}},
	errDetailCode: {Path: []string{"error", "details", "error_code"}},
	errReason:     {Path: []string{"error", "details", jsonscan.Each, "reason"}},
})

// parse fills f from body. Provider shapes it knows:
//
//	{"error":{"message":..,"type":..,"param":..,"code":..}}           OpenAI, Azure, DeepSeek, Groq, ...
//	{"type":"error","error":{"type":..,"message":..}}                Anthropic
//	{"error":{"code":429,"message":..,"status":"RESOURCE_EXHAUSTED"}} Google, also wrapped in [ ]
//	{"object":"error","message":..,"type":..,"code":..}               Mistral, vLLM
//	{"error":"message"}, {"message":..}, {"detail":..}                  assorted gateways
//	{"error":"message","error_type":"validation"}                        Text Generation Inference
//	{"error":{"message":..,"code":402,"metadata":{"raw":"{...}"}}}     OpenRouter, wrapping an upstream answer
//
// A later duplicate "error" replaces an earlier one, as in encoding/json;
// SDKs that read the first one see something else, hence conflict.
func (f *errorFields) parse(body []byte) {
	body = errorValue(body)
	var m [numMembers]jsonscan.Value
	errorQuery.Find(body, m[:])
	f.conflict = m[topError].Count > 1 ||
		m[topCode].Differs || m[topType].Differs || m[errCode].Differs || m[errType].Differs
	code, typ := &m[topCode], &m[topType] // where the error's code and type stand
	switch m[topError].Kind {
	case '{':
		f.errorObject = true
		code, typ = &m[errCode], &m[errType]
		f.message = m[errMessage].Raw
		f.status = m[errStatus].Raw
		f.google = isUpperSnake(f.status)
		f.innerCode = m[errInnerCode].Raw
		f.detailCode = m[errDetailCode].Raw
		f.reason = m[errReason].Raw
		f.raw, f.rawEscaped = metadataRaw(&m[errRaw], &m[errRawData])
		f.anthropic = string(m[topType].Raw) == "error" && !m[topType].Escaped && !f.google
	case '"':
		// {"error":"message","code":...}: xAI, Ollama; and Text Generation
		// Inference's {"error":"message","error_type":"validation"}, whose
		// error_type is its type.
		f.errorObject, f.errorString = true, true
		f.message = m[topError].Raw
	default:
		msg := &m[topMessage]
		if m[topDetail].At > msg.At { // the later of the two is the message
			msg = &m[topDetail]
		}
		if len(msg.Raw) == 0 && m[topDetail].Count == 0 && string(m[topObject].Raw) != "error" {
			return // no error in this body
		}
		f.flat = true
		f.message = msg.Raw
		f.raw, f.rawEscaped = metadataRaw(&m[topRaw], &m[topRawData])
	}
	f.code, f.codeEscaped, f.codePresent = code.Raw, code.Escaped, code.Count > 0
	f.typ, f.typEscaped, f.typPresent = typ.Raw, typ.Escaped, typ.Count > 0
	if f.errorString && !f.typPresent && len(m[topErrorType].Raw) > 0 {
		f.typ, f.typPresent = m[topErrorType].Raw, true
	}
}

// errorValue returns body from its error object on: past white space, a
// byte order mark, and the array Google wraps its errors in, whose first
// element is read.
func errorValue(body []byte) []byte {
	body = trimSpace(body)
	if rest, ok := bytes.CutPrefix(body, []byte("\xef\xbb\xbf")); ok {
		body = trimSpace(rest)
	}
	if len(body) > 0 && body[0] == '[' {
		body = body[1:]
	}
	return body
}

// trimSpace returns b past its leading JSON white space.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// metadataRaw returns a gateway's metadata.raw: the upstream provider's
// answer, itself usually JSON, as a string, or (OpenRouter in early 2025)
// as {"__kind":"OK","data":"<answer>"}. A metadata object that repeats raw
// keeps the last one, as encoding/json does.
func metadataRaw(raw, data *jsonscan.Value) ([]byte, bool) {
	if raw.Kind == '{' {
		return data.Raw, data.Escaped
	}
	return raw.Raw, raw.Escaped
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
