//go:build race

package quotabreaker

// raceEnabled: the race detector checks every byte copied, so tests that
// move gigabytes scale down under it.
const raceEnabled = true
