//go:build race

package tenancyrouter_test

const raceEnabled = true
