package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// testFields is the query the tests and FuzzQuery read: nested members,
// numbers, arrays at the top and below, an empty member name and the
// top-level value itself.
var testFields = []Field{
	{Path: []string{"a"}},
	{Path: []string{"a", "b"}},
	{Path: []string{"a", "b", "c"}},
	{Path: []string{"n"}, Number: true},
	{Path: []string{"a", "n"}, Number: true},
	{Path: []string{"a", Each, "b"}},
	{Path: []string{"a", Each, Each, "b"}, Number: true},
	{Path: []string{Each, "a"}},
	{Path: []string{""}},
	{Path: nil},
}

const (
	fA = iota
	fAB
	fABC
	fN
	fAN
	fAEachB
	fAEachEachB
	fEachA
	fEmpty
	fTop
)

var testQuery = NewQuery(testFields)

func find(body string) []Value {
	vals := make([]Value, len(testFields))
	testQuery.Find([]byte(body), vals)
	return vals
}

func TestQueryValues(t *testing.T) {
	type want struct {
		field   int
		raw     string // "<nil>" for nil
		kind    byte
		count   int
		escaped bool
		differs bool
	}
	tests := []struct {
		name string
		body string
		want []want
	}{
		{"nested", ` { "a" : { "b" : { "c" : "x" } , "n" : 12 } }`, []want{
			{fA, "<nil>", '{', 1, false, false}, {fAB, "<nil>", '{', 1, false, false},
			{fABC, "x", '"', 1, false, false}, {fAN, "12", '1', 1, false, false}}},
		{"number only where asked", `{"a":{"b":{"c":-1.5e3}},"n":-0.25}`, []want{
			{fABC, "<nil>", '-', 1, false, false}, {fN, "-0.25", '-', 1, false, false}}},
		{"null is present but absent", `{"a":{"b":{"c":null}},"n":null}`, []want{
			{fABC, "<nil>", 'n', 1, false, false}, {fN, "<nil>", 'n', 1, false, false}}},
		{"escapes left in place", `{"a":{"b":{"c":"x\"\u00e9"}}}`, []want{
			{fABC, `x\"\u00e9`, '"', 1, true, false}}},
		{"escaped member names", `{"\u0061":{"\u0062":{"c":"x"}}}`, []want{
			{fABC, "x", '"', 1, false, false}}},
		{"last duplicate wins", `{"n":1,"n":2}`, []want{{fN, "2", '2', 2, false, true}}},
		{"same duplicate", `{"n":"1","n":"1"}`, []want{{fN, "1", '"', 2, false, false}}},
		{"null then value differs", `{"n":null,"n":"1"}`, []want{{fN, "1", '"', 2, false, true}}},
		{"differs stays", `{"n":1,"n":2,"n":2}`, []want{{fN, "2", '2', 3, false, true}}},
		{"a repeated member replaces all below it", `{"a":{"b":{"c":"x"},"n":1},"a":{"n":2}}`, []want{
			{fA, "<nil>", '{', 2, false, false}, {fAB, "<nil>", 0, 0, false, false},
			{fABC, "<nil>", 0, 0, false, false}, {fAN, "2", '2', 1, false, false}}},
		{"a repeated member that is no object", `{"a":{"b":{"c":"x"}},"a":"s"}`, []want{
			{fA, "s", '"', 2, false, true}, {fABC, "<nil>", 0, 0, false, false}}},
		{"below an array the first string wins", `{"a":[1,{"b":null},{"b":"x","b":"y"},{"b":"z"}]}`, []want{
			{fA, "<nil>", '[', 1, false, false}, {fAEachB, "x", '"', 4, false, true}}},
		{"empty string is found", `{"a":[{"b":""},{"b":"z"}]}`, []want{{fAEachB, "", '"', 2, false, true}}},
		{"arrays of arrays", `{"a":[[{"b":null},{"b":7}],[{"b":8}]]}`, []want{{fAEachEachB, "7", '7', 3, false, true}}},
		{"a repeated array starts again", `{"a":[{"b":"x"}],"a":[{"b":"y"}]}`, []want{{fAEachB, "y", '"', 1, false, false}}},
		{"top-level array", `[{"a":"x"},{"a":"y"}]`, []want{{fEachA, "x", '"', 2, false, true}, {fTop, "<nil>", '[', 1, false, false}}},
		{"empty member name", `{"":"e"}`, []want{{fEmpty, "e", '"', 1, false, false}}},
		{"top-level string", ` "t" `, []want{{fTop, "t", '"', 1, false, false}, {fA, "<nil>", 0, 0, false, false}}},
		{"a key named like Each is a key", `{"[]":{"a":"x"},"a":{"[]":{"b":"y"}}}`, []want{
			{fEachA, "<nil>", 0, 0, false, false}, {fAEachB, "<nil>", 0, 0, false, false}}},
		{"skipped values of every kind", `{"x":{"a":{"b":{"c":"no"}}},"y":[1,"]",{"}":[]}],"z":true,"a":{"b":{"c":"yes"}}}`, []want{
			{fABC, "yes", '"', 1, false, false}}},
		{"text after the value", `{"n":1} {"n":2}`, []want{{fN, "1", '1', 1, false, false}}},
		{"truncated: what came before stays", `{"n":1,"a":{"b":{"c":"cut`, []want{
			{fN, "1", '1', 1, false, false}, {fA, "<nil>", '{', 1, false, false}, {fABC, "<nil>", '"', 1, false, false}}},
		{"truncated duplicate reads as absent", `{"n":"1","n":"2`, []want{{fN, "<nil>", '"', 2, false, true}}},
		{"truncated at a value", `{"n":`, []want{{fN, "<nil>", 0, 1, false, false}}},
		{"a number at the end", `{"n":42`, []want{{fN, "42", '4', 1, false, false}}},
		{"malformed: stops there", `{"n":1,"a":{"b":{"c":"x"}} "n":2}`, []want{{fN, "1", '1', 1, false, false}, {fABC, "x", '"', 1, false, false}}},
		{"malformed separator", `{"n":1 ;"a":{"b":{"c":"x"}}}`, []want{{fN, "1", '1', 1, false, false}, {fABC, "<nil>", 0, 0, false, false}}},
		{"trailing comma", `{"n":1,}`, []want{{fN, "1", '1', 1, false, false}}},
		{"missing colon", `{"n" 1}`, []want{{fN, "<nil>", 0, 0, false, false}}},
		{"not JSON", `<html>{"n":1}</html>`, []want{{fN, "<nil>", 0, 0, false, false}, {fTop, "<nil>", '<', 1, false, false}}},
		{"empty", ``, []want{{fTop, "<nil>", 0, 1, false, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := find(tt.body)
			for _, w := range tt.want {
				v := vals[w.field]
				raw := "<nil>"
				if v.Raw != nil {
					raw = string(v.Raw)
				}
				if raw != w.raw || v.Kind != w.kind || v.Count != w.count || v.Escaped != w.escaped || v.Differs != w.differs {
					t.Errorf("%v: raw %s kind %q count %d escaped %v differs %v, want raw %s kind %q count %d escaped %v differs %v",
						testFields[w.field].Path, raw, v.Kind, v.Count, v.Escaped, v.Differs,
						w.raw, w.kind, w.count, w.escaped, w.differs)
				}
			}
			checkValues(t, []byte(tt.body), vals)
		})
	}
}

func TestQueryAt(t *testing.T) {
	body := `{"n":"first","a":{"n":2}}`
	vals := find(body)
	if n, an := vals[fN].At, vals[fAN].At; n != strings.Index(body, `"first"`) || an != strings.Index(body, "2") {
		t.Errorf("At = %d and %d", n, an)
	}
	if vals[fN].At >= vals[fAN].At {
		t.Error("At does not tell which came last")
	}
}

// TestQueryDepth feeds nesting far deeper than any stack would hold if
// Find recursed, inside and outside the paths.
func TestQueryDepth(t *testing.T) {
	const deep = 1 << 20
	for _, body := range []string{
		strings.Repeat("[", deep),
		strings.Repeat(`{"a":`, deep),
		`{"a":{"b":` + strings.Repeat(`{"c":`, deep),
		`{"x":` + strings.Repeat(`[{"a":`, deep) + `1` + strings.Repeat(`}]`, deep) + `,"n":3}`,
		`{"a":` + strings.Repeat("[", deep) + strings.Repeat("]", deep) + `,"n":3}`,
	} {
		vals := find(body)
		checkValues(t, []byte(body), vals)
		if strings.HasSuffix(body, `"n":3}`) && string(vals[fN].Raw) != "3" {
			t.Errorf("n after deep nesting = %q, want 3", vals[fN].Raw)
		}
	}
}

func TestQueryNoAllocation(t *testing.T) {
	body := []byte(`{"a":{"b":{"c":"x\u00e9"},"n":429},"n":"1","n":"2","a":[{"b":"y"}],"x":[[[{}]]]}`)
	vals := make([]Value, len(testFields))
	if n := testing.AllocsPerRun(100, func() { testQuery.Find(body, vals) }); n != 0 {
		t.Errorf("Find costs %v allocations, want 0", n)
	}
}

func TestNewQueryPanics(t *testing.T) {
	long := make([]string, MaxPath+1)
	wide := make([]Field, 65)
	for i := range wide {
		wide[i] = Field{Path: []string{strings.Repeat("k", i)}}
	}
	for name, fields := range map[string][]Field{
		"path too long": {{Path: long}},
		"too wide":      wide,
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: NewQuery did not panic", name)
				}
			}()
			NewQuery(fields)
		}()
	}
	NewQuery([]Field{{Path: long[:MaxPath]}, {Path: []string{"x"}}})
}

