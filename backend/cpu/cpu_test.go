package cpu_test

import (
	"testing"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/backend/backendtest"
	"github.com/fathom-llm/fathom/backend/cpu"
)

func TestConformance(t *testing.T) {
	for _, workers := range []int{1, 3} {
		backendtest.Run(t, func() backend.Backend { return cpu.New(workers) })
	}
}
