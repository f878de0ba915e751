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
	"github.com/quotabreaker/quotabreaker/internal/credential"
)

// The default scope is the credentials that made a call: the target host,
// every credential the request carries (in a header, in the URL's user info,
// in a query parameter), and OpenAI's organization and project. Two views of
// it exist, both drawn from scopeParts so that they cannot drift apart: a
// 64-bit id, hashed with a per-Transport seed on every request (cheap, and
// useless to an outsider), and the printable name, built only when a scope
// is first seen (it hashes each key with SHA-256). Requests with the same
// name share one latch.
//
// A credential is found however the caller set it: header names are
// matched ignoring case (a caller may write h["x-api-key"] directly, which
// net/http sends as it is), values are trimmed of the spaces and tabs the
// wire drops, a scheme ("Bearer ") is removed, and the parts are sorted and
// deduplicated, so one key written two ways is one scope. The parser is
// internal/credential, which also tells the redaction of url.full which
// query values to hide.

// Kinds of scope part, in the order they are hashed and named, which is
// the order of their letters.
const (
	partHost       = 'h'
	partCredential = byte(credential.Key)
	partOrg        = byte(credential.Org)
	partProject    = byte(credential.Project)
)

// part is one part of a request's default scope.
type part struct {
	kind byte
	v    string
}

// maxParts is how many parts scopeParts collects without allocating; real
// requests carry one or two credentials.
const maxParts = 8

// scopeParts appends the parts of req's default scope to parts, sorted and
// without duplicates: the host (as the request spells it), every credential
// (bare), the organization and the project. extra names more credential
// headers (canonical). It allocates only past maxParts parts or to unescape
// a query value.
func scopeParts(req *http.Request, extra []string, parts []part) []part {
	parts = append(parts, part{partHost, requestHost(req)})
	for name, vs := range req.Header {
		kind := byte(credential.Header(name, extra))
		if kind == 0 {
			continue
		}
		for _, v := range vs {
			if v = credential.Trim(v); kind == partCredential {
				v = credential.Bare(v)
			}
			if v != "" {
				parts = append(parts, part{kind, v})
			}
		}
	}
	if req.URL != nil {
		if u := req.URL.User; u != nil {
			parts = append(parts, part{partCredential, u.String()})
		}
		if req.URL.RawQuery != "" {
			credential.EachQueryParam(req.URL.RawQuery, func(_, value string, _ bool, kind credential.Param, _ string) {
				if kind == credential.ParamCredential {
					if v, err := url.QueryUnescape(value); err == nil {
						value = v
					}
					parts = append(parts, part{partCredential, value})
				}
			})
		}
	}
	return sortParts(parts)
}

// sortParts sorts parts by kind, then value, and drops duplicates. An
// insertion sort: there are a handful.
func sortParts(parts []part) []part {
	for i := 1; i < len(parts); i++ {
		for j := i; j > 0 && partLess(parts[j], parts[j-1]); j-- {
			parts[j], parts[j-1] = parts[j-1], parts[j]
		}
	}
	out := parts[:0]
	for i, p := range parts {
		if i == 0 || p != parts[i-1] {
			out = append(out, p)
		}
	}
	return out
}

// partLess orders parts by kind (the kinds' letters are in the order
// they are named), then value.
func partLess(a, b part) bool {
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.v < b.v
}

// credentialed reports whether parts hold a credential.
func credentialed(parts []part) bool {
	for _, p := range parts {
		if p.kind == partCredential {
			return true
		}
	}
	return false
}

// scopeID returns the id of req's latch, when WithScope named it its name,
// and whether the request carries a credential the Transport can find. It
// runs on every request and allocates nothing for the default scope.
func (t *Transport) scopeID(req *http.Request) (id uint64, custom string, keyed bool) {
	var h maphash.Hash
	h.SetSeed(t.seed)
	if t.cfg.scope != nil {
		if custom = t.cfg.scope(req); custom != "" {
			h.WriteByte('c')
			h.WriteString(custom)
			return h.Sum64(), custom, true
		}
	}
	var buf [maxParts]part
	parts := scopeParts(req, t.cfg.credentialHeaders, buf[:0])
	h.WriteByte('d')
	for _, p := range parts {
		h.WriteByte(p.kind)
		h.WriteString(p.v)
		h.WriteByte(0)
	}
	if keyed = credentialed(parts); !keyed {
		t.noCredential(req)
	}
	return h.Sum64(), "", keyed
}