// checkValues holds what Find promises for any input: every Value points
// into body where it says, and an absent member reads as the zero Value.
func checkValues(t *testing.T, body []byte, vals []Value) {
	t.Helper()
	for i, v := range vals {
		switch {
		case v.Count == 0:
			if v.Raw != nil || v.Kind != 0 || v.At != 0 || v.Escaped || v.Differs {
				t.Fatalf("%v: absent but %+v", testFields[i].Path, v)
			}
			continue
		case v.Kind == 0:
			if v.Raw != nil || v.At != len(body) && body[v.At] != 0 {
				t.Fatalf("%v: no kind but %+v", testFields[i].Path, v)
			}
			continue
		case v.At >= len(body) || body[v.At] != v.Kind:
			t.Fatalf("%v: kind %q at %d does not stand there", testFields[i].Path, v.Kind, v.At)
		case v.Raw == nil:
			if v.Escaped {
				t.Fatalf("%v: escaped without text", testFields[i].Path)
			}
			continue
		}
		start := v.At
		if v.Kind == '"' {
			start++
		} else if !testFields[i].Number {
			t.Fatalf("%v: text %q for a %q", testFields[i].Path, v.Raw, v.Kind)
		}
		if end := start + len(v.Raw); end > len(body) || !bytes.Equal(body[start:end], v.Raw) {
			t.Fatalf("%v: text %q is not the body's at %d", testFields[i].Path, v.Raw, v.At)
		}
		// A number has no escapes: the text of a malformed one may hold a
		// backslash all the same ({"n":0\), read as the number's text.
		if v.Escaped != (v.Kind == '"' && bytes.IndexByte(v.Raw, '\\') >= 0) {
			t.Fatalf("%v: escaped %v for %q", testFields[i].Path, v.Escaped, v.Raw)
		}
	}
}

