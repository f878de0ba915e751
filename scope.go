package quotabreaker

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/quotabreaker/quotabreaker/classify"
)

// The default scope is the credentials that made a call: the target host,
// the API key (wherever the request carries it), and OpenAI's organization
// and project. Two views of it exist, both drawn from defaultScopeParts so
// that they cannot drift apart: a 64-bit id, hashed with a per-Transport
// seed on every request (cheap, and useless to an outsider), and the
// printable name, built only when a scope is first seen (it hashes each key
// with SHA-256). Requests with the same name share one latch.

// Credential headers, in their canonical form: indexing the map directly
// saves canonicalizing per request.
var credentialHeaders = [...]string{
	"Authorization",
	"Api-Key",                   // Azure OpenAI
	"X-Api-Key",                 // Anthropic
	"X-Goog-Api-Key",            // Gemini
	"Ocp-Apim-Subscription-Key", // Azure API Management
}

// credentialParams are query parameters that carry an API key: Gemini's
// ?key=, and the names gateways and proxies use.
var credentialParams = [...]string{"key", "api_key", "api-key", "apikey", "access_token", "token", "subscription-key", "subscription_key"}

// Kinds of scope part.
const (
	partHost       = 'h'
	partCredential = 'k'
	partOrg        = 'o'
	partProject    = 'p'
)

// defaultScopeParts calls fn with each part of req's default scope, in a
// fixed order: the host (as the request spells it), every credential (bare:
// "Bearer " removed), the organization and the project.
func defaultScopeParts(req *http.Request, fn func(kind byte, v string)) {
	fn(partHost, requestHost(req))
	eachCredential(req, func(v string) { fn(partCredential, v) })
	if v := firstValue(req.Header, "Openai-Organization"); v != "" {
		fn(partOrg, v)
	}
	if v := firstValue(req.Header, "Openai-Project"); v != "" {
		fn(partProject, v)
	}
}

// scopeID returns the id of req's latch and, when WithScope named it, its
// name. It runs on every request and allocates nothing for the default scope.
func (t *Transport) scopeID(req *http.Request) (id uint64, custom string) {
	var h maphash.Hash
	h.SetSeed(t.seed)
	if t.cfg.scope != nil {
		if custom = t.cfg.scope(req); custom != "" {
			h.WriteByte('c')
			h.WriteString(custom)
			return h.Sum64(), custom
		}
	}
	h.WriteByte('d')
	defaultScopeParts(req, func(kind byte, v string) {
		h.WriteByte(kind)
		h.WriteString(v)
		h.WriteByte(0)
	})
	return h.Sum64(), ""
}

// DefaultScope returns the name of req's default scope, as Trip.Scope and
// the quotabreaker.scope attribute show it: the host, then the fingerprint
// of each API key, then OpenAI's organization and project, as in
//
//	api.openai.com/key:1f0c3a9e52b7/org:org-abc/project:proj_abc
//
// A key's fingerprint is the first 12 hex digits of the SHA-256 of the key
// alone (for an Authorization header, the part after "Bearer "; for URL
// user info, "user:password"): `printf %s "$KEY" | sha256sum | cut -c1-12`
// finds it. The name holds no secret.
//
// Use it in WithScope to combine a scope of your own with the default one:
//
//	quotabreaker.WithScope(func(r *http.Request) string {
//		return tenant(r) + "/" + quotabreaker.DefaultScope(r)
//	})
//
// It hashes each key with SHA-256, about a microsecond per call.
func DefaultScope(req *http.Request) string {
	var b strings.Builder
	keys := 0
	defaultScopeParts(req, func(kind byte, v string) {
		switch kind {
		case partHost:
			// Hosts are case-insensitive: requests to API.openai.com and
			// api.openai.com share the latch named by the lower case.
			b.WriteString(strings.ToLower(v))
		case partCredential:
			if keys == 0 {
				b.WriteString("/key:")
			} else {
				b.WriteByte('+')
			}
			b.WriteString(Fingerprint(v))
			keys++
		case partOrg:
			b.WriteString("/org:")
			b.WriteString(printable(v))
		case partProject:
			b.WriteString("/project:")
			b.WriteString(printable(v))
		}
	})
	return b.String()
}

