package quotabreaker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/quotabreaker/quotabreaker/classify"
	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
	"go.opentelemetry.io/otel/trace"
)

// This file holds what a request refused without the network receives (an
// answer its SDK understands and does not retry, or an error), and how a
// retry loop tells such a refusal apart.

// ErrOpen is the error a Transport made with WithShortCircuitError returns,
// wrapped in an *OpenError, for a request that an open latch or a budget's
// hard limit refuses. The *OpenError's Trip says what refused it (its Class,
// Cause and Code). The other sentinel, ErrUnknownBudget, is an operator's
// mistake, never a request's fate.
var ErrOpen = errors.New("quotabreaker: latch open")

// OpenError is the error returned for a refused request when the Transport
// was made with WithShortCircuitError. It unwraps to ErrOpen.
type OpenError struct {
	Trip Trip
}

func (e *OpenError) Error() string {
	tr := &e.Trip
	return fmt.Sprintf("quotabreaker: latch open for %s since %s: %s (code %q, HTTP %d); reset it once fixed",
		tr.Scope, tr.At.Format(time.RFC3339), tr.Class, tr.Code, tr.StatusCode)
}

// ErrorType returns the class that opened the latch, which OpenTelemetry's
// instrumentations (otelhttp among them) record as error.type.
func (e *OpenError) ErrorType() string { return string(e.Trip.Class) }

func (e *OpenError) Unwrap() error { return ErrOpen }

// Permanent reports whether a retry loop must not send the request again:
// err is a refusal (ErrOpen), or resp is marked X-Should-Retry: false, as
// the Transport marks, in ModeEnforce, every answer of a tripping class,
// every answer it refuses, and every answer of a status the SDKs retry (408,
// 409, 429, 5xx) whose class cannot succeed later. Anything else is for the
// loop's own policy to decide: a rate limit is not Permanent.
func Permanent(resp *http.Response, err error) bool {
	if err != nil {
		return errors.Is(err, ErrOpen)
	}
	return resp != nil && resp.Header.Get(HeaderShouldRetry) == "false"
}

// RetryPolicy returns a retry policy, in the shape of go-retryablehttp's
// CheckRetry, that never retries what Permanent reports and leaves every
// other decision to next (retryablehttp.DefaultRetryPolicy, say):
//
//	client.CheckRetry = quotabreaker.RetryPolicy(retryablehttp.DefaultRetryPolicy)
//
// A quota answer is then tried once, and a rate limit is retried as next
// decides.
func RetryPolicy(next func(ctx context.Context, resp *http.Response, err error) (bool, error)) func(ctx context.Context, resp *http.Response, err error) (bool, error) {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if Permanent(resp, err) {
			return false, nil
		}
		return next(ctx, resp, err)
	}
}

// maxReplayBody bounds the tripping answer an open latch keeps to replay.
// Real quota answers are a few hundred bytes; a longer one is replaced by a
// short body with the same code and type, so that an open latch costs a few
// KiB however large the answer that opened it.
const maxReplayBody = 2 << 10

// refusal is the answer a refused request receives, prepared once per trip
// so that refusing costs little.
type refusal struct {
	status      int
	statusLine  string
	contentType string
	scope       string
	body        []byte
}

// newRefusal is the answer requests refused for tr receive: body, the
// tripping answer decoded, with its contentType, when it is whole and small
// enough to keep; otherwise (and for a trip with no answer of its own: a
// stream's error, another process's trip, a budget) a short body in
// OpenAI's shape carrying the trip's code and type, which every
// OpenAI-compatible SDK parses. A status below 400 (a trip recorded
// without one) is sent as 429.
func newRefusal(tr *Trip, contentType string, body []byte, complete bool) refusal {
	if !complete || len(body) == 0 || len(body) > maxReplayBody {
		body, contentType = syntheticBody(tr), "application/json"
	}
	status := tr.StatusCode
	if status < 400 {
		status = http.StatusTooManyRequests
	}
	return refusal{
		status:      status,
		statusLine:  statusLine(status, tr),
		contentType: contentType,
		scope:       tr.Scope,
		body:        bytes.Clone(body),
	}
}

// statusLine is the Status of an answer the Transport marks for tr: the
// code stays, and the reason phrase says what the answer means, so that
// logs which print the status say "429 Insufficient Quota", not "429 Too
// Many Requests".
func statusLine(code int, tr *Trip) string {
	text := http.StatusText(code)
	switch {
	case tr.Cause == CauseBudget:
		text = "Budget Exhausted"
	case tr.Class == classify.QuotaExhausted:
		text = "Insufficient Quota"
	}
	return strconv.Itoa(code) + " " + text
}

