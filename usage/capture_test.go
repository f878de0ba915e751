package usage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// captureState is what a jsonCapture read: everything the observer takes
// from it, and how much of its input the value took.
func captureState(c *jsonCapture, took int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "took %d done %v choicesEmpty %v\n", took, c.done, c.choicesEmpty())
	for f := capField(1); f < nCapFields; f++ {
		if c.seen&(1<<f) != 0 {
			fmt.Fprintf(&b, "%d has %v %q\n", f, c.has(f), c.prefix(f))
		}
	}
	return b.String()
}

// capture feeds body to a fresh jsonCapture in pieces of the given sizes,
// as the observer does: until the value ends.
func capture(body []byte, bytewise bool, sizes ...int) string {
	c := jsonCapture{bytewise: bytewise}
	took := 0
	for k := 0; took < len(body) && !c.done; k++ {
		n := len(body) - took
		if len(sizes) > 0 {
			n = min(n, sizes[k%len(sizes)])
		}
		m := c.write(body[took : took+n])
		took += m
		if m < n {
			break
		}
	}
	return captureState(&c, took)
}

// FuzzCapture holds jsonCapture's skim to the byte-at-a-time reading it
// stands in for: the same values kept, the same end found, for any bytes
// and however they are cut.
func FuzzCapture(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "streams", "*.*"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil || strings.HasSuffix(file, ".md") || strings.HasSuffix(file, ".gz") {
			continue
		}
		if strings.HasSuffix(file, ".json") {
			f.Add(b, uint8(len(b)))
			continue
		}
		// An event stream's data lines, each a value the observer reads.
		for _, line := range bytes.Split(b, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("data: ")); ok && len(v) > 0 && v[0] == '{' {
				f.Add(v, uint8(len(v)))
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, cut uint8) {
		want := capture(body, true)
		sizes := []int{1 + int(cut%7), 1 + int(cut/7)}
		for _, s := range [][]int{nil, {1}, sizes} {
			if got := capture(body, false, s...); got != want {
				t.Fatalf("pieces %v:\n%s\nwant\n%s", s, got, want)
			}
		}
	})
}
