//go:build wasip1

package guest

// warmSizes are the Go allocator's size classes up to 256 bytes
// (internal/runtime/gc/sizeclasses.go of Go 1.26).
var warmSizes = [...]int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256}

var (
	warmNoscan []byte
	warmScan   []*byte
)

// init allocates one object of every small size class, with and without
// pointers, so that the span cache of the instance's snapshot holds a span
// with free slots for each: a transaction's first small allocation of a
// class then takes the allocator's fast path instead of fetching a span
// (thousands of metered instructions and a dozen dirty pages each time,
// since every transaction starts from the snapshot again). See
// RATIONALE.md, "Why does the Go SDK read and encode state through
// package-level buffers?".
func init() {
	for _, n := range warmSizes {
		warmNoscan = make([]byte, n)
		warmScan = make([]*byte, n/8)
	}
	warmNoscan, warmScan = nil, nil
}
