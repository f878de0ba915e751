// Package credential tells which parts of an HTTP request carry a
// credential: which headers, by their names (Header), which query
// parameters (QueryParam, EachQueryParam), and the key inside an
// Authorization value (Bare). It is the one parser that the Transport's
// latch scope and the redaction of url.full share, so that what one counts
// as a credential the other hides. It keeps no state and imports the
// standard library only.
package credential

import (
	"net/url"
	"strings"
)

// Kind is what a header carries, for the scope: the letters order the
// parts of a scope's name.
type Kind byte

const (
	None    Kind = 0   // nothing of the scope
	Key     Kind = 'k' // a credential
	Org     Kind = 'o' // OpenAI's organization
	Project Kind = 'p' // OpenAI's project
)

// Trim removes the spaces and tabs around v, which the wire drops,
// as strings.Trim(v, " \t") would, without building its set of bytes on
// every call.
func Trim(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// Header says what a header of this name (as written, in any case)
// carries. The common names are decided by a switch; others by their words
// (see headerWords). extra lists more credential headers, canonical.
func Header(name string, extra []string) Kind {
	switch name {
	case "Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key", "Ocp-Apim-Subscription-Key",
		"X-Litellm-Api-Key", "X-Portkey-Api-Key", "X-Portkey-Virtual-Key", "Cf-Aig-Authorization":
		return Key
	case "Openai-Organization":
		return Org
	case "Openai-Project":
		return Project
	case "Content-Type", "Content-Length", "Accept", "Accept-Encoding", "User-Agent", "Traceparent",
		"Tracestate", "Anthropic-Version", "Anthropic-Beta", "Openai-Beta", "Idempotency-Key":
		return 0
	}
	for _, e := range extra {
		if strings.EqualFold(name, e) {
			return Key
		}
	}
	if strings.HasPrefix(name, "X-Stainless-") { // the OpenAI and Anthropic SDKs' own
		return 0
	}
	switch {
	case strings.EqualFold(name, "Openai-Organization"):
		return Org
	case strings.EqualFold(name, "Openai-Project"):
		return Project
	case hasWord(name, headerWords[:]) && !notCredentialHeader(name):
		return Key
	}
	return 0
}

// headerWords are the words of a header name that say it carries
// a credential: X-Api-Key, X-Auth-Token, Cf-Aig-Authorization, X-Client-Secret.
// "Tokens" is not "token": X-Ratelimit-Remaining-Tokens counts tokens.
var headerWords = [...]string{
	"key", "apikey", "token", "authtoken", "apitoken", "accesstoken",
	"secret", "auth", "authorization", "signature", "credential", "credentials", "password",
}

// notCredentialHeader reports the headers whose names say key, token or
// authorization but that carry no credential of the API: a key that is new
// on every request (Idempotency-Key, Sec-WebSocket-Key), the credential of a
// forward proxy (Proxy-Authorization), and anti-forgery tokens.
func notCredentialHeader(name string) bool {
	for _, n := range [...]string{"Idempotency-Key", "X-Idempotency-Key", "Sec-Websocket-Key", "Proxy-Authorization", "X-Csrf-Token", "X-Xsrf-Token"} {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// hasWord reports whether one of the words of name (split at '-',
// '_', '.', spaces and lower-to-upper case changes) is one of words,
// ignoring case.
func hasWord(name string, words []string) bool {
	start := 0
	for i := 0; i <= len(name); i++ {
		boundary := i == len(name)
		if !boundary {
			switch c := name[i]; {
			case c == '-' || c == '_' || c == '.' || c == ' ':
				boundary = true
			case 'A' <= c && c <= 'Z' && i > start && 'a' <= name[i-1] && name[i-1] <= 'z':
				// camelCase: "apiKey", "accessToken"
				if oneOf(name[start:i], words) {
					return true
				}
				start = i
			}
		}
		if boundary {
			if i > start && oneOf(name[start:i], words) {
				return true
			}
			start = i + 1
		}
	}
	return false
}

func oneOf(w string, words []string) bool {
	for _, x := range words {
		if len(x) == len(w) && strings.EqualFold(w, x) {
			return true
		}
	}
	return false
}

// Bare removes an Authorization header's scheme ("Bearer sk-..."
// becomes "sk-..."), so a key's fingerprint depends on the key alone. The
// scheme ends at the first space or tab, which may be repeated. v is a
// header value trimmed with Trim.
func Bare(v string) string {
	// An auth-scheme is a token: it ends at the first space and holds no
	// '=' or ':', which a bare key or a Basic credential may.
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ', '\t':
			if i == 0 {
				return v
			}
			return Trim(v[i+1:])
		case '=', ':':
			return v
		}
	}
	return v
}

// Param is what a query parameter's name says of its value.
type Param uint8

const (
	// ParamOther is any parameter not known to be safe: its value is
	// redacted in url.full, and it is not part of the scope.
	ParamOther Param = iota
	// ParamSafe is a parameter known to carry no secret (api-version,
	// alt): shown in url.full.
	ParamSafe
	// ParamCredential carries a credential: redacted, and part of the
	// scope.
	ParamCredential
)

// safeParams are the query parameters known to carry no secret, shown in
// url.full as sent. Every other value is redacted.
var safeParams = [...]string{
	"api-version", "api_version", "alt", "stream", "beta", "model", "format", "version",
	"limit", "order", "after", "before", "page", "per_page", "page_size", "pageSize",
	"pageToken", "page_token", "include", "prettyPrint", "upload_protocol", "uploadType",
}

// paramWords are the words of a query parameter's name that say
// it carries a credential: Gemini's ?key=, ?api_key=, ?access_token=, Azure
// Functions' ?code=, a SAS's ?sig=, and the names gateways give their own.
var paramWords = [...]string{
	"key", "apikey", "token", "authtoken", "apitoken", "accesstoken", "secret", "auth",
	"authorization", "signature", "sig", "credential", "credentials", "password", "passwd",
	"pwd", "code", "jwt", "bearer", "session", "sessionid", "hmac", "sas", "subscriptionkey",
}

// EachQueryParam calls fn with each parameter of a raw query, in order:
// its name and value as written (escaped), whether it has a value at all
// ("?SECRET" has none), what its name says of it, and the separator that
// follows it ("" for the last). It splits on both '&' and ';', which some
// servers accept as a separator. It is the one reader of query parameters
// for the scope and for url.full.
func EachQueryParam(rawQuery string, fn func(name, value string, hasValue bool, kind Param, sep string)) {
	for rawQuery != "" {
		p, sep := rawQuery, ""
		if i := strings.IndexAny(rawQuery, "&;"); i >= 0 {
			p, sep, rawQuery = rawQuery[:i], rawQuery[i:i+1], rawQuery[i+1:]
		} else {
			rawQuery = ""
		}
		name, value, ok := strings.Cut(p, "=")
		switch {
		case p == "":
			fn("", "", true, ParamSafe, sep)
		case !ok:
			fn(name, "", false, ParamOther, sep)
		default:
			fn(name, value, true, QueryParam(name), sep)
		}
	}
}

// QueryParam says what a parameter of this name (as written) carries.
func QueryParam(name string) Param {
	if strings.IndexByte(name, '%') >= 0 || strings.IndexByte(name, '+') >= 0 {
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
	}
	for _, s := range safeParams {
		if strings.EqualFold(name, s) {
			return ParamSafe
		}
	}
	if hasWord(name, paramWords[:]) {
		return ParamCredential
	}
	return ParamOther
}
