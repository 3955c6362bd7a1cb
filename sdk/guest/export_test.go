package guest

// ScratchBusy reports whether the typed helpers' shared buffers are taken.
func ScratchBusy() bool { return scratch.busy }
