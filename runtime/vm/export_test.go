package vm

import (
	"context"
	"sort"
)

// BeginInstantiate and EndInstantiate bracket an instantiation in
// progress, so a test can close code in the middle of one.
func BeginInstantiate(c *Code) error              { return c.begin() }
func EndInstantiate(ctx context.Context, c *Code) { c.end(ctx) }

// Released reports whether the compiled module was closed.
func Released(c *Code) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.released
}

// HostWriteNames lists the functions hostWrites describes, as module.name.
func HostWriteNames() []string {
	var out []string
	for m, fs := range hostWrites {
		for f := range fs {
			out = append(out, m+"."+f)
		}
	}
	sort.Strings(out)
	return out
}

// RestoresInOneCall reports whether in restores its globals through the
// code's RestoreExport.
func RestoresInOneCall(in *Instance) bool { return in.restore != nil }
