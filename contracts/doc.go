// Package contracts holds the example and system modules of Kairos, written
// with sdk/guest, their tests, and how they are built.
package contracts
