package main

import (
	"errors"
	"testing"
)

// TestResolveGC checks that only the collector flags given on the command
// line are applied (the runtime keeps its own setting otherwise) and that
// settings the runtime cannot take are refused with errGCSetting.
func TestResolveGC(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want gcPolicy
		err  error
	}{
		{name: "none given", want: gcPolicy{Percent: 100}},
		{name: "both", args: []string{"--gogc", "400", "--memory-limit", "768"},
			want: gcPolicy{SetPercent: true, SetLimit: true, Percent: 400, LimitMiB: 768}},
		{name: "gogc only", args: []string{"--gogc", "200"}, want: gcPolicy{SetPercent: true, Percent: 200}},
		{name: "limit only", args: []string{"--memory-limit", "640"}, want: gcPolicy{SetLimit: true, Percent: 100, LimitMiB: 640}},
		{name: "limit removed", args: []string{"--memory-limit", "0"}, want: gcPolicy{SetLimit: true, Percent: 100}},
		{name: "off with limit", args: []string{"--gogc", "-1", "--memory-limit", "768"},
			want: gcPolicy{SetPercent: true, SetLimit: true, Percent: -1, LimitMiB: 768}},
		{name: "off without limit", args: []string{"--gogc", "-1"}, err: errGCSetting},
		{name: "gogc below -1", args: []string{"--gogc", "-2"}, err: errGCSetting},
		{name: "negative limit", args: []string{"--memory-limit", "-1"}, err: errGCSetting},
		{name: "limit overflows", args: []string{"--memory-limit", "9000000000000000"}, err: errGCSetting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, _, err := newRootCmd().Find([]string{"bench", "state"})
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := resolveGC(cmd)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.err == nil && got != tc.want {
				t.Fatalf("policy %+v, want %+v", got, tc.want)
			}
		})
	}
}
