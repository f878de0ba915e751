package balance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// A Probe reads what is left on one provider account. A Transport polls
// each of its probes at an interval, with the http.Client of its choice
// (never itself: a probe's request must not count as spend or trip a
// latch).
type Probe interface {
	// Provider names the provider as the Transport's provider attribute
	// does: "deepseek", "openrouter", "moonshot", "siliconflow", "xai".
	Provider() string
	// Scope returns the scope the balance belongs to, as Balance.Scope
	// names it, reading the key but sending nothing: a Transport keys its
	// polls by it (one poll per scope and interval across a fleet) before
	// the first answer comes. It reads the key anew at each call.
	Scope() (string, error)
	// Balances reads the account's balance now: one Balance per currency
	// the provider states (DeepSeek can hold CNY and USD at once). It
	// reads the key anew at each call.
	Balances(ctx context.Context, c *http.Client) ([]Balance, error)
}

// Balance is what a provider says is left on an account, as it says it.
type Balance struct {
	// Provider is the Probe's Provider.
	Provider string
	// Scope names the scope of the key that read the balance, by the rule
	// of quotabreaker.DefaultScope (see Scope): inference requests made
	// with that key to the probe's host carry the same name. xAI's
	// management key is not an inference key: its Scope names no inference
	// scope, and Account names the team.
	Scope string
	// Fingerprint is the key's fingerprint, the part of Scope after
	// "/key:", to match scopes whose host differs (a proxy).
	Fingerprint string
	// Account is the provider's name for the account when the probe needs
	// one (xAI's team id); empty otherwise.
	Account string
	// Currency is the currency as the provider states it ("CNY", "USD"),
	// or as its documentation states it when the answer does not.
	Currency string
	// Available is what can still be spent. It can be negative: Moonshot
	// and xAI report debt that way.
	Available Amount
	// Parts are the figures the answer gives beside the total, under the
	// provider's own field names, in the answer's order: DeepSeek's
	// granted_balance and topped_up_balance, Moonshot's voucher_balance
	// and cash_balance, OpenRouter's limit and usage.
	Parts []Part
	// Usable is whether the account can make calls: the provider's own
	// word when it gives one (DeepSeek's is_available), else Available > 0.
	Usable bool
	// Read is when the answer arrived.
	Read time.Time
}

// Part is one named figure of a Balance, in the Balance's currency.
type Part struct {
	Name   string
	Amount Amount
}

// Part returns the amount of the part named name, and whether there is one.
func (b Balance) Part(name string) (Amount, bool) {
	for _, p := range b.Parts {
		if p.Name == name {
			return p.Amount, true
		}
	}
	return 0, false
}

// KeyFunc returns the key a probe authenticates with. Probes call it at
// every read and keep nothing of the key but its fingerprint, so a rotated
// key is picked up at the next poll and no struct holds a secret.
type KeyFunc func() (string, error)

// EnvKey returns a KeyFunc that reads the environment variable name at
// each call.
func EnvKey(name string) KeyFunc {
	return func() (string, error) {
		if k := os.Getenv(name); k != "" {
			return k, nil
		}
		return "", fmt.Errorf("%w: environment variable %s is empty", ErrNoKey, name)
	}
}

// Errors a probe or a cost reader returns, wrapped with the provider's name.
var (
	// ErrNoKey: the KeyFunc is nil or gave an empty key.
	ErrNoKey = errors.New("balance: no key")
	// ErrUnauthorized: the provider refused the key (401 or 403). A
	// *StatusError that Is it carries the status.
	ErrUnauthorized = errors.New("balance: the provider refused the key")
	// ErrShape: a 2xx answer that is not the documented shape (HTML from a
	// proxy, a renamed field, an error envelope). It never reads as zero.
	ErrShape = errors.New("balance: answer of an unknown shape")
	// ErrNoLimit: OpenRouter says the key has no credit limit, so it states
	// no balance for the key. OpenRouterCredits reads the account's.
	ErrNoLimit = errors.New("balance: the key has no credit limit")
)

// StatusError is a non-2xx answer. It holds the status and nothing of the
// body, which may echo the request.
type StatusError struct {
	Provider   string
	StatusCode int
	// RetryAfter is the answer's Retry-After, when it gave one in seconds.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("balance: %s answered %d %s", e.Provider, e.StatusCode, http.StatusText(e.StatusCode))
}

// Is reports 401 and 403 as ErrUnauthorized.
func (e *StatusError) Is(target error) bool {
	return target == ErrUnauthorized && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)
}

// DefaultTimeout bounds one request of a probe or cost reader whose
// Timeout is zero. The context bounds it too.
const DefaultTimeout = 10 * time.Second

// maxBody bounds what is read of an answer: the largest documented one (a
// page of 180 cost buckets) is far smaller.
const maxBody = 1 << 20

// Fingerprint returns the first 12 hex digits of the SHA-256 of key, as
// quotabreaker.Fingerprint does (the root package is not imported: this
// package stands alone).
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:6])
}

