package bodyio

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// chunks reads b a few bytes at a time, as a network body does.
type chunks struct{ b []byte }

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], c.b)
	c.b = c.b[n:]
	return n, nil
}

func TestReadPrefix(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	for _, c := range []struct {
		name    string
		limit   int
		hint    int64
		want    int
		wantEOF bool
	}{
		{"whole, length known", 4096, 1000, 1000, true},
		{"whole, length unknown", 4096, -1, 1000, true},
		{"whole, exactly the limit", 1000, 1000, 1000, false}, // the end is not seen
		{"cut at the limit", 600, 1000, 600, false},
		{"cut, length unknown", 600, -1, 600, false},
		{"a wrong hint", 4096, 10, 1000, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, eof, err := ReadPrefix(&chunks{body}, c.limit, c.hint)
			if err != nil || eof != c.wantEOF || !bytes.Equal(got, body[:c.want]) {
				t.Errorf("got %d bytes, eof %v, err %v; want %d, eof %v", len(got), eof, err, c.want, c.wantEOF)
			}
		})
	}
	// A body of unknown length costs what it holds, not the limit.
	got, _, _ := ReadPrefix(bytes.NewReader(body[:10]), 1<<20, -1)
	if cap(got) > 1024 {
		t.Errorf("a 10-byte body of unknown length took a %d-byte buffer", cap(got))
	}
	boom := errors.New("connection reset")
	got, eof, err := ReadPrefix(io.MultiReader(bytes.NewReader(body[:100]), iotest.ErrReader(boom)), 4096, -1)
	if !errors.Is(err, boom) || eof || !bytes.Equal(got, body[:100]) {
		t.Errorf("got %d bytes, eof %v, err %v; want the 100 bytes before the error and the error", len(got), eof, err)
	}
}

func TestDecodePrefix(t *testing.T) {
	text := bytes.Repeat([]byte(`{"error":{"code":"insufficient_quota"}}`), 50)
	var gz, zl, raw bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(text)
	gw.Close()
	zw := zlib.NewWriter(&zl)
	zw.Write(text)
	zw.Close()
	fw, _ := flate.NewWriter(&raw, flate.DefaultCompression)
	fw.Write(text)
	fw.Close()
	for _, c := range []struct {
		enc  string
		body []byte
	}{
		{"gzip", gz.Bytes()}, {" X-GZIP ", gz.Bytes()}, {"deflate", zl.Bytes()},
		{"deflate", raw.Bytes()}, {"identity", text},
	} {
		got, whole := DecodePrefix(c.enc, c.body, true, 1<<20)
		if !bytes.Equal(got, text) || !whole {
			t.Errorf("%s (%d bytes): decoded %d bytes, whole %v; want %d, whole", c.enc, len(c.body), len(got), whole, len(text))
		}
		got, whole = DecodePrefix(c.enc, c.body, true, 100)
		if !bytes.Equal(got, text[:100]) || whole {
			t.Errorf("%s bounded to 100: %d bytes, whole %v", c.enc, len(got), whole)
		}
		// A prefix of the body decodes to a prefix of the text, never whole.
		got, whole = DecodePrefix(c.enc, c.body[:len(c.body)/2], false, 1<<20)
		if whole || !bytes.HasPrefix(text, got) {
			t.Errorf("%s cut in half: %d bytes, whole %v, a prefix of the text: %v", c.enc, len(got), whole, bytes.HasPrefix(text, got))
		}
	}
	if got, whole := DecodePrefix("br", gz.Bytes(), true, 1<<20); got != nil || whole {
		t.Errorf("br: got %d bytes, whole %v; want none", len(got), whole)
	}
	if _, err := Decode("br", nil); !errors.Is(err, ErrEncoding) {
		t.Errorf("Decode(br) = %v, want ErrEncoding", err)
	}
}

// A gzip bomb decodes to no more than the limit.
func TestDecodePrefixBomb(t *testing.T) {
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(make([]byte, 8<<20))
	gw.Close()
	got, whole := DecodePrefix("gzip", gz.Bytes(), true, 4096)
	if len(got) != 4096 || whole {
		t.Errorf("a %d-byte gzip of 8 MiB: %d bytes, whole %v; want 4096, not whole", gz.Len(), len(got), whole)
	}
}

func FuzzDecodePrefix(f *testing.F) {
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write([]byte(`{"error":{"type":"insufficient_quota"}}`))
	gw.Close()
	f.Add("gzip", gz.Bytes(), 64)
	f.Add("deflate", []byte{0x78, 0x9c, 0x03, 0x00}, 8)
	f.Add("identity", []byte("plain"), 3)
	f.Fuzz(func(t *testing.T, enc string, b []byte, limit int) {
		limit = int(uint(limit) % (1 << 16))
		got, whole := DecodePrefix(enc, b, true, limit)
		if len(got) > limit {
			t.Fatalf("decoded %d bytes, limit %d", len(got), limit)
		}
		if whole && len(got) == limit && limit > 0 {
			// Whole means the decoder reached its end within the limit.
			if _, w2 := DecodePrefix(enc, b, true, limit-1); w2 {
				t.Fatalf("whole at limit %d and at %d", limit, limit-1)
			}
		}
		p, eof, err := ReadPrefix(bytes.NewReader(b), limit, int64(len(b)))
		if err != nil || len(p) > limit || !bytes.Equal(p, b[:len(p)]) || eof != (len(b) < limit) {
			t.Fatalf("ReadPrefix(%d bytes, %d) = %d bytes, eof %v, %v", len(b), limit, len(p), eof, err)
		}
	})
}

// Decodes names what Decode undoes, as an observer needs to know before it
// keeps a body to decode.
func TestDecodes(t *testing.T) {
	for enc, want := range map[string]bool{
		"gzip": true, " X-GZIP ": true, "Deflate": true,
		"identity": false, "br": false, "zstd": false, "": false, "gzip, br": false,
	} {
		if got := Decodes(enc); got != want {
			t.Errorf("Decodes(%q) = %v, want %v", enc, got, want)
		}
	}
}
