package classify

import (
	"net/http"
	"strconv"

	"github.com/quotabreaker/quotabreaker/internal/jsonscan"
)

// StreamError classifies an error that a provider sent inside a successful
// answer (an event of a stream, or a JSON value after it), as the answer it
// would have been outside the stream, and returns the status it was
// classified with: the error's own numeric code when it has one from 400 to
// 599, otherwise the status the provider sends the same code or type with
// (a quota or rate-limit code is a 429, an overloaded one a 503, ...), and
// 500 for an error nothing recognises: the provider failed mid-answer.
func StreamError(header http.Header, body []byte) (Result, int) {
	var f errorFields
	f.parse(body)
	status := streamErrorStatus(errorNumber(body), f.codeString(), f.typeString())
	return Answer(status, header, body), status
}

// MoreSevere reports whether class a is more severe than b, for a reader
// that keeps the worst of several errors in one answer.
func MoreSevere(a, b Class) bool { return errorRank(a) < errorRank(b) }

// errorRank orders classes, most severe first: the classes
// that can stop traffic (exhausted quota, then bad credentials) come before
// the ones that heal by themselves, so a tripping error is never hidden
// behind a later, milder one. Equal ranks keep the first.
func errorRank(c Class) int {
	switch c {
	case QuotaExhausted:
		return 0
	case Authentication:
		return 1
	case Permission:
		return 2
	case RateLimited:
		return 3
	case Overloaded:
		return 4
	case ServerError:
		return 5
	case ContextLengthExceeded:
		return 6
	case ModelNotFound:
		return 7
	case ContentFilter:
		return 8
	case InvalidRequest:
		return 9
	}
	return 10
}

// errorNumber returns the numeric status an error object carries in
// error.status_code (Groq), error.code (Google, OpenRouter) or error.status,
// 0 when none.
func errorNumber(body []byte) int {
	s := jsonscan.Scanner{B: body}
	n := 0
	s.Object(func(key []byte) bool {
		if string(key) != "error" || s.Peek() != '{' {
			return s.Skip()
		}
		return s.Object(func(key []byte) bool {
			switch string(key) {
			case "status_code", "code", "status":
				if c := s.Peek(); c >= '1' && c <= '9' {
					start := s.I
					if s.Skip() {
						if v, err := strconv.Atoi(string(s.B[start:s.I])); err == nil && v >= 400 && v <= 599 && n == 0 {
							n = v
						}
					}
					return !s.Bad
				}
			}
			return s.Skip()
		})
	})
	return n
}

// streamErrorStatus chooses the status an error inside a successful answer
// is classified with: its own numeric code when it has one from 400 to 599;
// otherwise the status the provider sends the same error with outside a
// stream, found from its code or type through Answer's tables (a quota or
// rate-limit code is a 429, an overloaded one a 503, an authentication one a
// 401, and so on); otherwise, for an error nothing recognises, 500: the
// provider failed mid-answer, which is a server error.
func streamErrorStatus(numeric int, code, typ string) int {
	if numeric >= 400 && numeric <= 599 {
		return numeric
	}
	for _, k := range [...]string{code, typ} {
		if k == "" {
			continue
		}
		if c := meaningOf(k); c != "" {
			return classStatus(c)
		}
		switch k {
		case "invalid_request_error", "invalid_request":
			return http.StatusBadRequest
		case "validation": // Text Generation Inference's error_type
			return http.StatusUnprocessableEntity
		case "not_found_error":
			return http.StatusNotFound
		case "request_too_large":
			return http.StatusRequestEntityTooLarge
		}
	}
	return http.StatusInternalServerError
}

// classStatus is the status a provider typically sends with an error of
// class c.
func classStatus(c Class) int {
	switch c {
	case QuotaExhausted, RateLimited:
		return http.StatusTooManyRequests
	case Overloaded:
		return http.StatusServiceUnavailable
	case Authentication:
		return http.StatusUnauthorized
	case Permission:
		return http.StatusForbidden
	case ModelNotFound:
		return http.StatusNotFound
	case ContextLengthExceeded, InvalidRequest, ContentFilter:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
