package sim

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrScenario reports a scenario file that does not parse.
var ErrScenario = errors.New("sim: bad scenario")

// Scenario is a data-driven test: a configuration, a schedule of faults
// and expectations, read from a text file (see testdata/*.txt):
//
//	# comment
//	config seed=3 validators=4 fault-ms=2000 calm-ms=3000 faulty=3 faults=byz-twin always
//	at 300ms crash 1        # crash, restart, wipe, crash-on-header N
//	at 400ms crash-anchor 500ms
//	at 500ms partition 0 600ms   # {0,1} | {2,3} for 600 ms
//	at 500ms oneway 2 300ms | isolate 200ms | skew 1 250ms | jump 2 -80ms | flap 1 400ms | heal
//	expect min-commits 20
//	expect released-all     # every tx that reached an honest validator
//	expect min-leader-waits 2  # headers proposed after a leader timeout
//
// Safety (no violations) is always expected.
type Scenario struct {
	Config  Config
	Expects [][]string
}

// ParseScenario reads a scenario.
func ParseScenario(text string) (*Scenario, error) {
	sc := &Scenario{Config: DefaultConfig(0)}
	sc.Config.Faults = nil
	in := bufio.NewScanner(strings.NewReader(text))
	line := 0
	for in.Scan() {
		line++
		f := strings.Fields(strings.SplitN(in.Text(), "#", 2)[0])
		if len(f) == 0 {
			continue
		}
		bad := func(why string) error { return fmt.Errorf("%w: line %d: %s", ErrScenario, line, why) }
		switch f[0] {
		case "config":
			for _, kv := range f[1:] {
				if err := sc.set(kv); err != nil {
					return nil, bad(err.Error())
				}
			}
		case "at":
			if len(f) < 3 {
				return nil, bad("want: at TIME ACTION [ARGS]")
			}
			at, err := dur(f[1])
			if err != nil {
				return nil, bad(err.Error())
			}
			st := Step{At: at, Do: f[2]}
			args := f[3:]
			switch st.Do {
			case "crash", "restart", "wipe", "crash-on-header":
				if len(args) != 1 {
					return nil, bad(st.Do + " takes a node")
				}
				st.Node, err = strconv.Atoi(args[0])
			case "partition", "oneway", "skew", "jump", "flap":
				if len(args) != 2 {
					return nil, bad(st.Do + " takes a node and a duration")
				}
				if st.Node, err = strconv.Atoi(args[0]); err == nil {
					st.Val, err = dur(args[1])
				}
			case "isolate", "crash-anchor":
				if len(args) != 1 {
					return nil, bad(st.Do + " takes a duration")
				}
				st.Val, err = dur(args[0])
			case "heal":
			default:
				return nil, bad("unknown action " + st.Do)
			}
			if err != nil {
				return nil, bad(err.Error())
			}
			if st.Node < 0 || st.Node >= sc.Config.Validators {
				return nil, bad("no such node")
			}
			switch st.Do {
			case "partition":
				st.Do = FPartition
			case "oneway":
				st.Do = FOneWay
			case "flap":
				st.Do = FFlapping
			}
			sc.Config.Script = append(sc.Config.Script, st)
		case "expect":
			if len(f) < 2 {
				return nil, bad("want: expect WHAT [VALUE]")
			}
			sc.Expects = append(sc.Expects, f[1:])
		default:
			return nil, bad("unknown directive " + f[0])
		}
	}
	return sc, in.Err()
}

func (sc *Scenario) set(kv string) error {
	k, v, _ := strings.Cut(kv, "=")
	var err error
	c := &sc.Config
	switch k {
	case "seed":
		c.Seed, err = strconv.ParseUint(v, 10, 64)
	case "validators":
		c.Validators, err = strconv.Atoi(v)
	case "fault-ms":
		c.FaultTime, err = strconv.ParseInt(v, 10, 64)
		c.FaultTime *= Millisecond
	case "calm-ms":
		c.CalmTime, err = strconv.ParseInt(v, 10, 64)
		c.CalmTime *= Millisecond
	case "rate":
		c.TxRate, err = strconv.ParseFloat(v, 64)
	case "faulty":
		var i int
		i, err = strconv.Atoi(v)
		c.Faulty = &i
	case "faults":
		c.Faults = strings.Split(v, ",")
	case "always":
		c.Always = true
	case "faulty-down":
		c.FaultyDown = true
	default:
		return fmt.Errorf("unknown config key %q", k)
	}
	return err
}

func dur(s string) (int64, error) {
	d, err := time.ParseDuration(s)
	return int64(d), err
}

// Check runs the scenario and returns what did not hold.
func (sc *Scenario) Check(r *Result) []string {
	var bad []string
	bad = append(bad, r.Violations...)
	for _, e := range sc.Expects {
		switch e[0] {
		case "min-commits":
			n, _ := strconv.ParseUint(e[1], 10, 64)
			if r.Commits < n {
				bad = append(bad, fmt.Sprintf("expected >= %d commits, got %d", n, r.Commits))
			}
		case "min-leader-waits":
			n, _ := strconv.ParseUint(e[1], 10, 64)
			if r.LeaderWaits < n {
				bad = append(bad, fmt.Sprintf("expected >= %d headers after a leader timeout, got %d", n, r.LeaderWaits))
			}
		case "released-all":
			// Every tx that reached an honest validator (the others were
			// sent only to nodes that were down at the time).
			if r.Released < r.Seen || r.Seen == 0 {
				bad = append(bad, fmt.Sprintf("expected all %d txs seen by honest validators released, got %d", r.Seen, r.Released))
			}
		case "fault":
			if r.Faults[e[1]] == 0 {
				bad = append(bad, fmt.Sprintf("expected fault %s to be injected", e[1]))
			}
		default:
			bad = append(bad, "unknown expectation "+e[0])
		}
	}
	return bad
}
