package redisstore

import (
	"testing"
)

// FuzzDecodeChange: any message on the channel decodes or fails; it never
// panics, and a decoded one keeps its scope's bytes.
func FuzzDecodeChange(f *testing.F) {
	for _, s := range []string{
		`open 3 5:a b:c{"scope":"x","epoch":3}`,
		`clear 4 1:a`,
		`clear 4 1:a{"scope":"a"}`,
		"open 1 2:\xff\n{}",
		`open 1 99:a{}`,
		`open -1 1:a{}`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		ch, err := decodeChange(msg)
		if err != nil {
			return
		}
		if ch.Kind != ChangeOpened && ch.Kind != ChangeCleared {
			t.Fatalf("kind %d", ch.Kind)
		}
		if ch.Trip.Scope != "" && ch.Trip.Scope != ch.Scope {
			t.Fatalf("trip scope %q, change scope %q", ch.Trip.Scope, ch.Scope)
		}
	})
}
