package credential

import (
	"strings"
	"testing"
)

// TestHeader pins which header names carry a credential.
func TestHeader(t *testing.T) {
	tests := []struct {
		name string
		want Kind
	}{
		{"Authorization", Key},
		{"authorization", Key},
		{"X-Litellm-Api-Key", Key},
		{"x-portkey-virtual-key", Key},
		{"Cf-Aig-Authorization", Key},
		{"Helicone-Auth", Key},
		{"X-Auth-Token", Key},
		{"X-Client-Secret", Key},
		{"X-Request-Signature", Key},
		{"Apikey", Key},
		{"accessToken", Key},
		{"OPENAI-ORGANIZATION", Org},
		{"openai-project", Project},
		{"Idempotency-Key", None},
		{"idempotency-key", None},
		{"Sec-Websocket-Key", None},
		{"Proxy-Authorization", None},
		{"X-Csrf-Token", None},
		{"X-Ratelimit-Remaining-Tokens", None},
		{"X-Portkey-Trace-Id", None},
		{"X-Portkey-Config", None},
		{"Helicone-Session-Id", None},
		{"X-Stainless-Retry-Count", None},
		{"X-Goog-Api-Client", None},
		{"Keep-Alive", None},
		{"Monkey", None},
	}
	for _, tt := range tests {
		if got := Header(tt.name, nil); got != tt.want {
			t.Errorf("Header(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestQueryParam pins which query parameters are safe to show and
// which carry a credential.
func TestQueryParam(t *testing.T) {
	tests := []struct {
		name string
		want Param
	}{
		{"api-version", ParamSafe},
		{"API-Version", ParamSafe},
		{"alt", ParamSafe},
		{"pageToken", ParamSafe},
		{"key", ParamCredential},
		{"api_key", ParamCredential},
		{"access_token", ParamCredential},
		{"subscription-key", ParamCredential},
		{"code", ParamCredential},
		{"jwt", ParamCredential},
		{"bearer", ParamCredential},
		{"session", ParamCredential},
		{"hmac", ParamCredential},
		{"sas", ParamCredential},
		{"sig", ParamCredential},
		{"X-Amz-Signature", ParamCredential},
		{"api%5Fkey", ParamCredential},
		{"se", ParamOther},
		{"user", ParamOther},
	}
	for _, tt := range tests {
		if got := QueryParam(tt.name); got != tt.want {
			t.Errorf("QueryParam(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestBare: a key's fingerprint depends on the key alone, whatever scheme
// and spacing carried it, and a value whose first word could be a key is
// kept whole.
func TestBare(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Bearer sk-1", "sk-1"},
		{"bearer \t sk-1", "sk-1"},
		{"sk-1", "sk-1"},
		{"Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"},
		{"a=b c", "a=b c"},             // '=' before the space: not a scheme
		{"user:pass x", "user:pass x"}, // ':' likewise
		{"Bearer", "Bearer"},
		{"", ""},
	} {
		if got := Bare(Trim(tt.in)); got != tt.want {
			t.Errorf("Bare(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{" \tk \t", "k"}, {"k", "k"}, {" \t", ""}, {"\nk", "\nk"},
	} {
		if got := Trim(tt.in); got != tt.want {
			t.Errorf("Trim(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzEachQueryParam: the parameters EachQueryParam gives, written back
// with their separators, are the query as it came (so url.full's redaction
// loses or adds nothing but the values it hides), each kind is its name's,
// and Bare keeps a part of what it is given.
func FuzzEachQueryParam(f *testing.F) {
	f.Add("api-version=2024-10-21&key=SECRET;sig=x&&?SECRET&a=b=c")
	f.Add("api%5Fkey=1&%zz=2&=&")
	f.Fuzz(func(t *testing.T, q string) {
		var b strings.Builder
		EachQueryParam(q, func(name, value string, hasValue bool, kind Param, sep string) {
			b.WriteString(name)
			if hasValue && (name != "" || value != "" || kind != ParamSafe) {
				b.WriteByte('=')
			}
			b.WriteString(value)
			b.WriteString(sep)
			if name != "" && hasValue && kind != QueryParam(name) {
				t.Errorf("%q: kind %d, QueryParam says %d", name, kind, QueryParam(name))
			}
		})
		if b.String() != q {
			t.Errorf("%q read back as %q", q, b.String())
		}
		if v := Bare(Trim(q)); !strings.Contains(q, v) {
			t.Errorf("Bare(%q) = %q", q, v)
		}
		Header(q, []string{q})
	})
}