// header returns a fresh header for one refused request: the caller owns
// it and may change it. Its values share one backing array, as in
// http.Header.Clone, but no map is walked.
func (a *refusal) header() http.Header {
	vals := [...]string{"false", "true", a.scope, a.contentType}
	all := vals[:]
	if a.contentType == "" {
		all = all[:3]
	}
	v := make([]string, len(all))
	copy(v, all)
	h := make(http.Header, len(v))
	h[HeaderShouldRetry] = v[0:1:1]
	h[HeaderShortCircuit] = v[1:2:2]
	h[HeaderScope] = v[2:3:3]
	if len(v) == 4 {
		h["Content-Type"] = v[3:4:4]
	}
	return h
}

// response builds one refused request's answer.
func (a *refusal) response(req *http.Request) *http.Response {
	return &http.Response{
		Status:        a.statusLine,
		StatusCode:    a.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        a.header(),
		Body:          newReplayBody(a.body),
		ContentLength: int64(len(a.body)),
		Request:       req,
	}
}

// replayBody is a refused request's body.
type replayBody struct{ bytes.Reader }

func newReplayBody(b []byte) *replayBody {
	r := &replayBody{}
	r.Reset(b)
	return r
}

func (*replayBody) Close() error { return nil }

// syntheticBody is an error body in OpenAI's shape, which every
// OpenAI-compatible SDK parses, carrying the trip's code and type.
func syntheticBody(tr *Trip) []byte {
	msg := "quotabreaker: latch open after a " + string(tr.Class) + " " + string(tr.Cause) + " from the provider; reset it once fixed"
	if tr.Cause == CauseBudget {
		msg = "quotabreaker: this key's budget is spent; it lifts at the next period or when reset"
	}
	type apiError struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	}
	b, _ := json.Marshal(struct {
		Error apiError `json:"error"`
	}{apiError{
		Message: msg,
		Type:    tr.Type,
		Code:    tr.Code,
	}})
	return b
}

// shortCircuit answers req from the open latch o without the network.
func (t *Transport) shortCircuit(req *http.Request, o *opened, span trace.Span) (*http.Response, error) {
	if t.cfg.errorOnOpen {
		t.tel.shortCircuit(req.Context(), span, nil, o)
		return nil, &OpenError{Trip: o.Trip}
	}
	resp := o.refusal.response(req)
	t.tel.shortCircuit(req.Context(), span, resp, o)
	return resp, nil
}

// refuseBudget answers req, whose key has spent budget b, without the
// network: a 402 that the SDKs raise without retrying. It returns the
// refusal's trip, for telemetry.
func (t *Transport) refuseBudget(req *http.Request, b *budget, key string) (Trip, *http.Response, error) {
	exhausted := classify.Result{Class: classify.QuotaExhausted, Code: "budget_exhausted", Type: "budget_exhausted"}
	tr := t.newTrip(key, CauseBudget, ModeEnforce, exhausted, http.StatusPaymentRequired, "", 0)
	var resp *http.Response
	var err error
	if t.cfg.errorOnOpen {
		err = &OpenError{Trip: tr}
	} else {
		a := newRefusal(&tr, "", nil, false)
		resp = a.response(req)
		resp.Header.Set(HeaderBudget, b.Name)
	}
	return tr, resp, err
}

// refuses reports whether refuse refuses a request that the open latch
// refusedBy, or the budget b, would refuse (either may be nil): in
// ModeEnforce only. Its caller sets the span's pending attributes first,
// since a refusal ends the span.
func refuses(refusedBy *opened, b *budget, mode Mode) bool {
	return mode == ModeEnforce && (refusedBy != nil || b != nil)
}

// refuse answers req (ctx is its span's) without the network when
// ModeEnforce refuses it: its latch is open (refusedBy), or b is the budget
// whose hard limit req's key (key) has reached. It reports whether it
// answered; then the span has ended and the request's body is closed, as a
// RoundTripper closes it even when it sends nothing. In ModeObserve a
// request a budget would refuse is recorded and goes on.
func (t *Transport) refuse(ctx context.Context, req *http.Request, span trace.Span, provider classify.Provider, refusedBy *opened, b *budget, key string, mode Mode) (resp *http.Response, refused bool, err error) {
	enforce := mode == ModeEnforce // refused exactly when refuses says
	switch {
	case refusedBy != nil && enforce:
		closeRequestBody(req)
		resp, err = t.shortCircuit(req, refusedBy, span)
		return resp, true, err
	case b == nil:
		return nil, false, nil
	}
	var tr *Trip // nil in ModeObserve, which only records what it would refuse
	if enforce {
		closeRequestBody(req)
		tr = new(Trip)
		*tr, resp, err = t.refuseBudget(req, b, key)
	}
	t.tel.budgetRefusal(ctx, span, provider, tr, b.Name)
	return resp, enforce, err
}

