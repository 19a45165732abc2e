//go:build !race

package mixtral

const raceEnabled = false