// FuzzQuery checks Find's promises on any bytes, and on valid JSON compares
// it with a reader built on encoding/json's tokens that follows the same
// rules.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		`{"a":{"b":{"c":"x"},"n":12},"n":"1"}`,
		`{"a":[1,{"b":null},{"b":"x","b":"y"}],"a":[[{"b":7}]]}`,
		`[{"a":"x"},{"a":"\u0079"}]`,
		`{"\u0061":{"b":{"c":"x\"y"}},"a":{"b":5},"":"e"}`,
		`{"n":1,"n":1.5e3,"a":{"n":null,"n":-2}}`,
		`{"a":{"b":{"c":"cut`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		vals := make([]Value, len(testFields))
		testQuery.Find(body, vals)
		checkValues(t, body, vals)
		if !json.Valid(body) || !utf8.Valid(body) {
			return
		}
		want, err := referenceFind(body)
		if err != nil {
			return
		}
		for i, v := range vals {
			w := want[i]
			got := v.Raw
			if v.Kind == '"' && v.Escaped {
				got = Unescape(v.Raw)
			}
			if string(got) != string(w.Raw) || (got == nil) != (w.Raw == nil) || v.Kind != w.Kind || v.Count != w.Count || v.Differs != w.Differs {
				t.Fatalf("%v in %s: Find %q kind %q count %d differs %v, reference %q kind %q count %d differs %v",
					testFields[i].Path, body, got, v.Kind, v.Count, v.Differs, w.Raw, w.Kind, w.Count, w.Differs)
			}
		}
	})
}

// referenceFind reads testFields from a valid JSON body by recursion over
// encoding/json's tokens, strings unescaped, with Find's rules: the last
// occurrence wins, a repeated member replaces everything below it, and
// below an Each step the first string (or number) wins.
func referenceFind(body []byte) ([]Value, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	vals := make([]Value, len(testFields))
	var walk func(path []string) error
	walk = func(path []string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		var raw []byte
		var kind byte
		switch tok := tok.(type) {
		case json.Delim:
			kind = byte(tok)
		case string:
			raw, kind = []byte(tok), '"'
		case json.Number:
			raw, kind = []byte(tok), tok[0]
		case bool:
			kind = 'f'
			if tok {
				kind = 't'
			}
		case nil:
			kind = 'n'
		}
		for i, f := range testFields {
			if !slices.Equal(f.Path, path) {
				continue
			}
			r := raw
			if kind != '"' && !f.Number {
				r = nil
			}
			v := &vals[i]
			v.Differs = v.Differs || v.Count > 0 && !bytes.Equal(r, v.Raw)
			v.Count++
			if slices.Contains(f.Path, Each) && v.Raw != nil {
				continue
			}
			v.Raw, v.Kind = r, kind
		}
		switch kind {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				k := key.(string)
				if seen[k] {
					for i, f := range testFields {
						if len(f.Path) > len(path)+1 && slices.Equal(f.Path[:len(path)+1], append(slices.Clip(path), k)) {
							vals[i] = Value{}
						}
					}
				}
				seen[k] = true
				if k == Each { // a member name, never an array's step
					k = "\xff" + k
				}
				if err := walk(append(slices.Clip(path), k)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		case '[':
			for dec.More() {
				if err := walk(append(slices.Clip(path), Each)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		}
		return err
	}
	if err := walk(nil); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return vals, nil
}
