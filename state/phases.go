package state

import (
	"sync/atomic"
	"time"
)

// commitPhase names a stretch of a commit that the commit benchmark times,
// to find what keeps one of the two cores idle (see RATIONALE.md, "Why is
// a commit's batch built in key order and in parts?").
type commitPhase int

const (
	phasePrepare commitPhase = iota // validate, hash and sort the writes
	phaseUpdate                     // the tree update (subtree goroutines)
	phaseOld                        // reading the old values of the replaced leaves (readOld)
	phaseBuilt                      // CommitAsync waiting for the batch to be built
	phaseCache                      // the node cache update, beside pebble's commit
	phaseBuild                      // building the version's batch
	phaseApply                      // pebble's commit short of the log sync: log write, batch sort or memtable insert
	phaseSync                       // pebble's wait for the log sync
	phaseWait                       // Commit waiting for the write after CommitAsync returned
	phaseCommit                     // all of Commit, or of CommitAsync
	numPhases
)

var phaseNames = [numPhases]string{"prepare", "update", "old", "built", "cache", "build", "apply", "sync", "wait", "commit"}

// commitPhases sums the wall time of each phase over commits. A store's
// phases is nil except in benchmarks, and a nil *commitPhases times
// nothing: the clock is read only to report, never to decide.
type commitPhases struct {
	ns [numPhases]atomic.Int64
}

// start returns the time a phase starts (zero when not timing).
func (p *commitPhases) start() time.Time {
	if p == nil {
		return time.Time{}
	}
	return time.Now()
}

// end adds the time since t0 to phase ph and returns now, the start of the
// next phase.
func (p *commitPhases) end(ph commitPhase, t0 time.Time) time.Time {
	if p == nil {
		return t0
	}
	t := time.Now()
	p.ns[ph].Add(int64(t.Sub(t0)))
	return t
}

// add adds d to phase ph.
func (p *commitPhases) add(ph commitPhase, d time.Duration) {
	if p != nil {
		p.ns[ph].Add(int64(d))
	}
}

// snapshot returns the sums so far.
func (p *commitPhases) snapshot() (s [numPhases]time.Duration) {
	for i := range s {
		s[i] = time.Duration(p.ns[i].Load())
	}
	return s
}
