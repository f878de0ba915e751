package classify

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// This file holds what the retry loops around the Transport need to know:
// which classes heal by themselves, which statuses the SDKs retry on their
// own, and how long an answer asks them to wait.

// Retryable reports whether an answer of class c and the given status can
// succeed when sent again later.
func (c Class) Retryable(status int) bool {
	switch c {
	case RateLimited, Overloaded, ServerError:
		return true
	case Other:
		return SDKRetries(status)
	}
	return false
}

// SDKRetries reports whether OpenAI's SDKs retry an answer of this status
// when no X-Should-Retry header says otherwise.
func SDKRetries(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusConflict ||
		status == http.StatusTooManyRequests || status >= 500
}

// RetryAfter reads how long a rate-limited answer asks the caller to wait,
// in the order OpenAI's SDKs read it: retry-after-ms, then Retry-After in
// seconds or as an HTTP date, then OpenAI's x-ratelimit-reset-* durations
// (of the exhausted limit when the answer says which).
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < math.MaxInt64/float64(time.Millisecond) {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < math.MaxInt64/float64(time.Second) {
			return time.Duration(s * float64(time.Second)), true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	var best time.Duration
	found := false
	for _, kind := range [...]string{"Requests", "Tokens"} {
		d, err := time.ParseDuration(h.Get("X-Ratelimit-Reset-" + kind))
		if err != nil || d < 0 {
			continue
		}
		if h.Get("X-Ratelimit-Remaining-"+kind) == "0" {
			return d, true
		}
		if d > best {
			best = d
		}
		found = true
	}
	return best, found
}
