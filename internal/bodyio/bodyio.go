// Package bodyio reads HTTP bodies within bounds: a prefix of a body, read
// without knowing whether more follows, and the bytes under a
// Content-Encoding that the caller asked for itself (Go's transport decodes
// gzip only when it added Accept-Encoding). The Transport reads error
// answers and request bodies with it, and the usage reader the encoded
// answers it meters, so that one place knows the encodings.
package bodyio

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"slices"
	"strings"
)

// ReadPrefix reads up to limit bytes of r and reports whether it reached
// the end. The size hint, a Content-Length, saves growing the buffer; with
// none the buffer starts small, so that a body of unknown length costs what
// it holds, not the limit.
func ReadPrefix(r io.Reader, limit int, hint int64) (buf []byte, eof bool, err error) {
	size := 512
	if hint > 0 {
		size = int(min(hint+1, int64(limit)))
	}
	buf = make([]byte, 0, min(size, limit))
	for {
		if len(buf) >= limit {
			return buf, false, nil
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), limit-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
}

// ErrEncoding is Decode's answer for an encoding it cannot undo.
var ErrEncoding = errors.New("bodyio: unknown content encoding")

// codec names the decoder of a Content-Encoding: "identity", "gzip" or
// "deflate", or "" for one Decode cannot undo. It is the one list of the
// encodings the module reads.
func codec(encoding string) string {
	switch e := strings.ToLower(strings.TrimSpace(encoding)); e {
	case "gzip", "x-gzip":
		return "gzip"
	case "identity", "deflate":
		return e
	}
	return ""
}

// Decodes reports whether Decode undoes encoding, other than identity.
func Decodes(encoding string) bool {
	c := codec(encoding)
	return c != "" && c != "identity"
}

// Decode returns a reader of b decoded from encoding: identity, gzip
// (x-gzip) or deflate, which the standard wraps in zlib and some servers
// send raw. The caller bounds what it reads of it: a small body may inflate
// without end.
func Decode(encoding string, b []byte) (io.Reader, error) {
	switch codec(encoding) {
	case "identity":
		return bytes.NewReader(b), nil
	case "gzip":
		return gzip.NewReader(bytes.NewReader(b))
	case "deflate":
		if zr, err := zlib.NewReader(bytes.NewReader(b)); err == nil {
			return zr, nil
		}
		return flate.NewReader(bytes.NewReader(b)), nil
	}
	return nil, ErrEncoding
}

// DecodePrefix decodes b, a prefix of a body in encoding (complete when it
// is the whole body), into at most limit bytes, and reports whether those
// are the whole decoded body. An encoding it cannot undo yields nothing, and
// a corrupt or cut body what could be decoded before the fault.
func DecodePrefix(encoding string, b []byte, complete bool, limit int) ([]byte, bool) {
	zr, err := Decode(encoding, b)
	if err != nil {
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if len(out) > limit {
		return out[:limit], false
	}
	return out, complete && err == nil
}
