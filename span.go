package quotabreaker

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/quotabreaker/quotabreaker/internal/credential"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// This file holds an attempt's span: how it starts, the HTTP client
// attributes of its request, and the pooled slices its attributes are
// built in until they are set in one call as it ends.

// start begins an attempt's span. It is a CLIENT span, as OpenTelemetry's
// HTTP conventions ask, unless another instrumentation records the HTTP
// client span of the same attempt: inside (the base is otelhttp's
// Transport, and the request is not refused, so it will reach the base) or
// outside (the request carries a traceparent header naming the span in its
// context, as otelhttp's Transport injects with a W3C TraceContext
// propagator). Then it is INTERNAL, so that each attempt has one CLIENT span. The returned context
// carries the span to the base transport only when there is a span context
// to propagate.
//
// The request's attributes are returned, not set: they join the answer's
// (see answer), so that the span is given its attributes in one call, and
// the SDK's span copies them into one slice rather than growing two. nil
// when the span does not record.
func (tel *telemetry) start(req *http.Request, refused, credential bool) (context.Context, trace.Span, *spanAttrs) {
	ctx := req.Context()
	if tel.noSpans {
		return ctx, trace.SpanFromContext(context.Background()), nil // a no-op span
	}
	opts := tel.client
	if (tel.internal && !refused) || tracedOutside(ctx, req.Header) {
		opts = tel.nested
	}
	spanCtx, span := tel.tracer.Start(ctx, spanName(req.Method), opts...)
	var pending *spanAttrs
	if span.IsRecording() {
		pending = tel.newAttrs(span)
		pending.kv = appendRequestAttrs(pending.kv, req, credential, &tel.urls)
	}
	if span.SpanContext().IsValid() {
		ctx = spanCtx
	}
	return ctx, span, pending
}

// knownMethod reports whether m is one of HTTP's methods: a switch, not a
// map, whose lookup hashed m twice for each request.
func knownMethod(m string) bool {
	switch m {
	case http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
		http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace:
		return true
	}
	return false
}

func spanName(method string) string {
	if method == "" {
		return http.MethodGet
	}
	if knownMethod(method) {
		return method
	}
	return "HTTP"
}

// appendRequestAttrs appends the HTTP client attributes of an attempt's
// own span, and quotabreaker.scope.credential "none" without a credential;
// url.full is urls'.
func appendRequestAttrs(attrs []attribute.KeyValue, req *http.Request, credential bool, urls *urlCache) []attribute.KeyValue {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if knownMethod(method) {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	} else {
		attrs = append(attrs, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(method))
	}
	if u := req.URL; u != nil {
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host, port = hostPort(req.Host)
		}
		attrs = append(attrs, semconv.ServerAddress(host))
		p, err := 0, strconv.ErrSyntax // no Atoi of "": its error allocates
		if port != "" {
			p, err = strconv.Atoi(port)
		}
		if err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		} else if u.Scheme == "https" {
			attrs = append(attrs, semconv.ServerPort(443))
		} else if u.Scheme == "http" {
			attrs = append(attrs, semconv.ServerPort(80))
		}
		attrs = append(attrs, semconv.URLFull(urls.full(u)))
	}
	if !credential {
		attrs = append(attrs, attrScopeCredential.String("none"))
	}
	return attrs
}

// urlCache keeps the url.full of plain URLs (see plainURL) that a
// Transport's requests went to, one in each of its slots, chosen by the
// lengths of host and path, so that a client calling a few endpoints in
// turn keeps each. u.String() allocates and takes about five times as long
// as comparing u with the URL kept. A URL that is not plain is not kept:
// it may hold a secret.
type urlCache struct {
	slots  [8]atomic.Pointer[fullURL]
	misses atomic.Uint32
}

// fullURL is a plain URL and its url.full.
type fullURL struct {
	u    url.URL
	full string
}

// full returns u's url.full (see redactURL).
func (c *urlCache) full(u *url.URL) string {
	if !plainURL(u) {
		return redactURL(u)
	}
	slot := &c.slots[(len(u.Host)+len(u.Path))%len(c.slots)]
	kept := slot.Load()
	if kept != nil && kept.u == *u {
		return kept.full
	}
	s := u.String()
	// A slot taken is given over at every 16th miss only: URLs that keep
	// changing (an id in the path) then cost a sixteenth of an allocation
	// each, not one.
	if kept == nil || c.misses.Add(1)%16 == 0 {
		slot.Store(&fullURL{*u, s})
	}
	return s
}

