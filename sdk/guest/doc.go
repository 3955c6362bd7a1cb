// Package guest is the SDK for writing Kairos modules in Go. Modules built
// with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared call the host ABI; the
// same code runs natively against an in-memory fake host in unit tests.
package guest
