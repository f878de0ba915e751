package jsonscan

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestAppendUnescaped(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`plain`, "plain"},
		{`\u4f59\u989d\u4e0d\u8db3`, "余额不足"},
		{`a\"b\\c\/d\n\t`, "a\"b\\c/d\n\t"},
		{`\ud83d\ude00`, "😀"},
		{`\ud83d x`, "\uFFFD x"},
		{`\ud83d\u0041`, "\uFFFDA"},
		{`cut \u4f5`, `cut \u4f5`},
		{`cut \`, `cut \`},
		{`\q`, `\q`},
	}
	for _, tt := range tests {
		if got := string(AppendUnescaped(nil, []byte(tt.raw))); got != tt.want {
			t.Errorf("AppendUnescaped(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestAppendUnescapedNoAllocation(t *testing.T) {
	raw := []byte(`\u4f59\u989d\u4e0d\u8db3, recharge at https:\/\/example.com`)
	buf := make([]byte, 0, len(raw))
	if n := testing.AllocsPerRun(100, func() { AppendUnescaped(buf, raw) }); n != 0 {
		t.Errorf("%v allocations with room in dst, want 0", n)
	}
}

// FuzzAppendUnescaped compares AppendUnescaped with encoding/json on every
// valid JSON string, and checks that it never grows the text.
func FuzzAppendUnescaped(f *testing.F) {
	for _, s := range []string{`\u4f59\u989d`, `a\"b`, `\ud83d\ude00`, `\ud83d`, `\u00e9\n`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := AppendUnescaped(nil, raw)
		if len(got) > len(raw) {
			t.Fatalf("%q grew to %q", raw, got)
		}
		var want string
		if !utf8.Valid(raw) || json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &want) != nil {
			return
		}
		if string(got) != want {
			t.Fatalf("AppendUnescaped(%q) = %q, encoding/json %q", raw, got, want)
		}
	})
}

// TestSpecial puts one quote or backslash at every place in texts of every
// length up to past ShortString, among bytes that differ from those by one
// bit or share their low bits, which a mistake in the word-at-a-time
// search would take for them.
func TestSpecial(t *testing.T) {
	for _, fill := range []byte{'a', '"' ^ 1, '\\' ^ 0x80, '"' | 0x80, 0xff, 0} {
		for n := 0; n <= ShortString+9; n++ {
			b := bytes.Repeat([]byte{fill}, n)
			if got := Special(b); got != -1 {
				t.Fatalf("Special(%q) = %d, want -1", b, got)
			}
			for i := range n {
				for _, c := range []byte{'"', '\\'} {
					b[i] = c
					want := i
					if i >= ShortString {
						want = -1
					}
					if got := Special(b); got != want {
						t.Fatalf("Special(%q) = %d, want %d", b, got, want)
					}
					b[n-1] = '"' // a later one changes nothing
					if got := Special(b); got != want && i != n-1 {
						t.Fatalf("Special(%q) = %d, want %d", b, got, want)
					}
					b[i], b[n-1] = fill, fill
				}
			}
		}
	}
}
