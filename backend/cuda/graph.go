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

var _ backend.StepRecorder = (*gpu)(nil)

// maxGraphs bounds the keys a backend keeps records for (a model records one per decode
// batch size it meets).
const maxGraphs = 256

// graph is the record of the steps of one key (backend.StepRecorder).
type graph struct {
	exec  *C.fc_graph // nil until recorded
	epoch uint64      // g.epoch when recorded
	// warm is g.epoch+1 after a step ran unrecorded, so that its scratch memory is in
	// place: the next step of the key records.
	warm uint64
}

// Step implements backend.StepRecorder with CUDA graphs. The first step of a key runs as
// usual (allocating what it needs), the second is recorded and launched as a graph, later
// ones launch the graph. A record holds device addresses, so any release of device memory
// (g.epoch) makes the records stale: they are made again.
func (g *gpu) Step(key any, f func() error) error {
	if err := g.lock(); err != nil {
		return err
	}
	e := g.graphs[key]
	if e == nil {
		if len(g.graphs) >= maxGraphs {
			// Keys of models long closed would otherwise pile up: start afresh.
			g.dropGraphs()
			g.graphs = map[any]*graph{}
		}
		e = &graph{}
		g.graphs[key] = e
	}
	if e.exec != nil && e.epoch == g.epoch {
		defer g.mu.Unlock()
		return check(C.fc_graph_launch(g.ctx, e.exec), "graph launch")
	}
	if e.exec != nil {
		C.fc_graph_destroy(e.exec)
		e.exec = nil
	}
	epoch, record := g.epoch, e.warm == g.epoch+1
	g.mu.Unlock()
	if !record {
		err := f()
		g.mu.Lock()
		if err == nil && g.epoch == epoch {
			e.warm = epoch + 1
		}
		g.mu.Unlock()
		return err
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	g.mu.Lock()
	code := C.fc_capture_begin(g.ctx)
	g.mu.Unlock()
	if code != 0 {
		return f()
	}
	err := f()
	g.mu.Lock()
	var exec *C.fc_graph
	code = C.fc_capture_end(g.ctx, &exec)
	if err == nil && code == 0 && exec != nil && g.epoch == epoch {
		e.exec, e.epoch = exec, epoch
		defer g.mu.Unlock()
		return check(C.fc_graph_launch(g.ctx, exec), "graph launch")
	}
	if exec != nil {
		C.fc_graph_destroy(exec)
	}
	g.mu.Unlock()
	// Recorded operations do not run: run the step as usual.
	return f()
}

// dropGraphs destroys every record; the caller holds g.mu.
func (g *gpu) dropGraphs() {
	for _, e := range g.graphs {
		if e.exec != nil {
			C.fc_graph_destroy(e.exec)
		}
	}
	g.graphs = nil
}
