package tokenizer_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/fathom-llm/fathom/tokenizer"
)

// The bundled checkpoint carries the Mixtral tokenizer.
const modelDir = "../models/tiny-code-mixtral"

func Example() {
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	ids, err := tok.Encode("Hello world", tokenizer.EncodeOptions{AddBOS: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ids)
	fmt.Printf("%q\n", tok.Decode(ids, true))
	// Output:
	// [1 22557 1526]
	// "Hello world"
}

func ExampleTokenizer_Encode_parseSpecial() {
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	plain, _ := tok.Encode("</s>", tokenizer.EncodeOptions{})
	trusted, _ := tok.Encode("</s>", tokenizer.EncodeOptions{ParseSpecial: true})
	fmt.Println(plain, trusted)
	// Output: [1867 28713 28767] [2]
}

func ExampleTokenizer_EncodeChat() {
	tok, err := tokenizer.Load(modelDir) // no chat template: ChatML
	if err != nil {
		log.Fatal(err)
	}
	msgs := []tokenizer.Message{{Role: "user", Content: "Hello!"}}
	ids, text, err := tok.EncodeChat(msgs, tokenizer.ChatOptions{AddGenerationPrompt: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n%v\n", text, ids)
	// Output:
	// "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
	// [32001 2188 13 16230 28808 32000 28705 13 32001 13892 13]
}

func ExampleDecoder() {
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	ids, _ := tok.Encode("Hi 🎉!", tokenizer.EncodeOptions{AddBOS: true})
	d := tok.NewDecoder(true)
	var pieces []string
	for _, id := range ids {
		pieces = append(pieces, d.Add(id))
	}
	pieces = append(pieces, d.Flush())
	fmt.Printf("%q\n%q\n", pieces, strings.Join(pieces, ""))
	// Output:
	// ["" "Hi" " " "🎉" "!" ""]
	// "Hi 🎉!"
}
