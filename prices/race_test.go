//go:build race

package prices

// raceEnabled: under the race detector sync.Pool drops what is put in it at
// random, so the regexp package allocates the matchers it would reuse.
const raceEnabled = true
