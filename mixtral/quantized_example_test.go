package mixtral_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fathom-llm/fathom/backend"
	"github.com/fathom-llm/fathom/mixtral"
)

// Store a checkpoint quantized once, then load it as often as needed without quantizing.
func ExampleQuantize() {
	tmp, err := os.MkdirTemp("", "fathom-q8")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "tiny-code-mixtral-q8")

	ctx := context.Background()
	if err := mixtral.Quantize(ctx, modelDir, dst, backend.Q8, mixtral.QuantizeOptions{}); err != nil {
		log.Fatal(err)
	}
	m, err := mixtral.Load(ctx, dst, mixtral.Options{}) // stored as q8: nothing to quantize
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println(m.Config().NumHiddenLayers, "layers; tokenizer copied:", m.Tokenizer() != nil)
	// Output:
	// 4 layers; tokenizer copied: true
}