// scopeName is the name of req's default scope as this Transport sees it:
// DefaultScope with the headers WithCredentialHeaders names.
func (t *Transport) scopeName(req *http.Request) string {
	return defaultScopeName(req, t.cfg.credentialHeaders)
}

// DefaultScope returns the name of req's default scope, as Trip.Scope and
// the quotabreaker.scope attribute show it: the host, then the fingerprint
// of each credential, then OpenAI's organization and project, as in
//
//	api.openai.com/key:1f0c3a9e52b7/org:org-abc/project:proj_abc
//
// A key's fingerprint is the first 12 hex digits of the SHA-256 of the key
// alone (for an Authorization header, the part after "Bearer "; for URL
// user info, "user:password"): `printf %s "$KEY" | sha256sum | cut -c1-12`
// finds it. Several credentials are joined by '+', sorted by fingerprint's
// key. The name holds no secret. A request that carries no credential is
// named by its host alone, and one quota answer to it refuses every such
// request to that host.
//
// The credentials are the values of the headers known to carry one
// (Authorization, Api-Key, X-Api-Key, X-Goog-Api-Key,
// Ocp-Apim-Subscription-Key, LiteLLM's X-Litellm-Api-Key, Portkey's
// X-Portkey-Api-Key and X-Portkey-Virtual-Key, Cloudflare AI Gateway's
// Cf-Aig-Authorization) and of any other header whose name has the word
// key, token, secret, auth, authorization, signature, credential or
// password in it, except those known to carry none (Idempotency-Key,
// Sec-WebSocket-Key, Proxy-Authorization, anti-forgery tokens); the URL's
// user info; and the query parameters whose names say the same or name a
// code, JWT, bearer token, session, HMAC or SAS. Header names are matched
// ignoring case and values are trimmed as the wire trims them. A Transport
// also counts the headers its WithCredentialHeaders names, which
// DefaultScope, knowing no Transport, does not.
//
// Use it in WithScope to combine a scope of your own with the default one:
//
//	quotabreaker.WithScope(func(r *http.Request) string {
//		return tenant(r) + "/" + quotabreaker.DefaultScope(r)
//	})
//
// It hashes each key with SHA-256, about a microsecond per call.
func DefaultScope(req *http.Request) string {
	return defaultScopeName(req, nil)
}

func defaultScopeName(req *http.Request, extra []string) string {
	var buf [maxParts]part
	var b strings.Builder
	var prev byte
	for _, p := range scopeParts(req, extra, buf[:0]) {
		same := p.kind == prev
		prev = p.kind
		switch p.kind {
		case partHost:
			// Hosts are case-insensitive: requests to API.openai.com and
			// api.openai.com share the latch named by the lower case.
			b.WriteString(strings.ToLower(p.v))
		case partCredential:
			if same {
				b.WriteByte('+')
			} else {
				b.WriteString("/key:")
			}
			b.WriteString(Fingerprint(p.v))
		case partOrg:
			if same {
				b.WriteByte('+')
			} else {
				b.WriteString("/org:")
			}
			b.WriteString(printable(p.v))
		case partProject:
			if same {
				b.WriteByte('+')
			} else {
				b.WriteString("/project:")
			}
			b.WriteString(printable(p.v))
		}
	}
	return b.String()
}

// noCredential makes visible that req carries no credential the Transport
// can find, so that its scope is its host alone: the Transport's logger
// says it once, naming the host (and the span says
// quotabreaker.scope.credential=none: see telemetry.start).
func (t *Transport) noCredential(req *http.Request) {
	if t.warnedNoCredential.CompareAndSwap(false, true) {
		t.cfg.logger.Warn("quotabreaker: a request carries no credential the Transport can find, so its scope is its host alone "+
			"and one quota answer will refuse every such request to that host; name its credential header with "+
			"WithCredentialHeaders, or scope requests with WithScope",
			"host", strings.ToLower(requestHost(req)))
	}
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
