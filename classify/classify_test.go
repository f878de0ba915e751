package classify

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/quotabreaker/quotabreaker/internal/corpus"
	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

func loadCorpus(tb testing.TB) []corpus.Sample {
	tb.Helper()
	out, err := corpus.Load(filepath.Join("testdata", "corpus"))
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestClassifyCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	if len(corpus) < 100 {
		t.Errorf("corpus has %d real bodies, want at least 100", len(corpus))
	}
	var agree, quota, recalled, falseQuota int
	for _, s := range corpus {
		got := Answer(s.Status, s.Header(), []byte(s.Body))
		switch {
		case got.Class == Class(s.Expected):
			agree++
		case got.Class == QuotaExhausted:
			falseQuota++
		}
		if Class(s.Expected) == QuotaExhausted {
			quota++
			if got.Class == QuotaExhausted {
				recalled++
			}
		}
		t.Run(s.Name, func(t *testing.T) {
			if !strings.HasPrefix(s.Source, "https://") {
				t.Errorf("sample has no source URL: %q", s.Source)
			}
			if got.Class != Class(s.Expected) {
				t.Errorf("Answer(%d, %s) class = %q, want %q\nnote: %s", s.Status, s.Body, got.Class, s.Expected, s.Note)
			}
			if got.Code != s.Code {
				t.Errorf("code = %q, want %q", got.Code, s.Code)
			}
			if got.Retryable != wantRetryable(Class(s.Expected), s.Status) {
				t.Errorf("retryable = %v for class %q status %d", got.Retryable, got.Class, s.Status)
			}
		})
	}
	t.Logf("%d answers: class agreement %d/%d, quota recall %d/%d, false quota verdicts %d",
		len(corpus), agree, len(corpus), recalled, quota, falseQuota)
}