// plainURL reports whether u has no user info, query or fragment: its
// url.full is u.String().
func plainURL(u *url.URL) bool {
	return u.User == nil && u.RawQuery == "" && u.Fragment == "" && u.RawFragment == ""
}

// redactURL returns u for the url.full attribute, with its user info, its
// fragment and every query value replaced by REDACTED, except the values of
// the parameters known to be safe (api-version, alt, ...; see safeParams):
// deny by default, since a gateway may take a secret under any name. Query
// parameters are read by credential.EachQueryParam, the scope's own reader.
func redactURL(u *url.URL) string {
	if plainURL(u) {
		return u.String()
	}
	r := *u
	if r.User != nil {
		r.User = url.UserPassword("REDACTED", "REDACTED")
	}
	if r.Fragment != "" || r.RawFragment != "" {
		r.Fragment, r.RawFragment = "REDACTED", ""
	}
	if r.RawQuery != "" {
		var b strings.Builder
		credential.EachQueryParam(r.RawQuery, func(name, value string, hasValue bool, kind credential.Param, sep string) {
			switch {
			case !hasValue: // ?SECRET
				b.WriteString("REDACTED")
			case kind == credential.ParamSafe || value == "":
				b.WriteString(name)
				if name != "" || value != "" {
					b.WriteByte('=')
				}
				b.WriteString(value)
			default:
				b.WriteString(name)
				b.WriteString("=REDACTED")
			}
			b.WriteString(sep)
		})
		r.RawQuery = b.String()
	}
	return r.String()
}

// spanAttrs are span attributes being built, to be set in one call (the
// SDK grows its slice at each call).
type spanAttrs struct {
	kv     []attribute.KeyValue
	pooled bool // from attrPool
}

// attrPool holds spanAttrs for spans of the OpenTelemetry SDK, which copies
// the attributes it is given into its own slice
// (recordingSpan.SetAttributes) and never keeps the caller's: a slice given
// back once its attributes are set serves the next attempt, so that
// recording an answer allocates no slice of a kilobyte or two. Spans of any
// other tracer may keep the slice, and get one of their own, never reused.
var attrPool = sync.Pool{New: func() any {
	return &spanAttrs{kv: make([]attribute.KeyValue, 0, 32), pooled: true} // an answer's, a stream error's and the spend's
}}

// newAttrs returns an empty spanAttrs for span.
func (tel *telemetry) newAttrs(span trace.Span) *spanAttrs {
	if tel.copies(span) {
		return attrPool.Get().(*spanAttrs)
	}
	return &spanAttrs{kv: make([]attribute.KeyValue, 0, 32)}
}

// setAttrs sets the attributes *p holds on span, gives them back and
// clears *p. A nil *p sets nothing.
func setAttrs(span trace.Span, p **spanAttrs) {
	a := *p
	if a == nil {
		return
	}
	*p = nil
	if len(a.kv) > 0 {
		span.SetAttributes(a.kv...)
	}
	if a.pooled {
		clear(a.kv) // drops the strings it holds
		a.kv = a.kv[:0]
		attrPool.Put(a)
	}
}

// spanType is whether spans of one type copy their attributes.
type spanType struct {
	t      reflect.Type
	copies bool
}

// copies is copiesAttrs, remembered for the last type of span seen: reading
// a type's name and package took 30 ns.
func (tel *telemetry) copies(span trace.Span) bool {
	t := reflect.TypeOf(span)
	if v := tel.spanType.Load(); v != nil && v.t == t {
		return v.copies
	}
	v := &spanType{t, copiesAttrs(span)}
	tel.spanType.Store(v)
	return v.copies
}

// copiesAttrs reports whether span is the OpenTelemetry SDK's recording
// span, which keeps copies of the attributes it is given, never the slice
// (TestPooledSpanAttributes checks that against the SDK this module
// requires).
func copiesAttrs(span trace.Span) bool {
	t := reflect.TypeOf(span)
	return t != nil && t.Kind() == reflect.Pointer && t.Elem().Name() == "recordingSpan" &&
		t.Elem().PkgPath() == "go.opentelemetry.io/otel/sdk/trace"
}
