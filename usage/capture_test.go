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
func captureState(c *jsonCapture) string {
	var b strings.Builder
	fmt.Fprintf(&b, "done %v choicesEmpty %v\n", c.done, c.choicesEmpty())
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
	return fmt.Sprintf("took %d ", took) + captureState(&c)
}

// FuzzCapture holds jsonCapture's skim and readWhole to the byte-at-a-time
// reading they stand in for: the same values kept, the same end found, for
// any bytes and however they are cut.
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
	for _, s := range wholeCases {
		f.Add([]byte(s), uint8(len(s)))
	}
	f.Fuzz(func(t *testing.T, body []byte, cut uint8) {
		want := capture(body, true)
		sizes := []int{1 + int(cut%7), 1 + int(cut/7)}
		for _, s := range [][]int{nil, {1}, sizes} {
			if got := capture(body, false, s...); got != want {
				t.Fatalf("pieces %v:\n%s\nwant\n%s", s, got, want)
			}
		}
		var c jsonCapture
		if c.readWhole(body) {
			_, want, _ := strings.Cut(want, " done")
			if got := captureState(&c); got != "done"+want {
				t.Fatalf("readWhole:\n%s\nwant\n%s", got, "done"+want)
			}
			checkUsageRead(t, &c)
		}
	})
}

// checkUsageRead: the usage readWhole read as it passed is what apply
// would read from the copy kept.
func checkUsageRead(t *testing.T, c *jsonCapture) {
	t.Helper()
	if !c.usageRead {
		return
	}
	var want, got usageFields
	if !parseUsage(c.get(capUsage), &want) {
		t.Fatalf("read %q as it passed, but not from the copy kept", c.get(capUsage))
	}
	got.merge(&c.usage)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("usage %q read as it passed:\n%+v\nfrom the copy kept:\n%+v", c.get(capUsage), got, want)
	}
}

// wholeCases are shapes where readWhole must follow write's rules, which
// random bytes seldom take.
var wholeCases = []string{
	`{"message": [1], "choices": [ ], "usage": {"prompt_tokens": 1}}`,
	`{"message": "m", "choices": [` + "\n" + `]}`,
	`{"message": {"usage": {"input_tokens": 1}, "model": "m", "id": "i", "message": "x"}}`,
	`{"response": {"response": {"usage": 1}, "error": null, "service_tier": "flex"}}`,
	`{"response": "r", "usage": {}, "choices": null}`,
	`{"response": {}, "response": {"model": "b"}, "model": "a", "modelVersion": "c"}`,
	`{"us\u0061ge": {"prompt_tokens": 1}, "type": "error", "code": 429, "message": "m"}`,
	`{"error": "e", "error_type": "validation", "text": "t", "error_code": 50001}`,
	`{"usage": 1e5, "model": -0.5E+2, "id": true, "service_tier": null}`,
	`{"usage": 1x, "model": tru}`,
	`{"usage": 1"x", "model": 2}`,
	`{"usage": {"a": [1, {"b": "}\\\""}]}, "id": "\"i\""} trailing`,
	`  {"choices" :[],"id":"x"  }`,
	`{"choices": [], "choices": [1]}`,
	`{"usage": {"prompt_tokens": 1}, "usage": null}`,
	`{"usage": {"prompt_tokens": 1}, "usage": {"completion_tokens": 2}}`,
	`{"usage": {"prompt_tokens": 1, "service_tier": "standard"}}`,
	`{"usage": {"prompt_tokens": 1 "x": 2}, "model": "m"}`,
	`{"model": "m",}`,
	`{"model" "m"}`,
	`{"usage": {"prompt_tokens": 1}`,
	`b'{"error": "e"}'`,
}

// TestReadWhole: readWhole keeps what write keeps, on each of wholeCases
// it accepts, and accepts the fixtures' plain answers.
func TestReadWhole(t *testing.T) {
	for _, s := range wholeCases {
		var c jsonCapture
		if !c.readWhole([]byte(s)) {
			continue
		}
		_, want, _ := strings.Cut(capture([]byte(s), true), " done")
		if got := captureState(&c); got != "done"+want {
			t.Errorf("%s:\n%s\nwant\n%s", s, got, "done"+want)
		}
		checkUsageRead(t, &c)
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "streams", "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var c jsonCapture
		if b[0] == '{' && !c.readWhole(b) {
			t.Errorf("%s: not read whole", file)
		}
		checkUsageRead(t, &c)
	}
}