// TestClassifyQuotaPrecision holds the bodies that look like "out of money"
// but are not: each would stop all traffic if misread.
func TestClassifyQuotaPrecision(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   Class
	}{
		{"429 with nothing recognisable", 429, `<html><body>Too Many Requests</body></html>`, RateLimited},
		{"429 empty", 429, ``, RateLimited},
		{"429 JSON without fields", 429, `{}`, RateLimited},
		{"rate limit asking for a payment method", 429,
			`{"error":{"message":"Rate limit reached for default-gpt-3.5-turbo in organization org-x on requests per min. Limit: 3 / min. Please add a payment method to your account to increase your rate limit. Visit https://platform.openai.com/account/billing to add a payment method.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			RateLimited},
		{"quota wording with a rate-limit code", 429,
			`{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"tokens","code":"rate_limit_exceeded"}}`,
			RateLimited},
		{"code wins over type", 429, `{"error":{"type":"insufficient_quota","code":"rate_limit_exceeded"}}`, RateLimited},
		{"quota message text alone is not enough", 429,
			`{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"requests","code":null}}`,
			RateLimited},
		{"Gemini RESOURCE_EXHAUSTED says quota", 429,
			`[{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED"}}]`,
			RateLimited},
		{"insufficient_quota on a 5xx is believed", 500, `{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}`, QuotaExhausted},
		{"billing words on an HTML 5xx", 502, `<html>insufficient balance</html>`, ServerError},
		{"insufficient_quota inside a message only", 400, `{"error":{"message":"upstream said insufficient_quota","type":"invalid_request_error"}}`, InvalidRequest},
		{"insufficient_quota as a key", 429, `{"insufficient_quota":true}`, RateLimited},
		{"insufficient_quota under another member", 429, `{"detail_error":{"code":"insufficient_quota"}}`, RateLimited},
		{"credit text under a generic type", 400, `{"error":{"message":"Your credit balance is too low","type":"invalid_request_error"}}`, QuotaExhausted},
		{"billing code with a per-minute message", 429, `{"error":{"message":"Quota exceeded: 60 requests per minute","code":"insufficient_quota"}}`, RateLimited},
		{"balance words with try again in", 429, `{"error":{"message":"Insufficient balance for burst; try again in 20s","code":"1113"}}`, RateLimited},
		{"Chinese per-minute limit", 429, `{"error":{"message":"余额不足，每分钟请求次数超限"}}`, RateLimited},
		{"TPM as a word", 429, `{"error":{"message":"insufficient quota (TPM)","type":"quota"}}`, RateLimited},
		{"https is not TPS", 402, `{"error":{"message":"Insufficient credits, see https://example.com","code":402}}`, QuotaExhausted},
		{"quota message text with a rate type", 403, `{"error":{"message":"insufficient balance","type":"requests"}}`, Permission},
		{"duplicate code, first billing", 429, `{"error":{"code":"insufficient_quota","code":"rate_limit_exceeded"}}`, RateLimited},
		{"duplicate code, last billing", 429, `{"error":{"code":"rate_limit_exceeded","code":"insufficient_quota"}}`, RateLimited},
		{"duplicate type, null code", 429, `{"error":{"type":"requests","type":"insufficient_quota","code":null}}`, RateLimited},
		{"duplicate code in a flat body", 429, `{"code":"INSUFFICIENT_BALANCE","message":"m","code":"RATE_LIMITED"}`, RateLimited},
		{"duplicate code on a 402", 402, `{"error":{"code":"insufficient_quota","code":"x"}}`, Other},
		{"duplicate error objects", 429, `{"error":{"code":"rate_limit_exceeded"},"error":{"code":"insufficient_quota"}}`, RateLimited},
		{"same code twice", 429, `{"error":{"code":"insufficient_quota","code":"insufficient_quota"}}`, QuotaExhausted},
		{"duplicate inside a nested body", 429, `{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"{\"error\":{\"code\":\"insufficient_quota\",\"code\":\"x\"}}"}}}`, RateLimited},
		{"nested body one level only", 429, `{"error":{"code":429,"metadata":{"raw":"{\"error\":{\"code\":429,\"metadata\":{\"raw\":\"{\\\"error\\\":{\\\"code\\\":\\\"insufficient_quota\\\"}}\"}}}"}}}`, RateLimited},
		{"nested plain text with billing words", 429, `{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"insufficient balance"}}}`, RateLimited},
		{"outer code wins over nested", 429, `{"error":{"code":"rate_limit_exceeded","metadata":{"raw":"{\"error\":{\"code\":\"insufficient_quota\"}}"}}}`, RateLimited},
		{"escaped code", 429, `{"error":{"code":"insufficient\u005fquota"}}`, QuotaExhausted},
		{"HTML 402 from something in between", 402, `<html>Payment Required</html>`, Other},
		{"empty 402", 402, ``, Other},
		{"structured 402 speaking of a rate limit", 402, `{"error":{"message":"Rate limit exceeded, try again in 5s","code":402}}`, RateLimited},
		{"structured 402", 402, `{"error":{"message":"Insufficient credits","code":402}}`, QuotaExhausted},
		{"truncated quota body", 429, `{"error":{"message":"You exceeded","type":"insufficient_quota","pa`, QuotaExhausted},
		// Issue 19's long tail. The Gemini messages are verbatim from
		// dyad-sh/dyad#3626 and su-kaka/gcli2api#416 in Google's canonical
		// shape; the corpus holds the answers found whole.
		{"Gemini prepaid credits depleted", 429,
			`{"error":{"code":429,"message":"Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing.","status":"RESOURCE_EXHAUSTED"}}`,
			QuotaExhausted},
		{"Gemini Google One credits, whole shape", 429,
			`{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INSUFFICIENT_G1_CREDITS_BALANCE","metadata":{"error_number":"2008"}}]}}`,
			QuotaExhausted},
		{"Gemini billing words alone stay a rate limit", 429,
			`{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED"}}`,
			RateLimited},
		{"quota that resets after hours", 429,
			`{"error":{"code":429,"message":"Individual quota reached. Please upgrade your subscription to increase your limits. Resets in 9h22m20s.","status":"RESOURCE_EXHAUSTED","details":[{"reason":"QUOTA_EXHAUSTED"}]}}`,
			RateLimited},
		{"rate-limit type saying money unlocks it", 429,
			`{"type":"error","error":{"type":"rate_limit_error","message":"Extra usage is required for long context requests."}}`,
			QuotaExhausted},
		{"rate-limit type with money words and a rate", 429,
			`{"type":"error","error":{"type":"rate_limit_error","message":"Insufficient balance for this burst; retry after 20s."}}`,
			RateLimited},
		{"escaped balance message", 429, `{"error":{"message":"\u4f59\u989d\u4e0d\u8db3"}}`, QuotaExhausted},
		{"escaped balance message, flat", 429, `{"code":1008,"message":"\u4f59\u989d\u4e0d\u8db3\uff0c\u8bf7\u5145\u503c"}`, QuotaExhausted},
		{"escaped balance with an escaped per-minute veto", 429, `{"error":{"message":"\u4f59\u989d\u4e0d\u8db3\uff0c\u6bcf\u5206\u949f\u8bf7\u6c42\u6b21\u6570\u8d85\u9650"}}`, RateLimited},
		{"escaped rate-limit message", 429, `{"error":{"message":"\u60a8\u7684\u8bf7\u6c42\u9891\u7387\u8fc7\u9ad8"}}`, RateLimited},
		{"escaped message inside a nested body", 402, `{"error":{"message":"Provider returned error","code":402,"metadata":{"raw":"{\"error\":{\"message\":\"\\u4f59\\u989d\\u4e0d\\u8db3\"}}"}}}`, QuotaExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Answer(tt.status, nil, []byte(tt.body))
			if got.Class != tt.want {
				t.Errorf("Answer(%d, %s) = %q, want %q", tt.status, tt.body, got.Class, tt.want)
			}
		})
	}
}

