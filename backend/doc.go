// Package backend defines the Backend interface: device-resident tensors and the few coarse
// operations a Mixtral layer needs, so that the forward pass in package mixtral is written once
// and each op can be one fused kernel on a GPU.
package backend
