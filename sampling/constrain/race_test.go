//go:build race

package constrain

const raceEnabled = true
