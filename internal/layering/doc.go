// Package layering holds the test that the module's import graph is the layering the README's
// Architecture table declares: each package imports only the module packages its row allows, the
// root package only the standard library, and every package has a row.
package layering