func TestClassifyFallback(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	tests := []struct {
		name      string
		status    int
		body      []byte
		want      Class
		retryable bool
	}{
		{"2xx is not an error", 200, []byte(`{"error":{"code":"insufficient_quota"}}`), "", false},
		{"3xx is not an error", 302, nil, "", false},
		{"HTML 502 from a proxy", 502, []byte("<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"), ServerError, true},
		{"HTML 503", 503, []byte("<html>Service Unavailable</html>"), ServerError, true},
		{"structured 503", 503, []byte(`{"error":{"message":"Service Unavailable","type":"server_error"}}`), Overloaded, true},
		{"empty 500", 500, nil, ServerError, true},
		{"HTML 404", 404, []byte("<html>Not Found</html>"), Other, false},
		{"HTML 413", 413, []byte("<html>Request Entity Too Large</html>"), InvalidRequest, false},
		{"empty 418", 418, nil, Other, false},
		{"empty 401", 401, nil, Authentication, false},
		{"empty 403", 403, nil, Permission, false},
		{"empty 404", 404, nil, Other, false},
		{"empty 408", 408, nil, Other, true},
		{"empty 409", 409, nil, Other, true},
		{"empty 529", 529, nil, Overloaded, true},
		{"structured 404", 404, []byte(`{"error":{"message":"Invalid URL (POST /v1/chat/completion)","type":"invalid_request_error","param":null,"code":null}}`), InvalidRequest, false},
		{"structured 422", 422, []byte(`{"detail":"Unprocessable"}`), InvalidRequest, false},
		{"structured 502", 502, []byte(`{"error":{"message":"Bad gateway.","type":"cf_bad_gateway","code":502}}`), ServerError, true},
		{"gzip bytes", 429, gz(`{"error":{"code":"insufficient_quota"}}`), RateLimited, true},
		{"binary junk", 400, []byte{0xff, 0xfe, 0x00, '{', '"'}, Other, false},
		{"code as number", 429, []byte(`{"error":{"code":429,"message":"slow"}}`), RateLimited, true},
		{"code as object", 400, []byte(`{"error":{"code":{"x":1},"message":"m"}}`), InvalidRequest, false},
		{"error as number", 400, []byte(`{"error":5}`), Other, false},
		{"error as null", 400, []byte(`{"error":null}`), Other, false},
		{"deep nesting", 400, []byte(strings.Repeat("[", 1<<20)), Other, false},
		{"deep nesting inside error", 400, []byte(`{"error":{"x":` + strings.Repeat(`{"a":`, 100000)), InvalidRequest, false},
		{"unterminated string", 429, []byte(`{"error":{"code":"insufficient_quota`), RateLimited, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Answer(tt.status, nil, tt.body)
			if got.Class != tt.want || got.Retryable != tt.retryable {
				t.Errorf("Answer(%d, %q) = %q retryable %v, want %q retryable %v", tt.status, trim(tt.body), got.Class, got.Retryable, tt.want, tt.retryable)
			}
		})
	}
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

