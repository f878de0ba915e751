package corpus

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// StreamsDir is the folder of real successful answers, plain and streamed,
// beside their SOURCES.md, found from any folder of the module.
func StreamsDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(mod), "module github.com/quotabreaker/quotabreaker\n") {
			return filepath.Join(dir, "testdata", "streams")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("corpus: not inside the quotabreaker module")
		}
		dir = parent
	}
}

// ReadStream returns the answer in the file called name of StreamsDir, and
// the header it was sent with: an event stream for .sse, newline-delimited
// JSON for .ndjson, JSON otherwise, gzip-encoded JSON for .json.gz.
func ReadStream(tb testing.TB, name string) ([]byte, http.Header) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(StreamsDir(tb), name))
	if err != nil {
		tb.Fatal(err)
	}
	h := http.Header{}
	if strings.HasSuffix(name, ".gz") {
		h.Set("Content-Encoding", "gzip")
	}
	switch {
	case strings.HasSuffix(name, ".sse"):
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
	case strings.HasSuffix(name, ".ndjson"):
		h.Set("Content-Type", "application/x-ndjson")
	default:
		h.Set("Content-Type", "application/json")
	}
	return b, h
}

// ChunkOf returns the event of a stream that contains marker, with its
// blank line.
func ChunkOf(tb testing.TB, file, marker string) []byte {
	tb.Helper()
	body, _ := ReadStream(tb, file)
	for _, ev := range bytes.SplitAfter(body, []byte("\n\n")) {
		if bytes.Contains(ev, []byte(marker)) {
			return ev
		}
	}
	tb.Fatalf("%s has no event with %s", file, marker)
	return nil
}

// BigStream builds an event stream of at least size bytes from a real one:
// its first head events, its middle events repeated, and its last tail
// events (the finish chunk, the usage chunk and the end marker).
func BigStream(tb testing.TB, file string, head, tail, size int) []byte {
	tb.Helper()
	body, _ := ReadStream(tb, file)
	events := bytes.SplitAfter(body, []byte("\n\n"))
	for len(events) > 0 && len(events[len(events)-1]) == 0 {
		events = events[:len(events)-1]
	}
	middle := bytes.Join(events[head:len(events)-tail], nil)
	var b bytes.Buffer
	b.Write(bytes.Join(events[:head], nil))
	for b.Len() < size {
		b.Write(middle)
	}
	b.Write(bytes.Join(events[len(events)-tail:], nil))
	return b.Bytes()
}

// Discard is io.Discard without its ReadFrom, so that io.CopyBuffer reads
// through the buffer it is given: with io.Discard, CopyBuffer hands the copy
// to ReadFrom, which reads 8 KiB at a time whatever buffer a benchmark names.
type Discard struct{}

func (Discard) Write(p []byte) (int, error) { return len(p), nil }
