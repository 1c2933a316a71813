//go:build race

package tenancypgx_test

const raceEnabled = true
