// Package internal holds test helpers shared across Kairos packages.
package internal