// closeRequestBody closes what a RoundTripper must close even when it
// sends nothing.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// newTrip is the record of a trip of scope, for cause, in mode: what c
// says of the answer, the status it came with and the provider's id of it.
// It is the one place a Trip is made, so that a new field is filled for
// every cause.
func (t *Transport) newTrip(scope string, cause Cause, mode Mode, c classify.Result, status int, requestID string, epoch uint64) Trip {
	return Trip{
		Scope:      scope,
		Cause:      cause,
		Mode:       mode,
		Class:      c.Class,
		Provider:   c.Provider,
		Code:       c.Code,
		Type:       c.Type,
		StatusCode: status,
		RequestID:  requestID,
		At:         t.cfg.now().Round(0), // no monotonic reading: At is for people
		Epoch:      epoch,
	}
}

// newOpened is the record of the latch tr opens, with the refusal its
// requests receive (see newRefusal for contentType, body and complete).
func newOpened(tr Trip, contentType string, body []byte, complete bool) *opened {
	o := &opened{Trip: tr}
	o.refusal = newRefusal(&o.Trip, contentType, body, complete)
	return o
}

// requestID returns the provider's id of an answer, bounded and printable:
// the header's own string when it is already both, as providers' ids are,
// rather than two copies of it for each answer. The names are canonical:
// looked up as they are, they are not canonicalized again, as h.Get would.
func requestID(h http.Header) string {
	for _, name := range [...]string{"X-Request-Id", "Request-Id", "Apim-Request-Id"} {
		if v := h[name]; len(v) > 0 && v[0] != "" {
			if id := v[0]; len(id) <= jsonscan.MaxText && utf8.ValidString(id) {
				return id
			}
			return jsonscan.Text([]byte(v[0]), false)
		}
	}
	return ""
}

func (t *Transport) trips(c classify.Class) bool {
	for _, tc := range t.cfg.tripClasses {
		if c == tc {
			return true
		}
	}
	return false
}

// judgeStream opens the latch of at's scope when c, an error inside its
// successful answer, trips, and returns the new trip; nil when the latch
// was open already or reset since the request was sent.
func (t *Transport) judgeStream(at *attempt, c classify.Result, status int) *opened {
	if !t.trips(c.Class) {
		return nil
	}
	tr := t.newTrip(at.latch.scope, CauseStream, t.Mode(), c, status, "", at.epoch)
	o := newOpened(tr, "", nil, false)
	if !t.latches.recordHeld(at.latch, o) {
		return nil // open already, or reset since the request was sent
	}
	return o
}

// judge takes an error answer as inspect classified it (c, with the
// decoded prefix of its body and whether that is all of it), marks it when
// it cannot succeed, and opens l's latch when its class trips (unless it
// was open already when the request was sent, as in ModeObserve). It
// returns the new trip when this answer opened the latch.
func (t *Transport) judge(resp *http.Response, c classify.Result, sdkRetries bool, body []byte, complete bool, l *latch, epoch uint64, wasOpen bool, mode Mode) *opened {
	enforce := mode == ModeEnforce
	if !t.trips(c.Class) {
		if enforce && !c.Retryable && sdkRetries {
			// The SDKs retry 408, 409, 429 and 5xx whatever the body
			// says; this one cannot succeed later.
			resp.Header.Set(HeaderShouldRetry, "false")
		}
		return nil
	}
	if enforce {
		resp.Header.Set(HeaderShouldRetry, "false")
		resp.Status = statusLine(resp.StatusCode, &Trip{Class: c.Class})
	}
	if wasOpen {
		return nil // observed past an open latch
	}
	tr := t.newTrip(l.scope, CauseAnswer, mode, c, resp.StatusCode, requestID(resp.Header), epoch)
	o := newOpened(tr, resp.Header.Get("Content-Type"), body, complete)
	if !t.latches.record(l, o) {
		return nil // already open, or reset since this request was sent
	}
	return o
}