func TestClassifyFields(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   Result
	}{
		{"openai", 429, http.Header{"Openai-Version": {"2020-10-01"}},
			`{"error":{"message":"m","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`,
			Result{QuotaExhausted, "openai", "insufficient_quota", "insufficient_quota", false}},
		{"anthropic", 529, nil, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			Result{Overloaded, "anthropic", "overloaded_error", "overloaded_error", true}},
		{"google", 503, nil, `{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}`,
			Result{Overloaded, ProviderGemini, "UNAVAILABLE", "", true}},
		{"azure", 429, http.Header{"Apim-Request-Id": {"x"}}, `{"error":{"code":"429","message":"Requests have exceeded token rate limit"}}`,
			Result{RateLimited, ProviderAzure, "429", "", true}},
		{"numeric code kept verbatim", 402, nil, `{"error":{"message":"Insufficient credits","code":402}}`,
			Result{QuotaExhausted, "", "402", "", false}},
		{"escapes applied", 400, nil, `{"error":{"code":"a\"b\u00e9","type":"t\\u"}}`,
			Result{InvalidRequest, "", "a\"bé", `t\u`, false}},
		{"long code bounded", 400, nil, `{"error":{"code":"` + strings.Repeat("é", 200) + `"}}`,
			Result{InvalidRequest, "", strings.Repeat("é", jsonscan.MaxText/2), "", false}},
		{"invalid UTF-8 replaced", 400, nil, "{\"error\":{\"code\":\"a\xffb\"}}",
			Result{InvalidRequest, "", "a\uFFFDb", "", false}},
		{"later duplicate wins", 429, nil, `{"error":{"code":"insufficient_quota"},"error":{"message":"m"}}`,
			Result{RateLimited, "", "", "", true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Answer(tt.status, tt.header, []byte(tt.body)); got != tt.want {
				t.Errorf("Classify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClassifyNested(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   Result
	}{
		{"upstream billing type", 429,
			`{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"{\"error\":{\"message\":\"suspended due to insufficient balance\",\"type\":\"exceeded_current_quota_error\"}}","is_byok":true}}}`,
			Result{QuotaExhausted, "", "exceeded_current_quota_error", "exceeded_current_quota_error", false}},
		{"upstream Anthropic credit", 400,
			`{"error":{"message":"Provider returned error","code":400,"metadata":{"raw":"{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"Your credit balance is too low to access the Anthropic API.\"}}","provider_name":"Anthropic"}}}`,
			Result{QuotaExhausted, "", "invalid_request_error", "invalid_request_error", false}},
		{"upstream string error", 402,
			`{"error":{"message":"Provider returned error","code":402,"metadata":{"raw":"{\"error\":\"API key USD spend limit exceeded.\"}"}}}`,
			Result{QuotaExhausted, "", "", "", false}},
		{"upstream rate limit", 429,
			`{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"{\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"slow\"}}"}}}`,
			Result{RateLimited, "", "rate_limit_exceeded", "", true}},
		{"raw as an object with data", 429,
			`{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":{"__kind":"OK","data":"{\"error\":{\"code\":\"insufficient_quota\"}}"}}}}`,
			Result{QuotaExhausted, "", "insufficient_quota", "", false}},
		{"raw not JSON", 429,
			`{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"upstream busy"}}}`,
			Result{RateLimited, "", "429", "", true}},
		{"raw truncated", 429,
			`{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"{\"error\":{\"code\":\"insuff`,
			Result{RateLimited, "", "429", "", true}},
		{"flat body with metadata", 402,
			`{"message":"Provider returned error","code":402,"metadata":{"raw":"{\"error\":{\"code\":\"insufficient_quota\"}}"}}`,
			Result{QuotaExhausted, "", "insufficient_quota", "", false}},
		{"a specific outer code wins", 400,
			`{"error":{"code":"context_length_exceeded","metadata":{"raw":"{\"error\":{\"code\":\"insufficient_quota\"}}"}}}`,
			Result{ContextLengthExceeded, "", "context_length_exceeded", "", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Answer(tt.status, nil, []byte(tt.body)); got != tt.want {
				t.Errorf("Classify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestClassifyEscapedMessage checks that a message written with JSON
// escapes classifies as its UTF-8 twin does, without allocating.
func TestClassifyEscapedMessage(t *testing.T) {
	pairs := []struct{ escaped, plain string }{
		{`{"error":{"message":"\u4f59\u989d\u4e0d\u8db3"}}`, `{"error":{"message":"余额不足"}}`},
		{`{"error":{"message":"\u8bf7\u6c42\u9891\u7387\u8fc7\u9ad8\uff0c\u8bf7\u7a0d\u540e\u518d\u8bd5"}}`, `{"error":{"message":"请求频率过高，请稍后再试"}}`},
		{`{"error":"Content violates usage guidelines.\n"}`, `{"error":"Content violates usage guidelines.
"}`},
		{`{"error":{"message":"Model Not Exist \"x\"","type":"invalid_request_error"}}`, `{"error":{"message":"Model Not Exist 'x'","type":"invalid_request_error"}}`},
	}
	for _, status := range []int{400, 403, 429, 500} {
		for _, p := range pairs {
			esc, plain := Answer(status, nil, []byte(p.escaped)), Answer(status, nil, []byte(p.plain))
			if esc != plain {
				t.Errorf("status %d: escaped %s = %+v, plain %s = %+v", status, p.escaped, esc, p.plain, plain)
			}
		}
	}
	body := []byte(`{"error":{"message":"\u4f59\u989d\u4e0d\u8db3","type":"insufficient_quota"}}`)
	if n := testing.AllocsPerRun(100, func() { Answer(429, nil, body) }); n != 0 {
		t.Errorf("an escaped message costs %v allocations, want 0", n)
	}
}

// TestTokenNormalise pins how codes and types are read as words.
func TestTokenNormalise(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"insufficient_quota", "insufficient_quota"},
		{"INSUFFICIENT_BALANCE", "insufficient_balance"},
		{"AccountOverdueError", "account_overdue"},
		{"AllocationQuota.FreeTierOnly", "allocation_quota_free_tier_only"},
		{"Throttling.AllocationQuota", "throttling_allocation_quota"},
		{"ResponsibleAIPolicyViolation", "responsible_ai_policy_violation"},
		{"insufficient_balance_error", "insufficient_balance"},
		{"rate-limit exceeded", "rate_limit_exceeded"},
		{"error", "error"},
		{"_error", "error"},
		{"1113", "1113"},
		{"payment__required--", "payment_required"},
		{strings.Repeat("a", tokenLen+1), ""},
		{strings.Repeat("aB", tokenLen/2), ""}, // grows past the buffer
	}
	for _, tt := range tests {
		var tok token
		tok.set([]byte(tt.raw), false)
		if got := string(tok.b[:tok.n]); got != tt.want {
			t.Errorf("token(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

// FuzzClassify checks that any body, seeded with the real corpus, classifies
// without panicking, into a known class, with bounded valid fields, and that a
// quota verdict only ever comes with a 4xx status.
func FuzzClassify(f *testing.F) {
	for _, s := range loadCorpus(f) {
		f.Add(s.Status, []byte(s.Body))
	}
	f.Add(429, []byte(`[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"reason":"RATE_LIMIT_EXCEEDED"}]}}]`))
	f.Add(400, []byte(`{"error":{"innererror":{"code":"ResponsibleAIPolicyViolation"}}}`))
	f.Add(429, []byte(`{"error":{"code":"insufficient_quota","code":"rate_limit_exceeded"}}`))
	f.Add(402, []byte(`{"error":{"message":"Provider returned error","code":402,"metadata":{"raw":"{\"error\":{\"type\":\"AccountOverdueError\",\"message\":\"余额不足\"}}"}}}`))
	f.Add(429, []byte(`{"error":{"code":429,"metadata":{"raw":{"__kind":"OK","data":"{\"error\":{\"code\":\"Throttling.AllocationQuota\"}}"}}}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		c := Answer(status, nil, body)
		if status < 400 {
			if c != (Result{}) {
				t.Fatalf("status %d classified as %+v", status, c)
			}
			return
		}
		if !knownClass(c.Class) {
			t.Fatalf("unknown class %q", c.Class)
		}
		for _, s := range []string{c.Code, c.Type} {
			if len(s) > jsonscan.MaxText || !utf8.ValidString(s) {
				t.Fatalf("field %q not bounded valid UTF-8", s)
			}
		}
		if c.Class == QuotaExhausted {
			var f errorFields
			if f.parse(body); !f.structured() {
				t.Fatalf("quota verdict on a body with no provider error in it: %q", body)
			}
		}
		if c.Retryable != wantRetryable(c.Class, status) {
			t.Fatalf("retryable %v for %q", c.Retryable, c.Class)
		}
	})
}

// FuzzParse compares the hand-written reader with encoding/json on every
// valid JSON body: both must find the same code, type, message and status.
func FuzzParse(f *testing.F) {
	for _, s := range loadCorpus(f) {
		f.Add([]byte(s.Body))
	}
	f.Add([]byte(`{"error":{"code":1.5e3,"type":"a\u0062c"},"type":"error"}`))
	f.Add([]byte(`{"object":"error","message":"x","type":"rate_limited","code":"1300"}`))
	f.Add([]byte(`{"error":{"code":"a","code":"b","type":"t","metadata":{"raw":"{\"error\":{\"code\":\"c\"}}"}}}`))
	f.Add([]byte(`{"error":{"metadata":{"raw":{"data":"x"},"raw":"y"}},"error":{"type":"z"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var ef errorFields
		ef.parse(body) // must not panic on anything
		if !json.Valid(body) || !utf8.Valid(body) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		if a, ok := v.([]any); ok {
			if len(a) == 0 {
				return
			}
			v = a[0]
		}
		top, ok := v.(map[string]any)
		if !ok {
			return
		}
		e, ok := top["error"].(map[string]any)
		if !ok {
			return
		}
		check := func(name string, raw []byte, escaped bool, want any) {
			t.Helper()
			var ws string
			switch w := want.(type) {
			case string:
				ws = w
			case json.Number:
				if name != "code" {
					return
				}
				ws = string(w)
			default:
				return
			}
			if got := string(maybeUnescape(raw, escaped)); got != ws {
				t.Fatalf("%s: reader found %q, encoding/json %q in %s", name, got, ws, body)
			}
		}
		check("code", ef.code, ef.codeEscaped, e["code"])
		check("type", ef.typ, ef.typEscaped, e["type"])
		check("message", ef.message, bytes.IndexByte(ef.message, '\\') >= 0, e["message"])
		check("status", ef.status, bytes.IndexByte(ef.status, '\\') >= 0, e["status"])
		if md, ok := e["metadata"].(map[string]any); ok {
			if raw, ok := md["raw"].(string); ok {
				check("metadata.raw", ef.raw, ef.rawEscaped, raw)
			}
		}
	})
}

func maybeUnescape(raw []byte, escaped bool) []byte {
	if escaped {
		return jsonscan.Unescape(raw)
	}
	return raw
}

// wantRetryable is the table of classes, written out apart from
// Class.retryable so that a change there shows here.
func wantRetryable(c Class, status int) bool {
	switch c {
	case RateLimited, Overloaded, ServerError:
		return true
	case Other:
		return status == 408 || status == 409 || status == 429 || status >= 500
	}
	return false
}

func knownClass(c Class) bool {
	switch c {
	case QuotaExhausted, RateLimited, Overloaded, ServerError,
		ContextLengthExceeded, ModelNotFound, Authentication,
		Permission, InvalidRequest, ContentFilter, Other:
		return true
	}
	return false
}

// BenchmarkClassify measures a typical OpenAI 429 answer, headers included.
func BenchmarkClassify(b *testing.B) {
	body := []byte(`{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`)
	header := http.Header{
		"Content-Type":                   {"application/json"},
		"Openai-Version":                 {"2020-10-01"},
		"Retry-After":                    {"2"},
		"X-Ratelimit-Remaining-Requests": {"499"},
		"X-Request-Id":                   {"req_123"},
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		c := Answer(429, header, body)
		if c.Class != RateLimited {
			b.Fatal(c)
		}
	}
}

// BenchmarkClassifyCorpus classifies every real answer of the corpus once
// per iteration: the cost across shapes, nested bodies and message rules.
func BenchmarkClassifyCorpus(b *testing.B) {
	type answer struct {
		status int
		header http.Header
		body   []byte
	}
	var answers []answer
	size := 0
	for _, s := range loadCorpus(b) {
		answers = append(answers, answer{s.Status, s.Header(), []byte(s.Body)})
		size += len(s.Body)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		for _, a := range answers {
			Answer(a.status, a.header, a.body)
		}
	}
}
