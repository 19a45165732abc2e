package mixtral_test

import (
	"context"
	"fmt"
	"log"

	"github.com/fathom-llm/fathom/backend/cpu"
	"github.com/fathom-llm/fathom/mixtral"
	"github.com/fathom-llm/fathom/sampling"
	"github.com/fathom-llm/fathom/tokenizer"
)

// modelDir is the repository's bundled model.
const modelDir = "../models/tiny-code-mixtral"

// Load a checkpoint directory and complete a prompt greedily.
func ExampleLoad() {
	ctx := context.Background()
	m, err := mixtral.Load(ctx, modelDir, mixtral.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	resp, err := m.Generate(ctx, mixtral.Request{
		Prompt: "import os\nimport sys\n\n\ndef main():\n",
		Params: sampling.Params{MaxTokens: 16}, // the zero Params decode greedily
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Text)
	fmt.Println(resp.FinishReason, resp.Usage.PromptTokens, resp.Usage.CompletionTokens)
	// Output:
	// import argparse
	//
	//     parser = argparse.ArgumentParser(
	//
	// length 13 16
}

// Run on a backend of one's own: here the CPU backend with bfloat16 activations (faster
// prefill where the CPU has AVX512_BF16). The model leaves a given backend to its caller.
func ExampleLoad_backend() {
	be := cpu.NewWithOptions(cpu.Options{BF16Activations: true})
	defer be.Close()
	m, err := mixtral.Load(context.Background(), modelDir, mixtral.Options{Backend: be})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println(m.Backend().Name())
	// Output: cpu
}

// Stream a chat reply token by token, with sampling parameters.
func ExampleModel_Stream() {
	ctx := context.Background()
	m, err := mixtral.Load(ctx, modelDir, mixtral.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	params := sampling.DefaultParams()
	params.Temperature, params.MaxTokens, params.Stop = 0.7, 64, []string{"\n\n"}
	req := mixtral.Request{
		Messages: []tokenizer.Message{{Role: "user", Content: "Write a Python function."}},
		Params:   params,
	}
	for ev, err := range m.Stream(ctx, req) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(ev.Text)
		if ev.Done {
			fmt.Printf("\n[%s]\n", ev.FinishReason)
		}
	}
}

// Parse a config.json; absent fields take the reference defaults.
func ExampleParseConfig() {
	c, err := mixtral.ParseConfig([]byte(`{"hidden_size": 4096, "num_attention_heads": 32,
		"num_key_value_heads": 8, "sliding_window": null, "vocab_size": 32002, "eos_token_id": 32000}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.NumHiddenLayers, c.HeadDim, c.NumLocalExperts, c.NumExpertsPerTok, c.SlidingWindow, c.EOSTokenIDs)

	_, err = mixtral.ParseConfig([]byte(`{"num_attention_heads": 32, "num_key_value_heads": 5}`))
	fmt.Println(err)
	// Output:
	// 32 128 8 2 0 [32000]
	// mixtral: config num_key_value_heads: 5 does not divide num_attention_heads 32
}