// Scope returns the name quotabreaker.DefaultScope gives a request to host
// (as the URL spells it, port included) that carries key and no OpenAI
// organization or project: "api.deepseek.com/key:1f0c3a9e52b7".
func Scope(host, key string) string {
	return strings.ToLower(host) + "/key:" + Fingerprint(key)
}

// endpoint is what every probe and cost reader has: a key, a base URL and a
// timeout.
type endpoint struct {
	provider string
	key      KeyFunc
	base     string // the configured base URL, or "" for def
	def      string // the provider's base URL
	timeout  time.Duration
}

// readKey calls the KeyFunc.
func (e endpoint) readKey() (string, error) {
	if e.key == nil {
		return "", fmt.Errorf("%w for %s", ErrNoKey, e.provider)
	}
	k, err := e.key()
	if err != nil {
		return "", fmt.Errorf("balance: %s: reading the key: %w", e.provider, err)
	}
	if k == "" {
		return "", fmt.Errorf("%w for %s", ErrNoKey, e.provider)
	}
	return k, nil
}

// url returns the base URL joined with path, and the base's host.
func (e endpoint) url(path string, q url.Values) (string, string, error) {
	base := e.base
	if base == "" {
		base = e.def
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/") + path)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", "", fmt.Errorf("balance: %s: base URL %q is not an http(s) URL", e.provider, base)
	}
	if u.User != nil {
		// A key in the base URL would be sent to the host and printed in
		// errors; keys come from the KeyFunc alone.
		return "", "", fmt.Errorf("balance: %s: the base URL holds user info", e.provider)
	}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String(), u.Host, nil
}

// get sends a GET to u with the headers h and returns the body of a 2xx
// answer, read through a limit, within the timeout.
func (e endpoint) get(ctx context.Context, c *http.Client, u string, h http.Header) ([]byte, time.Time, error) {
	if c == nil {
		c = http.DefaultClient
	}
	// No redirect is followed: the documented endpoints answer in place,
	// and a client forwards custom key headers (Anthropic's x-api-key) to
	// whatever host a redirect names. A 3xx comes back as a *StatusError.
	// The copy shares c's Transport, and so its connections.
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c = &cc
	timeout := e.timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("balance: %s: %w", e.provider, err)
	}
	req.Header = h
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, time.Time{}, e.failed(ctx, tctx, timeout, err)
	}
	defer resp.Body.Close()
	read := time.Now()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Drain a little for the connection's reuse; keep none of it.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		se := &StatusError{Provider: e.provider, StatusCode: resp.StatusCode}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			se.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, time.Time{}, se
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, time.Time{}, e.failed(ctx, tctx, timeout, err)
	}
	if len(body) > maxBody {
		return nil, time.Time{}, e.shape("answer larger than %d bytes", maxBody)
	}
	return body, read, nil
}

// failed words a transport or read error, telling the probe's own timeout
// from the caller's cancellation.
func (e endpoint) failed(ctx, tctx context.Context, timeout time.Duration, err error) error {
	if ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("balance: %s: no answer within %v: %w", e.provider, timeout, context.DeadlineExceeded)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("balance: %s: %w", e.provider, ctx.Err())
	}
	// A *url.Error names the URL, which holds no key: keys travel in
	// headers only.
	return fmt.Errorf("balance: %s: %w", e.provider, err)
}

// shape returns an ErrShape for the provider.
func (e endpoint) shape(format string, args ...any) error {
	return shapeError(e.provider, format, args...)
}

// shapeError returns an ErrShape for provider. Its detail names fields,
// never values: a value may be anything a proxy put there.
func shapeError(provider, format string, args ...any) error {
	return fmt.Errorf("%w from %s: %s", ErrShape, provider, fmt.Sprintf(format, args...))
}

// bearer returns the headers of a bearer key.
func bearer(key string) http.Header {
	return http.Header{"Authorization": {"Bearer " + key}}
}

// scope returns Scope(host, key) for the base URL's host and the key.
func (e endpoint) scope() (string, error) {
	key, err := e.readKey()
	if err != nil {
		return "", err
	}
	_, host, err := e.url("", nil)
	if err != nil {
		return "", err
	}
	return Scope(host, key), nil
}

// readBalance is what every probe does: read the key, send the request and
// decode the answer.
func (e endpoint) readBalance(ctx context.Context, c *http.Client, path string, decode func(body []byte) ([]Balance, error)) ([]Balance, error) {
	key, err := e.readKey()
	if err != nil {
		return nil, err
	}
	u, host, err := e.url(path, nil)
	if err != nil {
		return nil, err
	}
	body, read, err := e.get(ctx, c, u, bearer(key))
	if err != nil {
		return nil, err
	}
	bs, err := decode(body)
	if err != nil {
		return nil, err
	}
	scope, fp := Scope(host, key), Fingerprint(key)
	for i := range bs {
		bs[i].Provider = e.provider
		bs[i].Scope = scope
		bs[i].Fingerprint = fp
		bs[i].Read = read
	}
	return bs, nil
}
