//go:build cuda && cgo

package cuda

/*
#include "fathom_cuda.h"
*/
import "C"

import (
	"runtime"

	"github.com/fathom-llm/fathom/backend"
)

// maxGraphs bounds the keys a backend keeps records for (a model records one per decode
// batch size it meets).
const maxGraphs = 256

// graph is the record of the steps of one key (backend.StepRecorder).
type graph struct {
	exec  *C.fc_graph // nil until recorded
	epoch uint64      // the backend's epoch when recorded
	// warm is the epoch+1 after a step ran unrecorded, so that its scratch memory is in
	// place: the next step of the key records.
	warm uint64
}

// Step implements backend.StepRecorder with CUDA graphs. It holds the backend's lock while f
// runs, on the unlocked view, so that no other goroutine's operation enters the record. The
// first step of a key runs as usual (allocating what it needs), the second is recorded and
// launched as a graph, later ones launch the graph. A record holds device addresses, so any
// release of device memory (the epoch) makes the records stale: they are made again.
func (g *gpu) Step(key any, f func(be backend.Backend) error) error {
	u, err := g.lock()
	if err != nil {
		return err
	}
	defer g.mu.Unlock()
	return u.step(key, f)
}

func (u *unlocked) step(key any, f func(be backend.Backend) error) error {
	e := u.graphs[key]
	if e == nil {
		if len(u.graphs) >= maxGraphs {
			// Keys of models long closed would otherwise pile up: start afresh.
			u.dropGraphs()
			u.graphs = map[any]*graph{}
		}
		e = &graph{}
		u.graphs[key] = e
	}
	if e.exec != nil && e.epoch == u.epoch {
		return check(C.fc_graph_launch(u.ctx, e.exec), "graph launch")
	}
	if e.exec != nil {
		C.fc_graph_destroy(e.exec)
		e.exec = nil
	}
	epoch := u.epoch
	if e.warm != epoch+1 {
		err := f(u)
		if err == nil && u.epoch == epoch {
			e.warm = epoch + 1
		}
		return err
	}

	// Capture follows the launching thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if C.fc_capture_begin(u.ctx) != 0 {
		return f(u)
	}
	err := f(u)
	var exec *C.fc_graph
	code := C.fc_capture_end(u.ctx, &exec)
	if err == nil && code == 0 && exec != nil && u.epoch == epoch {
		e.exec, e.epoch = exec, epoch
		return check(C.fc_graph_launch(u.ctx, exec), "graph launch")
	}
	if exec != nil {
		C.fc_graph_destroy(exec)
	}
	// Recorded operations do not run: run the step as usual.
	return f(u)
}

// dropGraphs destroys every record.
func (u *unlocked) dropGraphs() {
	for _, e := range u.graphs {
		if e.exec != nil {
			C.fc_graph_destroy(e.exec)
		}
	}
	u.graphs = nil
}
