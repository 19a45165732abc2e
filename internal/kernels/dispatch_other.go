//go:build purego || !amd64

package kernels

// haveAsm reports whether this build has vector implementations.
const haveAsm = false

// vectorTable has nothing to add where there is no assembly.
func vectorTable(f features, t *table, a *accel) {}
