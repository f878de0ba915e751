//go:build !race

package prices

const raceEnabled = false
