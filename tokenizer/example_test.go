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

func ExampleParseToolCalls() {
	reply := "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
	text, calls := tokenizer.ParseToolCalls(reply)
	fmt.Printf("%q\n", text)
	for _, c := range calls {
		fmt.Println(c.Name, c.Arguments)
	}
	// Output:
	// "Checking."
	// get_weather {"city": "Paris"}
}

func ExampleTokenizer_RenderChat_tools() {
	tok, err := tokenizer.Load(modelDir) // no chat template: ChatML, and ChatMLTools with tools
	if err != nil {
		log.Fatal(err)
	}
	msgs := []tokenizer.Message{
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", ToolCalls: []tokenizer.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
		{Role: "tool", ToolCallID: "call_1", Content: "22 C, sunny"},
	}
	text, err := tok.RenderChat(msgs, tokenizer.ChatOptions{AddGenerationPrompt: true,
		Tools: []tokenizer.Tool{{Name: "get_weather", Parameters: []byte(`{"type": "object"}`)}}})
	if err != nil {
		log.Fatal(err)
	}
	_, turns, _ := strings.Cut(text, "</tool_call><|im_end|>\n") // after the system turn
	fmt.Print(turns)
	// Output:
	// <|im_start|>user
	// Weather in Paris?<|im_end|>
	// <|im_start|>assistant
	// <tool_call>
	// {"name": "get_weather", "arguments": {"city": "Paris"}}
	// </tool_call><|im_end|>
	// <|im_start|>tool
	// <tool_response>
	// 22 C, sunny
	// </tool_response><|im_end|>
	// <|im_start|>assistant
}
