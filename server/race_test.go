//go:build race

package server

// raceEnabled: the tests run under the race detector (about 15x slower
// inference), so the load and browser tests scale down.
const raceEnabled = true
