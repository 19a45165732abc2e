//go:build race

package tokenizer

// raceEnabled scales down the long-input tests under the race detector.
const raceEnabled = true