// Fingerprint returns the first 12 hex digits of the SHA-256 of key: enough
// to tell keys apart in a trace, useless for recovering one.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:6])
}

// printable shows an organization or project id taken from a header as it
// is, unless it is too long, not valid UTF-8 or holds a '/', none of which a
// real id does: then it shows as the fingerprint of the value, so that two
// ids never print alike.
func printable(s string) string {
	if len(s) > 128 || !utf8.ValidString(s) || strings.ContainsAny(s, "/\x00") {
		return "~" + Fingerprint(s)
	}
	return s
}

// eachCredential calls fn with every API key req carries: in a credential
// header, in the URL's user info, or in a credential query parameter.
func eachCredential(req *http.Request, fn func(v string)) {
	eachCredentialHeader(req.Header, func(v string) { fn(bareCredential(v)) })
	if req.URL == nil {
		return
	}
	if u := req.URL.User; u != nil {
		fn(u.String())
	}
	if req.URL.RawQuery != "" {
		eachCredentialParam(req.URL.RawQuery, fn)
	}
}

// eachCredentialHeader calls fn with the value of every credential header of
// h. Headers set through Header.Set are canonical; one written into the map
// by hand in another case is found by a slower scan, so it cannot merge two
// tenants' scopes.
func eachCredentialHeader(h http.Header, fn func(v string)) {
	found := false
	for _, name := range credentialHeaders {
		for _, v := range h[name] {
			fn(v)
			found = true
		}
	}
	if found {
		return
	}
	for k, vs := range h {
		for _, name := range credentialHeaders {
			if k != name && strings.EqualFold(k, name) {
				for _, v := range vs {
					fn(v)
				}
			}
		}
	}
}

// bareCredential removes an Authorization header's scheme ("Bearer sk-..."
// becomes "sk-..."), so a key's fingerprint depends on the key alone.
func bareCredential(v string) string {
	// An auth-scheme is a token: it ends at the first space and holds no
	// '=' or ':', which a bare key or a Basic credential may.
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ':
			if i == 0 {
				return v
			}
			return strings.TrimLeft(v[i+1:], " ")
		case '=', ':':
			return v
		}
	}
	return v
}

// eachCredentialParam calls fn with the value of every credential parameter
// of a raw query. It splits on both '&' and ';', which some servers accept
// as a separator.
func eachCredentialParam(rawQuery string, fn func(v string)) {
	for rawQuery != "" {
		var part string
		if i := strings.IndexAny(rawQuery, "&;"); i >= 0 {
			part, rawQuery = rawQuery[:i], rawQuery[i+1:]
		} else {
			part, rawQuery = rawQuery, ""
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok || !isCredentialParam(name) {
			continue
		}
		if v, err := url.QueryUnescape(value); err == nil {
			value = v
		}
		fn(value)
	}
}

func isCredentialParam(name string) bool {
	if strings.IndexByte(name, '%') >= 0 || strings.IndexByte(name, '+') >= 0 {
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
	}
	for _, p := range credentialParams {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}

func firstValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// requestProvider names the provider a request is sent to, by its host.
func requestProvider(req *http.Request) classify.Provider {
	host, _ := hostPort(requestHost(req))
	return classify.HostProvider(host)
}

// requestHost is the host a request goes to, with its port if any.
func requestHost(req *http.Request) string {
	if req.URL != nil && req.URL.Host != "" {
		return req.URL.Host
	}
	return req.Host
}

// hostPort splits a URL's host[:port] without net.SplitHostPort's
// allocation for a missing port; IPv6 literals lose their brackets.
func hostPort(hostport string) (host, port string) {
	host = hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port
}
