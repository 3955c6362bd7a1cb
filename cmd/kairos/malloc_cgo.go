//go:build cgo && linux

package main

/*
#include <malloc.h>
*/
import "C"

// mallocArenas bounds glibc's malloc arenas. Pebble allocates its block
// cache with C malloc when cgo is on, from whichever thread reads a block;
// glibc gives each contending thread an arena of its own (up to 8 per core)
// and returns little of them, which at 1M keys held ~100–180 MiB of the
// commits' peak RSS (see RATIONALE.md, "What did a quiet machine show at the
// end of session 9?"). Two arenas keep malloc's contention low on the
// threads pebble uses. Set at start-up, before pebble allocates; without cgo
// pebble allocates in Go and this file is not built.
const mallocArenas = 2

func init() { C.mallopt(C.M_ARENA_MAX, mallocArenas) }
